//! The lease reaper: executions whose worker stopped renewing its lease (it died, hung or
//! lost its connection) are retried with the bot's backoff while attempts remain, and fail
//! for good (or end cancelled, if a cancel was pending) otherwise. Each step is a fenced
//! write, so any number of schedulers may reap at once.

use codex32_shared::Backends;
use codex32_shared::Timestamp;
use codex32_shared::bus::Event;
use codex32_shared::domain::{BotKind, ExecStatus, Execution};
use codex32_shared::queue::QueueItem;
use codex32_shared::retry::RetryPolicy;
use codex32_shared::store::Finish;

use crate::PAGE;

/// Ends the leases that expired before `now`: each execution is retried with backoff while
/// attempts remain, else fails for good (or is cancelled, if a cancel was pending).
pub async fn reap_leases(
    backends: &Backends,
    retry: &RetryPolicy,
    now: Timestamp,
) -> anyhow::Result<usize> {
    let _ = backends.queue.reap_expired().await?;
    let expired = backends.store.expired_leases(now, PAGE).await?;
    let mut reaped = 0;
    for exec in expired {
        // The bot's own backoff, if its version can be read; the deployment's otherwise.
        let version = backends
            .store
            .bot_version(exec.bot_id, exec.bot_version)
            .await;
        let (policy, service) = match version {
            Ok(Some(v)) => (retry.for_bot(&v.spec), v.spec.kind == BotKind::Service),
            _ => (*retry, false),
        };
        let finish = if service {
            move_service(&exec, now)
        } else {
            reap_decision(&exec, &policy, now)
        };
        if !backends.store.finish_execution(&finish).await? {
            continue; // Renewed or finished meanwhile.
        }
        reaped += 1;
        tracing::warn!(execution_id = %exec.id, attempt = exec.attempt, worker_id = ?exec.worker_id, status = %finish.status, "Lease expired.");
        let retried = finish.status == ExecStatus::Queued;
        // The dead worker's queue entry must not shadow the new attempt's.
        backends.queue.remove(&exec.pool, exec.id).await?;
        if retried {
            let item = QueueItem {
                id: exec.id,
                pool: exec.pool.clone(),
                priority: exec.priority,
                run_at: finish.run_at,
            };
            backends.queue.enqueue(&[item]).await?;
        }
        let event = Event::finished(&exec, &finish);
        let _ = backends.bus.publish(&event).await;
    }
    Ok(reaped)
}

/// A service whose worker was lost moves to another worker at once, however often it moved
/// before (services have no attempts to run out of), unless it was being stopped.
fn move_service(exec: &Execution, now: Timestamp) -> Finish {
    let mut finish = reaped(exec, now);
    if !exec.cancel_requested {
        let worker = exec.worker_id.as_deref().unwrap_or("unknown");
        finish.status = ExecStatus::Queued;
        finish.run_at = Some(now);
        finish.error = Some(format!(
            "lease expired: worker {worker} stopped renewing it; the service moves to another worker of pool {}",
            exec.pool
        ));
    }
    finish
}

/// A reaper's write: no worker, no result; cancelled if a cancel was pending.
fn reaped(exec: &Execution, now: Timestamp) -> Finish {
    let worker = exec.worker_id.as_deref().unwrap_or("unknown");
    let mut finish = Finish {
        id: exec.id,
        attempt: exec.attempt,
        worker_id: None,
        status: ExecStatus::Failed,
        output: None,
        error: None,
        exit_code: None,
        at: now,
        duration_ms: None,
        run_at: None,
        usage: None,
        sandboxed: None,
    };
    if exec.cancel_requested {
        finish.status = ExecStatus::Cancelled;
        finish.error = Some(format!(
            "cancelled; worker {worker} stopped renewing its lease"
        ));
    }
    finish
}

fn reap_decision(exec: &Execution, retry: &RetryPolicy, now: Timestamp) -> Finish {
    let worker = exec.worker_id.as_deref().unwrap_or("unknown");
    let mut finish = reaped(exec, now);
    if !exec.cancel_requested {
        let message = format!("lease expired: worker {worker} stopped renewing it");
        let decision = retry.after_failure(
            exec.attempt,
            exec.max_attempts,
            now,
            ExecStatus::Failed,
            &message,
        );
        finish.status = decision.status;
        finish.run_at = decision.run_at;
        finish.error = Some(decision.error);
    }
    finish
}
