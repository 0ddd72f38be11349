//! The supervisor of a service bot on this worker. A service is one execution that stays
//! `running` while its program is restarted here by the bot's restart policy — with an
//! exponential delay between quick failures, `crash_loop` once it restarts more than
//! `max_restarts` times within `window_s`, and a restart when its health probe fails.
//! Cancels, drains and a lost lease end the execution as for any job; a drained or lost
//! service goes back to the queue and another worker of its pool takes it over.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use codex32_shared::Timestamp;
use codex32_shared::bus::Event;
use codex32_shared::domain::bot::BotSpec;
use codex32_shared::domain::service::{HealthProbe, RestartPolicy};
use codex32_shared::domain::{
    ExecStatus, Execution, Runtime, ServiceReport, ServiceSpec, ServiceState,
};
use codex32_shared::store::{Finish, NewEvent};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use crate::executor::{Ending, Finished, Job};
use crate::logs::{LogSink, LogSummary};
use crate::runner::{Ctx, Secrets, Stop, StopReason, job_for};
use crate::verdict::Verdict;

/// A service's wall-clock limit: it is meant to run until stopped.
const FOREVER: Duration = Duration::from_secs(365 * 24 * 3600);

/// Why a program's run ended, as far as restarting goes.
#[derive(Debug, Clone)]
enum Cause {
    /// Restart asked for through the API: at once, and not a failure.
    Requested(String),
    /// The health probe failed too often.
    Unhealthy(String),
    /// The program ended by itself.
    Ended { message: String, failure: bool },
}

impl Cause {
    fn message(&self) -> &str {
        match self {
            Cause::Requested(m) | Cause::Unhealthy(m) => m,
            Cause::Ended { message, .. } => message,
        }
    }

    fn restarts_under(&self, policy: RestartPolicy) -> bool {
        match self {
            Cause::Requested(_) => true,
            Cause::Unhealthy(_) => policy != RestartPolicy::Never,
            Cause::Ended { failure, .. } => match policy {
                RestartPolicy::Always => true,
                RestartPolicy::OnFailure => *failure,
                RestartPolicy::Never => false,
            },
        }
    }
}

/// One run of the program.
struct Run {
    ending: Result<Finished, String>,
    cause: Option<Cause>,
    summary: LogSummary,
    ran_for: Duration,
}

impl Run {
    fn cause(&self) -> Cause {
        if let Some(cause) = &self.cause {
            return cause.clone();
        }
        let (message, failure) = match &self.ending {
            Ok(f) => match f.ending {
                Ending::Exited(0) => ("exited with code 0".to_owned(), false),
                Ending::Exited(code) => (format!("exited with code {code}"), true),
                Ending::Signaled(sig) => (format!("killed by signal {sig}"), true),
                Ending::TimedOut => ("ran for a year: restarted".to_owned(), false),
                Ending::Stopped => ("stopped".to_owned(), true),
            },
            Err(e) => (e.clone(), true),
        };
        Cause::Ended { message, failure }
    }

    fn exit_code(&self) -> Option<i32> {
        match self.ending {
            Ok(Finished {
                ending: Ending::Exited(code),
                ..
            }) => Some(code),
            _ => None,
        }
    }
}

/// Restarts so far, for the delay before the next one and crash-loop detection.
struct Restarts {
    window: Duration,
    max: usize,
    recent: VecDeque<Instant>,
    /// Quick failures in a row (a run longer than the window resets it).
    consecutive: u32,
}

impl Restarts {
    fn new(settings: &ServiceSpec) -> Self {
        Self {
            window: Duration::from_secs(u64::from(settings.window_s)),
            max: settings.max_restarts as usize,
            recent: VecDeque::new(),
            consecutive: 0,
        }
    }

    /// Counts a restart; returns the delay before it.
    fn next(&mut self, settings: &ServiceSpec, cause: &Cause, ran_for: Duration) -> Duration {
        if let Cause::Requested(_) = cause {
            self.consecutive = 0;
            return Duration::ZERO;
        }
        self.recent.push_back(Instant::now());
        if ran_for >= self.window {
            self.consecutive = 0;
        }
        self.consecutive += 1;
        settings.backoff(self.consecutive)
    }

    fn crash_looping(&mut self) -> bool {
        while self
            .recent
            .front()
            .is_some_and(|t| t.elapsed() > self.window)
        {
            self.recent.pop_front();
        }
        self.recent.len() > self.max
    }
}

