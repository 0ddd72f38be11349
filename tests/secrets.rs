//! Secrets end to end on PostgreSQL + Redis: set through the API (never shown again), opened
//! into the bot's environment by the worker, scrubbed from its logs and output, found in the
//! clear nowhere — not in any table, not in any process log — and re-sealed by
//! `codex32 rotate-secrets-key`.

mod common;

use std::time::Duration;

use aws_lc_rs::digest;
use common::{Cluster, read_log, start};
use serde_json::json;

const OLD_KEY: &str = "old-master-key-old-master-key-0123456789";
const NEW_KEY: &str = "new-master-key-new-master-key-0123456789";

/// Every row of the tables that could hold a value, as text.
async fn everything_stored(db: &sqlx::PgPool) -> String {
    let mut all = String::new();
    for table in [
        "executions",
        "execution_logs",
        "execution_events",
        "secrets",
        "audit_log",
        "bots",
        "bot_versions",
        "workers",
    ] {
        let rows: Vec<(String,)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT t::text FROM {table} t"
        )))
        .fetch_all(db)
        .await
        .unwrap();
        rows.into_iter().for_each(|(r,)| all.push_str(&r));
    }
    all
}

fn sha256_hex(text: &str) -> String {
    hex::encode(digest::digest(&digest::SHA256, text.as_bytes()).as_ref())
}

#[tokio::test]
async fn a_secret_reaches_its_bot_and_nothing_else_and_survives_a_key_rotation() {
    let mut cluster = Cluster::start(1, &[("CODEX32_SECRETS_KEY", OLD_KEY)]).await;
    let c = cluster.client.clone();
    let secret = format!("s3cr3t-{}", uuid::Uuid::new_v4().simple());
    let script = r#"echo "token is $API_TOKEN, region $REGION"
h=$(printf '%s' "$API_TOKEN" | sha256sum | cut -c1-64)
echo "{\"token\": \"$API_TOKEN\", \"hash\": \"$h\", \"region\": \"$REGION\"}""#;
    let bot = c
        .bot(json!({"name": "uses-secrets", "runtime": "bash", "script": script}))
        .await;

    let put = |path: String, value: &str| {
        let c = c.clone();
        let body = json!({"value": value});
        async move { c.call(reqwest::Method::PUT, &path, Some(body)).await }
    };
    let (status, body) = put(format!("/bots/{bot}/secrets/API_TOKEN"), "first").await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = put(format!("/bots/{bot}/secrets/API_TOKEN"), &secret).await;
    assert_eq!(status, 200, "replaced: {body}");
    assert_eq!(body["name"], "API_TOKEN");
    assert!(
        body.get("value").is_none() && !body.to_string().contains(&secret),
        "{body}"
    );
    // A user's secret reaches all their bots; a bot's own of the same name wins.
    assert_eq!(put("/secrets/REGION".into(), "eu-west").await.0, 201);
    assert_eq!(
        put("/secrets/API_TOKEN".into(), "the-users-token").await.0,
        201
    );
    let (status, body) = put(format!("/bots/{bot}/secrets/CODEX32_INPUT"), "x").await;
    assert_eq!(
        (status, body["error"]["details"]["field"].clone()),
        (422, json!("name")),
        "{body}"
    );
    let (status, _) = put(format!("/bots/{bot}/secrets/not-a-var"), "x").await;
    assert_eq!(status, 422);

    let id = c.run(&bot, json!({})).await;
    let done = c.finished(&id, Duration::from_secs(60)).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["output"]["token"], "[redacted]", "{done}");
    assert_eq!(
        done["output"]["hash"],
        sha256_hex(&secret),
        "the bot had the real value"
    );
    assert_eq!(
        done["output"]["region"], "[redacted]",
        "a user's secret is a secret too"
    );
    let logs = c.logs(&id).await;
    assert!(
        logs.contains(&"token is [redacted], region [redacted]".to_owned()),
        "{logs:?}"
    );
    let listed = c.get(&format!("/bots/{bot}/secrets")).await;
    assert!(!listed.to_string().contains(&secret), "{listed}");

    // A changed secret reaches the next execution: the worker, which keeps a scope's secrets
    // for a moment, drops them when the bus announces the change.
    let changed = format!("{secret}-changed");
    let path = format!("/bots/{bot}/secrets/API_TOKEN");
    assert_eq!(put(path.clone(), &changed).await.0, 200);
    let again = c.run(&bot, json!({})).await;
    let done = c.finished(&again, Duration::from_secs(60)).await;
    assert_eq!(done["output"]["hash"], sha256_hex(&changed), "{done}");
    assert_eq!(put(path, &secret).await.0, 200);

    let db = cluster.db().await;
    assert!(
        !everything_stored(&db).await.contains(&secret),
        "a table holds the secret"
    );
    for process in ["api", "scheduler", "worker-0"] {
        assert!(
            !read_log(cluster.dir.path(), process).contains(&secret),
            "{process}'s log"
        );
    }

    // Rotation: both keys to the command; afterwards a worker with only the new key runs it.
    let (before,): (String,) = sqlx::query_as("SELECT sealed FROM secrets WHERE name = 'REGION'")
        .fetch_one(&db)
        .await
        .unwrap();
    cluster.workers.remove(0).terminate().await;
    let mut env = cluster.env.clone();
    env.retain(|(k, _)| k != "CODEX32_SECRETS_KEY");
    env.push(("CODEX32_SECRETS_KEY".into(), NEW_KEY.into()));
    env.push(("CODEX32_SECRETS_OLD_KEY".into(), OLD_KEY.into()));
    let (rotate, _) = start("rotate", &["rotate-secrets-key"], &env, cluster.dir.path());
    let status = rotate.terminate_wait().await;
    assert!(
        status.success(),
        "{}",
        read_log(cluster.dir.path(), "rotate")
    );
    let (after,): (String,) = sqlx::query_as("SELECT sealed FROM secrets WHERE name = 'REGION'")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_ne!(
        before.split(':').nth(1),
        after.split(':').nth(1),
        "re-sealed with the new key"
    );
    cluster.add_worker(&[("CODEX32_SECRETS_KEY", NEW_KEY)]);
    let id = c.run(&bot, json!({})).await;
    let done = c.finished(&id, Duration::from_secs(60)).await;
    assert_eq!(done["output"]["hash"], sha256_hex(&secret), "{done}");
}

#[tokio::test]
async fn without_a_key_secrets_are_refused_with_what_to_do() {
    let cluster = Cluster::start(0, &[]).await;
    let c = &cluster.client;
    let (status, body) = c
        .call(
            reqwest::Method::PUT,
            "/secrets/TOKEN",
            Some(json!({"value": "x"})),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("CODEX32_SECRETS_KEY"),
        "{body}"
    );
}
