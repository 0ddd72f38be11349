//! Logging in: passwords for tokens, refresh tokens for new access tokens, and who am I.

use axum::extract::State;
use codex32_shared::Timestamp;
use codex32_shared::domain::User;
use codex32_shared::store::AuditEntry;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{Caller, verify_password};
use crate::error::{ApiError, ErrorBody};
use crate::extract::Json;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(login))
        .routes(routes!(refresh))
        .routes(routes!(me))
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

fn tokens_for(state: &AppState, user: &User) -> Result<TokenResponse, ApiError> {
    Ok(TokenResponse {
        access_token: state.tokens.issue(user.id, user.role, "access")?,
        refresh_token: state.tokens.issue(user.id, user.role, "refresh")?,
        token_type: "Bearer",
        expires_in: state.tokens.access_ttl_s,
    })
}

/// Log in with email and password.
#[utoipa::path(post, path = "/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = TokenResponse), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn login(
    State(state): State<AppState>,
    Json(req): Json<LoginRequest>,
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
    let audit = AuditEntry {
        actor_id: user.as_ref().map(|u| u.id),
        action: if ok {
            "auth.login"
        } else {
            "auth.login_failed"
        }
        .to_owned(),
        target: req.email.clone(),
        details: serde_json::json!({}),
        at: Timestamp::now(),
    };
    let _ = state.backends.store.record_audit(&audit).await;
    match (ok, user) {
        (true, Some(user)) => Ok(axum::Json(tokens_for(&state, &user)?)),
        _ => Err(ApiError::unauthorized("wrong email or password")),
    }
}

/// A real hash, verified against when the email is unknown.
static DUMMY_HASH: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    crate::auth::hash_password("codex32-no-such-user").unwrap_or_default()
});

/// Exchange a refresh token for new tokens.
#[utoipa::path(post, path = "/auth/refresh", tag = "auth", request_body = RefreshRequest,
    responses((status = 200, body = TokenResponse), (status = 401, body = ErrorBody)))]
async fn refresh(
    State(state): State<AppState>,
    Json(req): Json<RefreshRequest>,
) -> Result<axum::Json<TokenResponse>, ApiError> {
    let (user_id, _) = state.tokens.verify(&req.refresh_token, "refresh")?;
    let user = state
        .backends
        .store
        .user_by_id(user_id)
        .await?
        .ok_or_else(|| ApiError::unauthorized("the user no longer exists"))?;
    Ok(axum::Json(tokens_for(&state, &user)?))
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