/// Keeps the service's program running until the execution is stopped (cancel, drain, lost
/// lease) or its restart policy lets it end; returns the execution's verdict.
pub(crate) async fn supervise(
    ctx: &Arc<Ctx>,
    exec: &Execution,
    spec: Arc<BotSpec>,
    stop: &Arc<Stop>,
) -> Verdict {
    let settings = spec.service_settings();
    let workdir = ctx.workdir(exec);
    let began = Instant::now();
    let secrets = match ctx.secrets(exec).await {
        Ok(secrets) => secrets,
        Err(e) => return cannot_start(e, began, spec),
    };
    let mut restarts = Restarts::new(&settings);
    loop {
        let crash_loop = restarts.crash_looping();
        let state = if crash_loop {
            ServiceState::CrashLoop
        } else {
            ServiceState::Running
        };
        report(ctx, exec, Report::started(state)).await;
        let run = run_once(
            ctx, exec, &spec, &settings, stop, &workdir, crash_loop, &secrets,
        )
        .await;
        if stop.token.is_cancelled() {
            return finish(run, &workdir, began, spec).await;
        }
        let cause = run.cause();
        if !cause.restarts_under(settings.restart) {
            return finish(run, &workdir, began, spec).await;
        }
        let delay = restarts.next(&settings, &cause, run.ran_for);
        let state = if restarts.crash_looping() {
            ServiceState::CrashLoop
        } else {
            ServiceState::Backoff
        };
        let message = match delay {
            Duration::ZERO => format!("restarting: {}; starting again now", cause.message()),
            delay => format!(
                "restarting: {}; starting again in {:.1} s",
                cause.message(),
                delay.as_secs_f64()
            ),
        };
        note_restart(ctx, exec, &message).await;
        let ended = Report {
            state,
            restarted: true,
            exit_code: run.exit_code(),
            reason: Some(message),
            tail: Some(run.summary.tail.into_iter().collect()),
            started: false,
        };
        report(ctx, exec, ended).await;
        tokio::select! {
            _ = stop.token.cancelled() => return stopped(&workdir, began, spec).await,
            _ = tokio::time::sleep(delay) => {}
            _ = stop.restart.notified() => { stop.take_restart_reason(); }
        }
    }
}

/// Runs the program once, restarting it early when asked or when its probe fails.
#[allow(clippy::too_many_arguments)]
async fn run_once(
    ctx: &Arc<Ctx>,
    exec: &Execution,
    spec: &Arc<BotSpec>,
    settings: &ServiceSpec,
    stop: &Arc<Stop>,
    workdir: &Path,
    crash_loop: bool,
    secrets: &Secrets,
) -> Run {
    let (sink, writer) = ctx.log_sink(exec, secrets);
    let run_stop = stop.token.child_token();
    let cause = Arc::new(OnceLock::new());
    let watcher = tokio::spawn(watch(Watch {
        ctx: ctx.clone(),
        exec: exec.clone(),
        spec: spec.clone(),
        health: settings.health.clone(),
        recover_after: crash_loop.then(|| Duration::from_secs(u64::from(settings.window_s))),
        stop: stop.clone(),
        run_stop: run_stop.clone(),
        cause: cause.clone(),
        workdir: workdir.to_owned(),
        secrets: secrets.clone(),
    }));
    let job = job_for(exec, spec, workdir.to_owned(), FOREVER, secrets);
    let started = Instant::now();
    let ending = ctx
        .executor
        .run(&job, &sink, &run_stop)
        .await
        .map_err(|e| e.to_string());
    watcher.abort();
    if let Err(e) = &ending {
        sink.system(format!("[codex32] {e}")).await;
    }
    drop(sink);
    Run {
        ending,
        cause: cause.get().cloned(),
        summary: writer.await.unwrap_or_default(),
        ran_for: started.elapsed(),
    }
}

/// What watches one run of a service's program.
struct Watch {
    ctx: Arc<Ctx>,
    exec: Execution,
    spec: Arc<BotSpec>,
    health: Option<HealthProbe>,
    /// Out of a crash loop once it stays up this long.
    recover_after: Option<Duration>,
    stop: Arc<Stop>,
    run_stop: CancellationToken,
    cause: Arc<OnceLock<Cause>>,
    workdir: PathBuf,
    secrets: Secrets,
}

