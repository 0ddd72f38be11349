//! What an attempt's ending means: success with its output, a retry after a backoff, or a
//! final failure — following the bot's retry settings, its no-retry exit codes and the
//! `::no-retry::` marker a bot can print when a retry cannot help.

use std::path::Path;
use std::sync::Arc;

use codex32_shared::Timestamp;
use codex32_shared::domain::{BotKind, BotSpec, ExecStatus, Execution};
use codex32_shared::retry::RetryPolicy;
use codex32_shared::store::Finish;
use serde_json::Value;

use crate::executor::{Ending, Finished, OUTPUT_FILE};
use crate::logs::LogSummary;
use crate::runner::StopReason;

/// Largest output file read back, in bytes.
const MAX_OUTPUT_BYTES: u64 = 4 * 1024 * 1024;

/// Everything known about an attempt once it ended.
pub(crate) struct Verdict {
    pub ending: Result<Finished, String>,
    pub output: Result<Option<Value>, String>,
    pub duration_ms: i64,
    /// The bot version's spec, if it could be loaded.
    pub spec: Option<Arc<BotSpec>>,
    /// The bot printed the `::no-retry::` marker.
    pub no_retry: bool,
}

/// The result: the output file if the bot wrote one, else the last stdout line if it is JSON.
pub(crate) fn read_output(workdir: &Path, summary: &LogSummary) -> Result<Option<Value>, String> {
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

/// Decides the state an attempt's ending leads to.
pub(crate) fn judge(
    worker_id: &str,
    sandboxed: bool,
    default: &RetryPolicy,
    exec: &Execution,
    v: Verdict,
    stopped: Option<StopReason>,
) -> Finish {
    let now = Timestamp::now();
    let mut finish = Finish {
        id: exec.id,
        attempt: exec.attempt,
        worker_id: Some(worker_id.to_owned()),
        status: ExecStatus::Succeeded,
        output: None,
        error: None,
        exit_code: None,
        at: now,
        duration_ms: Some(v.duration_ms),
        run_at: None,
        usage: v.ending.as_ref().ok().and_then(|f| f.usage.clone()),
        sandboxed: Some(sandboxed),
    };
    match stopped {
        Some(StopReason::Cancelled) => {
            finish.status = ExecStatus::Cancelled;
            finish.error = Some("cancelled while running".into());
            return finish;
        }
        Some(StopReason::Shutdown) => {
            finish.status = ExecStatus::Queued;
            finish.run_at = Some(now);
            finish.error = Some(format!(
                "worker {worker_id} stopped before the attempt finished; queued again"
            ));
            return finish;
        }
        Some(StopReason::LeaseLost) | None => {}
    }
    let oom = v
        .ending
        .as_ref()
        .is_ok_and(|f| f.usage.as_ref().is_some_and(|u| u.oom_killed));
    let ending = v.ending.map(|f| f.ending);
    if let Ok(Ending::Exited(0)) = ending {
        match v.output {
            Ok(output) => {
                finish.exit_code = Some(0);
                finish.output = output;
                return finish;
            }
            Err(e) => return fail(finish, exec, &v.spec, default, ExecStatus::Failed, e, None),
        }
    }
    finish.exit_code = match ending {
        Ok(Ending::Exited(code)) => Some(code),
        _ => None,
    };
    let (failed_as, message, not_retryable) = classify(ending, oom, v.spec.as_deref(), v.no_retry);
    let not_retryable = not_retryable.or_else(|| {
        v.spec
            .as_deref()
            .filter(|s| s.kind == BotKind::Service)
            .map(|_| "a service follows its restart policy instead".to_owned())
    });
    fail(
        finish,
        exec,
        &v.spec,
        default,
        failed_as,
        message,
        not_retryable,
    )
}

/// The status, message and — when a retry cannot help — why, of a failed ending.
fn classify(
    ending: Result<Ending, String>,
    oom: bool,
    spec: Option<&BotSpec>,
    marker: bool,
) -> (ExecStatus, String, Option<String>) {
    let code = match ending {
        Ok(Ending::Exited(code)) => Some(code),
        _ => None,
    };
    let (status, message) = match ending {
        Ok(Ending::Signaled(_) | Ending::Exited(_)) if oom => (
            ExecStatus::Failed,
            "killed: out of memory (the resources.memory_mb limit was reached)".to_owned(),
        ),
        Ok(Ending::Exited(code)) => (ExecStatus::Failed, format!("exited with code {code}")),
        Ok(Ending::Signaled(sig)) => (ExecStatus::Failed, format!("killed by signal {sig}")),
        Ok(Ending::TimedOut) => (
            ExecStatus::TimedOut,
            "timed out: the wall-clock limit (timeout_s) was reached".to_owned(),
        ),
        Ok(Ending::Stopped) => (ExecStatus::Failed, "stopped".to_owned()),
        Err(e) => (ExecStatus::Failed, e),
    };
    let listed = code
        .filter(|c| spec.is_some_and(|s| s.retry.no_retry_exit_codes.contains(c)))
        .map(|c| format!("exit code {c} is in retry.no_retry_exit_codes"));
    let why = listed.or_else(|| marker.then(|| "the bot printed ::no-retry::".to_owned()));
    (status, message, why)
}

fn fail(
    mut finish: Finish,
    exec: &Execution,
    spec: &Option<Arc<BotSpec>>,
    default: &RetryPolicy,
    failed_as: ExecStatus,
    message: String,
    not_retryable: Option<String>,
) -> Finish {
    let (max_attempts, message) = match not_retryable {
        Some(why) => (exec.attempt, format!("{message}; not retried: {why}")),
        None => (exec.max_attempts, message),
    };
    let policy = spec.as_deref().map_or(*default, |s| default.for_bot(s));
    let decision = policy.after_failure(exec.attempt, max_attempts, finish.at, failed_as, &message);
    finish.status = decision.status;
    finish.run_at = decision.run_at;
    finish.error = Some(decision.error);
    finish
}
