//! `codex32 dev` end to end: the real binary on SQLite and the in-process queue, driven over
//! HTTP as a user would.

mod common;

use std::time::Duration;

use codex32_shared::testing::eventually;
use common::{Client, Dev, marker, processes_with_arg};
use reqwest::Method;
use serde_json::{Value, json};

const LONG: Duration = Duration::from_secs(60);

const ECHO_PY: &str = "import json, os\n\
data = json.load(open(os.environ['CODEX32_INPUT']))\n\
stdin = json.load(__import__('sys').stdin)\n\
print('hello', data['name'])\n\
json.dump({'greeting': 'hi ' + data['name'], 'same_on_stdin': stdin == data}, open(os.environ['CODEX32_OUTPUT'], 'w'))\n";

#[tokio::test]
async fn a_python_bot_reads_its_input_and_its_output_json_is_the_result() {
    let dev = Dev::start(&[]).await;
    let c = &dev.client;
    let bot = c
        .bot(json!({"name": "greeter", "runtime": "python", "script": ECHO_PY}))
        .await;
    let id = c.run(&bot, json!({"name": "Ada"})).await;
    let e = c.finished(&id, LONG).await;
    assert_eq!(e["status"], "succeeded", "{e}");
    assert_eq!(
        e["output"],
        json!({"greeting": "hi Ada", "same_on_stdin": true})
    );
    assert_eq!(e["exit_code"], 0);
    assert_eq!(e["attempt"], 1);
    assert!(e["duration_ms"].as_i64().is_some() && e["worker_id"].is_string());
    assert!(c.logs(&id).await.contains(&"hello Ada".to_owned()));
}

#[tokio::test]
async fn without_an_output_file_the_last_stdout_line_is_the_result_if_it_is_json() {
    let dev = Dev::start(&[]).await;
    let c = &dev.client;
    let json_bot = c
        .bot(json!({"name": "j", "runtime": "bash", "script": "echo working\necho '{\"n\": 3}'"}))
        .await;
    let text_bot = c
        .bot(json!({"name": "t", "runtime": "bash", "script": "echo just text"}))
        .await;
    let (a, b) = (
        c.run(&json_bot, json!(null)).await,
        c.run(&text_bot, json!(null)).await,
    );
    assert_eq!(c.finished(&a, LONG).await["output"], json!({"n": 3}));
    let e = c.finished(&b, LONG).await;
    assert_eq!(
        (e["status"].clone(), e["output"].clone()),
        (json!("succeeded"), Value::Null)
    );
}

#[tokio::test]
async fn a_bash_bot_that_exits_3_fails_with_exit_code_3_after_max_attempts() {
    let dev = Dev::start(&[]).await;
    let c = &dev.client;
    let bot = c.bot(json!({"name": "three", "runtime": "bash", "script": "echo attempt $CODEX32_ATTEMPT\nexit 3", "max_attempts": 3})).await;
    let id = c.run(&bot, json!({})).await;
    let e = c.finished(&id, LONG).await;
    assert_eq!(e["status"], "failed", "{e}");
    assert_eq!(e["exit_code"], 3);
    assert_eq!(e["attempt"], 3);
    assert!(
        e["error"].as_str().unwrap().contains("exited with code 3"),
        "{e}"
    );
    let logs = c.logs(&id).await;
    for n in 1..=3 {
        assert!(logs.contains(&format!("attempt {n}")), "{logs:?}");
    }
}

#[tokio::test]
async fn a_bot_that_sleeps_past_its_timeout_ends_timed_out() {
    let dev = Dev::start(&[]).await;
    let c = &dev.client;
    let bot = c.bot(json!({"name": "sleepy", "runtime": "bash", "script": "sleep 30", "timeout_s": 1, "max_attempts": 1})).await;
    let id = c.run(&bot, json!({})).await;
    let e = c.finished(&id, Duration::from_secs(20)).await;
    assert_eq!(e["status"], "timed_out", "{e}");
    assert!(e["duration_ms"].as_i64().unwrap() < 10_000, "{e}");
}

