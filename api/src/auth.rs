//! Who is calling: passwords (argon2id), access and refresh tokens (HS256 JWTs), API keys
//! (random, stored as SHA-256), and the [`Caller`] extractor every protected route takes.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use codex32_shared::Timestamp;
use codex32_shared::domain::{ApiKey, Role};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::error::ApiError;
use crate::state::AppState;

/// Every API key starts with this, so a key is told from a JWT at a glance (and by scanners).
pub const KEY_PREFIX: &str = "c32_";

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user_id: Uuid,
    pub role: Role,
    pub api_key_id: Option<Uuid>,
}

impl Caller {
    /// Refuses read-only callers.
    pub fn require_write(&self) -> Result<(), ApiError> {
        if self.role.can_write() {
            Ok(())
        } else {
            Err(ApiError::forbidden("this role is read-only"))
        }
    }

    pub fn require_admin(&self) -> Result<(), ApiError> {
        match self.role {
            Role::Admin => Ok(()),
            Role::User | Role::Viewer | Role::ApiUser => {
                Err(ApiError::forbidden("only admins may do this"))
            }
        }
    }

    /// Whether the caller may see a resource owned by `owner`.
    pub fn sees(&self, owner: Uuid) -> bool {
        self.role.sees_all() || self.user_id == owner
    }

    /// The owner filter for listings: none for those who see everything.
    pub fn owner_filter(&self) -> Option<Uuid> {
        (!self.role.sees_all()).then_some(self.user_id)
    }
}

/// Claims of both token kinds.
#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: Uuid,
    role: Role,
    /// `access` or `refresh`: one is never accepted as the other.
    typ: String,
    iat: i64,
    exp: i64,
    /// Refresh tokens: the token's id, spent on use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    jti: Option<Uuid>,
    /// Refresh tokens: the family (one login) it belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fam: Option<Uuid>,
}

/// What a valid refresh token names.
#[derive(Debug, Clone, Copy)]
pub struct RefreshClaims {
    pub user_id: Uuid,
    pub token_id: Uuid,
    pub family_id: Uuid,
}

/// Signing keys and lifetimes.
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    pub access_ttl_s: u64,
    pub refresh_ttl_s: u64,
}

impl TokenKeys {
    pub fn new(secret: &[u8], access_ttl_s: u64, refresh_ttl_s: u64) -> Self {
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            access_ttl_s,
            refresh_ttl_s,
        }
    }

    /// An access token.
    pub fn issue(&self, user_id: Uuid, role: Role) -> Result<String, ApiError> {
        self.encode(user_id, role, "access", self.access_ttl_s, None)
    }

    /// A refresh token with its id and family (the store holds the same).
    pub fn issue_refresh(
        &self,
        user_id: Uuid,
        role: Role,
        token_id: Uuid,
        family_id: Uuid,
    ) -> Result<String, ApiError> {
        let session = Some((token_id, family_id));
        self.encode(user_id, role, "refresh", self.refresh_ttl_s, session)
    }

    fn encode(
        &self,
        user_id: Uuid,
        role: Role,
        typ: &str,
        ttl: u64,
        session: Option<(Uuid, Uuid)>,
    ) -> Result<String, ApiError> {
        let now = Timestamp::now().millis() / 1000;
        let claims = Claims {
            sub: user_id,
            role,
            typ: typ.to_owned(),
            iat: now,
            exp: now + ttl as i64,
            jti: session.map(|s| s.0),
            fam: session.map(|s| s.1),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(ApiError::internal)
    }

    /// The ids a valid, unexpired refresh token carries.
    pub fn verify_refresh(&self, token: &str) -> Result<RefreshClaims, ApiError> {
        let claims = self.decode(token, "refresh")?;
        match (claims.jti, claims.fam) {
            (Some(token_id), Some(family_id)) => Ok(RefreshClaims {
                user_id: claims.sub,
                token_id,
                family_id,
            }),
            _ => Err(ApiError::unauthorized(
                "this refresh token predates token rotation: log in again",
            )),
        }
    }

    /// The user and role of a valid, unexpired token of kind `typ`.
    pub fn verify(&self, token: &str, typ: &str) -> Result<(Uuid, Role), ApiError> {
        let claims = self.decode(token, typ)?;
        Ok((claims.sub, claims.role))
    }

    fn decode(&self, token: &str, typ: &str) -> Result<Claims, ApiError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation).map_err(
            |e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => ApiError::unauthorized(
                    "the token has expired: refresh it (POST /api/v1/auth/refresh) or log in again",
                ),
                _ => ApiError::unauthorized(
                    "invalid token: log in again (POST /api/v1/auth/login), or send an API key",
                ),
            },
        )?;
        if data.claims.typ != typ {
            return Err(ApiError::unauthorized(format!(
                "a {} token cannot be used here",
                data.claims.typ
            )));
        }
        Ok(data.claims)
    }
}

