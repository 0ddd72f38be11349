//! The fleet: workers and their liveness, queue depth per pool.

use axum::extract::State;
use codex32_shared::Timestamp;
use codex32_shared::bus::Event;
use codex32_shared::domain::{WorkerInfo, check_name};
use codex32_shared::queue::PoolDepth;
use codex32_shared::store::PoolSettings;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::audit;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Json, Path};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_workers))
        .routes(routes!(list_queues))
        .routes(routes!(drain_worker))
        .routes(routes!(list_pools))
        .routes(routes!(set_pool))
}

/// Workers with their state: `alive`, `draining`, `lost` (silent for 15 s) or `gone`.
#[utoipa::path(get, path = "/workers", tag = "fleet", security(("bearer" = [])), responses((status = 200, body = Vec<WorkerInfo>)))]
async fn list_workers(
    State(state): State<AppState>,
    _caller: Caller,
) -> Result<axum::Json<Vec<WorkerInfo>>, ApiError> {
    let now = Timestamp::now();
    let mut workers = state.backends.store.list_workers().await?;
    for w in &mut workers {
        if w.state != "gone" && !w.is_live(now) {
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

/// Pools with settings.
#[utoipa::path(get, path = "/pools", tag = "fleet", security(("bearer" = [])), responses((status = 200, body = Vec<PoolSettings>)))]
async fn list_pools(
    State(state): State<AppState>,
    _caller: Caller,
) -> Result<axum::Json<Vec<PoolSettings>>, ApiError> {
    Ok(axum::Json(state.backends.store.pools().await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PoolRequest {
    /// Most executions of the pool running at once across all its workers; `null` removes it.
    pub max_concurrency: Option<u32>,
}

/// Set a pool's concurrency limit (admins only). Executions over it wait in the queue and
/// their timeline says so.
#[utoipa::path(put, path = "/pools/{name}", tag = "fleet", security(("bearer" = [])), params(("name" = String, Path, description = "Pool name")),
    request_body = PoolRequest, responses((status = 200, body = PoolSettings), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn set_pool(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Json(req): Json<PoolRequest>,
) -> Result<axum::Json<PoolSettings>, ApiError> {
    caller.require_admin()?;
    check_name("name", &name)?;
    let limit = match req.max_concurrency {
        Some(n) if !(1..=1_000_000).contains(&n) => {
            return Err(ApiError::invalid(
                "max_concurrency",
                "must be between 1 and 1000000",
            ));
        }
        other => other.map(|n| n as i32),
    };
    let store = &state.backends.store;
    let before = store.pools().await?.into_iter().find(|p| p.name == name);
    store.set_pool_limit(&name, limit, Timestamp::now()).await?;
    audit::record(
        &state,
        Some(caller.user_id),
        "pool.update",
        &name,
        audit::diff(
            &serde_json::json!({ "max_concurrency": before.and_then(|p| p.max_concurrency) }),
            &serde_json::json!({ "max_concurrency": limit }),
        ),
    )
    .await?;
    let pools = state.backends.store.pools().await?;
    pools
        .into_iter()
        .find(|p| p.name == name)
        .map(axum::Json)
        .ok_or_else(|| ApiError::internal("a pool setting vanished after it was written"))
}

/// Drain a worker (admins only): it stops taking executions, lets the running ones finish
/// within its drain timeout (then hands the rest back to the queue), and exits — as on SIGTERM.
#[utoipa::path(post, path = "/workers/{id}/drain", tag = "fleet", security(("bearer" = [])), params(("id" = String, Path, description = "Worker id")),
    responses((status = 202, body = WorkerInfo), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn drain_worker(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<(axum::http::StatusCode, axum::Json<WorkerInfo>), ApiError> {
    caller.require_admin()?;
    let workers = state.backends.store.list_workers().await?;
    let worker = workers
        .into_iter()
        .find(|w| w.id == id)
        .ok_or_else(|| ApiError::not_found("worker"))?;
    if !worker.is_live(Timestamp::now()) {
        return Err(ApiError::conflict(format!(
            "worker {id} is not running (last seen {})",
            worker.last_seen_at.0.to_rfc3339()
        )));
    }
    state
        .backends
        .bus
        .publish(&Event::DrainRequested {
            worker_id: id.clone(),
        })
        .await?;
    audit::record(
        &state,
        Some(caller.user_id),
        "worker.drain",
        &id,
        serde_json::json!({}),
    )
    .await?;
    Ok((axum::http::StatusCode::ACCEPTED, axum::Json(worker)))
}
