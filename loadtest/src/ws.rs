//! WebSocket subscribers, as dashboards hold them: each connects to `/api/v1/ws` with the API
//! key, subscribes to the `executions` topic and counts what it receives until told to stop.
//! A connection the server closes early (1013: the client fell behind) is counted by code.

use futures::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::client::Api;
use crate::measure::Recorder;

/// What the subscribers saw.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct WsStats {
    pub subscribers: usize,
    /// Subscribers that connected and were subscribed.
    pub connected: usize,
    /// `execution.updated` events received, all subscribers together.
    pub events: u64,
    /// Connections closed or failed before the end.
    pub dropped: usize,
}

/// Runs `n` subscribers until `stop` turns true; failures are also counted in `recorder`.
pub async fn subscribers(
    api: &Api,
    n: usize,
    stop: watch::Receiver<bool>,
    recorder: &Recorder,
) -> WsStats {
    let runs = (0..n).map(|_| subscriber(api, stop.clone()));
    let results = futures::future::join_all(runs).await;
    let mut stats = WsStats {
        subscribers: n,
        ..WsStats::default()
    };
    for (connected, events, failure) in results {
        stats.connected += usize::from(connected);
        stats.events += events;
        if let Some(kind) = failure {
            stats.dropped += 1;
            recorder.error(format!("websocket: {kind}"));
        }
    }
    stats
}

/// One subscriber: (subscribed, events received, why it ended early).
async fn subscriber(api: &Api, mut stop: watch::Receiver<bool>) -> (bool, u64, Option<String>) {
    let (url, key) = api.ws_target();
    let Ok(mut req) = url.into_client_request() else {
        return (false, 0, Some("bad url".into()));
    };
    if let Ok(value) = format!("Bearer {key}").parse() {
        req.headers_mut().insert("authorization", value);
    }
    let mut ws = match tokio_tungstenite::connect_async(req).await {
        Ok((ws, _)) => ws,
        Err(e) => return (false, 0, Some(format!("connect: {e}"))),
    };
    let subscribe = r#"{"type":"subscribe","topics":["executions"]}"#;
    if ws.send(Message::text(subscribe)).await.is_err() {
        return (false, 0, Some("send failed".into()));
    }
    let mut events = 0;
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => {
                let _ = ws.close(None).await;
                return (true, events, None);
            }
            msg = ws.next() => match msg {
                Some(Ok(Message::Text(text))) => {
                    events += u64::from(text.contains("\"execution.updated\""));
                }
                Some(Ok(Message::Close(frame))) => {
                    let code = frame.map(|f| u16::from(f.code)).unwrap_or(0);
                    return (true, events, Some(format!("closed by the server ({code})")));
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return (true, events, Some(format!("error: {e}"))),
                None => return (true, events, Some("ended".into())),
            }
        }
    }
}
