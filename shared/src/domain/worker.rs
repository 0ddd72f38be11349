//! What a worker reports about itself.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::Timestamp;

/// A worker silent this long (three missed heartbeats) is presumed lost.
pub const LOST_AFTER_MS: i64 = 15_000;

/// A worker's registration and last heartbeat, as kept in the store.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, sqlx::FromRow)]
pub struct WorkerInfo {
    pub id: String,
    pub hostname: String,
    pub version: String,
    #[sqlx(json)]
    pub pools: Vec<String>,
    /// Concurrent executions it can run.
    pub slots: i32,
    /// Executions running at the last heartbeat.
    pub running: i32,
    /// `alive`, `draining` or `gone` as last reported; the API shows `lost` for a silent worker.
    pub state: String,
    /// The isolation it enforces, e.g. `cgroup v1: memory, cpu, pids`, or `none`.
    pub sandbox: String,
    pub started_at: Timestamp,
    pub last_seen_at: Timestamp,
}

impl WorkerInfo {
    /// Whether it is serving (alive or draining) and was heard from recently, as of `now`.
    pub fn is_live(&self, now: Timestamp) -> bool {
        self.state != "gone" && now.millis() - self.last_seen_at.millis() <= LOST_AFTER_MS
    }
}
