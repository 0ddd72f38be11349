//! The fleet: draining a worker through the API, a rolling restart of every worker under a
//! stream of executions, and the autoscaling signal on `/metrics`.

mod common;

use std::time::Duration;

use codex32_shared::testing::eventually;
use common::Cluster;
use nix::sys::signal::Signal;
use serde_json::json;

const LONG: Duration = Duration::from_secs(120);

#[tokio::test]
async fn a_worker_drained_through_the_api_finishes_its_running_execution_then_exits() {
    let mut cluster = Cluster::start(1, &[]).await;
    let c = cluster.client.clone();
    let bot = c.bot(json!({"name": "steady", "runtime": "bash", "script": "sleep 1.5\necho '{\"done\": true}'"})).await;
    let id = c.run(&bot, json!({})).await;
    eventually(LONG, "the execution to run", || {
        let (c, id) = (c.clone(), id.clone());
        async move { (c.get(&format!("/executions/{id}")).await["status"] == "running").then_some(()) }
    })
    .await;
    let (status, body) = c.post("/workers/w0/drain", json!({})).await;
    assert_eq!(status, 202, "{body}");
    let e = c.finished(&id, LONG).await;
    assert_eq!(
        (e["status"].clone(), e["attempt"].clone()),
        (json!("succeeded"), json!(1)),
        "it finished, not re-queued: {e}"
    );
    let worker = cluster.workers.remove(0);
    assert!(
        worker.terminate_wait().await.success(),
        "the drained worker exits cleanly"
    );
    let workers = c.get("/workers").await;
    assert_eq!(workers[0]["state"], "gone", "{workers}");
    assert_eq!(
        c.post("/workers/w0/drain", json!({})).await.0,
        409,
        "a gone worker cannot be drained"
    );
    assert_eq!(c.post("/workers/nope/drain", json!({})).await.0, 404);
}

#[tokio::test]
async fn a_rolling_restart_of_every_worker_during_2000_executions_runs_each_exactly_once() {
    let mut cluster = Cluster::start(3, &[("CODEX32_CONCURRENCY", "6")]).await;
    let c = cluster.client.clone();
    let db = cluster.db().await;
    let bot = c
        .bot(json!({"name": "quick", "runtime": "bash", "script": "echo '{\"ok\": true}'"}))
        .await;
    let submit = tokio::spawn({
        let (c, bot) = (c.clone(), bot.clone());
        async move {
            for chunk in 0..40 {
                let runs = (0..50).map(|i| {
                    let (c, bot) = (c.clone(), bot.clone());
                    async move { c.run(&bot, json!(chunk * 50 + i)).await }
                });
                futures::future::join_all(runs).await;
            }
        }
    });
    // Replace each worker in turn, gracefully (SIGTERM), while executions stream in; the
    // replacements run on runtimes of 1 (the default), 2 and 3 threads.
    for victim in 0..3 {
        common::await_succeeded(&db, 300 * (victim as i64 + 1) + 1, LONG).await;
        let threads = (victim + 1).to_string();
        let fresh = cluster.replacement_worker(&[
            ("CODEX32_CONCURRENCY", "6"),
            ("CODEX32_WORKER_THREADS", &threads),
        ]);
        let old = std::mem::replace(&mut cluster.workers[victim], fresh);
        old.signal(Signal::SIGTERM);
        assert!(
            old.terminate_wait().await.success(),
            "worker {victim} drains and exits cleanly"
        );
    }
    submit.await.unwrap();
    common::await_succeeded(&db, 2000, LONG).await;
    let (results, twice) = common::results_per_execution(&db).await;
    assert_eq!((results, twice), (2000, 0), "one result each");
    let (reruns,): (i64,) = sqlx::query_as("SELECT count(*) FROM executions WHERE attempt > 1")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(reruns, 0, "a graceful restart re-runs nothing");
}

#[tokio::test]
async fn metrics_show_waiting_work_its_age_and_busy_slots_per_pool() {
    let cluster = Cluster::start(1, &[]).await;
    let c = &cluster.client;
    let gpu = c
        .bot(json!({"name": "gpu", "runtime": "bash", "script": "true", "pool": "gpu"}))
        .await;
    c.run(&gpu, json!({})).await;
    let text = eventually(
        LONG,
        "the gpu pool's oldest waiting age to grow",
        || async {
            let text = c.metrics().await?;
            let age: f64 = text
                .lines()
                .find(|l| l.starts_with("codex32_pool_oldest_waiting_seconds{pool=\"gpu\"}"))?
                .rsplit(' ')
                .next()?
                .parse()
                .ok()?;
            (age >= 1.0).then_some(text)
        },
    )
    .await;
    assert!(
        text.contains("codex32_pool_waiting{pool=\"gpu\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("codex32_pool_busy_slots{pool=\"gpu\"} 0"),
        "{text}"
    );
    assert!(text.contains("codex32_queue_ready{pool=\"gpu\"}"), "{text}");
}

#[tokio::test]
async fn a_worker_says_it_is_unhealthy_while_redis_is_down_and_heals_without_restarting() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let bind = format!("127.0.0.1:{port}");
    let mut cluster = Cluster::start(0, &[]).await;
    cluster.add_worker(&[("CODEX32_WORKER_HEALTH_BIND", bind.as_str())]);
    cluster.await_workers(1).await;
    let http = reqwest::Client::new();
    let health = |want: u16| {
        let (http, url) = (http.clone(), format!("http://{bind}/healthz"));
        async move {
            let resp = http.get(&url).send().await.ok()?;
            let status = resp.status().as_u16();
            let body: serde_json::Value = resp.json().await.ok()?;
            (status == want).then_some(body)
        }
    };
    let body = eventually(LONG, "a healthy worker", || health(200)).await;
    assert_eq!(body["worker_id"], "w0", "{body}");

    cluster.redis.stop();
    let body = eventually(LONG, "the worker to say it cannot reach Redis", || {
        health(503)
    })
    .await;
    assert_eq!(body["unreachable"][0]["backend"], "queue", "{body}");

    cluster.redis.restart();
    eventually(LONG, "the worker to heal", || health(200)).await;
    let c = &cluster.client;
    let bot = c
        .bot(json!({"name": "after-outage", "runtime": "bash", "script": "echo '{\"ok\": 1}'"}))
        .await;
    let id = c.run(&bot, json!({})).await;
    assert_eq!(c.finished(&id, LONG).await["status"], "succeeded");
    assert!(
        std::path::Path::new(&format!("/proc/{}", cluster.workers[0].pid())).exists(),
        "the same worker process carried on"
    );
    let metrics = http
        .get(format!("http://{bind}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"codex32_worker_backend_up{worker="w0",backend="queue"} 1"#),
        "{metrics}"
    );
}
