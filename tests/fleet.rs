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
    // Replace each worker in turn, gracefully (SIGTERM), while executions stream in.
    for victim in 0..3 {
        common::await_succeeded(&db, 300 * (victim as i64 + 1) + 1, LONG).await;
        let fresh = cluster.replacement_worker(&[("CODEX32_CONCURRENCY", "6")]);
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
