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
use codex32_shared::store::Finish;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::executor::{Ending, Executor, Finished, Job, OUTPUT_FILE};
use crate::logs::{self, LogSummary};

/// Largest output file read back, in bytes.
const MAX_OUTPUT_BYTES: u64 = 4 * 1024 * 1024;

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
            // Cancelled, finished or not due: the store says there is nothing to run.
            let _ = ctx.backends.queue.ack(&lease).await;
            return;
        }
        Err(e) => {
            // The queue lease will expire and the reconciler offers it again.
            tracing::warn!(execution_id = %lease.id, error = %e, "Cannot claim an execution in the store.");
            return;
        }
    };
    tracing::debug!(execution_id = %exec.id, attempt = exec.attempt, "Execution started.");
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

/// How an attempt ended, as the worker judges it.
struct Verdict {
    ending: Result<Finished, String>,
    output: Result<Option<Value>, String>,
    duration_ms: i64,
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
    let ending = match ctx.spec(exec).await {
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
        Err(e) => Err(e),
    };
    if let Err(e) = &ending {
        sink.system(format!("[codex32] {e}")).await;
    }
    drop(sink);
    let summary = writer.await.unwrap_or_default();
    let output = read_output(&workdir, &summary);
    let _ = tokio::fs::remove_dir_all(&workdir).await;
    Verdict {
        ending,
        output,
        duration_ms: started.elapsed().as_millis() as i64,
    }
}

/// The result: the output file if the bot wrote one, else the last stdout line if it is JSON.
fn read_output(workdir: &std::path::Path, summary: &LogSummary) -> Result<Option<Value>, String> {
    let path = workdir.join(OUTPUT_FILE);
    match std::fs::metadata(&path) {
        Ok(meta) if meta.len() > MAX_OUTPUT_BYTES => Err(format!(
            "the output file is {} bytes; the limit is {MAX_OUTPUT_BYTES}",
            meta.len()
        )),
        Ok(_) => {
            let bytes =
                std::fs::read(&path).map_err(|e| format!("cannot read the output file: {e}"))?;
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| format!("the output file is not valid JSON: {e}"))
        }
        Err(_) => Ok(summary
            .last_stdout
            .as_deref()
            .and_then(|l| serde_json::from_str(l.trim()).ok())),
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
    let finish = judge(ctx, exec, verdict, stopped);
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

/// Decides the state an attempt's ending leads to.
fn judge(ctx: &Ctx, exec: &Execution, v: Verdict, stopped: Option<StopReason>) -> Finish {
    let now = Timestamp::now();
    let mut finish = Finish {
        id: exec.id,
        attempt: exec.attempt,
        worker_id: Some(ctx.worker_id.clone()),
        status: ExecStatus::Succeeded,
        output: None,
        error: None,
        exit_code: None,
        at: now,
        duration_ms: Some(v.duration_ms),
        run_at: None,
        usage: v.ending.as_ref().ok().and_then(|f| f.usage.clone()),
        sandboxed: Some(ctx.executor.sandboxed()),
    };
    let oom = v
        .ending
        .as_ref()
        .is_ok_and(|f| f.usage.as_ref().is_some_and(|u| u.oom_killed));
    let (failed_as, message) = match (stopped, v.ending.map(|f| f.ending)) {
        (Some(StopReason::Cancelled), _) => {
            finish.status = ExecStatus::Cancelled;
            finish.error = Some("cancelled while running".into());
            return finish;
        }
        (Some(StopReason::Shutdown), _) => {
            finish.status = ExecStatus::Queued;
            finish.run_at = Some(now);
            finish.error = Some(format!(
                "worker {} stopped before the attempt finished; queued again",
                ctx.worker_id
            ));
            return finish;
        }
        (_, Ok(Ending::Exited(0))) => match v.output {
            Ok(output) => {
                finish.exit_code = Some(0);
                finish.output = output;
                return finish;
            }
            Err(e) => (ExecStatus::Failed, e),
        },
        (_, Ok(Ending::Signaled(_) | Ending::Exited(_))) if oom => (
            ExecStatus::Failed,
            "killed: out of memory (the resources.memory_mb limit was reached)".to_owned(),
        ),
        (_, Ok(Ending::Exited(code))) => {
            finish.exit_code = Some(code);
            (ExecStatus::Failed, format!("exited with code {code}"))
        }
        (_, Ok(Ending::Signaled(sig))) => (ExecStatus::Failed, format!("killed by signal {sig}")),
        (_, Ok(Ending::TimedOut)) => (
            ExecStatus::TimedOut,
            "timed out: the wall-clock limit (timeout_s) was reached".to_owned(),
        ),
        (_, Ok(Ending::Stopped)) => (ExecStatus::Failed, "stopped".to_owned()),
        (_, Err(e)) => (ExecStatus::Failed, e),
    };
    let decision =
        ctx.retry
            .after_failure(exec.attempt, exec.max_attempts, now, failed_as, &message);
    finish.status = decision.status;
    finish.run_at = decision.run_at;
    finish.error = Some(decision.error);
    finish
}