/// Ends the run on a restart request or a failed probe; reports a crash loop's recovery.
async fn watch(w: Watch) {
    let probe = async {
        match &w.health {
            Some(h) => probe_until_failed(&w, h).await,
            None => std::future::pending().await,
        }
    };
    let recovered = async {
        if let Some(after) = w.recover_after {
            tokio::time::sleep(after).await;
            let reason = format!("up for {} s: out of the crash loop", after.as_secs());
            let up = Report::state(ServiceState::Running, Some(reason));
            report(&w.ctx, &w.exec, up).await;
        }
        std::future::pending::<()>().await
    };
    let cause = tokio::select! {
        _ = w.stop.restart.notified() => Cause::Requested(
            w.stop.take_restart_reason().unwrap_or_else(|| "restart requested".to_owned()),
        ),
        why = probe => Cause::Unhealthy(why),
        _ = recovered => return,
    };
    let _ = w.cause.set(cause);
    w.run_stop.cancel();
}

/// Checks every `interval_s` after `initial_delay_s`; returns once `failures` checks in a row
/// failed, with why.
async fn probe_until_failed(w: &Watch, h: &HealthProbe) -> String {
    tokio::time::sleep(Duration::from_secs(u64::from(h.initial_delay_s))).await;
    let mut failed = 0;
    loop {
        match check(w, h).await {
            Ok(()) => failed = 0,
            Err(e) => {
                failed += 1;
                tracing::info!(execution_id = %w.exec.id, failed, error = %e, "Service health check failed.");
                if failed >= h.failures {
                    return format!("health probe failed {failed} times in a row (last: {e})");
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(u64::from(h.interval_s))).await;
    }
}

async fn check(w: &Watch, h: &HealthProbe) -> Result<(), String> {
    let timeout = Duration::from_secs(u64::from(h.timeout_s));
    if let Some(command) = &h.command {
        return check_command(w, command, timeout).await;
    }
    let port = h.tcp_port.or(h.http.as_ref().map(|p| p.port)).unwrap_or(0);
    let connect = tokio::net::TcpStream::connect(("127.0.0.1", port));
    let probe = async {
        let mut conn = connect
            .await
            .map_err(|e| format!("cannot connect to 127.0.0.1:{port}: {e}"))?;
        match &h.http {
            Some(http) => http_status(&mut conn, &http.path).await,
            None => Ok(()),
        }
    };
    tokio::time::timeout(timeout, probe)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {} s", h.timeout_s)))
}

/// The probe command, run like the bot (same executor, limits and working directory).
async fn check_command(w: &Watch, command: &str, timeout: Duration) -> Result<(), String> {
    let job = Job {
        runtime: Runtime::Bash,
        script: command.to_owned(),
        input: Vec::new(),
        probe: true,
        ..job_for(&w.exec, &w.spec, w.workdir.clone(), timeout, &w.secrets)
    };
    let (sink, lines) = LogSink::capture(3);
    let ended = w.ctx.executor.run(&job, &sink, &w.run_stop).await;
    drop(sink);
    let output = lines.await.unwrap_or_default().join(" | ");
    match ended.map(|f| f.ending) {
        Ok(Ending::Exited(0)) => Ok(()),
        Ok(Ending::Exited(code)) => Err(format!("the probe exited with code {code}: {output}")),
        Ok(Ending::TimedOut) => Err(format!("the probe ran over {} s", timeout.as_secs())),
        Ok(other) => Err(format!("the probe ended: {other:?}")),
        Err(e) => Err(format!("the probe could not run: {e}")),
    }
}

/// A minimal HTTP/1.0 GET: 2xx and 3xx are healthy.
async fn http_status(conn: &mut tokio::net::TcpStream, path: &str) -> Result<(), String> {
    let request =
        format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nUser-Agent: codex32-probe\r\n\r\n");
    conn.write_all(request.as_bytes())
        .await
        .map_err(|e| format!("cannot send the request: {e}"))?;
    let mut head = vec![0u8; 256];
    let n = conn
        .read(&mut head)
        .await
        .map_err(|e| format!("cannot read the answer: {e}"))?;
    let line = String::from_utf8_lossy(&head[..n]);
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| "the answer is not HTTP".to_owned())?;
    if (200..400).contains(&status) {
        Ok(())
    } else {
        Err(format!("HTTP status {status}"))
    }
}

/// The execution's verdict once the service ends (its policy let it, or it was stopped).
async fn finish(run: Run, workdir: &Path, began: Instant, spec: Arc<BotSpec>) -> Verdict {
    let output = crate::verdict::read_output(workdir, &run.summary);
    let _ = tokio::fs::remove_dir_all(workdir).await;
    Verdict {
        ending: run.ending,
        output,
        duration_ms: began.elapsed().as_millis() as i64,
        spec: Some(spec),
        no_retry: false,
    }
}

/// The verdict of a service that could not start at all (its secrets do not open).
fn cannot_start(error: String, began: Instant, spec: Arc<BotSpec>) -> Verdict {
    Verdict {
        ending: Err(error),
        output: Ok(None),
        duration_ms: began.elapsed().as_millis() as i64,
        spec: Some(spec),
        no_retry: false,
    }
}

async fn stopped(workdir: &Path, began: Instant, spec: Arc<BotSpec>) -> Verdict {
    let _ = tokio::fs::remove_dir_all(workdir).await;
    Verdict {
        ending: Ok(Finished {
            ending: Ending::Stopped,
            usage: None,
            output: None,
        }),
        output: Ok(None),
        duration_ms: began.elapsed().as_millis() as i64,
        spec: Some(spec),
        no_retry: false,
    }
}

/// A restart in the timeline and in the log, where whoever watches the service looks.
async fn note_restart(ctx: &Ctx, exec: &Execution, message: &str) {
    ctx.record(NewEvent::now(exec.id, "restarted", message))
        .await;
    let (sink, writer) = ctx.log_sink(exec, &Secrets::default());
    sink.system(format!("[codex32] {message}")).await;
    drop(sink);
    let _ = writer.await;
}

/// What changed, for [`report`].
struct Report {
    state: ServiceState,
    restarted: bool,
    exit_code: Option<i32>,
    reason: Option<String>,
    tail: Option<Vec<String>>,
    /// The program was (re)started now.
    started: bool,
}

impl Report {
    /// The program was (re)started now, in `state`.
    fn started(state: ServiceState) -> Self {
        Self {
            started: true,
            ..Self::state(state, None)
        }
    }

    /// A change of state alone, with why.
    fn state(state: ServiceState, reason: Option<String>) -> Self {
        Self {
            state,
            restarted: false,
            exit_code: None,
            reason,
            tail: None,
            started: false,
        }
    }
}

/// Writes the service's state (fenced by this worker's attempt) and announces it.
async fn report(ctx: &Ctx, exec: &Execution, r: Report) {
    let now = Timestamp::now();
    let stored = ServiceReport {
        bot_id: exec.bot_id,
        execution_id: exec.id,
        attempt: exec.attempt,
        worker_id: ctx.worker_id.clone(),
        state: r.state,
        restarted: r.restarted,
        last_exit_code: r.exit_code,
        last_reason: r.reason.clone(),
        log_tail: r.tail,
        started_at: r.started.then_some(now),
        at: now,
    };
    let restarts = match ctx.backends.store.report_service(&stored).await {
        Ok(Some(n)) => n,
        Ok(None) => return, // Stopped meanwhile, or another worker took it over.
        Err(e) => {
            tracing::warn!(execution_id = %exec.id, error = %e, "Cannot record the service state.");
            return;
        }
    };
    ctx.publish(Event::ServiceUpdated {
        bot_id: exec.bot_id,
        owner_id: exec.owner_id,
        execution_id: Some(exec.id),
        worker_id: Some(ctx.worker_id.clone()),
        state: r.state,
        restarts,
        reason: r.reason,
    })
    .await;
}

/// Before a drained worker hands its service back: says it is moving.
pub(crate) async fn handing_back(ctx: &Ctx, exec: &Execution, stopped: Option<StopReason>) {
    if stopped != Some(StopReason::Shutdown) {
        return;
    }
    let reason = format!(
        "worker {} is stopping; the service moves to another worker of pool {}",
        ctx.worker_id, exec.pool
    );
    let moving = Report::state(ServiceState::Pending, Some(reason));
    report(ctx, exec, moving).await;
}

/// After the service's execution ended for good by its policy: says so, with why.
pub(crate) async fn ended(ctx: &Ctx, exec: &Execution, finish: &Finish) {
    let state = match finish.status {
        ExecStatus::Succeeded | ExecStatus::Failed | ExecStatus::TimedOut => ServiceState::Exited,
        ExecStatus::Queued | ExecStatus::Running | ExecStatus::Cancelled => return,
    };
    let reason = finish
        .error
        .clone()
        .unwrap_or_else(|| "exited with code 0; the restart policy lets it end".to_owned());
    let end = Report {
        exit_code: finish.exit_code,
        ..Report::state(state, Some(reason))
    };
    report(ctx, exec, end).await;
}