#[tokio::test]
async fn executions_work_in_the_runs_dir_when_one_is_set_and_leave_nothing_there() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let runs = scratch.path().join("runs");
    let dev = Dev::start(&[("CODEX32_RUNS_DIR", runs.to_str().expect("utf-8 path"))]).await;
    let c = &dev.client;
    let script = "echo kept > note.txt; sleep 2";
    let bot = c
        .bot(json!({"name": "scribe", "runtime": "bash", "script": script}))
        .await;
    let id = c.run(&bot, json!({})).await;
    let workdir = runs.join(format!("{id}-1"));
    eventually(LONG, "the bot's file in the runs dir", || {
        let found = workdir.join("note.txt").exists();
        async move { found.then_some(()) }
    })
    .await;
    let default_runs = dev.dir.path().join("runs");
    assert!(
        !default_runs.join(format!("{id}-1")).exists(),
        "nothing goes to the data dir's runs"
    );
    let e = c.finished(&id, LONG).await;
    assert_eq!(e["status"], "succeeded", "{e}");
    assert!(
        !workdir.exists(),
        "the working directory is removed after the run"
    );
}

#[tokio::test]
async fn a_cancelled_running_execution_ends_cancelled_and_its_processes_are_gone() {
    let dev = Dev::start(&[]).await;
    let c = &dev.client;
    let mark = marker(299);
    let bot = c.bot(json!({"name": "long", "runtime": "bash", "script": format!("sleep {mark} &\necho started\nwait")})).await;
    let id = c.run(&bot, json!({})).await;
    eventually(LONG, "the bot's child to be running", || async {
        (processes_with_arg(&mark) == 1).then_some(())
    })
    .await;
    let (status, body) = c.post(&format!("/executions/{id}/cancel"), json!({})).await;
    assert_eq!(status, 202, "{body}");
    let e = c.finished(&id, Duration::from_secs(20)).await;
    assert_eq!(e["status"], "cancelled", "{e}");
    eventually(
        Duration::from_secs(10),
        "the bot's child to be gone",
        || async { (processes_with_arg(&mark) == 0).then_some(()) },
    )
    .await;
    let (status, _) = c.post(&format!("/executions/{id}/cancel"), json!({})).await;
    assert_eq!(status, 202, "cancelling a cancelled execution is a no-op");
}

#[tokio::test]
async fn a_queued_execution_cancelled_before_it_starts_never_runs() {
    let dev = Dev::start(&[]).await;
    let c = &dev.client;
    let bot = c
        .bot(json!({"name": "later", "runtime": "bash", "script": "echo ran"}))
        .await;
    let (_, e) = c
        .post(
            &format!("/bots/{bot}/executions"),
            json!({"input": 1, "delay_s": 3600}),
        )
        .await;
    let id = e["id"].as_str().unwrap();
    let (status, e) = c.post(&format!("/executions/{id}/cancel"), json!({})).await;
    assert_eq!((status, e["status"].as_str()), (202, Some("cancelled")));
    assert!(c.logs(id).await.is_empty());
    let queues = c.get("/queues").await;
    assert!(
        queues.as_array().unwrap().iter().all(|q| q["delayed"] == 0),
        "{queues}"
    );
}

