//! What happened to an execution: its output lines and its timeline of events.

use axum::extract::State;
use codex32_shared::domain::{LogLine, TimelineEvent};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::executions::visible_execution;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Path, Query};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_logs))
        .routes(routes!(get_timeline))
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

/// An execution's timeline: every event with its time and reason — queued, delayed, waiting
/// (and for what), leased by which worker, lease expired, retry n of m, cancel requested,
/// finished. It answers "why is this not running?".
#[utoipa::path(get, path = "/executions/{id}/timeline", tag = "executions", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Execution id")),
    responses((status = 200, body = Vec<TimelineEvent>), (status = 404, body = ErrorBody)))]
async fn get_timeline(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<Vec<TimelineEvent>>, ApiError> {
    visible_execution(&state, &caller, id).await?;
    Ok(axum::Json(state.backends.store.timeline(id).await?))
}
