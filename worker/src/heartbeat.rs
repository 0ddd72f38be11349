//! The worker's registration and heartbeat in the store, and on the bus.

use std::sync::Arc;
use std::time::Duration;

use codex32_shared::Timestamp;
use codex32_shared::bus::Event;
use codex32_shared::domain::WorkerInfo;
use tokio_util::sync::CancellationToken;

use crate::runner::Ctx;

pub(crate) const INTERVAL: Duration = Duration::from_secs(5);

/// Registers the worker and reports it every [`INTERVAL`] until `stop`.
pub(crate) async fn beat(ctx: Arc<Ctx>, mut info: WorkerInfo, stop: CancellationToken) {
    let mut tick = tokio::time::interval(INTERVAL);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        info.running = ctx.running_count() as i32;
        report(&ctx, &mut info, "alive").await;
    }
}

/// Writes the worker's state now (`alive`, `draining`, `gone`).
pub(crate) async fn report(ctx: &Ctx, info: &mut WorkerInfo, state: &str) {
    info.state = state.to_owned();
    info.last_seen_at = Timestamp::now();
    if let Err(e) = ctx.backends.store.upsert_worker(info).await {
        tracing::warn!(error = %e, "Cannot record the worker heartbeat.");
    }
    let event = Event::WorkerHeartbeat {
        worker_id: info.id.clone(),
        running: info.running,
        slots: info.slots,
        state: info.state.clone(),
    };
    let _ = ctx.backends.bus.publish(&event).await;
}
