//! The fleet: workers and their liveness, queue depth per pool.

use axum::extract::State;
use codex32_shared::Timestamp;
use codex32_shared::domain::WorkerInfo;
use codex32_shared::queue::PoolDepth;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;

/// A worker silent this long is shown `lost` (three missed heartbeats).
pub(crate) const LOST_AFTER_MS: i64 = 15_000;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_workers))
        .routes(routes!(list_queues))
}

/// Workers with their state: `alive`, `draining`, `lost` (silent for 15 s) or `gone`.
#[utoipa::path(get, path = "/workers", tag = "fleet", security(("bearer" = [])), responses((status = 200, body = Vec<WorkerInfo>)))]
async fn list_workers(
    State(state): State<AppState>,
    _caller: Caller,
) -> Result<axum::Json<Vec<WorkerInfo>>, ApiError> {
    let now = Timestamp::now().millis();
    let mut workers = state.backends.store.list_workers().await?;
    for w in &mut workers {
        if w.state != "gone" && now - w.last_seen_at.millis() > LOST_AFTER_MS {
            w.state = "lost".into();
        }
    }
    Ok(axum::Json(workers))
}

/// Depth of each pool's queue: ready, delayed and leased executions.
#[utoipa::path(get, path = "/queues", tag = "fleet", security(("bearer" = [])), responses((status = 200, body = Vec<PoolDepth>)))]
async fn list_queues(
    State(state): State<AppState>,
    _caller: Caller,
) -> Result<axum::Json<Vec<PoolDepth>>, ApiError> {
    Ok(axum::Json(state.backends.queue.depths().await?))
}