#[tokio::test]
async fn an_idempotency_key_returns_the_first_execution_instead_of_a_second() {
    let dev = Dev::start(&[]).await;
    let c = &dev.client;
    let bot = c
        .bot(json!({"name": "once", "runtime": "bash", "script": "true"}))
        .await;
    let path = format!("/bots/{bot}/executions");
    let (s1, first) = c
        .post(&path, json!({"input": 1, "idempotency_key": "order-42"}))
        .await;
    let (s2, second) = c
        .post(&path, json!({"input": 2, "idempotency_key": "order-42"}))
        .await;
    assert_eq!((s1, s2), (202, 202));
    assert_eq!(first["id"], second["id"]);
    assert_eq!(second["input"], 1);
    let listed = c.get(&format!("/executions?bot_id={bot}")).await;
    assert_eq!(listed.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_change_makes_a_new_version_and_executions_keep_the_version_they_ran() {
    let dev = Dev::start(&[]).await;
    let c = &dev.client;
    let bot = c
        .bot(json!({"name": "v", "runtime": "bash", "script": "echo '{\"v\": 1}'"}))
        .await;
    let one = c.run(&bot, json!(null)).await;
    let (status, patched) = c
        .call(
            Method::PATCH,
            &format!("/bots/{bot}"),
            Some(json!({"script": "echo '{\"v\": 2}'"})),
        )
        .await;
    assert_eq!(
        (status, patched["version"].clone()),
        (200, json!(2)),
        "{patched}"
    );
    let two = c.run(&bot, json!(null)).await;
    let (e1, e2) = (c.finished(&one, LONG).await, c.finished(&two, LONG).await);
    assert_eq!(
        (e1["bot_version"].clone(), e2["bot_version"].clone()),
        (json!(1), json!(2))
    );
    assert_eq!(e2["output"], json!({"v": 2}));
    let versions = c.get(&format!("/bots/{bot}/versions")).await;
    assert_eq!(versions.as_array().unwrap().len(), 2);
    let (status, _) = c.call(Method::DELETE, &format!("/bots/{bot}"), None).await;
    assert_eq!(status, 204);
    assert_eq!(
        c.call(Method::GET, &format!("/bots/{bot}"), None).await.0,
        404
    );
    // The bot was read (and kept) for the runs above: the delete must reach that copy too.
    let (status, body) = c
        .post(&format!("/bots/{bot}/executions"), json!({"input": 3}))
        .await;
    assert_eq!(status, 404, "a deleted bot runs no more: {body}");
    assert_eq!(
        c.get(&format!("/executions/{one}")).await["status"],
        "succeeded"
    );
}

#[tokio::test]
async fn bad_input_gets_a_4xx_that_says_what_is_wrong_and_changes_nothing() {
    let dev = Dev::start(&[("CODEX32_MAX_INPUT_KB", "1")]).await;
    let c = &dev.client;
    let bot = c
        .bot(json!({"name": "ok", "runtime": "bash", "script": "true"}))
        .await;
    let big_script = "#".repeat(300 * 1024);
    let runs = format!("/bots/{bot}/executions");
    let cases: Vec<(&str, Value, u16, &str)> = vec![
        (
            "/bots",
            json!({"runtime": "bash", "script": "x"}),
            422,
            "name",
        ),
        (
            "/bots",
            json!({"name": "x", "runtime": "ruby", "script": "x"}),
            422,
            "ruby",
        ),
        (
            "/bots",
            json!({"name": "x", "runtime": "bash", "script": "x", "colour": 1}),
            422,
            "colour",
        ),
        (
            "/bots",
            json!({"name": "x", "runtime": "bash", "script": "x", "timeout_s": "soon"}),
            422,
            "timeout_s",
        ),
        (
            "/bots",
            json!({"name": "x", "runtime": "bash", "script": big_script}),
            422,
            "script",
        ),
        (
            "/bots",
            json!({"name": "no spaces", "runtime": "bash", "script": "x"}),
            422,
            "name",
        ),
        (
            "/bots",
            json!({"name": "ok", "runtime": "bash", "script": "x"}),
            409,
            "exists",
        ),
        (
            "/bots",
            json!({"name": "x", "runtime": "bash", "script": "x", "resources": {"memory_mb": 1}}),
            422,
            "memory_mb",
        ),
        (
            runs.as_str(),
            json!({"input": "x".repeat(2048)}),
            413,
            "limit",
        ),
        (runs.as_str(), json!({"priority": 1000}), 422, "priority"),
        (runs.as_str(), json!({"inptu": 1}), 422, "inptu"),
        (
            "/bots/00000000-0000-7000-8000-000000000000/executions",
            json!({}),
            404,
            "bot",
        ),
        ("/bots/not-a-uuid/executions", json!({}), 400, "UUID"),
    ];
    for (path, body, want, mentions) in cases {
        let (status, err) = c.post(path, body).await;
        assert_eq!(status, want, "POST {path}: {err}");
        let message = err["error"]["message"].as_str().unwrap_or_default();
        assert!(
            err["error"]["code"].is_string() && message.contains(mentions),
            "POST {path}: {err}"
        );
    }
    let raw = c
        .http
        .post(format!("{}/api/v1/bots", c.base))
        .bearer_auth(&c.token)
        .header("content-type", "application/json")
        .body("{\"name\":")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 400);
    let (_, typo) = c
        .post(
            "/bots",
            json!({"name": "x", "runtme": "bash", "script": "x"}),
        )
        .await;
    assert_eq!(typo["error"]["details"]["field"], "runtme", "{typo}");
    assert!(
        !typo["error"]["message"]
            .as_str()
            .unwrap()
            .contains("line 1"),
        "{typo}"
    );
    let (_, missing) = c
        .post("/bots", json!({"runtime": "bash", "script": "x"}))
        .await;
    assert_eq!(missing["error"]["details"]["field"], "name", "{missing}");
    let wrong_method = c
        .http
        .get(format!(
            "{}/api/v1/executions/{}/cancel",
            c.base,
            uuid_nil()
        ))
        .bearer_auth(&c.token)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_method.status(), 405);
    assert_eq!(
        wrong_method.json::<Value>().await.unwrap()["error"]["code"],
        "method_not_allowed"
    );
    let anonymous = c
        .http
        .get(format!("{}/api/v1/bots", c.base))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    assert_eq!(
        c.get("/bots").await.as_array().unwrap().len(),
        1,
        "nothing was created"
    );
    assert!(
        c.get("/executions").await.as_array().unwrap().is_empty(),
        "nothing was queued"
    );
}

