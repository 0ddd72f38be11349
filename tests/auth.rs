//! Authentication and authorisation end to end through `codex32 dev`: rotating refresh tokens
//! (a reused one revokes its login), logout, password changes, every kind of bad credential,
//! and the access table walked route by route with every role.

mod common;

use codex32_api::rbac::{Access, ROUTES};
use codex32_shared::domain::Role;
use common::{ADMIN_EMAIL, ADMIN_PASSWORD, Client, Dev, JWT_SECRET};
use serde_json::{Value, json};

/// Logs in; returns the status and body.
async fn login(c: &Client, email: &str, password: &str) -> (u16, Value) {
    anonymous(
        c,
        reqwest::Method::POST,
        "/auth/login",
        json!({"email": email, "password": password}),
    )
    .await
}

async fn anonymous(c: &Client, method: reqwest::Method, path: &str, body: Value) -> (u16, Value) {
    let resp = c
        .http
        .request(method, format!("{}/api/v1{path}", c.base))
        .json(&body)
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn refresh(c: &Client, token: &Value) -> (u16, Value) {
    anonymous(
        c,
        reqwest::Method::POST,
        "/auth/refresh",
        json!({"refresh_token": token}),
    )
    .await
}

/// A client acting with `token` (an access token or an API key).
fn acting(c: &Client, token: &str) -> Client {
    Client {
        base: c.base.clone(),
        http: c.http.clone(),
        token: token.to_owned(),
    }
}

/// Creates a user with `role` and returns a client logged in as them.
async fn user(admin: &Client, email: &str, role: &str) -> Client {
    let (status, body) = admin
        .post(
            "/users",
            json!({"email": email, "password": "a-long-password", "role": role}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = login(admin, email, "a-long-password").await;
    assert_eq!(status, 200, "{body}");
    acting(admin, body["access_token"].as_str().unwrap())
}

#[tokio::test]
async fn refresh_tokens_rotate_and_a_reused_one_revokes_its_whole_login() {
    let dev = Dev::start(&[]).await;
    let c = &dev.client;
    let (_, first) = login(c, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let (_, other_login) = login(c, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let (status, second) = refresh(c, &first["refresh_token"]).await;
    assert_eq!(status, 200, "{second}");
    assert_ne!(second["refresh_token"], first["refresh_token"], "rotated");
    let (status, third) = refresh(c, &second["refresh_token"]).await;
    assert_eq!(status, 200, "{third}");
    // The first token again: a replay. It fails, and so does every token of that login.
    let (status, body) = refresh(c, &first["refresh_token"]).await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("already used"),
        "{body}"
    );
    assert_eq!(
        refresh(c, &third["refresh_token"]).await.0,
        401,
        "the family is revoked"
    );
    // Another login is untouched.
    assert_eq!(refresh(c, &other_login["refresh_token"]).await.0, 200);
    let audit = c.get("/audit?action=auth.refresh_reused").await;
    assert_eq!(audit.as_array().map(Vec::len), Some(1), "{audit}");
}

#[tokio::test]
async fn logout_and_a_password_change_end_sessions() {
    let dev = Dev::start(&[]).await;
    let admin = &dev.client;
    let (_, session) = login(admin, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let (status, _) = anonymous(
        admin,
        reqwest::Method::POST,
        "/auth/logout",
        json!({"refresh_token": session["refresh_token"]}),
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(
        refresh(admin, &session["refresh_token"]).await.0,
        401,
        "logged out"
    );

    let ada = user(admin, "ada@example.com", "user").await;
    let (_, s1) = login(admin, "ada@example.com", "a-long-password").await;
    let (_, s2) = login(admin, "ada@example.com", "a-long-password").await;
    let change =
        |current: &str, new: &str| json!({"current_password": current, "new_password": new});
    let (status, body) = ada
        .post(
            "/auth/password",
            change("wrong-password", "another-long-one"),
        )
        .await;
    assert_eq!(
        (status, body["error"]["details"]["field"].clone()),
        (422, json!("current_password")),
        "{body}"
    );
    let (status, body) = ada
        .post("/auth/password", change("a-long-password", "short"))
        .await;
    assert_eq!(
        (status, body["error"]["details"]["field"].clone()),
        (422, json!("new_password")),
        "{body}"
    );
    let (status, body) = ada.post("/api-keys", json!({"name": "ci"})).await;
    assert_eq!(status, 201, "{body}");
    let key = acting(admin, body["key"].as_str().unwrap());
    let (status, _) = key
        .post(
            "/auth/password",
            change("a-long-password", "another-long-one"),
        )
        .await;
    assert_eq!(status, 403, "not with an API key");
    let (status, _) = ada
        .post(
            "/auth/password",
            change("a-long-password", "another-long-one"),
        )
        .await;
    assert_eq!(status, 204);
    assert_eq!(refresh(admin, &s1["refresh_token"]).await.0, 401);
    assert_eq!(refresh(admin, &s2["refresh_token"]).await.0, 401);
    assert_eq!(
        login(admin, "ada@example.com", "a-long-password").await.0,
        401
    );
    assert_eq!(
        login(admin, "ada@example.com", "another-long-one").await.0,
        200
    );
}

fn jwt(secret: &str, typ: &str, exp_offset_s: i64) -> String {
    let now = chrono::Utc::now().timestamp();
    let claims = json!({"sub": uuid::Uuid::now_v7(), "role": "admin", "typ": typ, "iat": now, "exp": now + exp_offset_s});
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

#[tokio::test]
async fn tampered_expired_forged_and_revoked_credentials_get_401() {
    let dev = Dev::start(&[]).await;
    let c = &dev.client;
    let (_, tokens) = login(c, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let access = tokens["access_token"].as_str().unwrap();
    let mut tampered = access.to_owned();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    let (status, body) = c.post("/api-keys", json!({"name": "soon-revoked"})).await;
    assert_eq!(status, 201, "{body}");
    let key = body["key"].as_str().unwrap().to_owned();
    assert_eq!(
        acting(c, &key)
            .call(reqwest::Method::GET, "/auth/me", None)
            .await
            .0,
        200
    );
    let id = body["id"].as_str().unwrap();
    assert_eq!(
        c.call(reqwest::Method::DELETE, &format!("/api-keys/{id}"), None)
            .await
            .0,
        204
    );

    let cases = [
        ("tampered signature", tampered),
        ("expired", jwt(JWT_SECRET, "access", -3600)),
        (
            "signed with another secret",
            jwt("another-secret-another-secret-0123456789", "access", 600),
        ),
        (
            "a refresh token as access",
            tokens["refresh_token"].as_str().unwrap().to_owned(),
        ),
        ("a revoked API key", key),
        ("an unknown API key", "c32_0000000000000000".to_owned()),
        ("garbage", "not-a-token".to_owned()),
    ];
    for (what, token) in cases {
        let (status, body) = acting(c, &token)
            .call(reqwest::Method::GET, "/bots", None)
            .await;
        assert_eq!(status, 401, "{what}: {body}");
        assert_eq!(body["error"]["code"], "unauthorized", "{what}: {body}");
    }
    let resp = c
        .http
        .get(format!("{}/api/v1/bots", c.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401, "no credentials");
    let (status, _) = refresh(c, &json!(jwt(JWT_SECRET, "refresh", -3600))).await;
    assert_eq!(status, 401, "an expired refresh token");
}

/// Every route of the access table, called by every role: refused (403) exactly where the
/// table says so, never 401 with valid credentials; and another user's resources are 404.
#[tokio::test]
async fn every_route_answers_every_role_as_the_access_table_says() {
    let dev = Dev::start(&[]).await;
    let admin = dev.client.clone();
    let user_c = user(&admin, "user@example.com", "user").await;
    let viewer = user(&admin, "viewer@example.com", "viewer").await;
    let (status, body) = user_c
        .post("/api-keys", json!({"name": "bot", "role": "api_user"}))
        .await;
    assert_eq!(status, 201, "{body}");
    let api_user = acting(&admin, body["key"].as_str().unwrap());

    // The admin's bot and execution: others' resources for the user and the API key.
    let bot = admin
        .bot(json!({"name": "admins", "runtime": "bash", "script": "echo hi"}))
        .await;
    let exec = admin.run(&bot, json!({})).await;
    for (who, c) in [("user", &user_c), ("api_user", &api_user)] {
        for path in [
            format!("/bots/{bot}"),
            format!("/executions/{exec}"),
            format!("/executions/{exec}/logs"),
        ] {
            let (status, body) = c.call(reqwest::Method::GET, &path, None).await;
            assert_eq!(status, 404, "{who} GET {path}: {body}");
        }
        let (status, _) = c
            .post(&format!("/executions/{exec}/cancel"), json!({}))
            .await;
        assert_eq!(status, 404, "{who} cancels another's execution");
        let (status, _) = c
            .post(&format!("/bots/{bot}/executions"), json!({"input": 1}))
            .await;
        assert_eq!(status, 404, "{who} runs another's bot");
    }
    assert_eq!(
        viewer.get(&format!("/bots/{bot}")).await["id"],
        bot.as_str(),
        "viewers read all"
    );

    let roles = [
        (Role::Admin, &admin),
        (Role::User, &user_c),
        (Role::Viewer, &viewer),
        (Role::ApiUser, &api_user),
    ];
    let unknown = uuid::Uuid::now_v7().to_string();
    for (method, template, access) in ROUTES {
        if *access == Access::Public || *template == "/api/v1/ws" {
            continue;
        }
        let path = template
            .trim_start_matches("/api/v1")
            .replace("{id}", &unknown)
            .replace("{hook_id}", &unknown)
            .replace("{name}", "matrix-pool");
        let method: reqwest::Method = method.parse().unwrap();
        for (role, c) in roles {
            let body = (method != reqwest::Method::GET).then(|| json!({}));
            let (status, answer) = c.call(method.clone(), &path, body).await;
            let what = format!("{role:?} {method} {template}: {status} {answer}");
            assert_ne!(status, 401, "{what}");
            assert!(status < 500, "{what}");
            if access.allows(role) {
                assert_ne!(status, 403, "{what}");
            } else {
                assert_eq!(status, 403, "{what}");
            }
        }
    }
}

#[tokio::test]
async fn requests_past_the_limit_get_429_with_retry_after_per_caller() {
    let dev = Dev::start(&[
        ("CODEX32_RATE_LIMIT_PER_MIN", "20"),
        ("CODEX32_LOGIN_LIMIT_PER_MIN", "3"),
    ])
    .await;
    let admin = &dev.client;
    let other = user(admin, "other@example.com", "user").await;
    let mut limited = None;
    for _ in 0..25 {
        let resp = admin
            .http
            .get(format!("{}/api/v1/bots", admin.base))
            .bearer_auth(&admin.token)
            .send()
            .await
            .unwrap();
        if resp.status() == 429 {
            let retry: u64 = resp.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            limited = Some((retry, resp.json::<Value>().await.unwrap()));
            break;
        }
    }
    let (retry, body) = limited.expect("the 21st request in a minute is limited");
    assert!((1..=60).contains(&retry), "Retry-After: {retry}");
    assert_eq!(body["error"]["code"], "rate_limited", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("20 requests per minute"),
        "{body}"
    );
    assert_eq!(
        other.call(reqwest::Method::GET, "/bots", None).await.0,
        200,
        "another caller has its own budget"
    );
    // Login attempts: their own, smaller budget per account — even the right password waits.
    // (`user` logged in once already.)
    for _ in 0..2 {
        assert_eq!(
            login(admin, "other@example.com", "wrong-password").await.0,
            401
        );
    }
    let (status, body) = login(admin, "other@example.com", "a-long-password").await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(
        login(admin, ADMIN_EMAIL, ADMIN_PASSWORD).await.0,
        200,
        "another account"
    );
}

#[tokio::test]
async fn api_processes_share_one_budget_through_redis() {
    let cluster = common::Cluster::start(0, &[("CODEX32_RATE_LIMIT_PER_MIN", "10")]).await;
    let (second, url) = common::start_api("api-2", &["api"], &cluster.env, cluster.dir.path());
    let a = &cluster.client;
    let b = acting(a, &a.token);
    let b = Client { base: url, ..b };
    let mut statuses = vec![];
    for _ in 0..7 {
        statuses.push(a.call(reqwest::Method::GET, "/bots", None).await.0);
        statuses.push(b.call(reqwest::Method::GET, "/bots", None).await.0);
    }
    // 14 calls against one budget of 10 across both processes (starting the cluster made one
    // call already): each process refuses some.
    let ok = statuses.iter().filter(|s| **s == 200).count();
    assert!((9..=10).contains(&ok), "{statuses:?}");
    assert!(
        statuses.iter().step_by(2).any(|s| *s == 429),
        "A limits: {statuses:?}"
    );
    assert!(
        statuses.iter().skip(1).step_by(2).any(|s| *s == 429),
        "B limits: {statuses:?}"
    );
    drop(second);
}

/// Counts every update of an API key row in the test's schema, by key.
const COUNT_KEY_WRITES: &str = "
    CREATE TABLE key_writes (key_id uuid NOT NULL);
    CREATE FUNCTION count_key_write() RETURNS trigger LANGUAGE plpgsql
        SET search_path FROM CURRENT
        AS $$ BEGIN INSERT INTO key_writes VALUES (NEW.id); RETURN NEW; END $$;
    CREATE TRIGGER count_key_write AFTER UPDATE ON api_keys
        FOR EACH ROW EXECUTE FUNCTION count_key_write();";

#[tokio::test]
async fn a_busy_api_key_records_its_use_in_one_write_not_one_per_request() {
    let cluster = common::Cluster::start(0, &[("CODEX32_RATE_LIMIT_PER_MIN", "0")]).await;
    let db = cluster.db().await;
    sqlx::raw_sql(COUNT_KEY_WRITES)
        .execute(&db)
        .await
        .expect("install the counting trigger");
    let key = cluster.client.api_key("user").await;
    let caller = acting(&cluster.client, &key);
    // A fresh key seen by 200 requests at once: every one of them reads "never used".
    let calls = (0..200).map(|_| caller.call(reqwest::Method::GET, "/bots", None));
    let statuses = futures::future::join_all(calls).await;
    assert!(statuses.iter().all(|(s, _)| *s == 200), "{statuses:?}");

    let used = |keys: &Value| {
        keys.as_array().expect("a list").iter().any(|k| {
            k["last_used_at"].is_string() && key.starts_with(k["prefix"].as_str().unwrap())
        })
    };
    let mut keys = cluster.client.get("/api-keys").await;
    for _ in 0..100 {
        if used(&keys) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        keys = cluster.client.get("/api-keys").await;
    }
    assert!(used(&keys), "the use is recorded: {keys}");
    // Writes started by the requests have had time to land.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let writes: Vec<i64> = sqlx::query_scalar("SELECT count(*) FROM key_writes GROUP BY key_id")
        .fetch_all(&db)
        .await
        .expect("count");
    assert_eq!(
        writes,
        vec![1],
        "one write for the key, not one per request"
    );
}

#[tokio::test]
async fn the_audit_log_shows_what_a_change_changed() {
    let dev = Dev::start(&[]).await;
    let c = &dev.client;
    let bot = c
        .bot(json!({"name": "audited", "runtime": "bash", "script": "true", "timeout_s": 30}))
        .await;
    let (status, body) = c
        .call(
            reqwest::Method::PATCH,
            &format!("/bots/{bot}"),
            Some(json!({"timeout_s": 90})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = c.post(&format!("/bots/{bot}/pause"), json!({})).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = c
        .call(
            reqwest::Method::PUT,
            "/pools/audited",
            Some(json!({"max_concurrency": 3})),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    let update = &c
        .get(&format!("/audit?action=bot.update&target={bot}"))
        .await[0];
    assert_eq!(update["details"]["before"]["timeout_s"], 30, "{update}");
    assert_eq!(update["details"]["after"]["timeout_s"], 90, "{update}");
    assert_eq!(update["details"]["after"]["version"], 2, "{update}");
    assert!(
        update["details"]["before"].get("script").is_none(),
        "only what changed: {update}"
    );
    let paused = &c.get("/audit?action=bot.paused").await[0];
    assert_eq!(
        (
            &paused["details"]["before"]["value"],
            &paused["details"]["after"]["value"]
        ),
        (&json!("active"), &json!("paused")),
        "{paused}"
    );
    let pool = &c.get("/audit?action=pool.update&target=audited").await[0];
    assert_eq!(pool["details"]["before"]["max_concurrency"], Value::Null);
    assert_eq!(pool["details"]["after"]["max_concurrency"], 3, "{pool}");
    assert!(
        pool["actor_id"].is_string() && pool["at"].is_string(),
        "{pool}"
    );
    assert_eq!(pool["details"]["ip"], "127.0.0.1", "from where: {pool}");
}
