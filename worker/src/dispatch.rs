//! The worker's main loop: claim from the queue whenever a slot is free, run each claim in
//! its own task, and on shutdown drain — stop claiming, give running executions the grace
//! period, then stop the rest and hand them back to the queue.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use codex32_shared::Backends;
use codex32_shared::Timestamp;
use codex32_shared::bus::Event;
use codex32_shared::config::{Config, WorkerConfig};
use codex32_shared::domain::{WorkerInfo, check_name};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::executor::Executor;
use crate::heartbeat;
use crate::runner::{self, Ctx, StopReason};

/// How long one claim call waits for work before looping (and re-checking shutdown).
const CLAIM_WAIT: Duration = Duration::from_secs(5);

/// Runs a worker until `shutdown`, then drains.
pub async fn run(
    backends: Backends,
    config: &Config,
    wc: &WorkerConfig,
    executor: Arc<dyn Executor>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    for pool in &wc.pools {
        check_name("pools", pool).map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    if wc.pools.is_empty() {
        bail!("a worker needs at least one pool (--pools)");
    }
    let worker_id = wc.worker_id.clone().unwrap_or_else(default_worker_id);
    // Absolute: bots run with their working directory as the current directory.
    let runs_dir = std::path::absolute(config.data_dir.join("runs"))
        .context("cannot resolve the data directory")?;
    std::fs::create_dir_all(&runs_dir)
        .with_context(|| format!("cannot create {}", runs_dir.display()))?;
    let ctx = Arc::new(Ctx::new(
        backends,
        worker_id.clone(),
        executor,
        config.lease_ttl(),
        config.retry_policy(),
        runs_dir,
        wc.log_limit_kb.saturating_mul(1024),
    ));
    let mut info = worker_info(&worker_id, wc, ctx.executor.isolation());
    heartbeat::report(&ctx, &mut info, "alive").await;
    tracing::info!(worker_id = %worker_id, pools = ?wc.pools, slots = wc.concurrency, "Worker started.");

    let background = CancellationToken::new();
    let beats = tokio::spawn(heartbeat::beat(
        ctx.clone(),
        info.clone(),
        background.clone(),
    ));
    // Pulling stops on shutdown (SIGTERM) or on a drain requested through the API.
    let stop_pulling = shutdown.child_token();
    let listener = tokio::spawn(listen(
        ctx.clone(),
        background.clone(),
        stop_pulling.clone(),
    ));
    let tracker = TaskTracker::new();
    pull(&ctx, wc, &tracker, &stop_pulling).await;
    drain(
        &ctx,
        &tracker,
        Duration::from_secs(wc.drain_timeout_s),
        &mut info,
    )
    .await;
    background.cancel();
    let _ = tokio::join!(beats, listener);
    info.running = 0;
    heartbeat::report(&ctx, &mut info, "gone").await;
    tracing::info!(worker_id = %worker_id, "Worker stopped.");
    Ok(())
}

fn default_worker_id() -> String {
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "worker".into());
    format!(
        "{host}-{}-{:04x}",
        std::process::id(),
        rand::random::<u16>()
    )
}

fn worker_info(id: &str, wc: &WorkerConfig, sandbox: String) -> WorkerInfo {
    let now = Timestamp::now();
    WorkerInfo {
        id: id.to_owned(),
        hostname: nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_default(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        pools: wc.pools.clone(),
        slots: wc.concurrency as i32,
        running: 0,
        state: "alive".into(),
        sandbox,
        started_at: now,
        last_seen_at: now,
    }
}

/// Claims while slots are free, until shutdown. Queue errors back off; they never end the loop.
async fn pull(
    ctx: &Arc<Ctx>,
    wc: &WorkerConfig,
    tracker: &TaskTracker,
    shutdown: &CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(wc.concurrency as usize));
    let mut backoff = Duration::from_millis(100);
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => return,
            permit = slots.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
        };
        let claimed = tokio::select! {
            _ = shutdown.cancelled() => return,
            claimed = ctx.backends.queue.claim(&wc.pools, ctx.lease_ttl, CLAIM_WAIT) => claimed,
        };
        match claimed {
            Ok(Some(lease)) => {
                backoff = Duration::from_millis(100);
                let ctx = ctx.clone();
                tracker.spawn(async move {
                    runner::run(ctx, lease).await;
                    drop(permit);
                });
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "Cannot claim from the queue.");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Waits for running executions up to `grace`, then stops the rest and waits for them to be
/// handed back.
async fn drain(ctx: &Arc<Ctx>, tracker: &TaskTracker, grace: Duration, info: &mut WorkerInfo) {
    tracker.close();
    let running = ctx.running_count();
    if running > 0 {
        tracing::info!(
            running,
            grace_s = grace.as_secs(),
            "Draining: waiting for running executions."
        );
        info.running = running as i32;
        heartbeat::report(ctx, info, "draining").await;
    }
    if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
        tracing::warn!(
            running = ctx.running_count(),
            "Drain period over; stopping and re-queueing the rest."
        );
        ctx.stop_all(StopReason::Shutdown);
        tracker.wait().await;
    }
}

/// Acts on bus events for this worker: cancels of its executions, and drain requests.
async fn listen(ctx: Arc<Ctx>, stop: CancellationToken, stop_pulling: CancellationToken) {
    let mut events = ctx.backends.bus.subscribe();
    loop {
        let event = tokio::select! {
            _ = stop.cancelled() => return,
            event = events.recv() => event,
        };
        match event {
            Ok(Event::CancelRequested { execution_id }) => {
                ctx.stop_one(execution_id, StopReason::Cancelled)
            }
            Ok(Event::DrainRequested { worker_id }) if worker_id == ctx.worker_id => {
                tracing::info!(worker_id = %worker_id, "Drain requested through the API.");
                stop_pulling.cancel();
            }
            Ok(_) => {}
            // Missed events only delay a cancel: the lease heartbeat also carries it.
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        }
    }
}
