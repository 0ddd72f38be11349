//! Executions: start one (or a batch), read it and its logs, list them, cancel one.

mod batch;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use codex32_shared::Timestamp;
use codex32_shared::domain::{ExecStatus, Execution, NewExecution};
use codex32_shared::store::ExecutionFilter;
use codex32_shared::submit::{cancel, submit};
use serde::Deserialize;
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::bots::{runnable_bot, visible_bot};
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
        .routes(routes!(batch::create_batch))
        .routes(routes!(list_executions))
        .routes(routes!(get_execution))
        .routes(routes!(cancel_execution))
        .routes(routes!(replay_execution))
}

#[derive(Debug, Deserialize, ToSchema, Default)]
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
    params(("id" = Uuid, Path, description = "Bot id")), request_body(content = Option<RunRequest>, description = "Optional: an empty body runs it with a null input"),
    responses((status = 202, body = Execution, description = "Queued (or, with a repeated idempotency key, the first execution; header `Idempotency-Replayed: true`)"),
        (status = 404, body = ErrorBody), (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn create_execution(
    State(state): State<AppState>,
    caller: Caller,
    Path(bot_id): Path<Uuid>,
    body: Option<Json<RunRequest>>,
) -> Result<(StatusCode, HeaderMap, axum::Json<Execution>), ApiError> {
    let req = body.map(|Json(r)| r).unwrap_or_default();
    caller.require_write()?;
    req.validate(state.max_input_bytes)?;
    let bot = runnable_bot(&state, &caller, bot_id).await?;
    crate::routes::bots::refuse_service(&bot)?;
    let mut new = NewExecution::of(&bot, req.input, "created through the API");
    new.priority = req.priority;
    new.idempotency_key = req.idempotency_key;
    new.run_at = req
        .delay_s
        .filter(|d| *d > 0)
        .map(|d| Timestamp::now().plus_millis((d * 1000) as i64));
    new.created_by = Some(caller.user_id);
    let (exec, created) = state.submitter.submit(new, bot.owner_id).await?;
    let mut headers = HeaderMap::new();
    if !created {
        headers.insert("idempotency-replayed", HeaderValue::from_static("true"));
    }
    Ok((StatusCode::ACCEPTED, headers, axum::Json(exec)))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    pub bot_id: Option<Uuid>,
    /// A status, or `dead` for the dead letters: executions that failed for good
    /// (`failed` or `timed_out`).
    pub status: Option<String>,
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
    let (status, any_status) = match p.status.as_deref() {
        None => (None, vec![]),
        Some("dead") => (None, Execution::DEAD.to_vec()),
        Some(other) => {
            let status = other.parse::<ExecStatus>().map_err(|_| {
                ApiError::invalid("status", format!("{other:?} is not a status; use queued, running, succeeded, failed, timed_out, cancelled or dead"))
            })?;
            (Some(status), vec![])
        }
    };
    let filter = ExecutionFilter {
        bot_id: p.bot_id,
        status,
        any_status,
        owner_id: caller.owner_filter(),
        before: p.before,
        limit,
    };
    Ok(axum::Json(
        state.backends.store.list_executions(&filter).await?,
    ))
}

pub(crate) async fn visible_execution(
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
    let why = format!("cancel requested by user {}", caller.user_id);
    let exec = cancel(&state.backends, id, &why)
        .await?
        .ok_or_else(|| ApiError::not_found("execution"))?;
    if matches!(
        exec.status,
        ExecStatus::Succeeded | ExecStatus::Failed | ExecStatus::TimedOut
    ) {
        return Err(ApiError::conflict(format!(
            "the execution already ended ({}); there is nothing to cancel",
            exec.status
        )));
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

/// Run a finished execution again: a new execution of the bot's current version with the
/// same input and priority, linked by `replay_of`. Dead letters are what this is for.
#[utoipa::path(post, path = "/executions/{id}/replay", tag = "executions", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Execution id")),
    responses((status = 202, body = Execution), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody, description = "It has not finished yet")))]
async fn replay_execution(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<(StatusCode, axum::Json<Execution>), ApiError> {
    caller.require_write()?;
    let old = visible_execution(&state, &caller, id).await?;
    if !old.status.is_final() {
        return Err(ApiError::conflict(format!(
            "the execution is still {}; replay it once it has ended",
            old.status
        )));
    }
    let bot = visible_bot(&state, &caller, old.bot_id).await?;
    crate::routes::bots::refuse_service(&bot)?;
    let mut new = NewExecution::of(&bot, old.input.clone(), format!("replay of {}", old.id));
    new.priority = old.priority;
    new.replay_of = Some(old.id);
    new.created_by = Some(caller.user_id);
    let (exec, _) = submit(&state.backends, &new, bot.owner_id).await?;
    audit::record(
        &state,
        Some(caller.user_id),
        "execution.replay",
        exec.id,
        serde_json::json!({ "replay_of": old.id }),
    )
    .await?;
    Ok((StatusCode::ACCEPTED, axum::Json(exec)))
}
