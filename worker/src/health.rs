//! The worker's own health: whether it can reach its store and its queue, checked every few
//! seconds, served on `--health-bind` as `/healthz` (liveness: 503 while a backend is out of
//! reach, so an orchestrator can tell a stuck worker) and `/readyz` (also 503 while draining).
//! The worker itself never dies of a lost backend: its loops back off and carry on.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::runner::Ctx;

const CHECK_EVERY: Duration = Duration::from_secs(2);
const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// What the worker last learnt of its backends: `None` is reachable, else why not.
#[derive(Default)]
pub(crate) struct Health {
    store: Mutex<Option<String>>,
    queue: Mutex<Option<String>>,
    pub draining: AtomicBool,
}

impl Health {
    pub fn store(&self, result: Result<(), String>) {
        Self::set(&self.store, "store", result);
    }

    pub fn queue(&self, result: Result<(), String>) {
        Self::set(&self.queue, "queue", result);
    }

    /// Records a check; logs only changes, so an outage is two lines, not one per check.
    fn set(slot: &Mutex<Option<String>>, part: &str, result: Result<(), String>) {
        let Ok(mut slot) = slot.lock() else { return };
        let now = result.err();
        match (&*slot, &now) {
            (None, Some(e)) => {
                tracing::error!(part, error = %e, "Backend unreachable; carrying on and retrying.")
            }
            (Some(_), None) => tracing::info!(part, "Backend reachable again."),
            _ => {}
        }
        *slot = now;
    }

    /// The unreachable backends, with why.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        [("store", &self.store), ("queue", &self.queue)]
            .into_iter()
            .filter_map(|(part, slot)| Some((part, slot.lock().ok()?.clone()?)))
            .collect()
    }
}

/// Pings the store and the queue every [`CHECK_EVERY`] until `stop`.
pub(crate) async fn monitor(ctx: Arc<Ctx>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(CHECK_EVERY);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let store = tokio::time::timeout(CHECK_TIMEOUT, ctx.backends.store.ping()).await;
        ctx.health
            .store(flatten(store.map(|r| r.map_err(|e| e.to_string()))));
        let queue = tokio::time::timeout(CHECK_TIMEOUT, ctx.backends.queue.ping()).await;
        ctx.health
            .queue(flatten(queue.map(|r| r.map_err(|e| e.to_string()))));
        export(&ctx);
    }
}

/// The worker's gauges, for `/metrics` (and the API's, in `codex32 dev`).
fn export(ctx: &Ctx) {
    let problems = ctx.health.problems();
    for backend in ["store", "queue"] {
        let up = !problems.iter().any(|(part, _)| *part == backend);
        metrics::gauge!("codex32_worker_backend_up", "worker" => ctx.worker_id.clone(), "backend" => backend)
            .set(f64::from(u8::from(up)));
    }
    metrics::gauge!("codex32_worker_running", "worker" => ctx.worker_id.clone())
        .set(ctx.running_count() as f64);
}

fn flatten(r: Result<Result<(), String>, tokio::time::error::Elapsed>) -> Result<(), String> {
    r.unwrap_or_else(|_| Err(format!("no answer within {} s", CHECK_TIMEOUT.as_secs())))
}

/// Serves `/healthz` and `/readyz` on `addr` until `stop`.
pub(crate) async fn serve(
    addr: SocketAddr,
    ctx: Arc<Ctx>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} (--health-bind)"))?;
    tracing::info!(addr = %listener.local_addr()?, "Worker health endpoint listening.");
    codex32_shared::telemetry::metrics_handle();
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(render_metrics))
        .with_state(ctx);
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "The worker health endpoint stopped.");
        }
    });
    Ok(())
}

type Answer = (StatusCode, axum::Json<serde_json::Value>);

async fn healthz(State(ctx): State<Arc<Ctx>>) -> Answer {
    answer(&ctx, false)
}

async fn readyz(State(ctx): State<Arc<Ctx>>) -> Answer {
    answer(&ctx, true)
}

async fn render_metrics() -> String {
    codex32_shared::telemetry::metrics_handle().render()
}

fn answer(ctx: &Ctx, readiness: bool) -> Answer {
    let problems = ctx.health.problems();
    let draining = ctx.health.draining.load(Ordering::Relaxed);
    let body = json!({
        "status": if problems.is_empty() { "ok" } else { "unhealthy" },
        "worker_id": ctx.worker_id,
        "running": ctx.running_count(),
        "draining": draining,
        "unreachable": problems.iter().map(|(part, why)| json!({"backend": part, "error": why})).collect::<Vec<_>>(),
    });
    let healthy = problems.is_empty() && !(readiness && draining);
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body))
}
