//! The event bus (design §3.4): every state change, log line and heartbeat is published here
//! and fanned out to WebSocket subscribers and to workers (cancel requests). Delivery is
//! best effort — the store stays the truth; a missed event is a late update, never lost work.

pub mod memory;
pub mod redis;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::domain::{ExecStatus, Execution, LogStream};
use crate::store::Finish;

/// Events a subscriber can lag behind by before it starts missing some.
pub const LOCAL_CAPACITY: usize = 4096;

/// Which events a process hears from a distributed bus. The API fans every event out to
/// WebSocket clients; workers and the scheduler act only on control events (cancels, drains,
/// restarts, cache evictions) and would otherwise read and drop every state change and log
/// line of the whole fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hearing {
    Everything,
    Control,
}

/// Something that happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Event {
    /// An execution changed state.
    #[serde(rename = "execution.updated")]
    ExecutionUpdated {
        id: Uuid,
        bot_id: Uuid,
        owner_id: Uuid,
        status: ExecStatus,
        attempt: i32,
        worker_id: Option<String>,
        exit_code: Option<i32>,
        error: Option<String>,
    },
    /// An execution printed a line.
    #[serde(rename = "execution.log")]
    ExecutionLog {
        /// The line's id in the store (published once stored), so a client resuming with
        /// `after` can tell replayed lines from live ones; absent from older publishers.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<i64>,
        execution_id: Uuid,
        attempt: i32,
        stream: LogStream,
        line: String,
    },
    /// A worker is alive.
    #[serde(rename = "worker.heartbeat")]
    WorkerHeartbeat {
        worker_id: String,
        running: i32,
        slots: i32,
        state: String,
    },
    /// A cancel was asked for a running execution: its worker stops it.
    #[serde(rename = "execution.cancel_requested")]
    CancelRequested { execution_id: Uuid },
    /// A worker was asked to drain: stop pulling, finish what runs, exit.
    #[serde(rename = "worker.drain_requested")]
    DrainRequested { worker_id: String },
    /// A service bot changed state: started, ended, restarted (with why), stopped.
    #[serde(rename = "service.updated")]
    ServiceUpdated {
        bot_id: Uuid,
        owner_id: Uuid,
        execution_id: Option<Uuid>,
        worker_id: Option<String>,
        state: crate::domain::ServiceState,
        restarts: i32,
        reason: Option<String>,
    },
    /// A restart of a running service was asked for: its worker restarts the program.
    #[serde(rename = "service.restart_requested")]
    RestartRequested { execution_id: Uuid, reason: String },
    /// An API key was revoked: API processes forget it at once.
    #[serde(rename = "api_key.revoked")]
    ApiKeyRevoked { key_id: Uuid },
    /// A bot changed (created with a schedule, a new version, deleted, paused or resumed): API
    /// processes read it again, and the cron leader its schedules.
    #[serde(rename = "bot.changed")]
    BotChanged { bot_id: Uuid },
    /// A secret of this scope (`bot:<id>`, `user:<id>`) was set or deleted: workers read the
    /// scope's secrets again.
    #[serde(rename = "secrets.changed")]
    SecretsChanged { scope: String },
}

impl Event {
    /// Whether it asks processes to act (control), rather than telling what happened.
    pub fn is_control(&self) -> bool {
        match self {
            Event::CancelRequested { .. }
            | Event::DrainRequested { .. }
            | Event::RestartRequested { .. }
            | Event::ApiKeyRevoked { .. }
            | Event::SecretsChanged { .. }
            | Event::BotChanged { .. } => true,
            Event::ExecutionUpdated { .. }
            | Event::ExecutionLog { .. }
            | Event::WorkerHeartbeat { .. }
            | Event::ServiceUpdated { .. } => false,
        }
    }

    /// The `execution.updated` event for an execution as it now is.
    pub fn updated(e: &Execution) -> Self {
        Event::ExecutionUpdated {
            id: e.id,
            bot_id: e.bot_id,
            owner_id: e.owner_id,
            status: e.status,
            attempt: e.attempt,
            worker_id: e.worker_id.clone(),
            exit_code: e.exit_code,
            error: e.error.clone(),
        }
    }
}

impl Event {
    /// The `execution.updated` event once `finish` was written: a retry is back in the queue
    /// at the next attempt without a worker; a final state keeps the attempt and its worker.
    pub fn finished(e: &Execution, finish: &Finish) -> Self {
        let retried = finish.status == ExecStatus::Queued;
        Event::ExecutionUpdated {
            id: e.id,
            bot_id: e.bot_id,
            owner_id: e.owner_id,
            status: finish.status,
            attempt: if retried { e.attempt + 1 } else { e.attempt },
            worker_id: if retried {
                None
            } else {
                finish.worker_id.clone()
            },
            exit_code: finish.exit_code,
            error: finish.error.clone(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("event bus unavailable: {0}")]
    Unavailable(String),
    #[error("event could not be encoded: {0}")]
    Encode(#[from] serde_json::Error),
}

/// Publish to everyone; subscribe to everything this process hears (subscribers filter).
#[async_trait]
pub trait Bus: Send + Sync {
    async fn publish(&self, event: &Event) -> Result<(), BusError>;
    /// Publishes events in order — on a distributed bus in one round trip, which is why the
    /// callers that make many at once (a batch of submissions, a worker's slots) use it. On an
    /// error, events after the failing one may not have been published.
    async fn publish_many(&self, events: &[Event]) -> Result<(), BusError> {
        for event in events {
            self.publish(event).await?;
        }
        Ok(())
    }
    /// A new receiver of every event published from now on, in this process or any other, that
    /// this process hears (a distributed bus: see [`Hearing`]).
    fn subscribe(&self) -> broadcast::Receiver<Event>;
}
