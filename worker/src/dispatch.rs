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
use std::future::Future;

use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::executor::Executor;
use crate::health;
use crate::heartbeat;
use crate::runner::{self, Ctx, StopReason};
use codex32_shared::queue::Lease;

/// How long one claim call waits for work before looping (and re-checking shutdown).
const CLAIM_WAIT: Duration = Duration::from_secs(5);
/// Most ids one claim call takes (one per free slot): a busy queue fills many slots with one
/// round trip, while an idle worker still claims the moment one id arrives.
const CLAIM_MAX: usize = 32;

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
    let runs_dir = wc
        .runs_dir
        .clone()
        .unwrap_or_else(|| config.data_dir.join("runs"));
    let runs_dir = std::path::absolute(&runs_dir)
        .with_context(|| format!("cannot resolve the runs directory {}", runs_dir.display()))?;
    std::fs::create_dir_all(&runs_dir)
        .with_context(|| format!("cannot create {}", runs_dir.display()))?;
    let keyring = config
        .keyring()
        .map_err(|e| anyhow::anyhow!("CODEX32_SECRETS_KEY: {e}"))?;
    let mut ctx = Ctx::new(
        backends,
        worker_id.clone(),
        executor,
        config.lease_ttl(),
        config.retry_policy(),
        runs_dir,
        wc.log_limit_kb.saturating_mul(1024),
    );
    ctx.keyring = keyring.map(Arc::new);
    let ctx = Arc::new(ctx);
    let mut info = worker_info(&worker_id, wc, ctx.executor.isolation());
    heartbeat::report(&ctx, &mut info, "alive").await;
    tracing::info!(worker_id = %worker_id, pools = ?wc.pools, slots = wc.concurrency, "Worker started.");

    let background = CancellationToken::new();
    if let Some(addr) = wc.health_bind {
        health::serve(addr, ctx.clone(), background.clone()).await?;
    }
    // Pulling stops on shutdown (SIGTERM) or on a drain requested through the API.
    let stop_pulling = shutdown.child_token();
    let tasks = [
        supervised("heartbeat", &background, {
            let (ctx, info, stop) = (ctx.clone(), info.clone(), background.clone());
            move || heartbeat::beat(ctx.clone(), info.clone(), stop.clone())
        }),
        supervised("health monitor", &background, {
            let (ctx, stop) = (ctx.clone(), background.clone());
            move || health::monitor(ctx.clone(), stop.clone())
        }),
        supervised("event listener", &background, {
            let (ctx, stop, stop_pulling) = (ctx.clone(), background.clone(), stop_pulling.clone());
            move || listen(ctx.clone(), stop.clone(), stop_pulling.clone())
        }),
    ];
    let tracker = TaskTracker::new();
    let slots = Arc::new(Semaphore::new(wc.concurrency as usize));
    let pulling = supervised("pull loop", &stop_pulling, {
        let (ctx, pools, tracker) = (ctx.clone(), wc.pools.clone(), tracker.clone());
        let (slots, stop) = (slots.clone(), stop_pulling.clone());
        move || {
            pull(
                ctx.clone(),
                pools.clone(),
                slots.clone(),
                tracker.clone(),
                stop.clone(),
            )
        }
    });
    let _ = pulling.await;
    ctx.health
        .draining
        .store(true, std::sync::atomic::Ordering::Relaxed);
    drain(
        &ctx,
        &tracker,
        Duration::from_secs(wc.drain_timeout_s),
        &mut info,
    )
    .await;
    background.cancel();
    futures::future::join_all(tasks).await;
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