#[tokio::test]
async fn api_keys_authenticate_until_revoked_and_viewers_cannot_change_anything() {
    let dev = Dev::start(&[]).await;
    let c = &dev.client;
    let (status, key) = c.post("/api-keys", json!({"name": "ci"})).await;
    assert_eq!(status, 201, "{key}");
    let with_key = Client {
        token: key["key"].as_str().unwrap().to_owned(),
        ..c.clone()
    };
    assert_eq!(with_key.get("/auth/me").await["role"], "api_user");
    let bot = with_key
        .bot(json!({"name": "mine", "runtime": "bash", "script": "true"}))
        .await;
    let (status, _) = c
        .call(
            Method::DELETE,
            &format!("/api-keys/{}", key["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(status, 204);
    assert_eq!(with_key.call(Method::GET, "/bots", None).await.0, 401);

    let (status, _) = c
        .post(
            "/users",
            json!({"email": "v@test.local", "password": "viewer-password", "role": "viewer"}),
        )
        .await;
    assert_eq!(status, 201);
    let resp = c
        .http
        .post(format!("{}/api/v1/auth/login", c.base))
        .json(&json!({"email": "v@test.local", "password": "viewer-password"}))
        .send()
        .await
        .unwrap();
    let viewer = Client {
        token: resp.json::<Value>().await.unwrap()["access_token"]
            .as_str()
            .unwrap()
            .to_owned(),
        ..c.clone()
    };
    assert_eq!(viewer.get(&format!("/bots/{bot}")).await["name"], "mine");
    assert_eq!(
        viewer
            .post(&format!("/bots/{bot}/executions"), json!({}))
            .await
            .0,
        403
    );
    assert_eq!(
        viewer
            .post(
                "/bots",
                json!({"name": "v", "runtime": "bash", "script": "x"})
            )
            .await
            .0,
        403
    );
    assert_eq!(
        c.post(
            "/auth/login",
            json!({"email": ADMIN, "password": "wrong-password"})
        )
        .await
        .0,
        401
    );
    let audit = c.get("/audit?action=api_key.").await;
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["api_key.revoke", "api_key.create"], "{audit}");
    let failed = c.get("/audit?action=auth.login_failed").await;
    assert_eq!(failed[0]["target"], ADMIN, "{failed}");
    assert_eq!(
        viewer.call(Method::GET, "/audit", None).await.0,
        403,
        "the audit log is for admins"
    );
}

const ADMIN: &str = common::ADMIN_EMAIL;

#[tokio::test]
async fn the_openapi_document_covers_every_route_and_the_reference_page_is_served() {
    let dev = Dev::start(&[]).await;
    let c = &dev.client;
    let doc = c
        .http
        .get(format!("{}/api/v1/openapi.json", c.base))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    let paths: Vec<&String> = doc["paths"].as_object().unwrap().keys().collect();
    for route in [
        "/api/v1/auth/login",
        "/api/v1/auth/refresh",
        "/api/v1/auth/me",
        "/api/v1/users",
        "/api/v1/api-keys",
        "/api/v1/api-keys/{id}",
        "/api/v1/bots",
        "/api/v1/bots/{id}",
        "/api/v1/bots/{id}/versions",
        "/api/v1/bots/{id}/executions",
        "/api/v1/bots/{id}/executions/batch",
        "/api/v1/executions",
        "/api/v1/executions/{id}",
        "/api/v1/executions/{id}/logs",
        "/api/v1/executions/{id}/cancel",
        "/api/v1/workers",
        "/api/v1/queues",
        "/api/v1/audit",
        "/api/v1/executions/{id}/timeline",
        "/api/v1/executions/{id}/replay",
        "/api/v1/bots/{id}/pause",
        "/api/v1/bots/{id}/resume",
        "/api/v1/bots/{id}/run-now",
        "/api/v1/bots/{id}/service",
        "/api/v1/bots/{id}/service/start",
        "/api/v1/bots/{id}/service/stop",
        "/api/v1/bots/{id}/service/restart",
        "/api/v1/bots/{id}/webhooks",
        "/api/v1/bots/{id}/webhooks/{hook_id}",
        "/api/v1/hooks/{id}/{token}",
        "/api/v1/auth/logout",
        "/api/v1/auth/register",
        "/api/v1/auth/password-reset",
        "/api/v1/auth/password-reset/confirm",
        "/api/v1/invites",
        "/api/v1/bots/{id}/secrets",
        "/api/v1/bots/{id}/secrets/{name}",
        "/api/v1/secrets",
        "/api/v1/secrets/{name}",
        "/api/v1/auth/password",
        "/api/v1/pools",
        "/api/v1/pools/{name}",
        "/api/v1/workers/{id}/drain",
        "/api/v1/ws",
        "/api/v1/openapi.json",
        "/api/v1/docs",
        "/healthz",
        "/readyz",
        "/metrics",
    ] {
        assert!(
            paths.iter().any(|p| *p == route),
            "{route} missing from {paths:?}"
        );
    }
    let page = c
        .http
        .get(format!("{}/api/v1/docs", c.base))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("<html"));
    for probe in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(
            c.http
                .get(format!("{}{probe}", c.base))
                .send()
                .await
                .unwrap()
                .status(),
            200,
            "{probe}"
        );
    }
}

