//! Accounts through `codex32 dev`: registration off, by invite and open; and the password
//! reset flow with its mail caught by a local fake mail relay speaking the relay's HTTP.

mod common;

use std::sync::{Arc, Mutex};

use axum::Json;
use axum::routing::post;
use common::{Client, Dev};
use serde_json::{Value, json};

async fn anonymous(c: &Client, path: &str, body: Value) -> (u16, Value) {
    let resp = c
        .http
        .post(format!("{}/api/v1{path}", c.base))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn register(c: &Client, email: &str, invite: Option<&str>) -> (u16, Value) {
    let mut body = json!({"email": email, "password": "a-long-password"});
    if let Some(invite) = invite {
        body["invite"] = json!(invite);
    }
    anonymous(c, "/auth/register", body).await
}

#[tokio::test]
async fn registration_follows_its_mode() {
    let off = Dev::start(&[]).await;
    let (status, body) = register(&off.client, "a@example.com", None).await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("ask an admin"),
        "{body}"
    );

    let open = Dev::start(&[("CODEX32_REGISTRATION", "open")]).await;
    let (status, body) = register(&open.client, "A@Example.com", None).await;
    assert_eq!(
        (status, body["role"].clone()),
        (201, json!("user")),
        "{body}"
    );
    assert_eq!(
        register(&open.client, "a@example.com", None).await.0,
        409,
        "taken"
    );

    let invite = Dev::start(&[("CODEX32_REGISTRATION", "invite")]).await;
    let c = &invite.client;
    let (status, body) = register(c, "b@example.com", None).await;
    assert_eq!(
        (status, body["error"]["details"]["field"].clone()),
        (422, json!("invite")),
        "{body}"
    );
    let (status, inv) = c
        .post(
            "/invites",
            json!({"email": "b@example.com", "role": "viewer"}),
        )
        .await;
    assert_eq!(status, 201, "{inv}");
    let token = inv["invite"].as_str().unwrap();
    assert_eq!(
        register(c, "c@example.com", Some(token)).await.0,
        422,
        "another address"
    );
    let (status, body) = register(c, "b@example.com", Some(token)).await;
    assert_eq!(
        (status, body["role"].clone()),
        (201, json!("viewer")),
        "{body}"
    );
    let (status, body) = register(c, "d@example.com", Some(token)).await;
    assert_eq!(status, 422, "used: {body}");
}

#[tokio::test]
async fn a_password_reset_link_works_once_and_ends_sessions() {
    // The fake relay: records every mail posted to it.
    let mails: Arc<Mutex<Vec<Value>>> = Arc::default();
    let app = axum::Router::new().route(
        "/send",
        post({
            let mails = mails.clone();
            move |Json(mail): Json<Value>| async move {
                mails.lock().unwrap().push(mail);
                "queued"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let relay = format!("http://{}/send", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let dev = Dev::start(&[
        ("CODEX32_MAILER_URL", relay.as_str()),
        ("CODEX32_PUBLIC_URL", "https://bots.example.com/"),
    ])
    .await;
    let c = &dev.client;
    let (status, body) = c
        .post(
            "/users",
            json!({"email": "ada@example.com", "password": "old-password-1"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (_, session) = anonymous(
        c,
        "/auth/login",
        json!({"email": "ada@example.com", "password": "old-password-1"}),
    )
    .await;

    // Unknown addresses get the same answer, and no mail.
    assert_eq!(
        anonymous(
            c,
            "/auth/password-reset",
            json!({"email": "nobody@example.com"})
        )
        .await
        .0,
        202
    );
    assert!(mails.lock().unwrap().is_empty());
    assert_eq!(
        anonymous(
            c,
            "/auth/password-reset",
            json!({"email": "ada@example.com"})
        )
        .await
        .0,
        202
    );
    let mail = mails.lock().unwrap().pop().expect("a mail to the relay");
    assert_eq!(mail["to"], "ada@example.com");
    let text = mail["text"].as_str().unwrap();
    assert!(
        text.contains("https://bots.example.com/api/v1/auth/password-reset/confirm"),
        "{text}"
    );
    let token = text
        .split("\"token\": \"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the token in the mail");

    let confirm = |token: &str, password: &str| json!({"token": token, "new_password": password});
    let (status, body) =
        anonymous(c, "/auth/password-reset/confirm", confirm(token, "short")).await;
    assert_eq!(
        (status, body["error"]["details"]["field"].clone()),
        (422, json!("new_password"))
    );
    assert_eq!(
        anonymous(
            c,
            "/auth/password-reset/confirm",
            confirm(token, "new-password-2")
        )
        .await
        .0,
        204
    );
    assert_eq!(
        anonymous(
            c,
            "/auth/password-reset/confirm",
            confirm(token, "new-password-3")
        )
        .await
        .0,
        401,
        "once"
    );
    assert_eq!(
        anonymous(
            c,
            "/auth/password-reset/confirm",
            confirm("guess", "new-password-3")
        )
        .await
        .0,
        401
    );
    let login = |p: &str| json!({"email": "ada@example.com", "password": p});
    assert_eq!(
        anonymous(c, "/auth/login", login("old-password-1")).await.0,
        401
    );
    assert_eq!(
        anonymous(c, "/auth/login", login("new-password-2")).await.0,
        200
    );
    let (status, _) = anonymous(
        c,
        "/auth/refresh",
        json!({"refresh_token": session["refresh_token"]}),
    )
    .await;
    assert_eq!(status, 401, "the reset ended the old session");
}
