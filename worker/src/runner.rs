//! One execution on this worker, from lease to result: claim it in the store, keep the lease
//! alive, run it, decide what its ending means (success, retry, final failure), and write
//! that — fenced by the attempt, so nothing is written once the lease is lost.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use codex32_shared::Backends;
use codex32_shared::Timestamp;
use codex32_shared::bus::Event;
use codex32_shared::domain::{BotSpec, ExecStatus, Execution};
use codex32_shared::queue::{Lease, QueueItem};
use codex32_shared::retry::RetryPolicy;
use codex32_shared::store::NewEvent;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::executor::{Executor, Job};
use crate::logs;
use crate::verdict::{self, Verdict};

/// How long an execution held back by its bot's concurrency limit waits before it is offered
/// again (others of the pool run meanwhile).
const LIMIT_RECHECK: Duration = Duration::from_millis(500);

/// Why a running execution is being stopped early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StopReason {
    Cancelled,
    Shutdown,
    /// Another attempt owns it now: stop and write nothing.
    LeaseLost,
}

/// The stop switch of one running execution; the first reason given wins.
#[derive(Default)]
pub(crate) struct Stop {
    pub token: CancellationToken,
    reason: OnceLock<StopReason>,
}

impl Stop {
    pub fn stop(&self, reason: StopReason) {
        let _ = self.reason.set(reason);
        self.token.cancel();
    }

    fn reason(&self) -> Option<StopReason> {
        self.reason.get().copied()
    }
}

/// What every slot of a worker shares.
pub(crate) struct Ctx {
    pub backends: Backends,
    pub worker_id: String,
    pub executor: Arc<dyn Executor>,
    pub lease_ttl: Duration,
    pub retry: RetryPolicy,
    pub runs_dir: PathBuf,
    pub log_limit: usize,
    pub running: Mutex<HashMap<Uuid, Arc<Stop>>>,
    versions: Mutex<HashMap<(Uuid, i32), Arc<BotSpec>>>,
    /// Executions this worker already recorded as waiting for a concurrency slot.
    waiting: Mutex<std::collections::HashSet<Uuid>>,
}

impl Ctx {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        backends: Backends,
        worker_id: String,
        executor: Arc<dyn Executor>,
        lease_ttl: Duration,
        retry: RetryPolicy,
        runs_dir: PathBuf,
        log_limit: usize,
    ) -> Self {
        Self {
            backends,
            worker_id,
            executor,
            lease_ttl,
            retry,
            runs_dir,
            log_limit,
            running: Mutex::default(),
            versions: Mutex::default(),
            waiting: Mutex::default(),
        }
    }

    pub fn running_count(&self) -> usize {
        self.running.lock().map(|r| r.len()).unwrap_or(0)
    }

    /// Stops every running execution (shutdown after the drain period).
    pub fn stop_all(&self, reason: StopReason) {
        if let Ok(running) = self.running.lock() {
            running.values().for_each(|s| s.stop(reason));
        }
    }

    pub fn stop_one(&self, id: Uuid, reason: StopReason) {
        if let Some(stop) = self.running.lock().ok().and_then(|r| r.get(&id).cloned()) {
            stop.stop(reason);
        }
    }

    /// Bot versions never change, so each is fetched once.
    async fn spec(&self, exec: &Execution) -> Result<Arc<BotSpec>, String> {
        let key = (exec.bot_id, exec.bot_version);
        if let Some(spec) = self.versions.lock().ok().and_then(|v| v.get(&key).cloned()) {
            return Ok(spec);
        }
        let version = self
            .backends
            .store
            .bot_version(exec.bot_id, exec.bot_version)
            .await;
        let spec = match version {
            Ok(Some(v)) => Arc::new(v.spec),
            Ok(None) => {
                return Err(format!(
                    "bot {} has no version {}",
                    exec.bot_id, exec.bot_version
                ));
            }
            Err(e) => return Err(format!("cannot load the bot version: {e}")),
        };
        if let Ok(mut cache) = self.versions.lock() {
            if cache.len() > 10_000 {
                cache.clear();
            }
            cache.insert(key, spec.clone());
        }
        Ok(spec)
    }

    /// Appends to an execution's timeline; a lost entry is logged, never fatal.
    async fn record(&self, event: NewEvent) {
        if let Err(e) = self.backends.store.record_events(&[event]).await {
            tracing::warn!(error = %e, "Cannot record a timeline event.");
        }
    }

    async fn publish(&self, event: Event) {
        if let Err(e) = self.backends.bus.publish(&event).await {
            tracing::debug!(error = %e, "Event not published.");
        }
    }
}

