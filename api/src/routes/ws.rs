//! `GET /api/v1/ws`: live events over a WebSocket (design §5). Each connection holds one
//! receiver of the process's event bus (fed from Redis in a distributed deployment, so events
//! of every process arrive) and forwards what its subscriptions and the caller's visibility
//! allow. Invariants: `execution.cancel_requested` is never forwarded; a connection buffers
//! at most [`OUTGOING_BUFFER`] messages and is closed with 1013 rather than let a slow client
//! hold memory or others back; every connection ends on shutdown.

use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::response::Response;
use codex32_shared::bus::Event;
use futures::stream::SplitSink;
use futures::{SinkExt, StreamExt};
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{mpsc, oneshot};
use tokio::time::timeout;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

mod protocol;

use self::protocol::{Request, Subscriptions, Topic};
use crate::auth::Caller;
use crate::error::ErrorBody;
use crate::state::AppState;

/// Messages queued for one client at most; a full queue means the client cannot keep up.
const OUTGOING_BUFFER: usize = 256;
/// Longest a single message may take to reach the socket.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest the closing handshake may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
/// Largest message a client may send.
const MAX_CLIENT_MESSAGE: usize = 64 * 1024;
/// Topics one connection may hold.
const MAX_TOPICS: usize = 1000;
/// Stored lines read per query when replaying from `after`.
const REPLAY_PAGE: i64 = 1000;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(connect))
}

/// Live updates over a WebSocket. Authenticate with `Authorization: Bearer …` or, from a
/// browser, `?token=…`. Send `{"type":"subscribe","topics":[…],"after":<log id>?}` or
/// `{"type":"unsubscribe","topics":[…]}`; topics are `executions` (every execution you can
/// see), `execution:<id>` (its updates and log lines), `bot:<id>` (its executions' updates)
/// and `workers` (heartbeats). The server acknowledges with `{"type":"subscribed"|"unsubscribed","topics":[…]}`,
/// answers a bad message with `{"type":"error","message":…}` and sends events as
/// `{"type":"execution.updated",…}`, `{"type":"execution.log","id","execution_id","attempt","stream","line"}`
/// and `{"type":"worker.heartbeat",…}`. With `after`, an `execution:<id>` subscription first
/// replays the stored lines with a greater id. A client that falls behind is closed with
/// code 1013: reconnect and resume from the last log id seen.
#[utoipa::path(get, path = "/ws", tag = "fleet", security(("bearer" = [])),
    params(("token" = Option<String>, Query, description = "The access token or API key, for clients that cannot set headers")),
    responses((status = 101, description = "Switched to the WebSocket protocol"), (status = 401, body = ErrorBody)))]
async fn connect(State(state): State<AppState>, caller: Caller, ws: WebSocketUpgrade) -> Response {
    ws.max_message_size(MAX_CLIENT_MESSAGE)
        .on_upgrade(move |socket| run(state, caller, socket))
}

/// The frame closing a client that cannot keep up (counted and logged here, once per close).
fn too_slow(what: &str) -> CloseFrame {
    metrics::counter!("codex32_websocket_slow_closes_total").increment(1);
    tracing::info!(
        reason = what,
        "Closing a WebSocket client that cannot keep up."
    );
    CloseFrame {
        code: close_code::AGAIN,
        reason: format!("too slow: {what}; reconnect and resume from your last log id").into(),
    }
}

