//! The minimal codex32 scheduler (cron schedules and a leader lease come later): three
//! idempotent reconcilers on a timer, safe to run in any number of processes at once because
//! every step they take is a fenced, conditional write.
//!
//! - [`promote`]: delayed and retrying executions whose time has come become ready;
//! - [`reap_leases`]: executions whose worker stopped renewing its lease are retried or failed;
//! - [`reconcile`]: queued executions missing from the queue (Redis lost them) are re-enqueued.

use std::time::Duration;

use codex32_shared::Backends;
use codex32_shared::Timestamp;
use codex32_shared::bus::Event;
use codex32_shared::config::{Config, SchedulerConfig};
use codex32_shared::domain::{ExecStatus, Execution};
use codex32_shared::queue::QueueItem;
use codex32_shared::retry::RetryPolicy;
use codex32_shared::store::Finish;
use tokio_util::sync::CancellationToken;

/// Rows handled per store round trip.
const PAGE: i64 = 1000;

/// Runs the reconcilers until `shutdown`.
pub async fn run(
    backends: Backends,
    config: &Config,
    sc: &SchedulerConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let retry = config.retry_policy();
    let mut tick = tokio::time::interval(Duration::from_millis(sc.tick_ms.max(10)));
    let mut reconcile_tick =
        tokio::time::interval(Duration::from_secs(sc.reconcile_interval_s.max(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    reconcile_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tracing::info!(
        tick_ms = sc.tick_ms,
        reconcile_s = sc.reconcile_interval_s,
        "Scheduler started."
    );
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {
                log_failure("promote", promote(&backends).await);
                log_failure("reap leases", reap_leases(&backends, &retry, Timestamp::now()).await);
            }
            _ = reconcile_tick.tick() => log_failure("reconcile", reconcile(&backends).await),
        }
    }
    tracing::info!("Scheduler stopped.");
    Ok(())
}

fn log_failure(pass: &str, result: anyhow::Result<usize>) {
    match result {
        Ok(0) => {}
        Ok(n) => tracing::debug!(pass, n, "Scheduler pass acted."),
        Err(e) => tracing::warn!(pass, error = %e, "Scheduler pass failed; will retry next tick."),
    }
}

/// Makes due delayed executions ready in the queue.
pub async fn promote(backends: &Backends) -> anyhow::Result<usize> {
    Ok(backends.queue.promote_due().await?)
}

/// Re-offers every queued execution to the queue. Enqueue is idempotent, so ids the queue
/// already holds are untouched; returns how many were missing.
pub async fn reconcile(backends: &Backends) -> anyhow::Result<usize> {
    let mut after = None;
    let mut restored = 0;
    loop {
        let page = backends.store.queued_page(after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        let items: Vec<QueueItem> = page.iter().map(QueueItem::from).collect();
        restored += backends.queue.enqueue(&items).await?;
        if (page.len() as i64) < PAGE {
            break;
        }
    }
    if restored > 0 {
        tracing::info!(
            restored,
            "Re-enqueued queued executions missing from the queue."
        );
    }
    Ok(restored)
}

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
        let finish = reap_decision(&exec, retry, now);
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

fn reap_decision(exec: &Execution, retry: &RetryPolicy, now: Timestamp) -> Finish {
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
    } else {
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
