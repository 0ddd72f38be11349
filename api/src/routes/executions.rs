//! Executions: start one, read it and its logs, list them, cancel one.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use codex32_shared::Timestamp;
use codex32_shared::bus::Event;
use codex32_shared::domain::{ExecStatus, Execution, LogLine, NewExecution};
use codex32_shared::queue::QueueItem;
use codex32_shared::store::ExecutionFilter;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::bots::visible_bot;
use crate::audit;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Json, Path, Query};
use crate::state::AppState;

const MAX_DELAY_S: u64 = 30 * 24 * 3600;
const MAX_KEY_LEN: usize = 255;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_execution))
        .routes(routes!(list_executions))
        .routes(routes!(get_execution))
        .routes(routes!(get_logs))
        .routes(routes!(cancel_execution))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    /// Any JSON; the bot reads it from stdin and from the file named by `CODEX32_INPUT`.
    #[serde(default)]
    pub input: Value,
    /// -100 to 100; higher runs first within the bot's pool. Default 0.
    #[serde(default)]
    pub priority: i32,
    /// Seconds to wait before it may start (up to 30 days).
    pub delay_s: Option<u64>,
    /// The same key for the same bot returns the first execution instead of a new one.
    pub idempotency_key: Option<String>,
}

impl RunRequest {
    fn validate(&self, max_input_bytes: usize) -> Result<(), ApiError> {
        if !(-100..=100).contains(&self.priority) {
            return Err(ApiError::invalid(
                "priority",
                "must be between -100 and 100",
            ));
        }
        if self.delay_s.is_some_and(|d| d > MAX_DELAY_S) {
            return Err(ApiError::invalid(
                "delay_s",
                format!("must be at most {MAX_DELAY_S} seconds"),
            ));
        }
        if let Some(key) = &self.idempotency_key
            && (key.is_empty() || key.len() > MAX_KEY_LEN)
        {
            return Err(ApiError::invalid(
                "idempotency_key",
                format!("must be 1 to {MAX_KEY_LEN} bytes"),
            ));
        }
        let size = serde_json::to_vec(&self.input)
            .map(|v| v.len())
            .unwrap_or(usize::MAX);
        if size > max_input_bytes {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "input_too_large",
                format!("the input is {size} bytes of JSON; the limit is {max_input_bytes}"),
            )
            .with_details(serde_json::json!({ "field": "input" })));
        }
        Ok(())
    }
}

/// Start an execution of a bot's current version. The 202 means it is durably queued.
#[utoipa::path(post, path = "/bots/{id}/executions", tag = "executions", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Bot id")), request_body = RunRequest,
    responses((status = 202, body = Execution, description = "Queued (or, with a repeated idempotency key, the first execution; header `Idempotency-Replayed: true`)"),
        (status = 404, body = ErrorBody), (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn create_execution(
    State(state): State<AppState>,
    caller: Caller,
    Path(bot_id): Path<Uuid>,
    Json(req): Json<RunRequest>,
) -> Result<(StatusCode, HeaderMap, axum::Json<Execution>), ApiError> {
    caller.require_write()?;
    req.validate(state.max_input_bytes)?;
    let bot = visible_bot(&state, &caller, bot_id).await?;
    let now = Timestamp::now();
    let new = NewExecution {
        id: Uuid::now_v7(),
        bot_id,
        bot_version: bot.version,
        pool: bot.spec.pool.clone(),
        max_attempts: bot.spec.max_attempts as i32,
        priority: req.priority,
        input: req.input,
        idempotency_key: req.idempotency_key,
        run_at: req
            .delay_s
            .filter(|d| *d > 0)
            .map(|d| now.plus_millis((d * 1000) as i64)),
        created_by: Some(caller.user_id),
    };
    let (exec, created) = state
        .backends
        .store
        .create_execution(&new, bot.owner_id, now)
        .await?;
    let mut headers = HeaderMap::new();
    if created {
        // Durable already: if the queue is down, the scheduler's reconciler enqueues it later.
        if let Err(e) = state
            .backends
            .queue
            .enqueue(&[QueueItem::from(&exec)])
            .await
        {
            tracing::warn!(execution_id = %exec.id, error = %e, "Queue unavailable; the reconciler will enqueue this execution.");
        }
        let _ = state.backends.bus.publish(&Event::updated(&exec)).await;
    } else {
        headers.insert("idempotency-replayed", HeaderValue::from_static("true"));
    }
    Ok((StatusCode::ACCEPTED, headers, axum::Json(exec)))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    pub bot_id: Option<Uuid>,
    pub status: Option<ExecStatus>,
    /// At most 500; default 50.
    pub limit: Option<i64>,
    /// Only executions older than this id (the last id of the previous page).
    pub before: Option<Uuid>,
}

/// Executions the caller can see, newest first.
#[utoipa::path(get, path = "/executions", tag = "executions", security(("bearer" = [])), params(ListParams),
    responses((status = 200, body = Vec<Execution>), (status = 400, body = ErrorBody)))]
