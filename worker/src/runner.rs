//! One execution on this worker, from lease to result: claim it in the store, keep the lease
//! alive, run it, decide what its ending means (success, retry, final failure), and write
//! that — fenced by the attempt, so nothing is written once the lease is lost.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use codex32_shared::Backends;
use codex32_shared::Timestamp;
use codex32_shared::batch::Batcher;
use codex32_shared::bus::Event;
use codex32_shared::cache::TtlCache;
use codex32_shared::domain::{BotKind, BotSpec, ExecStatus, Execution};
use codex32_shared::queue::{Lease, QueueItem};
use codex32_shared::retry::RetryPolicy;
use codex32_shared::store::{Finish, NewEvent, SecretEntry, Store};
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::executor::{Executor, Job};
use crate::logs;
use crate::service;
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

/// The stop switch of one running execution; the first reason given wins. A service's
/// program can also be restarted through it, without ending the execution.
#[derive(Default)]
pub(crate) struct Stop {
    pub token: CancellationToken,
    reason: OnceLock<StopReason>,
    /// Whether the execution is a service (drained first, and restartable).
    pub service: std::sync::atomic::AtomicBool,
    pub restart: tokio::sync::Notify,
    restart_reason: Mutex<Option<String>>,
}

impl Stop {
    pub fn stop(&self, reason: StopReason) {
        let _ = self.reason.set(reason);
        self.token.cancel();
    }

    pub fn reason(&self) -> Option<StopReason> {
        self.reason.get().copied()
    }

    /// Asks a service's supervisor to restart its program now.
    pub fn request_restart(&self, why: String) {
        if let Ok(mut reason) = self.restart_reason.lock() {
            *reason = Some(why);
        }
        self.restart.notify_one();
    }

    /// The reason of the pending restart request, taken.
    pub fn take_restart_reason(&self) -> Option<String> {
        self.restart_reason.lock().ok().and_then(|mut r| r.take())
    }

