//! The distributed deployment end to end: `codex32 migrate`, `api`, `scheduler` and workers
//! as separate processes on a private PostgreSQL schema and a private redis-server.

mod common;

use std::time::Duration;

use codex32_shared::testing::eventually;
use common::{Cluster, marker, processes_with_arg};
use nix::sys::signal::Signal;
use serde_json::json;

const LONG: Duration = Duration::from_secs(90);

#[tokio::test]
async fn the_core_flows_pass_with_an_api_a_scheduler_and_two_workers() {
    let cluster = Cluster::start(2, &[]).await;
    let c = &cluster.client;
    let py = c.bot(json!({"name": "py", "runtime": "python",
        "script": "import json, os\nd = json.load(open(os.environ['CODEX32_INPUT']))\njson.dump({'twice': d['n'] * 2}, open(os.environ['CODEX32_OUTPUT'], 'w'))"})).await;
    let three = c
        .bot(json!({"name": "three", "runtime": "bash", "script": "exit 3", "max_attempts": 2}))
        .await;
    let sleepy = c.bot(json!({"name": "sleepy", "runtime": "bash", "script": "sleep 30", "timeout_s": 1, "max_attempts": 1})).await;
    let mark = marker(299);
    let long = c
        .bot(json!({"name": "long", "runtime": "bash", "script": format!("sleep {mark}")}))
        .await;

    let ok = c.run(&py, json!({"n": 21})).await;
    let failing = c.run(&three, json!({})).await;
    let timing_out = c.run(&sleepy, json!({})).await;
    let cancelled = c.run(&long, json!({})).await;

    let e = c.finished(&ok, LONG).await;
    assert_eq!(
        (e["status"].clone(), e["output"].clone()),
        (json!("succeeded"), json!({"twice": 42})),
        "{e}"
    );
    let e = c.finished(&failing, LONG).await;
    assert_eq!(
        (
            e["status"].clone(),
            e["exit_code"].clone(),
            e["attempt"].clone()
        ),
        (json!("failed"), json!(3), json!(2)),
        "{e}"
    );
    assert_eq!(c.finished(&timing_out, LONG).await["status"], "timed_out");

    eventually(LONG, "the long bot to run", || async {
        (processes_with_arg(&mark) == 1).then_some(())
    })
    .await;
    assert_eq!(
        c.post(&format!("/executions/{cancelled}/cancel"), json!({}))
            .await
            .0,
        202
    );
    assert_eq!(c.finished(&cancelled, LONG).await["status"], "cancelled");
    eventually(
        Duration::from_secs(10),
        "the cancelled bot's process to be gone",
        || async { (processes_with_arg(&mark) == 0).then_some(()) },
    )
    .await;

    let ready = c
        .http
        .get(format!("{}/readyz", c.base))
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    let isolation = ready["sandbox"]
        .as_array()
        .expect("isolation in force on /readyz")
        .clone();
    assert!(
        !isolation.is_empty()
            && isolation
                .iter()
                .all(|s| s.as_str().unwrap().contains("cgroup")),
        "{ready}"
    );
    let workers = c.get("/workers").await;
    assert_eq!(
        workers
            .as_array()
            .unwrap()
            .iter()
            .filter(|w| w["state"] == "alive")
            .count(),
        2,
        "{workers}"
    );
}

#[tokio::test]
async fn a_worker_killed_mid_execution_is_replaced_after_its_lease_expires_and_one_result_is_kept()
{
    let mut cluster = Cluster::start(2, &[]).await;
    let c = cluster.client.clone();
    let mark = marker(4);
    let script = format!(
        "echo attempt=$CODEX32_ATTEMPT\nsleep {mark}\necho \"{{\\\"attempt\\\": $CODEX32_ATTEMPT}}\""
    );
    let bot = c
        .bot(json!({"name": "steady", "runtime": "bash", "script": script, "timeout_s": 30}))
        .await;
    let id = c.run(&bot, json!({})).await;
    let worker = eventually(LONG, "the execution to start", || {
        let (c, id) = (c.clone(), id.clone());
        async move {
            let e = c.get(&format!("/executions/{id}")).await;
            (e["status"] == "running").then(|| e["worker_id"].as_str().unwrap().to_owned())
        }
    })
    .await;
    eventually(LONG, "the bot to run", || async {
        (processes_with_arg(&mark) == 1).then_some(())
    })
    .await;
    let index: usize = worker.trim_start_matches('w').parse().unwrap();
    cluster.workers[index].signal(Signal::SIGKILL);
    eventually(
        Duration::from_secs(10),
        "the dead worker's bot to die with it",
        || async { (processes_with_arg(&mark) == 0).then_some(()) },
    )
    .await;

    let e = c.finished(&id, LONG).await;
    assert_eq!(e["status"], "succeeded", "{e}");
    assert_eq!(e["attempt"], 2, "{e}");
    assert_ne!(e["worker_id"].as_str().unwrap(), worker);
    assert_eq!(
        e["output"],
        json!({"attempt": 2}),
        "the result is the second attempt's"
    );

    let db = cluster.db().await;
    let rows: Vec<(String, i32)> = sqlx::query_as("SELECT status, attempt FROM executions")
        .fetch_all(&db)
        .await
        .unwrap();
    assert_eq!(
        rows,
        vec![("succeeded".to_owned(), 2)],
        "exactly one execution, one result"
    );
    cluster.workers.remove(index);
}