async fn list_executions(
    State(state): State<AppState>,
    caller: Caller,
    Query(p): Query<ListParams>,
) -> Result<axum::Json<Vec<Execution>>, ApiError> {
    let limit = p.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::invalid("limit", "must be between 1 and 500"));
    }
    let filter = ExecutionFilter {
        bot_id: p.bot_id,
        status: p.status,
        owner_id: caller.owner_filter(),
        before: p.before,
        limit,
    };
    Ok(axum::Json(
        state.backends.store.list_executions(&filter).await?,
    ))
}

async fn visible_execution(
    state: &AppState,
    caller: &Caller,
    id: Uuid,
) -> Result<Execution, ApiError> {
    match state.backends.store.get_execution(id).await? {
        Some(e) if caller.sees(e.owner_id) => Ok(e),
        _ => Err(ApiError::not_found("execution")),
    }
}

/// One execution.
#[utoipa::path(get, path = "/executions/{id}", tag = "executions", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Execution id")), responses((status = 200, body = Execution), (status = 404, body = ErrorBody)))]
async fn get_execution(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<Execution>, ApiError> {
    Ok(axum::Json(visible_execution(&state, &caller, id).await?))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct LogParams {
    /// Lines after this line id (default: from the start).
    pub after: Option<i64>,
    /// At most 5000; default 1000.
    pub limit: Option<i64>,
}

/// A page of log lines.
#[derive(Serialize, ToSchema)]
pub struct LogPage {
    pub lines: Vec<LogLine>,
    /// Pass as `after` to read on; equals the request's `after` when there is nothing new.
    pub next_after: i64,
}

/// An execution's output lines (stdout, stderr and codex32's own notes), in order.
#[utoipa::path(get, path = "/executions/{id}/logs", tag = "executions", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Execution id"), LogParams),
    responses((status = 200, body = LogPage), (status = 404, body = ErrorBody)))]
async fn get_logs(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Query(p): Query<LogParams>,
) -> Result<axum::Json<LogPage>, ApiError> {
    visible_execution(&state, &caller, id).await?;
    let limit = p.limit.unwrap_or(1000);
    if !(1..=5000).contains(&limit) {
        return Err(ApiError::invalid("limit", "must be between 1 and 5000"));
    }
    let after = p.after.unwrap_or(0);
    let lines = state.backends.store.read_logs(id, after, limit).await?;
    let next_after = lines.last().map_or(after, |l| l.id);
    Ok(axum::Json(LogPage { lines, next_after }))
}

/// Cancel an execution: a queued one ends at once; a running one is stopped by its worker
/// (`cancel_requested` is set until it has). Cancelling a cancelled execution is a no-op.
#[utoipa::path(post, path = "/executions/{id}/cancel", tag = "executions", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Execution id")),
    responses((status = 202, body = Execution), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody, description = "It already finished")))]
async fn cancel_execution(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<(StatusCode, axum::Json<Execution>), ApiError> {
    caller.require_write()?;
    visible_execution(&state, &caller, id).await?;
    let exec = state
        .backends
        .store
        .request_cancel(id, Timestamp::now())
        .await?
        .ok_or_else(|| ApiError::not_found("execution"))?;
    match exec.status {
        ExecStatus::Cancelled => {
            let _ = state.backends.queue.remove(&exec.pool, exec.id).await;
            let _ = state.backends.bus.publish(&Event::updated(&exec)).await;
        }
        ExecStatus::Running => {
            state
                .backends
                .bus
                .publish(&Event::CancelRequested {
                    execution_id: exec.id,
                })
                .await?;
        }
        ExecStatus::Queued => {}
        ExecStatus::Succeeded | ExecStatus::Failed | ExecStatus::TimedOut => {
            return Err(ApiError::conflict(format!(
                "the execution already ended ({}); there is nothing to cancel",
                exec.status
            )));
        }
    }
    audit::record(
        &state,
        Some(caller.user_id),
        "execution.cancel",
        id,
        serde_json::json!({}),
    )
    .await?;
    Ok((StatusCode::ACCEPTED, axum::Json(exec)))
}