/// Serves one upgraded connection until the client leaves, falls behind, or shutdown.
async fn run(state: AppState, caller: Caller, socket: WebSocket) {
    let (sink, mut stream) = socket.split();
    let (out, queue) = mpsc::channel(OUTGOING_BUFFER);
    let (close_tx, close_rx) = oneshot::channel();
    let mut writer = tokio::spawn(write(sink, queue, close_rx));
    let mut writer_done = false;
    let mut events = state.backends.bus.subscribe();
    let shutdown = state.shutdown.clone();
    metrics::gauge!("codex32_websocket_connections").increment(1.0);
    let mut conn = Connection {
        state,
        caller,
        subs: Subscriptions::default(),
        out,
    };
    let end = loop {
        let step = tokio::select! {
            _ = shutdown.cancelled() => Err(Some(CloseFrame {
                code: close_code::AWAY,
                reason: "the server is shutting down; reconnect".into(),
            })),
            _ = &mut writer => {
                writer_done = true;
                Err(None)
            }
            msg = stream.next() => match msg {
                Some(Ok(Message::Text(text))) => conn.handle(text.as_str()).await.map_err(Some),
                Some(Ok(Message::Binary(_))) => conn.error("send JSON as text messages").await.map_err(Some),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => Ok(()),
                Some(Ok(Message::Close(_)) | Err(_)) | None => Err(None),
            },
            event = events.recv() => match event {
                Ok(event) if conn.subs.wants(&conn.caller, &event) => conn.send(&event).await.map_err(Some),
                Ok(_) => Ok(()),
                Err(RecvError::Lagged(n)) => Err(Some(too_slow(&format!("{n} events missed")))),
                Err(RecvError::Closed) => Err(Some(CloseFrame {
                    code: close_code::AWAY,
                    reason: "the event bus closed; reconnect".into(),
                })),
            },
        };
        if let Err(end) = step {
            break end;
        }
    };
    if let Some(frame) = end {
        let _ = close_tx.send(frame);
    }
    drop(conn);
    if !writer_done {
        let _ = writer.await;
    }
    metrics::gauge!("codex32_websocket_connections").decrement(1.0);
}

/// The socket's sending half: queued messages, each within [`SEND_TIMEOUT`], then the closing
/// handshake (with `close`'s frame if one is sent).
async fn write(
    mut sink: SplitSink<WebSocket, Message>,
    mut queue: mpsc::Receiver<Message>,
    mut close: oneshot::Receiver<CloseFrame>,
) {
    let frame = loop {
        tokio::select! {
            biased;
            frame = &mut close => break frame.ok(),
            msg = queue.recv() => match msg {
                Some(msg) => match timeout(SEND_TIMEOUT, sink.send(msg)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => return,
                    Err(_) => break Some(too_slow("a message took over 5 s to send")),
                },
                None => break None,
            },
        }
    };
    if let Some(frame) = frame {
        let _ = timeout(CLOSE_TIMEOUT, sink.send(Message::Close(Some(frame)))).await;
    }
    let _ = timeout(CLOSE_TIMEOUT, sink.close()).await;
}

/// A connection's state as seen from its reading half.
struct Connection {
    state: AppState,
    caller: Caller,
    subs: Subscriptions,
    out: mpsc::Sender<Message>,
}

/// `Err` carries the frame to close the connection with.
type Step = Result<(), CloseFrame>;

impl Connection {
    async fn handle(&mut self, text: &str) -> Step {
        match serde_json::from_str::<Request>(text) {
            Ok(Request::Subscribe { topics, after }) => self.subscribe(&topics, after).await,
            Ok(Request::Unsubscribe { topics }) => {
                let parsed: Vec<Topic> = match topics.iter().map(|t| Topic::parse(t)).collect() {
                    Ok(parsed) => parsed,
                    Err(message) => return self.error(&message).await,
                };
                for topic in &parsed {
                    self.subs.remove(*topic);
                }
                self.ack("unsubscribed", &parsed).await
            }
            Err(e) => self.error(&format!(
                "malformed message ({e}); send {{\"type\":\"subscribe\",\"topics\":[…]}} or {{\"type\":\"unsubscribe\",\"topics\":[…]}}"
            )).await,
        }
    }

