//! Chaos: thousands of executions while workers are killed (`kill -9`) and restarted every few
//! seconds and Redis loses everything once. Every execution must end, each with exactly one
//! recorded result; the test prints how many ran more than once (at-least-once execution).

mod common;

use std::time::{Duration, Instant};

use common::Cluster;
use nix::sys::signal::Signal;
use serde_json::json;

const EXECUTIONS: usize = 5000;

#[tokio::test]
async fn executions_survive_killed_workers_and_a_flushed_redis_with_one_result_each() {
    let mut cluster = Cluster::start(0, &[("CODEX32_CONCURRENCY", "8")]).await;
    let c = cluster.client.clone();
    let bot = c.bot(json!({"name": "short", "runtime": "bash", "script": "echo '{\"ok\": true}'", "max_attempts": 20,
        "retry": {"backoff_base_s": 0.1, "backoff_max_s": 1.0}})).await;
    for _ in 0..3 {
        cluster.add_worker(&[]);
    }
    for chunk in 0..EXECUTIONS / 50 {
        let runs = (0..50).map(|i| {
            let (c, bot) = (c.clone(), bot.clone());
            async move { c.run(&bot, json!(chunk * 50 + i)).await }
        });
        futures::future::join_all(runs).await;
    }
    let db = cluster.db().await;
    let deadline = Instant::now() + Duration::from_secs(400);
    let (mut kills, mut flushed, mut round) = (0, false, 0usize);
    loop {
        let (done,): (i64,) = sqlx::query_as("SELECT count(*) FROM executions WHERE status IN ('succeeded', 'failed', 'timed_out', 'cancelled')")
            .fetch_one(&db)
            .await
            .unwrap();
        if done as usize == EXECUTIONS {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {done} of {EXECUTIONS} ended"
        );
        if !flushed && done as usize > EXECUTIONS / 3 {
            let redis = redis::Client::open(cluster.redis.url.as_str()).unwrap();
            let mut conn = redis.get_multiplexed_async_connection().await.unwrap();
            let _: () = redis::cmd("FLUSHALL").query_async(&mut conn).await.unwrap();
            flushed = true;
        }
        // Every ~3 s: kill one worker without warning and start a fresh one.
        if round % 6 == 5 {
            let victim = round / 6 % cluster.workers.len();
            cluster.workers[victim].signal(Signal::SIGKILL);
            let fresh = cluster.replacement_worker(&[]);
            drop(std::mem::replace(&mut cluster.workers[victim], fresh));
            kills += 1;
        }
        round += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        flushed && kills > 0,
        "the chaos happened: {kills} kills, flushed: {flushed}"
    );
    let (succeeded,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM executions WHERE status = 'succeeded'")
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(
        succeeded as usize, EXECUTIONS,
        "every execution succeeded in the end"
    );
    let (results, twice) = common::results_per_execution(&db).await;
    assert_eq!(
        (results as usize, twice),
        (EXECUTIONS, 0),
        "exactly one recorded result per execution"
    );
    let (reruns,): (i64,) = sqlx::query_as("SELECT count(*) FROM executions WHERE attempt > 1")
        .fetch_one(&db)
        .await
        .unwrap();
    println!(
        "chaos: {EXECUTIONS} executions, {kills} workers killed, Redis flushed once: all ended with one result each; {reruns} ran more than once"
    );
}
