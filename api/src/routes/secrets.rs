//! Secrets: per bot, and per user for all of the user's bots. A value is sealed (AES-256-GCM)
//! before it is stored and never returned: the API lists names and times only. Workers open
//! them into the bot's environment and scrub them from its logs and output.

use axum::extract::State;
use axum::http::StatusCode;
use codex32_shared::Timestamp;
use codex32_shared::bus::Event;
use codex32_shared::secrets::{bot_scope, check_name, check_value, context, user_scope};
use codex32_shared::store::SecretEntry;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::audit;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Json, Path};
use crate::routes::bots::visible_bot;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_bot_secrets))
        .routes(routes!(put_bot_secret, delete_bot_secret))
        .routes(routes!(list_user_secrets))
        .routes(routes!(put_user_secret, delete_user_secret))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretValue {
    /// 1 byte to 64 KiB; never shown again.
    pub value: String,
}

/// Tells workers to read the scope's secrets again: they keep them for 2 s otherwise.
async fn announce(state: &AppState, scope: &str) {
    let event = Event::SecretsChanged {
        scope: scope.to_owned(),
    };
    if let Err(e) = state.backends.bus.publish(&event).await {
        tracing::warn!(scope, error = %e, "Secret change not announced; workers see it within 2 s.");
    }
}

/// Seals and stores; 201 when new, 200 when replaced.
async fn put(
    state: &AppState,
    caller: &Caller,
    scope: String,
    name: &str,
    value: &str,
) -> Result<(StatusCode, axum::Json<SecretEntry>), ApiError> {
    check_name(name)?;
    check_value(value)?;
    let keyring = state.keyring.as_ref().ok_or_else(|| {
        ApiError::conflict("secrets are off on this server: set CODEX32_SECRETS_KEY (the same on the API and every worker)")
    })?;
    let sealed = keyring.seal(value, &context(&scope, name));
    let store = &state.backends.store;
    let created = store
        .put_secret(&scope, name, &sealed, Timestamp::now())
        .await?;
    announce(state, &scope).await;
    let details = serde_json::json!({ "scope": scope, "name": name, "created": created });
    audit::record(state, Some(caller.user_id), "secret.put", &scope, details).await?;
    let entry = store
        .secrets(std::slice::from_ref(&scope))
        .await?
        .into_iter()
        .find(|e| e.name == name)
        .ok_or_else(|| ApiError::internal("a stored secret vanished"))?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, axum::Json(entry)))
}

async fn delete(
    state: &AppState,
    caller: &Caller,
    scope: String,
    name: &str,
) -> Result<StatusCode, ApiError> {
    if !state.backends.store.delete_secret(&scope, name).await? {
        return Err(ApiError::not_found("secret"));
    }
    announce(state, &scope).await;
    let details = serde_json::json!({ "scope": scope, "name": name });
    audit::record(
        state,
        Some(caller.user_id),
        "secret.delete",
        &scope,
        details,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list(state: &AppState, scope: String) -> Result<axum::Json<Vec<SecretEntry>>, ApiError> {
    Ok(axum::Json(state.backends.store.secrets(&[scope]).await?))
}

/// A bot's secrets: names and times, never values.
#[utoipa::path(get, path = "/bots/{id}/secrets", tag = "secrets", security(("bearer" = [])), params(("id" = Uuid, Path, description = "Bot id")),
    responses((status = 200, body = Vec<SecretEntry>), (status = 404, body = ErrorBody)))]
async fn list_bot_secrets(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<Vec<SecretEntry>>, ApiError> {
    let bot = visible_bot(&state, &caller, id).await?;
    list(&state, bot_scope(bot.id)).await
}

/// Set a bot's secret: it arrives in the bot's environment as `name`.
#[utoipa::path(put, path = "/bots/{id}/secrets/{name}", tag = "secrets", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Bot id"), ("name" = String, Path, description = "An environment variable name")),
    request_body = SecretValue,
    responses((status = 201, body = SecretEntry), (status = 200, body = SecretEntry), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn put_bot_secret(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, name)): Path<(Uuid, String)>,
    Json(body): Json<SecretValue>,
) -> Result<(StatusCode, axum::Json<SecretEntry>), ApiError> {
    caller.require_write()?;
    let bot = visible_bot(&state, &caller, id).await?;
    put(&state, &caller, bot_scope(bot.id), &name, &body.value).await
}

/// Delete a bot's secret.
#[utoipa::path(delete, path = "/bots/{id}/secrets/{name}", tag = "secrets", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Bot id"), ("name" = String, Path, description = "The secret's name")),
    responses((status = 204), (status = 404, body = ErrorBody)))]
async fn delete_bot_secret(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, name)): Path<(Uuid, String)>,
) -> Result<StatusCode, ApiError> {
    caller.require_write()?;
    let bot = visible_bot(&state, &caller, id).await?;
    delete(&state, &caller, bot_scope(bot.id), &name).await
}

/// Your own secrets, given to every bot you own (a bot's own secret of the same name wins).
#[utoipa::path(get, path = "/secrets", tag = "secrets", security(("bearer" = [])),
    responses((status = 200, body = Vec<SecretEntry>)))]
async fn list_user_secrets(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<axum::Json<Vec<SecretEntry>>, ApiError> {
    list(&state, user_scope(caller.user_id)).await
}

/// Set one of your secrets.
#[utoipa::path(put, path = "/secrets/{name}", tag = "secrets", security(("bearer" = [])),
    params(("name" = String, Path, description = "An environment variable name")),
    request_body = SecretValue,
    responses((status = 201, body = SecretEntry), (status = 200, body = SecretEntry), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn put_user_secret(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Json(body): Json<SecretValue>,
) -> Result<(StatusCode, axum::Json<SecretEntry>), ApiError> {
    caller.require_write()?;
    put(
        &state,
        &caller,
        user_scope(caller.user_id),
        &name,
        &body.value,
    )
    .await
}

/// Delete one of your secrets.
#[utoipa::path(delete, path = "/secrets/{name}", tag = "secrets", security(("bearer" = [])),
    params(("name" = String, Path, description = "The secret's name")),
    responses((status = 204), (status = 404, body = ErrorBody)))]
async fn delete_user_secret(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require_write()?;
    delete(&state, &caller, user_scope(caller.user_id), &name).await
}
