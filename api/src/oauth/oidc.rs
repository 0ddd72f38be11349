//! OpenID Connect: the provider's discovery document and signing keys (fetched on first use
//! and cached, so an API starts while a provider is down), and the ID token check — signature
//! by a key the issuer publishes, issuer, audience, expiry and the login's nonce.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use tokio::sync::RwLock;

use super::http::Http;
use super::{Identity, OAuthError};

/// How long discovery and keys are trusted before they are fetched again.
const CACHE_FOR: Duration = Duration::from_secs(3600);
/// A token signed by a key we do not know makes us fetch the keys again (a rotation), but not
/// more often than this.
const REFETCH_AFTER: Duration = Duration::from_secs(5);
/// Asymmetric algorithms only: an HMAC "signature" would be keyed by the client secret,
/// and `none` is no signature at all.
const ALGORITHMS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// What discovery tells us (`/.well-known/openid-configuration`).
#[derive(Debug, Deserialize)]
pub struct Metadata {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub userinfo_endpoint: Option<String>,
    pub jwks_uri: String,
    #[serde(default)]
    pub token_endpoint_auth_methods_supported: Vec<String>,
}

impl Metadata {
    /// Sends the client secret in the form body only when the provider does not take Basic.
    pub fn secret_in_body(&self) -> bool {
        let methods = &self.token_endpoint_auth_methods_supported;
        !methods.is_empty()
            && !methods.iter().any(|m| m == "client_secret_basic")
            && methods.iter().any(|m| m == "client_secret_post")
    }
}

pub struct Oidc {
    pub issuer: String,
    metadata: RwLock<Option<(Arc<Metadata>, Instant)>>,
    keys: RwLock<Option<(Arc<JwkSet>, Instant)>>,
}

/// The claims of an ID token we use.
#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    nonce: Option<String>,
    /// The client the token was issued to, when the audience names several.
    azp: Option<String>,
    email: Option<String>,
    #[serde(default)]
    email_verified: Option<serde_json::Value>,
    /// Google's Workspace domain.
    hd: Option<String>,
}

/// The claims of the user-info response we use.
#[derive(Debug, Deserialize)]
struct UserInfo {
    sub: String,
    email: Option<String>,
    #[serde(default)]
    email_verified: Option<serde_json::Value>,
}

impl Oidc {
    pub fn new(issuer: String) -> Self {
        Self {
            issuer,
            metadata: RwLock::new(None),
            keys: RwLock::new(None),
        }
    }

    /// The discovery document, from cache or fetched; its issuer must be the configured one.
    pub async fn metadata(&self, http: &Http) -> Result<Arc<Metadata>, OAuthError> {
        if let Some((m, at)) = self.metadata.read().await.as_ref()
            && at.elapsed() < CACHE_FOR
        {
            return Ok(m.clone());
        }
        let url = format!("{}/.well-known/openid-configuration", self.issuer);
        let m: Metadata = http.get_json(&url, None, "discovery document").await?;
        if m.issuer.trim_end_matches('/') != self.issuer {
            return Err(OAuthError::Unreachable {
                what: "discovery document".into(),
                detail: format!(
                    "it names issuer {:?}, not the configured {:?}: fix `issuer`",
                    m.issuer, self.issuer
                ),
            });
        }
        let m = Arc::new(m);
        *self.metadata.write().await = Some((m.clone(), Instant::now()));
        Ok(m)
    }

    /// Checks an ID token and returns who it names.
    pub async fn verify(
        &self,
        http: &Http,
        id_token: &str,
        client_id: &str,
        nonce: &str,
    ) -> Result<(Identity, Option<String>), OAuthError> {
        let bad = |why: String| OAuthError::BadIdToken(why);
        let header = jsonwebtoken::decode_header(id_token).map_err(|e| bad(e.to_string()))?;
        if !ALGORITHMS.contains(&header.alg) {
            return Err(bad(format!(
                "{:?} is not an accepted signing algorithm",
                header.alg
            )));
        }
        let key = self.key(http, header.kid.as_deref()).await?;
        let mut validation = Validation::new(header.alg);
        validation.set_audience(&[client_id]);
        let with_slash = format!("{}/", self.issuer);
        let mut issuers = vec![self.issuer.as_str(), with_slash.as_str()];
        if self.issuer == "https://accounts.google.com" {
            // Google documents both spellings of its issuer.
            issuers.push("accounts.google.com");
        }
        validation.set_issuer(&issuers);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let claims = jsonwebtoken::decode::<Claims>(id_token, &key, &validation)
            .map_err(|e| bad(e.to_string()))?
            .claims;
        if claims.azp.as_deref().is_some_and(|azp| azp != client_id) {
            return Err(bad("it was issued to another client (azp)".into()));
        }
        if claims.nonce.as_deref() != Some(nonce) {
            return Err(bad(
                "its nonce is not this login's (a replayed token?)".into()
            ));
        }
        let identity = Identity {
            subject: claims.sub,
            email: String::new(),
            email_verified: truthy(&claims.email_verified),
            hosted_domain: claims.hd.map(|d| d.to_lowercase()),
        };
        Ok((identity, claims.email))
    }