/// Runs a task of the worker until it returns; restarts it after a panic (the self-healing
/// supervisor: a bug in one task must not leave a worker that looks alive but does nothing).
fn supervised<F, Fut>(name: &'static str, stop: &CancellationToken, mut make: F) -> JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let stop = stop.clone();
    tokio::spawn(async move {
        loop {
            match tokio::spawn(make()).await {
                Err(e) if e.is_panic() && !stop.is_cancelled() => {
                    let panic = panic_message(e);
                    tracing::error!(task = name, panic = %panic, "A worker task panicked; restarting it.");
                    metrics::counter!("codex32_worker_task_restarts_total", "task" => name)
                        .increment(1);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                _ => return,
            }
        }
    })
}

/// The message a panic carried.
pub(crate) fn panic_message(e: tokio::task::JoinError) -> String {
    match e.try_into_panic() {
        Ok(payload) => codex32_shared::panics::message(&*payload),
        Err(e) => e.to_string(),
    }
}

/// Claims while slots are free — as many ids at once as slots are free — until shutdown.
/// Queue errors back off; they never end the loop.
async fn pull(
    ctx: Arc<Ctx>,
    pools: Vec<String>,
    slots: Arc<Semaphore>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let first = tokio::select! {
            _ = shutdown.cancelled() => return,
            permit = slots.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
        };
        let mut permits = vec![first];
        while permits.len() < CLAIM_MAX {
            match slots.clone().try_acquire_owned() {
                Ok(permit) => permits.push(permit),
                Err(_) => break,
            }
        }
        let queue = &ctx.backends.queue;
        let claimed = tokio::select! {
            _ = shutdown.cancelled() => return,
            claimed = queue.claim_many(&pools, ctx.lease_ttl, CLAIM_WAIT, permits.len()) => claimed,
        };
        if claimed.is_ok() {
            ctx.health.queue(Ok(()));
        }
        match claimed {
            Ok(leases) => {
                if !leases.is_empty() {
                    backoff = Duration::from_millis(100);
                }
                // Each lease takes a slot; the slots left over are free again.
                for (lease, permit) in leases.into_iter().zip(permits) {
                    start(&ctx, &tracker, lease, permit);
                }
            }
            Err(e) => {
                ctx.health.queue(Err(e.to_string()));
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

/// Runs a claimed lease in its slot's task; a panic there releases the execution and frees
/// the slot.
fn start(
    ctx: &Arc<Ctx>,
    tracker: &TaskTracker,
    lease: Lease,
    permit: tokio::sync::OwnedSemaphorePermit,
) {
    let ctx = ctx.clone();
    tracker.spawn(async move {
        // The slot goes with the run, which frees it once the result is durable.
        let run = tokio::spawn(runner::run(ctx.clone(), lease.clone(), permit)).await;
        if let Err(e) = run
            && e.is_panic()
        {
            let panic = panic_message(e);
            tracing::error!(execution_id = %lease.id, panic = %panic, "A slot's task panicked; releasing its execution and freeing the slot.");
            metrics::counter!("codex32_worker_task_restarts_total", "task" => "slot").increment(1);
            runner::recover_panic(&ctx, &lease, &panic).await;
        }
    });
}

/// Waits for running executions up to `grace`, then stops the rest and waits for them to be
/// handed back.
async fn drain(ctx: &Arc<Ctx>, tracker: &TaskTracker, grace: Duration, info: &mut WorkerInfo) {
    tracker.close();
    let services = ctx.stop_services();
    if services > 0 {
        tracing::info!(
            services,
            "Draining: handing services over to other workers."
        );
    }
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
            Ok(Event::RestartRequested {
                execution_id,
                reason,
            }) => ctx.restart_one(execution_id, reason),
            Ok(Event::SecretsChanged { scope }) => {
                ctx.secrets_cache.retain(|cached, _| *cached != scope)
            }
            Ok(Event::DrainRequested { worker_id }) if worker_id == ctx.worker_id => {
                tracing::info!(worker_id = %worker_id, "Drain requested through the API.");
                stop_pulling.cancel();
            }
            Ok(_) => {}
            // Missed events only delay a cancel (the lease heartbeat also carries it); they
            // may have changed secrets, so those are read again.
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => ctx.secrets_cache.clear(),
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        }
    }
}