#[tokio::test]
async fn a_restart_keeps_bots_and_executions_and_runs_what_was_queued_or_running() {
    let dev = Dev::start(&[
        ("CODEX32_CONCURRENCY", "1"),
        ("CODEX32_DRAIN_TIMEOUT_S", "0"),
    ])
    .await;
    let c = dev.client.clone();
    let bot = c.bot(json!({"name": "slow", "runtime": "bash", "script": "sleep 1\necho '{\"done\": true}'", "max_attempts": 1})).await;
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(c.run(&bot, json!(i)).await);
    }
    eventually(LONG, "one execution to be running", || {
        let c = c.clone();
        let first = ids[0].clone();
        async move {
            (c.get(&format!("/executions/{first}")).await["status"] == "running").then_some(())
        }
    })
    .await;
    let dir = dev.stop().await;
    let dev = Dev::start_in(dir, &[]).await;
    let c = &dev.client;
    assert_eq!(c.get(&format!("/bots/{bot}")).await["name"], "slow");
    for id in &ids {
        let e = c.finished(id, LONG).await;
        assert_eq!(e["status"], "succeeded", "{e}");
        assert_eq!(e["output"], json!({"done": true}));
    }
}

fn uuid_nil() -> &'static str {
    "00000000-0000-0000-0000-000000000000"
}
