//! The queue: a dispatch index over the store (design §3.1). It holds execution ids per pool,
//! ordered by priority, with delayed ids kept aside until due. A claim hands an id out under a
//! lease with a fencing token, so no id is held by two claimers at once; the store's own
//! lease (fenced by attempt) stays the authority on who may write a result.
//!
//! Two implementations, one conformance suite (`shared/tests/queue_conformance.rs`):
//! [`memory::MemoryQueue`] (embedded) and [`redis::RedisQueue`] (distributed).

pub mod memory;
pub mod redis;

use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::Timestamp;
use crate::domain::Execution;

/// An id to dispatch, with what orders it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueItem {
    pub id: Uuid,
    pub pool: String,
    /// Higher first.
    pub priority: i32,
    /// Not before this time; `None` means now.
    pub run_at: Option<Timestamp>,
}

impl From<&Execution> for QueueItem {
    fn from(e: &Execution) -> Self {
        Self {
            id: e.id,
            pool: e.pool.clone(),
            priority: e.priority,
            run_at: e.run_at,
        }
    }
}

/// A claimed id and the token that proves the claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub id: Uuid,
    pub pool: String,
    /// Increases with every claim in a pool: a stale holder's token no longer matches.
    pub token: u64,
}

/// How many ids a pool holds, by state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct PoolDepth {
    pub pool: String,
    /// Due and waiting for a worker.
    pub ready: u64,
    /// Waiting for their `run_at`.
    pub delayed: u64,
    /// Handed to a worker.
    pub leased: u64,
}

/// What went wrong talking to the queue.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// Redis could not be reached or answered with an error: retry later.
    #[error("queue backend unavailable: {0}")]
    Unavailable(String),
    /// Redis answered with something this code cannot read (a bug or a foreign key layout).
    #[error("unexpected queue reply: {0}")]
    Protocol(String),
}

impl QueueError {
    pub fn retryable(&self) -> bool {
        match self {
            QueueError::Unavailable(_) => true,
            QueueError::Protocol(_) => false,
        }
    }
}

/// The dispatch index. Every method is safe to call from many processes at once.
#[async_trait]
pub trait Queue: Send + Sync {
    /// Adds ids not already present (in any state); returns how many were new. Idempotent, so
    /// the reconciler can re-offer every queued execution.
    async fn enqueue(&self, items: &[QueueItem]) -> Result<usize, QueueError>;
    /// Takes the best due id of these pools under a lease of `ttl`, waiting up to `wait`.
    async fn claim(
        &self,
        pools: &[String],
        ttl: Duration,
        wait: Duration,
    ) -> Result<Option<Lease>, QueueError> {
        Ok(self.claim_many(pools, ttl, wait, 1).await?.pop())
    }
    /// Takes up to `max` of the best due ids, all from one of these pools, each under its own
    /// lease of `ttl`; waits up to `wait` for the first, never for more. Empty when nothing
    /// came due in time. A worker with many free slots fills them with one call.
    async fn claim_many(
        &self,
        pools: &[String],
        ttl: Duration,
        wait: Duration,
        max: usize,
    ) -> Result<Vec<Lease>, QueueError>;
    /// Extends a lease; false if it is no longer held with this token.
    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<bool, QueueError>;
    /// Removes a claimed id for good; false if the lease was no longer held.
    async fn ack(&self, lease: &Lease) -> Result<bool, QueueError> {
        let mut done = self.ack_many(std::slice::from_ref(lease)).await?;
        Ok(done.pop().unwrap_or(false))
    }
    /// [`ack`](Self::ack) of many leases in one call; one answer per lease, in order.
    async fn ack_many(&self, leases: &[Lease]) -> Result<Vec<bool>, QueueError>;
    /// Removes an id whatever its state (a cancelled execution); false if absent.
    async fn remove(&self, pool: &str, id: Uuid) -> Result<bool, QueueError>;
    /// Makes delayed ids whose time has come ready; returns how many moved.
    async fn promote_due(&self) -> Result<usize, QueueError>;
    /// Drops ids whose lease expired and returns them: the store decides what happens next.
    async fn reap_expired(&self) -> Result<Vec<(String, Uuid)>, QueueError>;
    /// Depth of every pool the queue has seen.
    async fn depths(&self) -> Result<Vec<PoolDepth>, QueueError>;
    async fn ping(&self) -> Result<(), QueueError>;
}
