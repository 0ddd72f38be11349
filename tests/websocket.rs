//! The WebSocket fanout `GET /api/v1/ws` end to end: subscriptions and visibility in dev,
//! cross-process delivery with two API processes, and slow clients cut off without holding
//! the others back.

mod common;

use std::time::Duration;

use codex32_shared::testing::eventually;
use common::{Client, Cluster, Dev, start_api};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

const LONG: Duration = Duration::from_secs(90);

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

fn ws_url(base: &str) -> String {
    format!("{}/api/v1/ws", base.replacen("http", "ws", 1))
}

/// Connects with the token in the `Authorization` header.
async fn connect(c: &Client) -> Ws {
    let mut req = ws_url(&c.base).into_client_request().expect("request");
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {}", c.token).parse().expect("header"),
    );
    tokio_tungstenite::connect_async(req)
        .await
        .expect("connect")
        .0
}

/// Connects with `?token=` over a socket with a tiny receive buffer, as a stalled client.
async fn connect_small_buffer(c: &Client) -> Ws {
    let url = format!("{}?token={}", ws_url(&c.base), c.token);
    let addr = c.base.trim_start_matches("http://").to_owned();
    let socket = TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let stream = socket
        .connect(addr.parse().expect("address"))
        .await
        .expect("tcp connect");
    tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(stream))
        .await
        .expect("upgrade")
        .0
}

async fn send(ws: &mut Ws, value: Value) {
    ws.send(Message::text(value.to_string()))
        .await
        .expect("send");
}

/// The next JSON message; panics on close or after 30 s.
async fn next(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .expect("a message within 30 s")
            .expect("the connection is open")
            .expect("a readable message");
        if let Message::Text(text) = msg {
            return serde_json::from_str(text.as_str()).expect("JSON");
        }
    }
}

/// Subscribes and returns the acknowledgement (or error) message.
/// Subscribes; returns the server's answer to it (`subscribed` or `error`), skipping the
/// updates of earlier subscriptions that arrive before it.
async fn subscribe(ws: &mut Ws, request: Value) -> Value {
    let mut request = request;
    request["type"] = json!("subscribe");
    send(ws, request).await;
    loop {
        let m = next(ws).await;
        if m["type"] != "execution.updated" {
            return m;
        }
    }
}

/// Reads until `id` reaches a final state; returns its statuses and its log lines (id, text).
async fn follow(ws: &mut Ws, id: &str) -> (Vec<String>, Vec<(i64, String)>) {
    let (mut statuses, mut lines) = (vec![], vec![]);
    loop {
        let m = next(ws).await;
        match m["type"].as_str() {
            Some("execution.updated") if m["id"] == id => {
                let status = m["status"].as_str().unwrap_or_default().to_owned();
                statuses.push(status.clone());
                if ["succeeded", "failed", "timed_out", "cancelled"].contains(&status.as_str()) {
                    return (statuses, lines);
                }
            }
            Some("execution.log") if m["execution_id"] == id && m["stream"] == "stdout" => {
                lines.push((
                    m["id"].as_i64().expect("a log id"),
                    m["line"].as_str().unwrap_or_default().to_owned(),
                ));
            }
            _ => {}
        }
    }
}

fn texts(lines: &[(i64, String)]) -> Vec<&str> {
    lines.iter().map(|(_, l)| l.as_str()).collect()
}

