//! Service bots: their state, and start, stop and restart. A service is created running with
//! its bot; these routes are how it is stopped, started again and restarted in place.

use axum::extract::State;
use axum::http::StatusCode;
use codex32_shared::domain::{Bot, BotKind, Desired, ExecStatus, ServiceState, ServiceStatus};
use codex32_shared::services;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::audit;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::extract::Path;
use crate::routes::bots::visible_bot;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_service))
        .routes(routes!(start_service))
        .routes(routes!(stop_service))
        .routes(routes!(restart_service))
}

/// A service as served: its stored state, corrected by its execution where the worker could
/// not report (a lost worker's service is `pending` until another worker takes it).
#[derive(Serialize, ToSchema)]
pub struct ServiceView {
    #[serde(flatten)]
    pub status: ServiceStatus,
}

/// The service bot with this id, if the caller may see it.
async fn service_bot(state: &AppState, caller: &Caller, id: Uuid) -> Result<Bot, ApiError> {
    let bot = visible_bot(state, caller, id).await?;
    if bot.spec.kind != BotKind::Service {
        return Err(ApiError::invalid(
            "kind",
            format!(
                "bot {:?} is a job, not a service; run it with POST /api/v1/bots/{id}/executions",
                bot.spec.name
            ),
        ));
    }
    Ok(bot)
}

async fn view(state: &AppState, bot: &Bot) -> Result<ServiceView, ApiError> {
    let mut status = state
        .backends
        .store
        .service(bot.id)
        .await?
        .ok_or_else(|| ApiError::not_found("service"))?;
    let live = services::live_executions(&state.backends, bot.id).await?;
    let running = live.iter().find(|e| e.status == ExecStatus::Running);
    match (running, live.first()) {
        (Some(exec), _) if status.execution_id != Some(exec.id) => {
            status.execution_id = Some(exec.id);
            status.worker_id = exec.worker_id.clone();
        }
        (None, Some(queued)) if status.desired == Desired::Running => {
            status.state = ServiceState::Pending;
            status.execution_id = Some(queued.id);
            status.worker_id = None;
        }
        _ => {}
    }
    Ok(ServiceView { status })
}

/// A service's state: desired and actual, restarts, last exit and reason, and its log tail.
#[utoipa::path(get, path = "/bots/{id}/service", tag = "services", security(("bearer" = [])), params(("id" = Uuid, Path, description = "Bot id")),
    responses((status = 200, body = ServiceView), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn get_service(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<ServiceView>, ApiError> {
    let bot = service_bot(&state, &caller, id).await?;
    Ok(axum::Json(view(&state, &bot).await?))
}

/// Start a stopped (or exited) service; a running one is left alone. Resets its restart count.
#[utoipa::path(post, path = "/bots/{id}/service/start", tag = "services", security(("bearer" = [])), params(("id" = Uuid, Path, description = "Bot id")),
    responses((status = 202, body = ServiceView), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn start_service(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<(StatusCode, axum::Json<ServiceView>), ApiError> {
    act(&state, &caller, id, Action::Start).await
}

/// Stop a service: its program is stopped and it stays stopped until started.
#[utoipa::path(post, path = "/bots/{id}/service/stop", tag = "services", security(("bearer" = [])), params(("id" = Uuid, Path, description = "Bot id")),
    responses((status = 202, body = ServiceView), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn stop_service(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<(StatusCode, axum::Json<ServiceView>), ApiError> {
    act(&state, &caller, id, Action::Stop).await
}

/// Restart a service's program where it runs, at once (no backoff); a service not running
/// anywhere is started.
#[utoipa::path(post, path = "/bots/{id}/service/restart", tag = "services", security(("bearer" = [])), params(("id" = Uuid, Path, description = "Bot id")),
    responses((status = 202, body = ServiceView), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn restart_service(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<(StatusCode, axum::Json<ServiceView>), ApiError> {
    act(&state, &caller, id, Action::Restart).await
}

#[derive(Clone, Copy)]
enum Action {
    Start,
    Stop,
    Restart,
}

async fn act(
    state: &AppState,
    caller: &Caller,
    id: Uuid,
    action: Action,
) -> Result<(StatusCode, axum::Json<ServiceView>), ApiError> {
    caller.require_write()?;
    let bot = service_bot(state, caller, id).await?;
    let (name, why) = match action {
        Action::Start => ("service.start", format!("started by {}", caller.user_id)),
        Action::Stop => ("service.stop", format!("stopped by {}", caller.user_id)),
        Action::Restart => (
            "service.restart",
            format!("restart requested by {}", caller.user_id),
        ),
    };
    let store = &state.backends.store;
    let desired = |s: Option<codex32_shared::domain::ServiceStatus>| serde_json::json!({ "desired": s.map(|s| s.desired) });
    let before = desired(store.service(bot.id).await?);
    match action {
        Action::Start => services::start(&state.backends, &bot, Some(caller.user_id), &why).await?,
        Action::Stop => services::stop(&state.backends, &bot, &why).await?,
        Action::Restart => {
            services::restart(&state.backends, &bot, Some(caller.user_id), &why).await?
        }
    };
    audit::record(
        state,
        Some(caller.user_id),
        name,
        bot.id,
        audit::diff(&before, &desired(store.service(bot.id).await?)),
    )
    .await?;
    Ok((StatusCode::ACCEPTED, axum::Json(view(state, &bot).await?)))
}
