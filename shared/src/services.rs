//! Starting, stopping and restarting service bots, the same way for every caller (the API, the
//! scheduler's keeper). What the user wants is stored first (`desired`); the execution that
//! carries the service is created or cancelled after, so a keeper that reads `desired` before
//! looking for a live execution never starts a service twice nor revives a stopped one.

use uuid::Uuid;

use crate::Backends;
use crate::Timestamp;
use crate::bus::Event;
use crate::domain::{Bot, Desired, ExecStatus, Execution, NewExecution, ServiceStatus};
use crate::store::{ExecutionFilter, NewEvent, StoreError};
use crate::submit::{cancel, submit};

/// The execution carrying a service: one at a time per bot (the claim enforces
/// `max_concurrency`), so a replacement waits until the one it replaces has stopped.
pub fn service_execution(bot: &Bot, why: &str) -> NewExecution {
    let mut new = NewExecution::of(bot, serde_json::Value::Null, why);
    new.max_concurrency = Some(1);
    new.max_attempts = 1;
    new
}

/// The bot's queued and running executions.
pub async fn live_executions(
    backends: &Backends,
    bot_id: Uuid,
) -> Result<Vec<Execution>, StoreError> {
    let filter = ExecutionFilter {
        bot_id: Some(bot_id),
        any_status: vec![ExecStatus::Queued, ExecStatus::Running],
        limit: 100,
        ..ExecutionFilter::default()
    };
    backends.store.list_executions(&filter).await
}

/// Wants the service running and, unless one is live already, creates its execution.
pub async fn start(
    backends: &Backends,
    bot: &Bot,
    actor: Option<Uuid>,
    why: &str,
) -> Result<ServiceStatus, StoreError> {
    let status = backends
        .store
        .set_service_desired(bot.id, Desired::Running, Timestamp::now())
        .await?;
    if live_executions(backends, bot.id).await?.is_empty() {
        launch(backends, bot, actor, why).await?;
    }
    announce(backends, bot, &status, why).await;
    Ok(status)
}

/// Creates the execution that carries the service.
async fn launch(
    backends: &Backends,
    bot: &Bot,
    actor: Option<Uuid>,
    why: &str,
) -> Result<Execution, StoreError> {
    let mut new = service_execution(bot, why);
    new.created_by = actor;
    Ok(submit(backends, &new, bot.owner_id).await?.0)
}

/// Starts again a service wanted running that has no live execution (the scheduler's keeper,
/// after a crash between a service's end and its report, or between a start's two writes).
pub async fn revive(backends: &Backends, bot: &Bot) -> Result<Execution, StoreError> {
    let why =
        "started again by the scheduler: the service was wanted running but had no live execution";
    launch(backends, bot, None, why).await
}

/// Wants the service stopped and cancels its live executions (the worker stops the program).
pub async fn stop(backends: &Backends, bot: &Bot, why: &str) -> Result<ServiceStatus, StoreError> {
    let status = backends
        .store
        .set_service_desired(bot.id, Desired::Stopped, Timestamp::now())
        .await?;
    for exec in live_executions(backends, bot.id).await? {
        cancel(backends, exec.id, why).await?;
    }
    announce(backends, bot, &status, why).await;
    Ok(status)
}

/// Restarts the program where it runs; a service not running anywhere is started.
pub async fn restart(
    backends: &Backends,
    bot: &Bot,
    actor: Option<Uuid>,
    why: &str,
) -> Result<ServiceStatus, StoreError> {
    let live = live_executions(backends, bot.id).await?;
    let running = live.iter().find(|e| e.status == ExecStatus::Running);
    let desired = backends.store.service(bot.id).await?.map(|s| s.desired);
    match running {
        Some(exec) if desired == Some(Desired::Running) => {
            backends
                .store
                .record_events(&[NewEvent::now(exec.id, "restart_requested", why)])
                .await?;
            let event = Event::RestartRequested {
                execution_id: exec.id,
                reason: why.to_owned(),
            };
            let _ = backends.bus.publish(&event).await;
            let status = backends.store.service(bot.id).await?;
            status.ok_or_else(|| StoreError::Corrupt(format!("service {} vanished", bot.id)))
        }
        _ => start(backends, bot, actor, why).await,
    }
}

/// A new version of a running service replaces the running one: the old execution is
/// cancelled and a new one (of the new version) waits for it to stop.
pub async fn replace(backends: &Backends, bot: &Bot, why: &str) -> Result<(), StoreError> {
    let wanted = backends.store.service(bot.id).await?;
    if wanted.is_none_or(|s| s.desired != Desired::Running) {
        return Ok(());
    }
    for exec in live_executions(backends, bot.id).await? {
        cancel(backends, exec.id, why).await?;
    }
    let status = backends
        .store
        .set_service_desired(bot.id, Desired::Running, Timestamp::now())
        .await?;
    launch(backends, bot, None, why).await?;
    announce(backends, bot, &status, why).await;
    Ok(())
}

async fn announce(backends: &Backends, bot: &Bot, status: &ServiceStatus, why: &str) {
    let event = Event::ServiceUpdated {
        bot_id: bot.id,
        owner_id: bot.owner_id,
        execution_id: status.execution_id,
        worker_id: status.worker_id.clone(),
        state: status.state,
        restarts: status.restarts,
        reason: Some(why.to_owned()),
    };
    let _ = backends.bus.publish(&event).await;
}
