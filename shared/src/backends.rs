//! The store, queue and bus a process works with, chosen by the configuration: PostgreSQL or
//! SQLite for the store; Redis, or the in-process queue and bus when no Redis URL is given.

use std::sync::Arc;

use crate::bus::{Bus, BusError, memory::MemoryBus, redis::RedisBus};
use crate::config::Config;
use crate::queue::{Queue, QueueError, memory::MemoryQueue, redis::RedisQueue};
use crate::store::{self, Store, StoreError};

/// Handles to the three backends; cheap to clone.
#[derive(Clone)]
pub struct Backends {
    pub store: Arc<dyn Store>,
    pub queue: Arc<dyn Queue>,
    pub bus: Arc<dyn Bus>,
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
}

impl Backends {
    /// Connects to what `config` names. The SQLite store migrates itself; PostgreSQL is
    /// migrated by `codex32 migrate`.
    pub async fn connect(config: &Config) -> Result<Self, ConnectError> {
        let store = store::connect(&config.store_url()).await?;
        let (queue, bus, distributed): (Arc<dyn Queue>, Arc<dyn Bus>, bool) =
            match &config.redis_url {
                Some(url) => (
                    Arc::new(RedisQueue::connect(url.expose(), &config.redis_prefix).await?),
                    Arc::new(RedisBus::connect(url.expose(), &config.redis_prefix).await?),
                    true,
                ),
                None => (
                    Arc::new(MemoryQueue::new()),
                    Arc::new(MemoryBus::default()),
                    false,
                ),
            };
        Ok(Self {
            store,
            queue,
            bus,
            distributed,
        })
    }
}
