//! Logging in: passwords for tokens, rotating refresh tokens for new ones (a refresh token
//! works once; presenting it again revokes every token of that login), logging out, changing
//! one's password (which ends every session), and who am I.

use axum::extract::State;
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use codex32_shared::Timestamp;
use codex32_shared::domain::User;
use codex32_shared::store::{RefreshToken, RefreshUse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::audit;
use crate::auth::{Caller, hash_password, verify_password};
use crate::error::{ApiError, ErrorBody};
use crate::extract::Json;
use crate::limits;
use crate::routes::users::check_password;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(login))
        .routes(routes!(refresh))
        .routes(routes!(logout))
        .routes(routes!(change_password))
        .routes(routes!(me))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    pub current_password: String,
    /// 8 to 1024 characters.
    pub new_password: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

/// Tokens for API calls: send the access token as `Authorization: Bearer …`.
#[derive(Serialize, ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    pub refresh_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: u64,
}

/// Tokens of a new login (a new family).
pub(crate) async fn tokens_for(state: &AppState, user: &User) -> Result<TokenResponse, ApiError> {
    tokens_in_family(state, user, Uuid::now_v7()).await
}

/// An access token and the next refresh token of `family_id`, recorded before it is handed out.
async fn tokens_in_family(
    state: &AppState,
    user: &User,
    family_id: Uuid,
) -> Result<TokenResponse, ApiError> {
    let now = Timestamp::now();
    let token = RefreshToken {
        id: Uuid::now_v7(),
        family_id,
        user_id: user.id,
        issued_at: now,
        expires_at: now.plus_millis(state.tokens.refresh_ttl_s as i64 * 1000),
    };
    state.backends.store.create_refresh_token(&token).await?;
    Ok(TokenResponse {
        access_token: state.tokens.issue(user.id, user.role)?,
        refresh_token: state
            .tokens
            .issue_refresh(user.id, user.role, token.id, family_id)?,
        token_type: "Bearer",
        expires_in: state.tokens.access_ttl_s,
    })
}

/// Log in with email and password. Attempts are limited per account and per address
/// (`CODEX32_LOGIN_LIMIT_PER_MIN`): past it, 429 with `Retry-After`.
#[utoipa::path(post, path = "/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = TokenResponse), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
async fn login(
    State(state): State<AppState>,
    parts: Parts,
    Json(req): Json<LoginRequest>,
) -> Result<axum::Json<TokenResponse>, Response> {
    let ip = limits::client_ip(&parts);
    limits::check_login(&state, &req.email, ip.as_deref()).await?;
    password_login(&state, req)
        .await
        .map_err(IntoResponse::into_response)
}

async fn password_login(
    state: &AppState,
    req: LoginRequest,
) -> Result<axum::Json<TokenResponse>, ApiError> {
    let user = state.backends.store.user_by_email(req.email.trim()).await?;
    // Verify against a dummy hash when the user is unknown, so timing does not reveal accounts.
    let (ok, user) = match user {
        Some(user) => (
            verify_password(&req.password, &user.password_hash),
            Some(user),
        ),
        None => {
            let _ = verify_password(&req.password, &DUMMY_HASH);
            (false, None)
        }
    };
    let action = if ok {
        "auth.login"
    } else {
        "auth.login_failed"
    };
    let actor = user.as_ref().map(|u| u.id);
    audit::record_or_log(state, actor, action, &req.email, serde_json::json!({})).await;
    match (ok, user) {
        (true, Some(user)) => Ok(axum::Json(tokens_for(state, &user).await?)),
        _ => Err(ApiError::unauthorized("wrong email or password")),
    }
}

/// A real hash, verified against when the email is unknown.
static DUMMY_HASH: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    crate::auth::hash_password("codex32-no-such-user").unwrap_or_default()
});

/// Exchange a refresh token for new tokens. Each refresh token works once: keep the new one.
/// Presenting a spent one again (a stolen copy, say) revokes every token of that login.
#[utoipa::path(post, path = "/auth/refresh", tag = "auth", request_body = RefreshRequest,
    responses((status = 200, body = TokenResponse), (status = 401, body = ErrorBody)))]