pub fn hash_password(password: &str) -> Result<String, ApiError> {
    use argon2::PasswordHasher;
    argon2::Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(ApiError::internal)
}

pub fn verify_password(password: &str, hash: &str) -> bool {
    use argon2::PasswordVerifier;
    argon2::Argon2::default()
        .verify_password(password.as_bytes(), hash)
        .is_ok()
}

/// `bytes` random bytes in hex: the secret part of keys, webhook URLs, invites and resets.
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    hex::encode(buf)
}

/// A new random API key (shown once) and the hash that is stored.
pub fn new_api_key() -> (String, String) {
    let key = format!("{KEY_PREFIX}{}", random_hex(24));
    let hash = hash_key(&key);
    (key, hash)
}

pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

fn bearer(parts: &Parts) -> Option<String> {
    let header = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = header.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}

/// `?token=` for browsers' WebSockets, which cannot set headers.
fn query_token(parts: &Parts) -> Option<String> {
    let query = parts.uri.query()?;
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix("token=").map(str::to_owned))
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        // Authenticated once by the access-table middleware.
        if let Some(caller) = parts.extensions.get::<Caller>() {
            return Ok(caller.clone());
        }
        let is_ws = parts.uri.path().ends_with("/ws");
        let token = bearer(parts)
            .or_else(|| is_ws.then(|| query_token(parts)).flatten())
            .ok_or_else(|| {
                ApiError::unauthorized(
                    "missing credentials: send `Authorization: Bearer <access token or API key>`",
                )
            })?;
        if token.starts_with(KEY_PREFIX) {
            return caller_from_key(state, &token).await;
        }
        let (user_id, role) = state.tokens.verify(&token, "access")?;
        Ok(Caller {
            user_id,
            role,
            api_key_id: None,
        })
    }
}

async fn caller_from_key(state: &AppState, key: &str) -> Result<Caller, ApiError> {
    let hash = hash_key(key);
    let key = match state.api_keys.get(&hash) {
        Some(key) => key,
        None => {
            let read_after = state.api_keys.since();
            let found: Option<ApiKey> = state.backends.store.api_key_by_hash(&hash).await?;
            let key = found.ok_or_else(|| ApiError::unauthorized("unknown API key"))?;
            state.api_keys.put(hash, key.clone(), read_after);
            key
        }
    };
    let now = Timestamp::now();
    if key.revoked_at.is_some() {
        return Err(ApiError::unauthorized("this API key was revoked"));
    }
    if key.expires_at.is_some_and(|at| at <= now) {
        return Err(ApiError::unauthorized("this API key has expired"));
    }
    // Record use at most once a minute per key, off the request's path.
    if state.last_use.due(key.id, key.last_used_at, now) {
        let store = state.backends.store.clone();
        tokio::spawn(async move {
            let _ = store.touch_api_key(key.id, now).await;
        });
    }
    Ok(Caller {
        user_id: key.user_id,
        role: key.role,
        api_key_id: Some(key.id),
    })
}