/// Runs the execution behind a queue lease to its end.
pub(crate) async fn run(ctx: Arc<Ctx>, lease: Lease) {
    let now = Timestamp::now();
    let until = now.plus_millis(ctx.lease_ttl.as_millis() as i64);
    let exec = match ctx
        .backends
        .store
        .claim_execution(lease.id, &ctx.worker_id, now, until)
        .await
    {
        Ok(Some(exec)) => exec,
        Ok(None) => {
            // Cancelled, finished or not due — or held back by its bot's concurrency limit.
            not_claimed(&ctx, &lease).await;
            return;
        }
        Err(e) => {
            // The queue lease will expire and the reconciler offers it again.
            tracing::warn!(execution_id = %lease.id, error = %e, "Cannot claim an execution in the store.");
            return;
        }
    };
    tracing::debug!(execution_id = %exec.id, attempt = exec.attempt, "Execution started.");
    if let Ok(mut waiting) = ctx.waiting.lock() {
        waiting.remove(&exec.id);
    }
    ctx.record(NewEvent::now(
        exec.id,
        "leased",
        format!(
            "leased by worker {} (attempt {} of {})",
            ctx.worker_id, exec.attempt, exec.max_attempts
        ),
    ))
    .await;
    ctx.publish(Event::updated(&exec)).await;
    let stop = Arc::new(Stop::default());
    if let Ok(mut running) = ctx.running.lock() {
        running.insert(exec.id, stop.clone());
    }
    let keeper = tokio::spawn(keep_lease(
        ctx.clone(),
        exec.clone(),
        lease.clone(),
        stop.clone(),
    ));
    let verdict = execute(&ctx, &exec, &stop).await;
    keeper.abort();
    if let Ok(mut running) = ctx.running.lock() {
        running.remove(&exec.id);
    }
    conclude(&ctx, &exec, &lease, verdict, stop.reason()).await;
}

/// Puts back an execution the store refused: when its bot runs `max_concurrency` executions
/// already, it waits in the queue (and its timeline says why); otherwise it is gone.
async fn not_claimed(ctx: &Ctx, lease: &Lease) {
    let _ = ctx.backends.queue.ack(lease).await;
    let Ok(Some(exec)) = ctx.backends.store.get_execution(lease.id).await else {
        return;
    };
    let due = exec.run_at.is_none_or(|at| at <= Timestamp::now());
    if exec.status != ExecStatus::Queued || !due {
        return;
    }
    let Some(message) = limit_reached(ctx, &exec).await else {
        return;
    };
    let first_time = ctx
        .waiting
        .lock()
        .map(|mut w| w.insert(exec.id))
        .unwrap_or(false);
    if first_time {
        ctx.record(NewEvent::now(exec.id, "waiting", message)).await;
    }
    let again = Timestamp::now().plus_millis(LIMIT_RECHECK.as_millis() as i64);
    let item = QueueItem {
        id: exec.id,
        pool: exec.pool.clone(),
        priority: exec.priority,
        run_at: Some(again),
    };
    if let Err(e) = ctx.backends.queue.enqueue(&[item]).await {
        tracing::warn!(execution_id = %exec.id, error = %e, "Cannot put back a waiting execution; the reconciler will.");
    }
}

/// Which concurrency limit holds a queued, due execution back, as a timeline message.
async fn limit_reached(ctx: &Ctx, exec: &Execution) -> Option<String> {
    let store = &ctx.backends.store;
    if let Some(limit) = exec.max_concurrency {
        let running = store.running_count(exec.bot_id).await.ok()?;
        if running >= i64::from(limit) {
            return Some(format!(
                "waiting: concurrency limit of bot {} ({running}/{limit} running)",
                exec.bot_id
            ));
        }
    }
    let pools = store.pools().await.ok()?;
    let limit = pools
        .into_iter()
        .find(|p| p.name == exec.pool)?
        .max_concurrency?;
    let running = store.pool_running_count(&exec.pool).await.ok()?;
    (running >= i64::from(limit)).then(|| {
        format!(
            "waiting: concurrency limit of pool {} ({running}/{limit} running)",
            exec.pool
        )
    })
}

