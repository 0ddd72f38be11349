//! Bots: create, read, change (each change a new version), delete, and list versions.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::Utc;
use codex32_shared::Timestamp;
use codex32_shared::bus::Event;
use codex32_shared::cron::CronSchedule;
use codex32_shared::domain::bot::BotPatch;
use codex32_shared::domain::{Bot, BotKind, BotSpec, BotVersion, Execution, NewExecution};
use codex32_shared::services;
use codex32_shared::submit::submit;
use serde::Serialize;
use utoipa::ToSchema;
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
        .routes(routes!(pause_bot))
        .routes(routes!(resume_bot))
        .routes(routes!(run_now))
}

/// A bot as served: with its schedule's next fire times.
#[derive(Serialize, ToSchema)]
pub struct BotView {
    #[serde(flatten)]
    pub bot: Bot,
    /// The next 5 fire times of its schedule (empty without one, or while paused).
    pub next_runs: Vec<Timestamp>,
}

impl From<Bot> for BotView {
    fn from(bot: Bot) -> Self {
        let next_runs = match (&bot.spec.schedule, bot.status.as_str()) {
            (Some(s), "active") => CronSchedule::parse(&s.cron, &s.timezone)
                .map(|c| {
                    c.upcoming(Utc::now(), 5)
                        .into_iter()
                        .map(Timestamp::from)
                        .collect()
                })
                .unwrap_or_default(),
            _ => vec![],
        };
        Self { bot, next_runs }
    }
}

/// The bot with this id, if the caller may see it; else 404 (existence is not revealed).
pub async fn visible_bot(state: &AppState, caller: &Caller, id: Uuid) -> Result<Bot, ApiError> {
    match state.backends.store.get_bot(id).await? {
        Some(bot) if caller.sees(bot.owner_id) => Ok(bot),
        _ => Err(ApiError::not_found("bot")),
    }
}

/// [`visible_bot`] as read at most [`crate::caches::TTL`] ago, for the hot path of creating
/// executions. A change through this process evicts the bot before it answers (and a read
/// that raced the change is not kept); one through another API process evicts it when the
/// bus delivers the announcement (milliseconds), or after the TTL if that is lost. Changes
/// read the bot fresh.
pub async fn runnable_bot(state: &AppState, caller: &Caller, id: Uuid) -> Result<Bot, ApiError> {
    let bot = match state.bots.get(&id) {
        Some(bot) => bot,
        None => {
            let read_after = state.bots.since();
            let bot = state
                .backends
                .store
                .get_bot(id)
                .await?
                .ok_or_else(|| ApiError::not_found("bot"))?;
            state.bots.put(id, bot.clone(), read_after);
            bot
        }
    };
    if !caller.sees(bot.owner_id) {
        return Err(ApiError::not_found("bot"));
    }
    Ok(bot)
}

/// Evicts a changed bot here and, through the bus, on every other API process.
async fn announce_change(state: &AppState, id: Uuid) {
    state.bots.evict(id);
    if let Err(e) = state
        .backends
        .bus
        .publish(&Event::BotChanged { bot_id: id })
        .await
    {
        tracing::warn!(bot_id = %id, error = %e, "Bot change not announced; other API processes see it within 2 s.");
    }
}

/// Create a bot. Only `name`, `runtime` and `script` are required.
#[utoipa::path(post, path = "/bots", tag = "bots", security(("bearer" = [])), request_body = BotSpec,
    responses((status = 201, body = BotView), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn create_bot(
    State(state): State<AppState>,
    caller: Caller,
    Json(mut spec): Json<BotSpec>,
) -> Result<(StatusCode, axum::Json<BotView>), ApiError> {
    caller.require_write()?;
    spec.normalize();
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
    if bot.spec.kind == BotKind::Service {
        services::start(
            &state.backends,
            &bot,
            Some(caller.user_id),
            "service created",
        )
        .await?;
    }
    if bot.spec.schedule.is_some() {
        // The cron leader learns of the schedule now, in time for its first fire.
        announce_change(&state, bot.id).await;
    }
    Ok((StatusCode::CREATED, axum::Json(bot.into())))
}

/// Bots the caller can see, newest first.
#[utoipa::path(get, path = "/bots", tag = "bots", security(("bearer" = [])), responses((status = 200, body = Vec<BotView>)))]
async fn list_bots(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<axum::Json<Vec<BotView>>, ApiError> {
    let bots = state
        .backends
        .store
        .list_bots(caller.owner_filter())
        .await?;
    Ok(axum::Json(bots.into_iter().map(BotView::from).collect()))
}

/// One bot.
#[utoipa::path(get, path = "/bots/{id}", tag = "bots", security(("bearer" = [])), params(("id" = Uuid, Path, description = "Bot id")),
    responses((status = 200, body = BotView), (status = 404, body = ErrorBody)))]
