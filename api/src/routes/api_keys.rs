//! API keys: long-lived credentials for automation, shown once, stored hashed, revocable.

use axum::extract::State;
use axum::http::StatusCode;
use codex32_shared::Timestamp;
use codex32_shared::bus::Event;
use codex32_shared::domain::{ApiKey, Role, check_name};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::audit;
use crate::auth::{Caller, new_api_key};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Json, Path};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_key, list_keys))
        .routes(routes!(revoke_key))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewKeyRequest {
    /// A label: 1–64 letters, digits, `_`, `.`, `-`.
    pub name: String,
    /// Defaults to `api_user`; never higher than the caller's own role.
    pub role: Option<Role>,
    /// Lifetime in seconds; unset means it does not expire.
    pub expires_in_s: Option<u64>,
}

/// A new key: `key` is shown only in this response.
#[derive(Serialize, ToSchema)]
pub struct NewKeyResponse {
    #[serde(flatten)]
    pub api_key: ApiKey,
    pub key: String,
}

/// Create an API key for yourself.
#[utoipa::path(post, path = "/api-keys", tag = "api-keys", security(("bearer" = [])), request_body = NewKeyRequest,
    responses((status = 201, body = NewKeyResponse), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn create_key(
    State(state): State<AppState>,
    caller: Caller,
    Json(req): Json<NewKeyRequest>,
) -> Result<(StatusCode, axum::Json<NewKeyResponse>), ApiError> {
    check_name("name", &req.name)?;
    let role = req.role.unwrap_or(Role::ApiUser);
    if !caller.role.may_grant(role) {
        return Err(ApiError::forbidden(format!(
            "a {} cannot create a key with role {role}",
            caller.role
        )));
    }
    let now = Timestamp::now();
    let expires_at = match req.expires_in_s {
        Some(0) => {
            return Err(ApiError::invalid(
                "expires_in_s",
                "must be at least 1 second",
            ));
        }
        Some(s) => {
            Some(now.plus_millis(i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX / 2)))
        }
        None => None,
    };
    let (key, key_hash) = new_api_key();
    let api_key = ApiKey {
        id: Uuid::now_v7(),
        user_id: caller.user_id,
        name: req.name,
        prefix: key.chars().take(12).collect(),
        key_hash,
        role,
        created_at: now,
        last_used_at: None,
        expires_at,
        revoked_at: None,
    };
    state.backends.store.create_api_key(&api_key).await?;
    audit::record(
        &state,
        Some(caller.user_id),
        "api_key.create",
        api_key.id,
        serde_json::json!({ "name": api_key.name, "role": api_key.role }),
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(NewKeyResponse { api_key, key }),
    ))
}

/// Your API keys (all keys, for admins), without their secrets.
#[utoipa::path(get, path = "/api-keys", tag = "api-keys", security(("bearer" = [])),
    responses((status = 200, body = Vec<ApiKey>)))]
async fn list_keys(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<axum::Json<Vec<ApiKey>>, ApiError> {
    let owner = (caller.role != Role::Admin).then_some(caller.user_id);
    Ok(axum::Json(state.backends.store.list_api_keys(owner).await?))
}

/// Revoke an API key; it stops working at once (on other API processes of a distributed
/// deployment within milliseconds, through the bus; at the latest after 2 s).
#[utoipa::path(delete, path = "/api-keys/{id}", tag = "api-keys", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "API key id")),
    responses((status = 204), (status = 404, body = ErrorBody)))]
async fn revoke_key(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    let owner = (caller.role != Role::Admin).then_some(caller.user_id);
    if !state
        .backends
        .store
        .revoke_api_key(id, owner, Timestamp::now())
        .await?
    {
        return Err(ApiError::not_found("API key"));
    }
    // Other API processes may hold the key in their cache: they forget it on this event.
    state.api_keys.evict(id);
    if let Err(e) = state
        .backends
        .bus
        .publish(&Event::ApiKeyRevoked { key_id: id })
        .await
    {
        tracing::warn!(api_key_id = %id, error = %e, "Revoke not announced; other API processes accept the key for at most 2 s more.");
    }
    audit::record(
        &state,
        Some(caller.user_id),
        "api_key.revoke",
        id,
        serde_json::json!({}),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
