//! Liveness, readiness and metrics, outside `/api/v1` and without auth (for probes and
//! Prometheus).

use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
}

#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `ok`, or `unavailable` when a dependency cannot be reached.
    pub status: &'static str,
    /// One entry per dependency: `ok` or what is wrong.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<Check>,
    /// The isolation enforced by the live workers (e.g. `namespaces, seccomp; cgroup V1:
    /// memory, cpu, pids`, or `none`), one entry per distinct setting.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sandbox: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Check {
    pub name: &'static str,
    pub status: String,
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, body = Health)))]
async fn healthz() -> axum::Json<Health> {
    axum::Json(Health {
        status: "ok",
        checks: vec![],
        sandbox: vec![],
    })
}

/// The store and the queue answer: ready for traffic.
#[utoipa::path(get, path = "/readyz", tag = "health", responses((status = 200, body = Health), (status = 503, body = Health)))]
async fn readyz(State(state): State<AppState>) -> (StatusCode, axum::Json<Health>) {
    let store = state.backends.store.ping().await.map_err(|e| e.to_string());
    let queue = state.backends.queue.ping().await.map_err(|e| e.to_string());
    let ready = store.is_ok() && queue.is_ok();
    let checks = vec![
        Check {
            name: "store",
            status: store.err().unwrap_or_else(|| "ok".into()),
        },
        Check {
            name: "queue",
            status: queue.err().unwrap_or_else(|| "ok".into()),
        },
    ];
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        axum::Json(Health {
            status: if ready { "ok" } else { "unavailable" },
            checks,
            sandbox: live_isolation(&state).await,
        }),
    )
}

/// What the workers heard from within the last few heartbeats enforce.
async fn live_isolation(state: &AppState) -> Vec<String> {
    let now = codex32_shared::Timestamp::now();
    let workers = state
        .backends
        .store
        .list_workers()
        .await
        .unwrap_or_default();
    let mut seen: Vec<String> = workers
        .into_iter()
        .filter(|w| w.is_live(now))
        .map(|w| w.sandbox)
        .collect();
    seen.sort();
    seen.dedup();
    seen
}

/// Prometheus metrics in the text exposition format.
#[utoipa::path(get, path = "/metrics", tag = "health", responses((status = 200, body = String, content_type = "text/plain")))]
async fn metrics(State(state): State<AppState>) -> String {
    if let Ok(depths) = state.backends.queue.depths().await {
        for d in depths {
            metrics::gauge!("codex32_queue_ready", "pool" => d.pool.clone()).set(d.ready as f64);
            metrics::gauge!("codex32_queue_delayed", "pool" => d.pool.clone())
                .set(d.delayed as f64);
            metrics::gauge!("codex32_queue_leased", "pool" => d.pool).set(d.leased as f64);
        }
    }
    let now = codex32_shared::Timestamp::now();
    if let Ok(stats) = state.backends.store.pool_stats(now).await {
        for p in stats {
            let oldest = p.oldest_waiting_since.map_or(0.0, |at| {
                (now.millis() - at.millis()).max(0) as f64 / 1000.0
            });
            metrics::gauge!("codex32_pool_waiting", "pool" => p.pool.clone()).set(p.waiting as f64);
            metrics::gauge!("codex32_pool_oldest_waiting_seconds", "pool" => p.pool.clone())
                .set(oldest);
            metrics::gauge!("codex32_pool_busy_slots", "pool" => p.pool).set(p.running as f64);
        }
    }
    state.metrics.render()
}
