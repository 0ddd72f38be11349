//! The codex32 scheduler: idempotent reconcilers on a timer, safe to run in any number of
//! processes at once because every step they take is a fenced, conditional write, plus cron
//! firing, done by one leader at a time ([`Firing`]).
//!
//! - [`promote`]: delayed and retrying executions whose time has come become ready;
//! - [`reap_leases`]: executions whose worker stopped renewing its lease are retried or failed;
//! - [`reconcile`]: queued executions missing from the queue (Redis lost them) are re-enqueued;
//! - [`statistics`]: tables that grow with every execution get new planner statistics each
//!   time they have grown fourfold while young, so no plan made on a near-empty table
//!   outlives its youth.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use codex32_shared::Backends;
use codex32_shared::Timestamp;
use codex32_shared::bus::Event;
use codex32_shared::config::{Config, SchedulerConfig};
use codex32_shared::queue::QueueItem;
use tokio_util::sync::CancellationToken;

mod firing;
mod keeper;
mod leases;
mod statistics;
mod stranded;

pub use firing::{Firing, LEAD_FOR};
pub use keeper::keep_services;
pub use leases::reap_leases;
pub use stranded::Stranded;

/// Rows handled per store round trip.
pub(crate) const PAGE: i64 = 1000;

/// Least time between two cron passes woken by bot changes: bots created or changed together
/// (a script creating a thousand) make one pass per interval, not one each.
const CHANGES_EVERY: Duration = Duration::from_millis(50);

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
    let holder = format!(
        "{}-{}-{:04x}",
        hostname(),
        std::process::id(),
        rand_suffix()
    );
    let mut firing = Firing::new(holder.clone());
    let mut stranded = Stranded::default();
    let mut changes = Changes::new(&backends);
    let leading = Arc::new(AtomicBool::new(false));
    let statistics = tokio::spawn(statistics::keep_fresh(
        backends.clone(),
        leading.clone(),
        shutdown.clone(),
    ));
    tracing::info!(
        holder = %holder,
        tick_ms = sc.tick_ms,
        reconcile_s = sc.reconcile_interval_s,
        "Scheduler started."
    );
    loop {
        let next_fire = wake_for(firing.next_due());
        tokio::select! {
            _ = shutdown.cancelled() => break,
            // A fire time comes before the next tick: fire on time, not up to a tick late.
            _ = tokio::time::sleep_until(next_fire) => {
                log_failure("cron", firing.tick(&backends, Timestamp::now()).await);
            }
            // A schedule created or changed just before its fire time is fired on time: the
            // leader learns of it now, not at its next tick.
            _ = changes.pass() => {
                log_failure("cron", firing.tick(&backends, Timestamp::now()).await);
            }
            _ = tick.tick() => {
                log_failure("promote", promote(&backends).await);
                log_failure("reap leases", reap_leases(&backends, &retry, Timestamp::now()).await);
                log_failure("cron", firing.tick(&backends, Timestamp::now()).await);
            }
            _ = reconcile_tick.tick() => {
                log_failure("reconcile", reconcile(&backends, &mut stranded).await);
                if firing.leading() {
                    log_failure("services", keep_services(&backends).await);
                }
            }
        }
        leading.store(firing.leading(), Ordering::Relaxed);
    }
    let _ = statistics.await;
    tracing::info!("Scheduler stopped.");
    Ok(())
}

/// Bot changes heard on the bus (a bot created, changed, paused, resumed or deleted), each
/// asking for a cron pass at most [`CHANGES_EVERY`] after the last one.
struct Changes {
    /// None once the bus has closed: the ticks still find every change.
    events: Option<tokio::sync::broadcast::Receiver<Event>>,
    pass_at: Option<tokio::time::Instant>,
    last_pass: Option<tokio::time::Instant>,
}

impl Changes {
    fn new(backends: &Backends) -> Self {
        Self {
            events: Some(backends.bus.subscribe()),
            pass_at: None,
            last_pass: None,
        }
    }

    /// Returns when a pass that a change asked for is due. Cancel-safe: what was heard stays
    /// noted for the next call.
    async fn pass(&mut self) {
        use tokio::sync::broadcast::error::RecvError;
        loop {
            let listening = self.events.is_some();
            let asked = self.pass_at.is_some();
            let at = self.pass_at.unwrap_or_else(tokio::time::Instant::now);
            tokio::select! {
                event = async { self.events.as_mut().expect("listening").recv().await }, if listening => {
                    match event {
                        Ok(Event::BotChanged { .. }) => self.ask(),
                        // Missed events (a receiver that lagged behind a flood of them in
                        // `codex32 dev`, where it hears every event) wait for the next tick.
                        Ok(_) | Err(RecvError::Lagged(_)) => {}
                        Err(RecvError::Closed) => self.events = None,
                    }
                }
                _ = tokio::time::sleep_until(at), if asked => {
                    self.pass_at = None;
                    self.last_pass = Some(tokio::time::Instant::now());
                    return;
                }
                else => return std::future::pending().await,
            }
        }
    }

    fn ask(&mut self) {
        if self.pass_at.is_none() {
            let now = tokio::time::Instant::now();
            let soonest = self
                .last_pass
                .map_or(now, |at| (at + CHANGES_EVERY).max(now));
            self.pass_at = Some(soonest);
        }
    }
}

/// When to wake for a fire time: just after it (a fire time is due once it has passed), or
/// far away when there is none.
fn wake_for(next: Option<chrono::DateTime<chrono::Utc>>) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    match next {
        Some(at) => {
            let wait = (at - chrono::Utc::now()).to_std().unwrap_or_default();
            now + wait + Duration::from_millis(1)
        }
        None => now + Duration::from_secs(3600),
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "scheduler".into())
}

fn rand_suffix() -> u16 {
    (uuid::Uuid::new_v4().as_u128() & 0xffff) as u16
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

/// Re-offers every queued execution to the queue — enqueue is idempotent, so ids the queue
/// already holds are untouched — and notes the ones waiting for a pool no worker serves.
/// Returns how many were missing from the queue.
pub async fn reconcile(backends: &Backends, stranded: &mut Stranded) -> anyhow::Result<usize> {
    let served = Stranded::served_pools(backends).await?;
    let mut seen = std::collections::HashSet::new();
    let mut after = None;
    let mut restored = 0;
    loop {
        let page = backends.store.queued_page(after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        let items: Vec<QueueItem> = page.iter().map(QueueItem::from).collect();
        restored += backends.queue.enqueue(&items).await?;
        stranded.note(backends, &page, &served, &mut seen).await?;
        if (page.len() as i64) < PAGE {
            break;
        }
    }
    stranded.retain(&seen);
    if restored > 0 {
        tracing::info!(
            restored,
            "Re-enqueued queued executions missing from the queue."
        );
    }
    Ok(restored)
}
