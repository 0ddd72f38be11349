//! The store, queue and bus a process works with, chosen by the configuration: PostgreSQL or
//! SQLite for the store; Redis, or the in-process queue and bus when no Redis URL is given.

use std::sync::Arc;

use crate::bus::{Bus, BusError, Hearing, memory::MemoryBus, redis::RedisBus};
use crate::config::Config;
use crate::limit::{LimitError, Limiter, memory::MemoryLimiter, redis::RedisLimiter};
use crate::queue::{Queue, QueueError, memory::MemoryQueue, redis::RedisQueue};
use crate::store::{self, Store, StoreError};

/// Handles to the three backends; cheap to clone.
#[derive(Clone)]
pub struct Backends {
    pub store: Arc<dyn Store>,
    pub queue: Arc<dyn Queue>,
    pub bus: Arc<dyn Bus>,
    /// Rate limits, shared by every API process when Redis is configured.
    pub limiter: Arc<dyn Limiter>,
    /// False when the queue and bus live in this process: then api, scheduler and worker
    /// must all run in it (`codex32 dev`).
    pub distributed: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("queue: {0}")]
    Queue(#[from] QueueError),
    #[error("bus: {0}")]
    Bus(#[from] BusError),
    #[error("{0}")]
    Limiter(#[from] LimitError),
}

impl Backends {
    /// Connects to what `config` names; a distributed bus delivers what `hearing` names (an
    /// in-process bus, everything). The SQLite store migrates itself; PostgreSQL is migrated
    /// by `codex32 migrate`.
    pub async fn connect(config: &Config, hearing: Hearing) -> Result<Self, ConnectError> {
        let store = store::connect(&config.store_url()).await?;
        Ok(match &config.redis_url {
            Some(url) => {
                let (url, prefix) = (url.expose(), &config.redis_prefix);
                Self {
                    store,
                    queue: Arc::new(RedisQueue::connect(url, prefix).await?),
                    bus: Arc::new(RedisBus::connect(url, prefix, hearing).await?),
                    limiter: Arc::new(RedisLimiter::connect(url, prefix).await?),
                    distributed: true,
                }
            }
            None => Self {
                store,
                queue: Arc::new(MemoryQueue::new()),
                bus: Arc::new(MemoryBus::default()),
                limiter: Arc::new(MemoryLimiter::default()),
                distributed: false,
            },
        })
    }
}
