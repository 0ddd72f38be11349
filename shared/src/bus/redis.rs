//! The distributed bus: Redis pub/sub on two channels, control events and the rest (see
//! [`Hearing`]). Each process keeps one subscription to what it hears (re-established with
//! backoff when Redis goes away) and fans it out locally.

use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use redis::aio::ConnectionManager;
use tokio::sync::broadcast;

use super::{Bus, BusError, Event, Hearing, LOCAL_CAPACITY};

/// Redis-backed [`Bus`].
pub struct RedisBus {
    conn: ConnectionManager,
    /// Where control events go.
    control: String,
    /// Where every other event goes.
    events: String,
    tx: broadcast::Sender<Event>,
}

impl RedisBus {
    /// Connects and starts the subscription task (to what `hearing` names), which ends when
    /// the bus is dropped.
    pub async fn connect(url: &str, prefix: &str, hearing: Hearing) -> Result<Self, BusError> {
        let client = redis::Client::open(url).map_err(|e| BusError::Unavailable(e.to_string()))?;
        let conn = client
            .get_connection_manager()
            .await
            .map_err(|e| BusError::Unavailable(e.to_string()))?;
        let (control, events) = (format!("{prefix}:control"), format!("{prefix}:events"));
        let heard = match hearing {
            Hearing::Everything => vec![control.clone(), events.clone()],
            Hearing::Control => vec![control.clone()],
        };
        let (tx, _) = broadcast::channel(LOCAL_CAPACITY);
        tokio::spawn(relay(client, heard, tx.downgrade()));
        Ok(Self {
            conn,
            control,
            events,
            tx,
        })
    }
}

/// Forwards the Redis channels into the local broadcast until the bus is gone.
async fn relay(client: redis::Client, channels: Vec<String>, tx: broadcast::WeakSender<Event>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        if tx.upgrade().is_none() {
            return;
        }
        match client.get_async_pubsub().await {
            Ok(mut pubsub) => {
                if let Err(e) = pubsub.subscribe(&channels).await {
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
        self.publish_many(std::slice::from_ref(event)).await
    }

    /// One pipeline of PUBLISH commands: one write and one reply for the lot.
    async fn publish_many(&self, events: &[Event]) -> Result<(), BusError> {
        if events.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for event in events {
            let channel = if event.is_control() {
                &self.control
            } else {
                &self.events
            };
            pipe.cmd("PUBLISH")
                .arg(channel)
                .arg(serde_json::to_vec(event)?)
                .ignore();
        }
        let mut conn = self.conn.clone();
        pipe.query_async::<()>(&mut conn)
            .await
            .map_err(|e| BusError::Unavailable(e.to_string()))
    }

    fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }
}