async fn user(c: &Client, email: &str) -> Client {
    let (status, body) = c
        .post(
            "/users",
            json!({"email": email, "password": "user-password", "role": "user"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let resp = c
        .http
        .post(format!("{}/api/v1/auth/login", c.base))
        .json(&json!({"email": email, "password": "user-password"}))
        .send()
        .await
        .expect("login");
    let body: Value = resp.json().await.expect("login body");
    Client {
        token: body["access_token"].as_str().expect("token").to_owned(),
        ..c.clone()
    }
}

#[tokio::test]
async fn a_subscriber_sees_updates_and_log_lines_in_order_and_only_what_it_may_see() {
    let dev = Dev::start(&[]).await;
    let c = &dev.client;
    let bot = c
        .bot(json!({"name": "three", "runtime": "bash",
            "script": "for i in 1 2 3; do echo line $i; sleep 0.2; done"}))
        .await;

    let unauthenticated = tokio_tungstenite::connect_async(ws_url(&c.base)).await;
    match unauthenticated {
        Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 401),
        other => panic!("expected 401, got {other:?}"),
    }
    let bad_token = format!("{}?token=nope", ws_url(&c.base));
    match tokio_tungstenite::connect_async(bad_token).await {
        Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 401),
        other => panic!("expected 401, got {other:?}"),
    }

    let mut all = connect(c).await;
    let ack = subscribe(&mut all, json!({"topics": ["executions"]})).await;
    assert_eq!(ack, json!({"type": "subscribed", "topics": ["executions"]}));
    let id = c.run(&bot, json!({})).await;
    // `after` replays what was printed before the subscription; ids make the seam exact.
    let mut one = connect(c).await;
    let topic = format!("execution:{id}");
    let ack = subscribe(&mut one, json!({"topics": [topic], "after": 0})).await;
    assert_eq!(ack, json!({"type": "subscribed", "topics": [topic]}));

    let (statuses, _) = follow(&mut all, &id).await;
    assert_eq!(
        statuses.first().map(String::as_str),
        Some("queued"),
        "{statuses:?}"
    );
    assert!(statuses.iter().any(|s| s == "running"), "{statuses:?}");
    assert_eq!(
        statuses.last().map(String::as_str),
        Some("succeeded"),
        "{statuses:?}"
    );
    let (_, lines) = follow(&mut one, &id).await;
    assert_eq!(texts(&lines), ["line 1", "line 2", "line 3"]);
    assert!(lines.windows(2).all(|w| w[0].0 < w[1].0), "{lines:?}");

    let bad = subscribe(&mut one, json!({"topics": ["nope"]})).await;
    assert_eq!(bad["type"], "error", "{bad}");
    assert!(
        bad["message"].as_str().unwrap().contains("unknown topic"),
        "{bad}"
    );
    send(&mut one, json!("not a request")).await;
    assert_eq!(next(&mut one).await["type"], "error");
    let still_open = subscribe(&mut one, json!({"topics": ["workers"]})).await;
    assert_eq!(still_open["type"], "subscribed", "{still_open}");

    let other = user(c, "u@test.local").await;
    let mut theirs = connect(&other).await;
    let refused = subscribe(&mut theirs, json!({"topics": [topic]})).await;
    assert_eq!(
        refused,
        json!({"type": "error", "message": format!("no such execution: {id}")})
    );
    let refused = subscribe(&mut theirs, json!({"topics": [format!("bot:{bot}")]})).await;
    assert_eq!(refused["type"], "error", "{refused}");

    // Shutdown closes open connections (1001, going away) rather than waiting on them.
    dev.stop().await;
    let mut close_code = None;
    while let Some(Ok(msg)) = all.next().await {
        if let Message::Close(frame) = msg {
            close_code = frame.map(|f| u16::from(f.code));
        }
    }
    assert_eq!(close_code, Some(1001));
}

#[tokio::test]
async fn a_client_of_one_api_sees_the_live_lines_of_an_execution_created_through_another() {
    let cluster = Cluster::start(1, &[]).await;
    let (_api_b, base_b) = start_api("api-2", &["api"], &cluster.env, cluster.dir.path());
    let a = &cluster.client;
    let b = Client::login(&base_b).await;
    let bot = b
        .bot(json!({"name": "five", "runtime": "bash",
            "script": "sleep 1; for i in 1 2 3 4 5; do echo line $i; sleep 0.1; done"}))
        .await;

    let mut ws = connect(a).await;
    assert_eq!(
        subscribe(&mut ws, json!({"topics": ["executions"]})).await["type"],
        "subscribed"
    );
    let id = b.run(&bot, json!({})).await;
    // The queued update crosses from B to A; the subscription to the lines follows it, a
    // second before the bot prints, and carries no `after`: every line seen is live.
    loop {
        let m = next(&mut ws).await;
        if m["type"] == "execution.updated" && m["id"] == id.as_str() {
            assert_eq!(m["status"], "queued", "{m}");
            break;
        }
    }
    let ack = subscribe(&mut ws, json!({"topics": [format!("execution:{id}")]})).await;
    assert_eq!(ack["type"], "subscribed", "{ack}");
    let (statuses, lines) = follow(&mut ws, &id).await;
    assert_eq!(
        statuses.last().map(String::as_str),
        Some("succeeded"),
        "{statuses:?}"
    );
    assert_eq!(
        texts(&lines),
        ["line 1", "line 2", "line 3", "line 4", "line 5"]
    );
}

#[tokio::test]
async fn a_client_that_stops_reading_is_disconnected_while_a_reading_one_keeps_its_stream() {
    let dev = Dev::start(&[("CODEX32_LOG_LIMIT_KB", "65536")]).await;
    let c = &dev.client;
    // 3000 lines of 10 kB: 30 MB, far more than socket buffers and the server's queue hold.
    let bot = c
        .bot(json!({"name": "chatty", "runtime": "bash",
            "script": "for i in $(seq 3000); do printf 'line %010000d\\n' $i; done"}))
        .await;
    let id = c.run(&bot, json!({})).await;
    let topic = json!({"topics": [format!("execution:{id}")], "after": 0});

    let mut stalled = connect_small_buffer(c).await;
    assert_eq!(
        subscribe(&mut stalled, topic.clone()).await["type"],
        "subscribed"
    );
    let mut reader = connect(c).await;
    assert_eq!(subscribe(&mut reader, topic).await["type"], "subscribed");

    let (statuses, lines) = follow(&mut reader, &id).await;
    assert_eq!(
        statuses.last().map(String::as_str),
        Some("succeeded"),
        "{statuses:?}"
    );
    assert_eq!(lines.len(), 3000);
    assert!(lines.windows(2).all(|w| w[0].0 < w[1].0), "ids increase");

    eventually(LONG, "the stalled client to be closed", || async {
        let text = c.metrics().await?;
        text.lines()
            .any(|l| l.starts_with("codex32_websocket_slow_closes_total") && !l.ends_with(" 0"))
            .then_some(())
    })
    .await;
    // What was in flight drains, then the stream ends short of the whole output.
    let mut received = 0;
    let ended = tokio::time::timeout(LONG, async {
        while let Some(Ok(msg)) = stalled.next().await {
            match msg {
                Message::Text(text) if text.as_str().contains("\"execution.log\"") => received += 1,
                Message::Close(frame) => {
                    assert_eq!(frame.map(|f| u16::from(f.code)), Some(1013));
                }
                _ => {}
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the stalled client's stream did not end");
    assert!(received < 3000, "the stalled client got every line");
}