async fn get_bot(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<BotView>, ApiError> {
    Ok(axum::Json(visible_bot(&state, &caller, id).await?.into()))
}

/// Change a bot: absent fields keep their value. A real change makes a new version;
/// executions already created keep running the version they were created with.
#[utoipa::path(patch, path = "/bots/{id}", tag = "bots", security(("bearer" = [])), params(("id" = Uuid, Path, description = "Bot id")),
    request_body = BotPatch,
    responses((status = 200, body = BotView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn update_bot(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Json(patch): Json<BotPatch>,
) -> Result<axum::Json<BotView>, ApiError> {
    caller.require_write()?;
    let bot = visible_bot(&state, &caller, id).await?;
    let mut spec = bot.spec.patched(patch);
    spec.normalize();
    spec.validate()?;
    if spec == bot.spec {
        return Ok(axum::Json(bot.into()));
    }
    let updated = state
        .backends
        .store
        .update_bot(id, &spec, Timestamp::now())
        .await?
        .ok_or_else(|| ApiError::not_found("bot"))?;
    announce_change(&state, id).await;
    audit::record(
        &state,
        Some(caller.user_id),
        "bot.update",
        id,
        audit::diff(&bot, &updated),
    )
    .await?;
    follow_kind(&state, &bot, &updated).await?;
    Ok(axum::Json(updated.into()))
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
    announce_change(&state, id).await;
    audit::record(
        &state,
        Some(caller.user_id),
        "bot.delete",
        id,
        audit::diff(&bot, &serde_json::json!({})),
    )
    .await?;
    if bot.spec.kind == BotKind::Service {
        services::stop(&state.backends, &bot, "its bot was deleted").await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// A new version of a service replaces its running program; a bot that became a service
/// starts, one that stopped being a service stops.
async fn follow_kind(state: &AppState, before: &Bot, after: &Bot) -> Result<(), ApiError> {
    let why = format!("version {} of the bot", after.version);
    match (before.spec.kind, after.spec.kind) {
        (BotKind::Service, BotKind::Service) => {
            services::replace(&state.backends, after, &why).await?
        }
        (BotKind::Job, BotKind::Service) => {
            services::start(&state.backends, after, None, &why).await?;
        }
        (BotKind::Service, BotKind::Job) => {
            services::stop(&state.backends, before, &why).await?;
        }
        (BotKind::Job, BotKind::Job) => {}
    }
    Ok(())
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

async fn set_status(
    state: &AppState,
    caller: &Caller,
    id: Uuid,
    status: &str,
) -> Result<BotView, ApiError> {
    caller.require_write()?;
    let before = visible_bot(state, caller, id).await?;
    if !state
        .backends
        .store
        .set_bot_status(id, status, Timestamp::now())
        .await?
    {
        return Err(ApiError::not_found("bot"));
    }
    announce_change(state, id).await;
    audit::record(
        state,
        Some(caller.user_id),
        &format!("bot.{status}"),
        id,
        audit::diff(&before.status, &status),
    )
    .await?;
    Ok(visible_bot(state, caller, id).await?.into())
}

/// Pause a bot's schedule: no fire time creates an execution until it is resumed (fire times
/// passed meanwhile follow the schedule's `missed` policy). Other triggers still work.
#[utoipa::path(post, path = "/bots/{id}/pause", tag = "bots", security(("bearer" = [])), params(("id" = Uuid, Path, description = "Bot id")),
    responses((status = 200, body = BotView), (status = 404, body = ErrorBody)))]
async fn pause_bot(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<BotView>, ApiError> {
    Ok(axum::Json(set_status(&state, &caller, id, "paused").await?))
}

/// Resume a paused bot's schedule.
#[utoipa::path(post, path = "/bots/{id}/resume", tag = "bots", security(("bearer" = [])), params(("id" = Uuid, Path, description = "Bot id")),
    responses((status = 200, body = BotView), (status = 404, body = ErrorBody)))]
async fn resume_bot(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<BotView>, ApiError> {
    Ok(axum::Json(set_status(&state, &caller, id, "active").await?))
}

/// Run a bot now, outside its schedule, with a `null` input.
#[utoipa::path(post, path = "/bots/{id}/run-now", tag = "bots", security(("bearer" = [])), params(("id" = Uuid, Path, description = "Bot id")),
    responses((status = 202, body = Execution), (status = 404, body = ErrorBody)))]
async fn run_now(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<(StatusCode, axum::Json<Execution>), ApiError> {
    caller.require_write()?;
    let bot = visible_bot(&state, &caller, id).await?;
    refuse_service(&bot)?;
    let mut new = NewExecution::of(&bot, serde_json::Value::Null, "run now");
    new.created_by = Some(caller.user_id);
    let (exec, _) = submit(&state.backends, &new, bot.owner_id).await?;
    Ok((StatusCode::ACCEPTED, axum::Json(exec)))
}

/// Executions of a service are made by the service itself: one at a time, kept running.
pub fn refuse_service(bot: &Bot) -> Result<(), ApiError> {
    if bot.spec.kind == BotKind::Service {
        return Err(ApiError::invalid(
            "kind",
            format!(
                "bot {:?} is a service: it runs continuously; use POST /api/v1/bots/{}/service/start, stop or restart",
                bot.spec.name, bot.id
            ),
        ));
    }
    Ok(())
}
