//! Bots: create, read, change (each change a new version), delete, and list versions.

use axum::extract::State;
use axum::http::StatusCode;
use codex32_shared::Timestamp;
use codex32_shared::domain::bot::BotPatch;
use codex32_shared::domain::{Bot, BotSpec, BotVersion};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::audit;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Json, Path};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_bot, list_bots))
        .routes(routes!(get_bot, update_bot, delete_bot))
        .routes(routes!(list_versions))
}

/// The bot with this id, if the caller may see it; else 404 (existence is not revealed).
pub async fn visible_bot(state: &AppState, caller: &Caller, id: Uuid) -> Result<Bot, ApiError> {
    match state.backends.store.get_bot(id).await? {
        Some(bot) if caller.sees(bot.owner_id) => Ok(bot),
        _ => Err(ApiError::not_found("bot")),
    }
}

/// Create a bot. Only `name`, `runtime` and `script` are required.
#[utoipa::path(post, path = "/bots", tag = "bots", security(("bearer" = [])), request_body = BotSpec,
    responses((status = 201, body = Bot), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn create_bot(
    State(state): State<AppState>,
    caller: Caller,
    Json(spec): Json<BotSpec>,
) -> Result<(StatusCode, axum::Json<Bot>), ApiError> {
    caller.require_write()?;
    spec.validate()?;
    let bot = state
        .backends
        .store
        .create_bot(Uuid::now_v7(), caller.user_id, &spec, Timestamp::now())
        .await?;
    audit::record(
        &state,
        Some(caller.user_id),
        "bot.create",
        bot.id,
        serde_json::json!({ "name": bot.spec.name }),
    )
    .await?;
    Ok((StatusCode::CREATED, axum::Json(bot)))
}

/// Bots the caller can see, newest first.
#[utoipa::path(get, path = "/bots", tag = "bots", security(("bearer" = [])), responses((status = 200, body = Vec<Bot>)))]
async fn list_bots(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<axum::Json<Vec<Bot>>, ApiError> {
    Ok(axum::Json(
        state
            .backends
            .store
            .list_bots(caller.owner_filter())
            .await?,
    ))
}

/// One bot.
#[utoipa::path(get, path = "/bots/{id}", tag = "bots", security(("bearer" = [])), params(("id" = Uuid, Path, description = "Bot id")),
    responses((status = 200, body = Bot), (status = 404, body = ErrorBody)))]
async fn get_bot(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<Bot>, ApiError> {
    Ok(axum::Json(visible_bot(&state, &caller, id).await?))
}

/// Change a bot: absent fields keep their value. A real change makes a new version;
/// executions already created keep running the version they were created with.
#[utoipa::path(patch, path = "/bots/{id}", tag = "bots", security(("bearer" = [])), params(("id" = Uuid, Path, description = "Bot id")),
    request_body = BotPatch,
    responses((status = 200, body = Bot), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn update_bot(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Json(patch): Json<BotPatch>,
) -> Result<axum::Json<Bot>, ApiError> {
    caller.require_write()?;
    let bot = visible_bot(&state, &caller, id).await?;
    let spec = bot.spec.patched(patch);
    spec.validate()?;
    if spec == bot.spec {
        return Ok(axum::Json(bot));
    }
    let updated = state
        .backends
        .store
        .update_bot(id, &spec, Timestamp::now())
        .await?
        .ok_or_else(|| ApiError::not_found("bot"))?;
    audit::record(
        &state,
        Some(caller.user_id),
        "bot.update",
        id,
        serde_json::json!({ "version": updated.version }),
    )
    .await?;
    Ok(axum::Json(updated))
}

/// Delete a bot. Its executions stay readable; queued ones still run.
#[utoipa::path(delete, path = "/bots/{id}", tag = "bots", security(("bearer" = [])), params(("id" = Uuid, Path, description = "Bot id")),
    responses((status = 204), (status = 404, body = ErrorBody)))]
async fn delete_bot(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    caller.require_write()?;
    let bot = visible_bot(&state, &caller, id).await?;
    if !state
        .backends
        .store
        .delete_bot(id, Timestamp::now())
        .await?
    {
        return Err(ApiError::not_found("bot"));
    }
    audit::record(
        &state,
        Some(caller.user_id),
        "bot.delete",
        id,
        serde_json::json!({ "name": bot.spec.name }),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Every version of a bot, newest first.
#[utoipa::path(get, path = "/bots/{id}/versions", tag = "bots", security(("bearer" = [])), params(("id" = Uuid, Path, description = "Bot id")),
    responses((status = 200, body = Vec<BotVersion>), (status = 404, body = ErrorBody)))]
async fn list_versions(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<Vec<BotVersion>>, ApiError> {
    visible_bot(&state, &caller, id).await?;
    Ok(axum::Json(state.backends.store.bot_versions(id).await?))
}