    /// Subscribes to all `topics` or, if one is unknown or not visible, to none.
    async fn subscribe(&mut self, topics: &[String], after: Option<i64>) -> Step {
        if topics.is_empty() {
            return self.error("`topics` is empty").await;
        }
        let mut parsed = Vec::with_capacity(topics.len());
        for t in topics {
            let topic = match Topic::parse(t) {
                Ok(topic) => topic,
                Err(message) => return self.error(&message).await,
            };
            if let Err(message) = self.check_visible(topic).await {
                return self.error(&message).await;
            }
            parsed.push(topic);
        }
        if self.subs.len() + parsed.len() > MAX_TOPICS {
            return self
                .error(&format!("at most {MAX_TOPICS} topics per connection"))
                .await;
        }
        for topic in &parsed {
            self.subs.add(*topic);
        }
        self.ack("subscribed", &parsed).await?;
        if let Some(after) = after {
            for topic in &parsed {
                if let Topic::Execution(id) = topic {
                    self.replay(*id, after).await?;
                }
            }
        }
        Ok(())
    }

    /// `Err` is the message for the client: an execution or bot it may not see does not exist.
    async fn check_visible(&self, topic: Topic) -> Result<(), String> {
        let store = &self.state.backends.store;
        let (owner, missing) = match topic {
            Topic::Executions | Topic::Workers => return Ok(()),
            Topic::Execution(id) => (
                store.get_execution(id).await.map(|e| e.map(|e| e.owner_id)),
                format!("no such execution: {id}"),
            ),
            Topic::Bot(id) => (
                store.get_bot(id).await.map(|b| b.map(|b| b.owner_id)),
                format!("no such bot: {id}"),
            ),
        };
        match owner {
            Ok(Some(owner)) if self.caller.sees(owner) => Ok(()),
            Ok(_) => Err(missing),
            Err(e) => {
                tracing::warn!(topic = %topic, error = %e, "Cannot check a WebSocket subscription.");
                Err(format!("cannot check `{topic}` right now; try again"))
            }
        }
    }

    /// Sends the stored lines of `id` above `after`, waiting for room in the queue (within
    /// [`SEND_TIMEOUT`] per line); live lines up to the last one sent are then dropped.
    async fn replay(&mut self, id: Uuid, mut after: i64) -> Step {
        loop {
            let page = match self
                .state
                .backends
                .store
                .read_logs(id, after, REPLAY_PAGE)
                .await
            {
                Ok(page) => page,
                Err(e) => {
                    tracing::warn!(execution_id = %id, error = %e, "Cannot replay logs to a WebSocket client.");
                    return self
                        .error(&format!(
                            "cannot read the stored lines of {id}; subscribe again to retry"
                        ))
                        .await;
                }
            };
            for l in &page {
                let event = Event::ExecutionLog {
                    id: Some(l.id),
                    execution_id: l.execution_id,
                    attempt: l.attempt,
                    stream: l.stream,
                    line: l.line.clone(),
                };
                self.send(&event).await?;
                after = l.id;
                if let Some(last) = self.subs.execution.get_mut(&id) {
                    *last = (*last).max(l.id);
                }
            }
            if (page.len() as i64) < REPLAY_PAGE {
                return Ok(());
            }
        }
    }

    async fn ack(&self, kind: &str, topics: &[Topic]) -> Step {
        let topics: Vec<String> = topics.iter().map(Topic::to_string).collect();
        self.queue(json!({ "type": kind, "topics": topics }).to_string())
            .await
    }

    async fn error(&self, message: &str) -> Step {
        self.queue(json!({ "type": "error", "message": message }).to_string())
            .await
    }

    async fn send(&self, event: &Event) -> Step {
        match serde_json::to_string(event) {
            Ok(text) => self.queue(text).await,
            Err(e) => {
                tracing::warn!(error = %e, "Cannot encode an event for a WebSocket client.");
                Ok(())
            }
        }
    }

    /// Queues, waiting up to [`SEND_TIMEOUT`] for room: a client that cannot drain its queue
    /// in that time is closed (so is one that falls `bus::LOCAL_CAPACITY` events behind on the
    /// bus meanwhile).
    async fn queue(&self, text: String) -> Step {
        match timeout(SEND_TIMEOUT, self.out.send(Message::Text(text.into()))).await {
            Ok(_) => Ok(()),
            Err(_) => Err(too_slow(&format!(
                "{OUTGOING_BUFFER} messages waiting to be sent for 5 s"
            ))),
        }
    }
}
