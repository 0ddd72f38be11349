//! The embedded bus: a broadcast channel within this process.

use async_trait::async_trait;
use tokio::sync::broadcast;

use super::{Bus, BusError, Event, LOCAL_CAPACITY};

/// In-process [`Bus`].
pub struct MemoryBus {
    tx: broadcast::Sender<Event>,
}

impl Default for MemoryBus {
    fn default() -> Self {
        Self {
            tx: broadcast::channel(LOCAL_CAPACITY).0,
        }
    }
}

#[async_trait]
impl Bus for MemoryBus {
    async fn publish(&self, event: &Event) -> Result<(), BusError> {
        // No subscriber is not an error: nobody is listening yet.
        let _ = self.tx.send(event.clone());
        Ok(())
    }

    fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }
}