#[tokio::test]
async fn flushing_redis_while_1000_executions_are_queued_loses_none_of_them() {
    let mut cluster = Cluster::start(0, &[]).await;
    let c = cluster.client.clone();
    let bot = c
        .bot(json!({"name": "quick", "runtime": "bash", "script": "exit 0", "max_attempts": 1}))
        .await;
    for chunk in 0..20 {
        let runs = (0..50).map(|i| {
            let (c, bot) = (c.clone(), bot.clone());
            async move { c.run(&bot, json!(chunk * 50 + i)).await }
        });
        futures::future::join_all(runs).await;
    }
    let redis = redis::Client::open(cluster.redis.url.as_str()).unwrap();
    let mut conn = redis.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("FLUSHALL").query_async(&mut conn).await.unwrap();

    cluster.add_worker(&[("CODEX32_CONCURRENCY", "8")]);
    cluster.add_worker(&[("CODEX32_CONCURRENCY", "8")]);
    let db = cluster.db().await;
    common::await_succeeded(&db, 1000, Duration::from_secs(240)).await;
    let done = common::count_status(&db, "succeeded").await;
    assert_eq!(done, 1000);
    let (total, reruns): (i64, i64) =
        sqlx::query_as("SELECT count(*), count(*) FILTER (WHERE attempt > 1) FROM executions")
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(total, 1000);
    println!("1000 executions survived FLUSHALL; {reruns} needed more than one attempt");
}

/// Starts a worker with `extra` settings (and no Redis), asserts that it exits with a failure,
/// and returns what it logged.
async fn refused_worker(extra: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut env = common::base_env(dir.path());
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let (proc, _) = common::start("worker", &["worker"], &env, dir.path());
    let status = proc.terminate_wait().await;
    assert!(!status.success());
    common::read_log(dir.path(), "worker")
}

#[tokio::test]
async fn a_worker_refuses_a_runtime_of_no_threads_and_names_the_setting() {
    let log = refused_worker(&[("CODEX32_WORKER_THREADS", "0")]).await;
    assert!(
        log.contains("--threads") && log.contains("1..=256"),
        "{log}"
    );
}

#[tokio::test]
async fn api_and_workers_refuse_to_start_without_redis_and_say_what_to_do() {
    let log = refused_worker(&[]).await;
    assert!(
        log.contains("CODEX32_REDIS_URL") && log.contains("codex32 dev"),
        "{log}"
    );
}

/// A new deployment's `executions` is tiny when its statements are first planned; the cron
/// leader takes new statistics each time it has grown fourfold, so that no plan made then (a
/// scan of the whole table, cheapest at a handful of rows) outlives its youth. Only manual
/// analyses count in `analyze_count` (autovacuum's have a counter of their own), so only the
/// scheduler's can pass this.
#[tokio::test]
async fn the_scheduler_takes_planner_statistics_as_executions_grows() {
    let cluster = Cluster::start(0, &[]).await;
    let c = &cluster.client;
    let bot = c
        .bot(json!({"name": "many", "runtime": "bash", "script": "exit 0"}))
        .await;
    let db = cluster.db().await;
    // Autovacuum's analyses would move the size the scheduler measures growth from.
    sqlx::query("ALTER TABLE executions SET (autovacuum_enabled = off)")
        .execute(&db)
        .await
        .unwrap();
    // (analyses, pages in the statistics, pages now)
    let statistics = || async {
        let row: (i64, i32, i64) = sqlx::query_as(
            "SELECT s.analyze_count, c.relpages, pg_relation_size(c.oid) / 8192
             FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
             WHERE s.relid = to_regclass('executions')",
        )
        .fetch_one(&db)
        .await
        .unwrap();
        row
    };
    let add_1000 = || async {
        let items: Vec<_> = (0..1000).map(|i| json!({"input": {"n": i}})).collect();
        let path = format!("/bots/{bot}/executions/batch");
        let (status, body) = c.post(&path, json!({ "executions": items })).await;
        assert_eq!(status, 202, "{body}");
    };
    assert_eq!(statistics().await.0, 0, "a new table has no statistics");

    add_1000().await;
    add_1000().await;
    assert!(statistics().await.2 >= 16, "{:?}", statistics().await);
    let first = eventually(LONG, "a first analysis", || async {
        let (analyses, pages, _) = statistics().await;
        (analyses > 0).then_some((analyses, pages))
    })
    .await;
    assert_eq!(
        first.0, 1,
        "one analysis while the table has not grown fourfold"
    );
    assert!(
        first.1 >= 16,
        "the statistics see the grown table: {first:?}"
    );

    for _ in 0..20 {
        if statistics().await.2 >= first.1 as i64 * 4 {
            break;
        }
        add_1000().await;
    }
    let second = eventually(LONG, "a second analysis", || async {
        let (analyses, pages, _) = statistics().await;
        (analyses > 1).then_some((analyses, pages))
    })
    .await;
    assert_eq!(second.0, 2);
    assert!(second.1 >= first.1 * 4, "{first:?} then {second:?}");
}