    /// The identity of an ID token, completed from the user-info endpoint when the token
    /// carries no email.
    pub async fn identity(
        &self,
        http: &Http,
        id_token: &str,
        access_token: &str,
        client_id: &str,
        nonce: &str,
    ) -> Result<Identity, OAuthError> {
        let (identity, email) = self.verify(http, id_token, client_id, nonce).await?;
        if let Some(email) = email {
            return Ok(Identity { email, ..identity });
        }
        let metadata = self.metadata(http).await?;
        let Some(url) = &metadata.userinfo_endpoint else {
            return Err(OAuthError::NoEmail);
        };
        let info: UserInfo = http.get_json(url, Some(access_token), "user info").await?;
        if info.sub != identity.subject {
            return Err(OAuthError::BadIdToken(
                "the user-info response names another subject than the ID token".into(),
            ));
        }
        Ok(Identity {
            email: info.email.ok_or(OAuthError::NoEmail)?,
            email_verified: truthy(&info.email_verified),
            ..identity
        })
    }

    /// The issuer's key `kid` (or its only key), fetching the keys again if it is unknown.
    async fn key(&self, http: &Http, kid: Option<&str>) -> Result<DecodingKey, OAuthError> {
        if let Some((set, at)) = self.keys.read().await.clone() {
            match pick(&set, kid) {
                Some(key) if at.elapsed() < CACHE_FOR => return key,
                None if at.elapsed() < REFETCH_AFTER => return Err(unknown_key(kid)),
                _ => {} // stale, or unknown and worth fetching again
            }
        }
        let metadata = self.metadata(http).await?;
        let set: JwkSet = http
            .get_json(&metadata.jwks_uri, None, "signing keys")
            .await?;
        let set = Arc::new(set);
        *self.keys.write().await = Some((set.clone(), Instant::now()));
        pick(&set, kid).unwrap_or_else(|| Err(unknown_key(kid)))
    }
}

fn pick(set: &JwkSet, kid: Option<&str>) -> Option<Result<DecodingKey, OAuthError>> {
    let jwk = match kid {
        Some(kid) => set.find(kid)?,
        None if set.keys.len() == 1 => &set.keys[0],
        None => return None,
    };
    Some(DecodingKey::from_jwk(jwk).map_err(|e| OAuthError::BadIdToken(format!("its key: {e}"))))
}

fn unknown_key(kid: Option<&str>) -> OAuthError {
    OAuthError::BadIdToken(format!(
        "it is signed by a key the issuer does not publish (kid {kid:?})"
    ))
}

/// `email_verified` as a boolean; some providers send the string `"true"`.
fn truthy(value: &Option<serde_json::Value>) -> bool {
    match value {
        Some(serde_json::Value::Bool(b)) => *b,
        Some(serde_json::Value::String(s)) => s.eq_ignore_ascii_case("true"),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_verified_is_read_leniently() {
        assert!(truthy(&Some(serde_json::json!(true))));
        assert!(truthy(&Some(serde_json::json!("TRUE"))));
        assert!(!truthy(&Some(serde_json::json!("false"))));
        assert!(!truthy(&Some(serde_json::json!(1))));
        assert!(!truthy(&None));
    }

    #[test]
    fn the_secret_goes_in_the_body_only_when_basic_is_not_offered() {
        let m = |methods: &[&str]| Metadata {
            issuer: String::new(),
            authorization_endpoint: String::new(),
            token_endpoint: String::new(),
            userinfo_endpoint: None,
            jwks_uri: String::new(),
            token_endpoint_auth_methods_supported: methods.iter().map(|s| s.to_string()).collect(),
        };
        assert!(!m(&[]).secret_in_body());
        assert!(!m(&["client_secret_basic", "client_secret_post"]).secret_in_body());
        assert!(m(&["client_secret_post"]).secret_in_body());
    }
}