    fn is_service(&self) -> bool {
        self.service.load(std::sync::atomic::Ordering::Relaxed)
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
    pub health: crate::health::Health,
    /// Opens bots' secrets; None when no key is configured.
    pub keyring: Option<Arc<codex32_shared::secrets::Keyring>>,
    /// The store writes every slot makes, group-committed across slots.
    writes: Writes,
    /// Secrets recently read, by scope; the event listener evicts changed scopes.
    pub secrets_cache: Arc<SecretsCache>,
}

/// How many items one batch of [`Writes`] takes at most.
const BATCH: usize = 256;

/// Claims, timeline entries and results of all slots, each kind written in batches — as are
/// secret reads, queue acks and bus events: under load one statement (or one round trip)
/// carries many executions' writes instead of one each.
struct Writes {
    claims: Batcher<Uuid, Option<Execution>>,
    events: Batcher<NewEvent, ()>,
    results: Batcher<Finish, bool>,
    /// Secrets by scope list: one query for the executions starting together.
    secrets: Batcher<[String; 2], Vec<SecretEntry>>,
    /// Queue acks: one call for the executions ending together.
    acks: Batcher<Lease, bool>,
    /// Bus events: one round trip for the events of the executions starting or ending
    /// together, in the order they were handed over.
    published: Batcher<Event, ()>,
}

impl Writes {
    fn start(
        backends: &Backends,
        worker_id: &str,
        lease_ttl: Duration,
        secrets_cache: &Arc<SecretsCache>,
    ) -> Self {
        let store = &backends.store;
        let (s, worker) = (store.clone(), worker_id.to_owned());
        let claims = Batcher::start(BATCH, move |ids: Vec<Uuid>| {
            let (s, worker) = (s.clone(), worker.clone());
            async move {
                let now = Timestamp::now();
                let until = now.plus_millis(lease_ttl.as_millis() as i64);
                let claimed = s.claim_executions(&ids, &worker, now, until).await;
                claimed.map_err(|e| e.to_string())
            }
        });
        let s = store.clone();
        let events = Batcher::start(BATCH, move |events: Vec<NewEvent>| {
            let s = s.clone();
            async move {
                s.record_events(&events).await.map_err(|e| e.to_string())?;
                Ok(vec![(); events.len()])
            }
        });
        let s = store.clone();
        let results = Batcher::start(BATCH, move |finishes: Vec<Finish>| {
            let s = s.clone();
            async move {
                s.finish_executions(&finishes)
                    .await
                    .map_err(|e| e.to_string())
            }
        });
        let (s, cache) = (store.clone(), secrets_cache.clone());
        let secrets = Batcher::start(BATCH, move |asks: Vec<[String; 2]>| {
            let (s, cache) = (s.clone(), cache.clone());
            async move { read_secrets(s.as_ref(), &cache, &asks).await }
        });
        let queue = backends.queue.clone();
        let acks = Batcher::start(BATCH, move |leases: Vec<Lease>| {
            let queue = queue.clone();
            async move { queue.ack_many(&leases).await.map_err(|e| e.to_string()) }
        });
        let bus = backends.bus.clone();
        let published = Batcher::start(BATCH, move |events: Vec<Event>| {
            let bus = bus.clone();
            async move {
                bus.publish_many(&events).await.map_err(|e| e.to_string())?;
                Ok(vec![(); events.len()])
            }
        });
        Self {
            claims,
            events,
            results,
            secrets,
            acks,
            published,
        }
    }
}

/// Sealed secrets by scope, kept for [`SECRETS_TTL`] unless the bus says a scope changed.
pub(crate) type SecretsCache = TtlCache<String, Vec<SecretEntry>>;

/// How long a scope's secrets are used without reading them again: a change reaches the
/// executions that start after its bus announcement, or after this long if that was missed.
const SECRETS_TTL: Duration = Duration::from_secs(2);

/// The entries of each ask's scopes: from the cache, and the rest with one query.
async fn read_secrets(
    store: &dyn Store,
    cache: &SecretsCache,
    asks: &[[String; 2]],
) -> Result<Vec<Vec<SecretEntry>>, String> {
    let mut known: HashMap<&String, Vec<SecretEntry>> = HashMap::new();
    for scope in asks.iter().flatten() {
        if let Some(entries) = cache.get(scope) {
            known.insert(scope, entries);
        }
    }
    let mut missing: Vec<&String> = asks
        .iter()
        .flatten()
        .filter(|s| !known.contains_key(s))
        .collect();
    missing.sort();
    missing.dedup();
    if !missing.is_empty() {
        let scopes: Vec<String> = missing.iter().map(|s| (*s).clone()).collect();
        let read_after = cache.since();
        let entries = store.secrets(&scopes).await.map_err(|e| e.to_string())?;
        for scope in missing {
            let of_scope: Vec<SecretEntry> = entries
                .iter()
                .filter(|e| &e.scope == scope)
                .cloned()
                .collect();
            cache.put(scope.clone(), of_scope.clone(), read_after);
            known.insert(scope, of_scope);
        }
    }
    Ok(asks
        .iter()
        .map(|ask| ask.iter().flat_map(|scope| known[scope].clone()).collect())
        .collect())
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
        let secrets_cache = Arc::new(SecretsCache::new(SECRETS_TTL));
        Self {
            executor,
            lease_ttl,
            retry,
            runs_dir,
            log_limit,
            running: Mutex::default(),
            versions: Mutex::default(),
            waiting: Mutex::default(),
            health: crate::health::Health::default(),
            keyring: None,
            writes: Writes::start(&backends, &worker_id, lease_ttl, &secrets_cache),
            secrets_cache,
            backends,
            worker_id,
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

    /// Hands every service back (a drain moves services at once: they never finish).
    pub fn stop_services(&self) -> usize {
        let Ok(running) = self.running.lock() else {
            return 0;
        };
        let services: Vec<_> = running.values().filter(|s| s.is_service()).collect();
        services.iter().for_each(|s| s.stop(StopReason::Shutdown));
        services.len()
    }

    pub fn restart_one(&self, id: Uuid, why: String) {
        if let Some(stop) = self.running.lock().ok().and_then(|r| r.get(&id).cloned()) {
            stop.request_restart(why);
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
    pub(crate) async fn record(&self, event: NewEvent) {
        if let Err(e) = self.writes.events.submit(event).await {
            tracing::warn!(error = %e, "Cannot record a timeline event.");
        }
    }

    /// Removes a lease's id from the queue for good. A failed ack is harmless: the queue
    /// lease expires and the reaper finds the execution already written.
    pub(crate) async fn ack(&self, lease: &Lease) {
        if let Err(e) = self.writes.acks.submit(lease.clone()).await {
            tracing::debug!(execution_id = %lease.id, error = %e, "Cannot ack a queue lease.");
        }
    }

    /// Publishes with the events of other slots. Waits until it is out, so an execution's
    /// events leave in the order they happened.
    pub(crate) async fn publish(&self, event: Event) {
        self.publish_later(event).await
    }

    /// Hands `event` to the publisher now and returns the wait for it to be out: events
    /// handed over later leave after it whether or not this is awaited first.
    pub(crate) fn publish_later(&self, event: Event) -> impl Future<Output = ()> + use<> {
        let published = self.writes.published.send(event);
        async move {
            if let Err(e) = published.await {
                tracing::debug!(error = %e, "Event not published.");
            }
        }
    }
}

/// Runs the execution behind a queue lease to its end. `slot` is freed as soon as the
/// result is durable: the queue ack and the announcement that follow need no slot.
pub(crate) async fn run(ctx: Arc<Ctx>, lease: Lease, slot: OwnedSemaphorePermit) {
    let exec = match ctx.writes.claims.submit(lease.id).await {
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
    // Announced while the execution runs, not before: nothing it does waits on the bus, and
    // its later events are handed over after this one, so they still leave in order.
    let started = ctx.publish_later(Event::updated(&exec));
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
    let guard = Running {
        ctx: ctx.clone(),
        id: exec.id,
        keeper,
    };
    let verdict = execute(&ctx, &exec, &stop).await;
    drop(guard);
    if stop.is_service() {
        service::handing_back(&ctx, &exec, stop.reason()).await;
    }
    let finish = conclude(&ctx, &exec, &lease, verdict, stop.reason(), slot).await;
    if let Some(finish) = finish.filter(|_| stop.is_service()) {
        service::ended(&ctx, &exec, &finish).await;
    }
    started.await;
}

/// What a running execution holds on this worker, released however its task ends — also
/// by a panic, so a crashed slot never keeps renewing a lease nobody works on.
struct Running {
    ctx: Arc<Ctx>,
    id: Uuid,
    keeper: tokio::task::JoinHandle<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.keeper.abort();
        if let Ok(mut running) = self.ctx.running.lock() {
            running.remove(&self.id);
        }
    }
}

/// After a slot's task panicked: the attempt fails (retried by the bot's policy, like any
/// failure, so a panic that repeats cannot loop forever) and the slot is free again.
pub(crate) async fn recover_panic(ctx: &Ctx, lease: &Lease, panic: &str) {
    ctx.ack(lease).await;
    let exec = match ctx.backends.store.get_execution(lease.id).await {
        Ok(Some(e))
            if e.status == ExecStatus::Running
                && e.worker_id.as_deref() == Some(ctx.worker_id.as_str()) =>
        {
            e
        }
        _ => return, // Never claimed, or already written: nothing to undo.
    };
    let policy = match ctx.spec(&exec).await {
        Ok(spec) => ctx.retry.for_bot(&spec),
        Err(_) => ctx.retry,
    };
    let now = Timestamp::now();
    let message = format!(
        "worker {} crashed while running it ({panic})",
        ctx.worker_id
    );
    let decision = policy.after_failure(
        exec.attempt,
        exec.max_attempts,
        now,
        ExecStatus::Failed,
        &message,
    );
    let finish = Finish {
        id: exec.id,
        attempt: exec.attempt,
        worker_id: Some(ctx.worker_id.clone()),
        status: decision.status,
        output: None,
        error: Some(decision.error),
        exit_code: None,
        at: now,
        duration_ms: None,
        run_at: decision.run_at,
        usage: None,
        sandboxed: None,
    };
    match ctx.backends.store.finish_execution(&finish).await {
        Ok(true) => {}
        Ok(false) => return,
        Err(e) => {
            tracing::error!(execution_id = %exec.id, error = %e, "Cannot release a crashed slot's execution; its lease will expire.");
            return;
        }
    }
    if finish.status == ExecStatus::Queued {
        requeue(ctx, &exec, finish.run_at).await;
    }
    ctx.publish(Event::finished(&exec, &finish)).await;
}

/// Offers a retried execution to the queue again (at `run_at`); if the queue is down, the
/// reconciler will.
async fn requeue(ctx: &Ctx, exec: &Execution, run_at: Option<Timestamp>) {
    let item = QueueItem {
        id: exec.id,
        pool: exec.pool.clone(),
        priority: exec.priority,
        run_at,
    };
    if let Err(e) = ctx.backends.queue.enqueue(&[item]).await {
        tracing::warn!(execution_id = %exec.id, error = %e, "Cannot re-enqueue a retry; the reconciler will.");
    }
}

/// Puts back an execution the store refused: when its bot runs `max_concurrency` executions
/// already, it waits in the queue (and its timeline says why); otherwise it is gone.
async fn not_claimed(ctx: &Ctx, lease: &Lease) {
    ctx.ack(lease).await;
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

/// The job of an execution of `spec`, in `workdir`, with its secrets.
pub(crate) fn job_for(
    exec: &Execution,
    spec: &BotSpec,
    workdir: PathBuf,
    timeout: Duration,
    secrets: &Secrets,
) -> Job {
    Job {
        env: secrets.env.clone(),
        execution_id: exec.id,
        attempt: exec.attempt,
        runtime: spec.runtime,
        script: spec.script.clone(),
        input: serde_json::to_vec(&exec.input).unwrap_or_else(|_| b"null".to_vec()),
        timeout,
        resources: spec.resources,
        workdir,
        probe: false,
    }
}

/// An execution's secrets: its environment, and the values to scrub from its logs and output.
#[derive(Default, Clone)]
pub(crate) struct Secrets {
    pub env: Vec<(String, String)>,
    pub redact: Arc<[String]>,
}

impl Secrets {
    fn new(env: Vec<(String, String)>) -> Self {
        let min = codex32_shared::secrets::MIN_REDACTED_CHARS;
        let mut values: Vec<String> = env
            .iter()
            .map(|(_, v)| v.clone())
            .filter(|v| v.chars().count() >= min)
            .collect();
        // Longest first, so a secret containing another is replaced whole.
        values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        Self {
            env,
            redact: values.into(),
        }
    }
}

impl Ctx {
    /// The execution's secrets (owner's and bot's), opened.
    pub(crate) async fn secrets(&self, exec: &Execution) -> Result<Secrets, String> {
        let scopes = codex32_shared::secrets::scopes_of(exec.bot_id, exec.owner_id);
        let entries = self
            .writes
            .secrets
            .submit(scopes.clone())
            .await
            .map_err(|e| format!("cannot load the bot's secrets: {e}"))?;
        let env = codex32_shared::secrets::open_env(self.keyring.as_deref(), &scopes, &entries)?;
        Ok(Secrets::new(env))
    }

    /// The working directory of an attempt.
    pub(crate) fn workdir(&self, exec: &Execution) -> PathBuf {
        self.runs_dir.join(format!("{}-{}", exec.id, exec.attempt))
    }

    /// The log writer of an attempt (a service: of one start of its program).
    pub(crate) fn log_sink(
        &self,
        exec: &Execution,
        secrets: &Secrets,
    ) -> (logs::LogSink, tokio::task::JoinHandle<logs::LogSummary>) {
        logs::start(
            self.backends.store.clone(),
            self.backends.bus.clone(),
            exec.id,
            exec.attempt,
            self.log_limit,
            secrets.redact.clone(),
        )
    }
}

async fn execute(ctx: &Arc<Ctx>, exec: &Execution, stop: &Arc<Stop>) -> Verdict {
    let spec = ctx.spec(exec).await;
    if let Ok(spec) = &spec
        && spec.kind == BotKind::Service
    {
        stop.service
            .store(true, std::sync::atomic::Ordering::Relaxed);
        return service::supervise(ctx, exec, spec.clone(), stop).await;
    }
    let started = std::time::Instant::now();
    let workdir = ctx.workdir(exec);
    let secrets = ctx.secrets(exec).await;
    let (sink, writer) = ctx.log_sink(exec, secrets.as_ref().unwrap_or(&Secrets::default()));
    let mut ending = match (&spec, &secrets) {
        (Err(e), _) | (_, Err(e)) => Err(e.clone()),
        (Ok(spec), Ok(secrets)) => {
            let timeout = Duration::from_secs(u64::from(spec.timeout_s));
            let job = job_for(exec, spec, workdir.clone(), timeout, secrets);
            if ctx.executor.warns_unsandboxed() && exec.attempt == 1 {
                sink.system("[codex32] running without a sandbox (plain child process)")
                    .await;
            }
            ctx.executor
                .run(&job, &sink, &stop.token)
                .await
                .map_err(|e| e.to_string())
        }
    };
    if let Err(e) = &ending {
        sink.system(format!("[codex32] {e}")).await;
    }
    drop(sink);
    let summary = writer.await.unwrap_or_default();
    let output = match ending.as_mut().ok().and_then(|f| f.output.take()) {
        Some(held) => Ok(Some(held)),
        None => {
            let output = verdict::read_output(&workdir, &summary);
            let _ = tokio::fs::remove_dir_all(&workdir).await;
            output
        }
    };
    let redact = secrets.map(|s| s.redact).unwrap_or_default();
    Verdict {
        ending,
        output: output.map(|o| o.map(|v| logs::redact_value(v, &redact))),
        duration_ms: started.elapsed().as_millis() as i64,
        spec: spec.ok(),
        no_retry: summary.no_retry,
    }
}

/// Writes the attempt's end (fenced) and puts a retry back in the queue; returns what it
/// wrote.
async fn conclude(
    ctx: &Ctx,
    exec: &Execution,
    lease: &Lease,
    verdict: Verdict,
    stopped: Option<StopReason>,
    slot: OwnedSemaphorePermit,
) -> Option<Finish> {
    if stopped == Some(StopReason::LeaseLost) {
        drop(slot);
        ctx.ack(lease).await;
        return None;
    }
    let finish = verdict::judge(
        &ctx.worker_id,
        ctx.executor.sandboxed(),
        &ctx.retry,
        exec,
        verdict,
        stopped,
    );
    let written = ctx.writes.results.submit(finish.clone()).await;
    drop(slot);
    match written {
        Ok(true) => {}
        Ok(false) => {
            tracing::warn!(execution_id = %exec.id, attempt = exec.attempt, "Result discarded: the lease moved on.");
            ctx.ack(lease).await;
            return None;
        }
        Err(e) => {
            // Leave the queue lease to expire: the store lease expires too and is reaped.
            tracing::error!(execution_id = %exec.id, error = %e, "Cannot write a result; the lease reaper will retry it.");
            return None;
        }
    }
    ctx.ack(lease).await;
    if finish.status == ExecStatus::Queued {
        requeue(ctx, exec, finish.run_at).await;
    }
    ctx.publish(Event::finished(exec, &finish)).await;
    Some(finish)
}
