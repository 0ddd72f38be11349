//! The distributed bus: Redis pub/sub on one channel. Each process keeps one subscription
//! (re-established with backoff when Redis goes away) and fans it out locally.

use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use redis::aio::ConnectionManager;
use tokio::sync::broadcast;

use super::{Bus, BusError, Event, LOCAL_CAPACITY};

/// Redis-backed [`Bus`].
pub struct RedisBus {
    conn: ConnectionManager,
    channel: String,
    tx: broadcast::Sender<Event>,
}

impl RedisBus {
    /// Connects and starts the subscription task, which ends when the bus is dropped.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, BusError> {
        let client = redis::Client::open(url).map_err(|e| BusError::Unavailable(e.to_string()))?;
        let conn = client
            .get_connection_manager()
            .await
            .map_err(|e| BusError::Unavailable(e.to_string()))?;
        let channel = format!("{prefix}:events");
        let (tx, _) = broadcast::channel(LOCAL_CAPACITY);
        tokio::spawn(relay(client, channel.clone(), tx.downgrade()));
        Ok(Self { conn, channel, tx })
    }
}

/// Forwards the Redis channel into the local broadcast until the bus is gone.
async fn relay(client: redis::Client, channel: String, tx: broadcast::WeakSender<Event>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        if tx.upgrade().is_none() {
            return;
        }
        match client.get_async_pubsub().await {
            Ok(mut pubsub) => {
                if let Err(e) = pubsub.subscribe(&channel).await {
                    tracing::warn!(error = %e, "Event bus subscription failed; retrying.");
                } else {
                    backoff = Duration::from_millis(100);
                    let mut messages = pubsub.into_on_message();
                    while let Some(msg) = messages.next().await {
                        let Some(tx) = tx.upgrade() else { return };
                        match serde_json::from_slice::<Event>(msg.get_payload_bytes()) {
                            Ok(event) => {
                                let _ = tx.send(event);
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "Ignoring an unreadable bus event.")
                            }
                        }
                    }
                    tracing::warn!("Event bus subscription ended; reconnecting.");
                }
            }
            Err(e) => tracing::warn!(error = %e, "Cannot reach Redis for the event bus; retrying."),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

#[async_trait]
impl Bus for RedisBus {
    async fn publish(&self, event: &Event) -> Result<(), BusError> {
        let payload = serde_json::to_vec(event)?;
        let mut conn = self.conn.clone();
        let _: i64 = redis::cmd("PUBLISH")
            .arg(&self.channel)
            .arg(payload)
            .query_async(&mut conn)
            .await
            .map_err(|e| BusError::Unavailable(e.to_string()))?;
        Ok(())
    }

    fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }
}