async fn refresh(
    State(state): State<AppState>,
    Json(req): Json<RefreshRequest>,
) -> Result<axum::Json<TokenResponse>, ApiError> {
    let claims = state.tokens.verify_refresh(&req.refresh_token)?;
    let store = &state.backends.store;
    let family_id = match store
        .use_refresh_token(claims.token_id, Timestamp::now())
        .await?
    {
        RefreshUse::Spent { family_id, .. } => family_id,
        RefreshUse::Reused { family_id, user_id } => {
            audit::record_or_log(
                &state,
                Some(user_id),
                "auth.refresh_reused",
                family_id.to_string(),
                serde_json::json!({}),
            )
            .await;
            return Err(ApiError::unauthorized(
                "this refresh token was already used: every session of this login is now revoked; log in again",
            ));
        }
        RefreshUse::Invalid => {
            return Err(ApiError::unauthorized(
                "this refresh token was revoked or has expired: log in again",
            ));
        }
    };
    let user = store
        .user_by_id(claims.user_id)
        .await?
        .ok_or_else(|| ApiError::unauthorized("the user no longer exists"))?;
    Ok(axum::Json(
        tokens_in_family(&state, &user, family_id).await?,
    ))
}

/// Log out: revokes the refresh token and every token rotated from the same login. Access
/// tokens already issued stay valid until they expire (`expires_in`, 15 minutes by default).
#[utoipa::path(post, path = "/auth/logout", tag = "auth", request_body = RefreshRequest,
    responses((status = 204), (status = 401, body = ErrorBody)))]
async fn logout(
    State(state): State<AppState>,
    Json(req): Json<RefreshRequest>,
) -> Result<StatusCode, ApiError> {
    let claims = state.tokens.verify_refresh(&req.refresh_token)?;
    state
        .backends
        .store
        .revoke_refresh_family(claims.family_id, Timestamp::now())
        .await?;
    audit::record_or_log(
        &state,
        Some(claims.user_id),
        "auth.logout",
        claims.family_id.to_string(),
        serde_json::json!({}),
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}

/// Change your password: needs the current one, and ends every session (refresh tokens) of
/// your account. Not with an API key: log in with your password.
#[utoipa::path(post, path = "/auth/password", tag = "auth", security(("bearer" = [])), request_body = PasswordChange,
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn change_password(
    State(state): State<AppState>,
    caller: Caller,
    Json(req): Json<PasswordChange>,
) -> Result<StatusCode, ApiError> {
    if caller.api_key_id.is_some() {
        return Err(ApiError::forbidden(
            "an API key cannot change its user's password: log in with the password",
        ));
    }
    let store = &state.backends.store;
    let user = store
        .user_by_id(caller.user_id)
        .await?
        .ok_or_else(|| ApiError::unauthorized("the user no longer exists"))?;
    if !verify_password(&req.current_password, &user.password_hash) {
        audit::record_or_log(
            &state,
            Some(user.id),
            "auth.password_change_failed",
            user.email,
            serde_json::json!({}),
        )
        .await;
        return Err(ApiError::invalid(
            "current_password",
            "is not your current password",
        ));
    }
    if check_password(&req.new_password).is_err() {
        return Err(ApiError::invalid(
            "new_password",
            "must be 8 to 1024 characters long",
        ));
    }
    let hash = hash_password(&req.new_password)?;
    store
        .change_password(user.id, &hash, Timestamp::now())
        .await?;
    audit::record_or_log(
        &state,
        Some(user.id),
        "auth.password_change",
        user.email,
        serde_json::json!({}),
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}

/// The caller's own account.
#[derive(Serialize, ToSchema)]
pub struct Me {
    #[serde(flatten)]
    pub user: User,
    /// Set when the call was made with an API key.
    pub api_key_id: Option<uuid::Uuid>,
}

/// Who the credentials belong to.
#[utoipa::path(get, path = "/auth/me", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = Me), (status = 401, body = ErrorBody)))]
async fn me(State(state): State<AppState>, caller: Caller) -> Result<axum::Json<Me>, ApiError> {
    let mut user = state
        .backends
        .store
        .user_by_id(caller.user_id)
        .await?
        .ok_or_else(|| ApiError::unauthorized("the user no longer exists"))?;
    user.role = caller.role;
    Ok(axum::Json(Me {
        user,
        api_key_id: caller.api_key_id,
    }))
}