/// Renews the store and queue leases every third of their lifetime; notices cancels.
async fn keep_lease(ctx: Arc<Ctx>, exec: Execution, lease: Lease, stop: Arc<Stop>) {
    let mut tick = tokio::time::interval(ctx.lease_ttl / 3);
    tick.tick().await;
    loop {
        tick.tick().await;
        let until = Timestamp::now().plus_millis(ctx.lease_ttl.as_millis() as i64);
        match ctx
            .backends
            .store
            .renew_lease(exec.id, exec.attempt, &ctx.worker_id, until)
            .await
        {
            Ok(None) => {
                tracing::warn!(execution_id = %exec.id, attempt = exec.attempt, "Lease lost; stopping without writing a result.");
                stop.stop(StopReason::LeaseLost);
                return;
            }
            Ok(Some(true)) => stop.stop(StopReason::Cancelled),
            Ok(Some(false)) => {}
            Err(e) => {
                tracing::warn!(execution_id = %exec.id, error = %e, "Cannot renew a lease; will retry.")
            }
        }
        if let Err(e) = ctx.backends.queue.renew(&lease, ctx.lease_ttl).await {
            tracing::debug!(execution_id = %exec.id, error = %e, "Cannot renew the queue lease.");
        }
    }
}

async fn execute(ctx: &Ctx, exec: &Execution, stop: &Stop) -> Verdict {
    let started = std::time::Instant::now();
    let workdir = ctx.runs_dir.join(format!("{}-{}", exec.id, exec.attempt));
    let (sink, writer) = logs::start(
        ctx.backends.store.clone(),
        ctx.backends.bus.clone(),
        exec.id,
        exec.attempt,
        ctx.log_limit,
    );
    let spec = ctx.spec(exec).await;
    let ending = match &spec {
        Ok(spec) => {
            let job = Job {
                execution_id: exec.id,
                attempt: exec.attempt,
                runtime: spec.runtime,
                script: spec.script.clone(),
                input: serde_json::to_vec(&exec.input).unwrap_or_else(|_| b"null".to_vec()),
                timeout: Duration::from_secs(u64::from(spec.timeout_s)),
                resources: spec.resources,
                workdir: workdir.clone(),
            };
            if !ctx.executor.sandboxed() && exec.attempt == 1 {
                sink.system("[codex32] running without a sandbox (plain child process)")
                    .await;
            }
            ctx.executor
                .run(&job, &sink, &stop.token)
                .await
                .map_err(|e| e.to_string())
        }
        Err(e) => Err(e.clone()),
    };
    if let Err(e) = &ending {
        sink.system(format!("[codex32] {e}")).await;
    }
    drop(sink);
    let summary = writer.await.unwrap_or_default();
    let output = verdict::read_output(&workdir, &summary);
    let _ = tokio::fs::remove_dir_all(&workdir).await;
    Verdict {
        ending,
        output,
        duration_ms: started.elapsed().as_millis() as i64,
        spec: spec.ok(),
        no_retry: summary.no_retry,
    }
}

/// Writes the attempt's end (fenced) and puts a retry back in the queue.
async fn conclude(
    ctx: &Ctx,
    exec: &Execution,
    lease: &Lease,
    verdict: Verdict,
    stopped: Option<StopReason>,
) {
    if stopped == Some(StopReason::LeaseLost) {
        let _ = ctx.backends.queue.ack(lease).await;
        return;
    }
    let finish = verdict::judge(
        &ctx.worker_id,
        ctx.executor.sandboxed(),
        &ctx.retry,
        exec,
        verdict,
        stopped,
    );
    match ctx.backends.store.finish_execution(&finish).await {
        Ok(true) => {}
        Ok(false) => {
            tracing::warn!(execution_id = %exec.id, attempt = exec.attempt, "Result discarded: the lease moved on.")
        }
        Err(e) => {
            // Leave the queue lease to expire: the store lease expires too and is reaped.
            tracing::error!(execution_id = %exec.id, error = %e, "Cannot write a result; the lease reaper will retry it.");
            return;
        }
    }
    let _ = ctx.backends.queue.ack(lease).await;
    if finish.status == ExecStatus::Queued {
        let item = QueueItem {
            id: exec.id,
            pool: exec.pool.clone(),
            priority: exec.priority,
            run_at: finish.run_at,
        };
        if let Err(e) = ctx.backends.queue.enqueue(&[item]).await {
            tracing::warn!(execution_id = %exec.id, error = %e, "Cannot re-enqueue a retry; the reconciler will.");
        }
    }
    ctx.publish(Event::finished(exec, &finish)).await;
}
