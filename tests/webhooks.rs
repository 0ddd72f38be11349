//! Webhook triggers through `codex32 dev`: a POST with the URL's token queues an execution
//! with the body as input; signed webhooks check GitHub-style HMAC signatures; delivery ids
//! make redeliveries idempotent; revoked or guessed URLs are 404.

mod common;

use std::time::Duration;

use aws_lc_rs::hmac;
use common::{Client, Dev};
use serde_json::{Value, json};

async fn hook(c: &Client, bot: &str, name: &str, signed: bool) -> Value {
    let (status, body) = c
        .post(
            &format!("/bots/{bot}/webhooks"),
            json!({"name": name, "signed": signed}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    body
}

/// POSTs `body` to a webhook URL with `headers`; returns status and answer.
async fn deliver(c: &Client, url: &str, body: &str, headers: &[(&str, String)]) -> (u16, Value) {
    let mut req = c
        .http
        .post(format!("{}{url}", c.base))
        .header("content-type", "application/json")
        .body(body.to_owned());
    for (name, value) in headers {
        req = req.header(*name, value);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn sign(secret: &str, body: &str) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    format!(
        "sha256={}",
        hex::encode(hmac::sign(&key, body.as_bytes()).as_ref())
    )
}

#[tokio::test]
async fn a_webhook_queues_an_execution_with_its_body_as_input() {
    let dev = Dev::start(&[]).await;
    let c = &dev.client;
    let bot = c
        .bot(json!({"name": "echo", "runtime": "bash", "script": "cat \"$CODEX32_INPUT\"; echo"}))
        .await;
    let created = hook(c, &bot, "github", false).await;
    let url = created["url"].as_str().unwrap().to_owned();
    assert!(
        created["token"].as_str().is_some_and(|t| url.ends_with(t)),
        "{created}"
    );

    let (status, exec) = deliver(c, &url, r#"{"ref": "main"}"#, &[]).await;
    assert_eq!(status, 202, "{exec}");
    let done = c
        .finished(exec["id"].as_str().unwrap(), Duration::from_secs(30))
        .await;
    assert_eq!(done["output"], json!({"ref": "main"}), "{done}");
    let timeline = c
        .get(&format!(
            "/executions/{}/timeline",
            exec["id"].as_str().unwrap()
        ))
        .await;
    assert!(
        timeline[0]["message"]
            .as_str()
            .unwrap()
            .contains("webhook \"github\""),
        "{timeline}"
    );

    // Plain text is a string input; a redelivery with the same id is the same execution.
    let (_, text) = deliver(c, &url, "hello", &[]).await;
    assert_eq!(text["input"], "hello");
    let delivery = [("x-github-delivery", "d-1".to_owned())];
    let (_, first) = deliver(c, &url, "{}", &delivery).await;
    let (status, again) = deliver(c, &url, "{}", &delivery).await;
    assert_eq!((status, &again["id"]), (202, &first["id"]));

    // A wrong token or an unknown hook says nothing more than 404; revoked hooks stop at once.
    let wrong = format!("{}x", url.trim_end_matches(|c: char| c.is_ascii_hexdigit()));
    assert_eq!(deliver(c, &wrong, "{}", &[]).await.0, 404);
    // The use is recorded off the delivery's path: wait for it.
    let mut listed = c.get(&format!("/bots/{bot}/webhooks")).await;
    for _ in 0..100 {
        if listed[0]["last_used_at"].is_string() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        listed = c.get(&format!("/bots/{bot}/webhooks")).await;
    }
    assert!(listed[0]["last_used_at"].is_string(), "{listed}");
    assert!(
        listed[0].get("token").is_none() && listed[0].get("token_hash").is_none(),
        "{listed}"
    );
    assert_eq!(listed[0]["signed"], false);
    let id = created["id"].as_str().unwrap();
    let (status, _) = c
        .call(
            reqwest::Method::DELETE,
            &format!("/bots/{bot}/webhooks/{id}"),
            None,
        )
        .await;
    assert_eq!(status, 204);
    assert_eq!(deliver(c, &url, "{}", &[]).await.0, 404);
}

#[tokio::test]
async fn a_signed_webhook_needs_the_right_signature() {
    let dev = Dev::start(&[]).await;
    let c = &dev.client;
    let bot = c
        .bot(json!({"name": "signed", "runtime": "bash", "script": "true"}))
        .await;
    let created = hook(c, &bot, "ci", true).await;
    let (url, secret) = (
        created["url"].as_str().unwrap(),
        created["hmac_secret"].as_str().unwrap(),
    );
    let body = r#"{"action": "opened"}"#;
    let (status, answer) = deliver(c, url, body, &[]).await;
    assert_eq!(status, 401, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("X-Hub-Signature-256"),
        "{answer}"
    );
    let forged = [("x-hub-signature-256", sign("not-the-secret", body))];
    assert_eq!(deliver(c, url, body, &forged).await.0, 401);
    let tampered = [("x-hub-signature-256", sign(secret, body))];
    assert_eq!(
        deliver(c, url, r#"{"action": "closed"}"#, &tampered)
            .await
            .0,
        401
    );
    let good = [("x-hub-signature-256", sign(secret, body))];
    let (status, exec) = deliver(c, url, body, &good).await;
    assert_eq!(status, 202, "{exec}");
    assert_eq!(exec["input"], json!({"action": "opened"}));
}
