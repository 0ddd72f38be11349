//! Scheduling and delivery guarantees end to end, on PostgreSQL and Redis with real
//! processes: cron with two schedulers and a leader killed mid-run, overlap policies, retries
//! with backoff in the timeline, dead letters and replay, and per-bot concurrency limits.

mod common;

use std::time::Duration;

use codex32_shared::testing::eventually;
use common::{Client, Cluster};
use nix::sys::signal::Signal;
use serde_json::{Value, json};

const LONG: Duration = Duration::from_secs(90);

async fn timeline(c: &Client, id: &str) -> Vec<(String, String)> {
    let events = c.get(&format!("/executions/{id}/timeline")).await;
    events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap().to_owned(),
                e["message"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_flaky_bot_succeeds_on_attempt_3_and_its_backoff_is_in_the_timeline() {
    let cluster = Cluster::start(1, &[]).await;
    let c = &cluster.client;
    let script = "echo attempt $CODEX32_ATTEMPT\n[ \"$CODEX32_ATTEMPT\" -lt 3 ] && exit 1\necho '{\"ok\": true}'";
    let bot = c.bot(json!({"name": "flaky", "runtime": "bash", "script": script, "retry": {"max_attempts": 5, "backoff_base_s": 0.2}})).await;
    let id = c.run(&bot, json!({})).await;
    let e = c.finished(&id, LONG).await;
    assert_eq!(
        (
            e["status"].clone(),
            e["attempt"].clone(),
            e["max_attempts"].clone()
        ),
        (json!("succeeded"), json!(3), json!(5)),
        "{e}"
    );
    let kinds: Vec<String> = timeline(c, &id).await.into_iter().map(|(k, _)| k).collect();
    assert_eq!(
        kinds,
        [
            "queued", "leased", "retry", "leased", "retry", "leased", "finished"
        ],
        "{kinds:?}"
    );
    let retries: Vec<String> = timeline(c, &id)
        .await
        .into_iter()
        .filter(|(k, _)| k == "retry")
        .map(|(_, m)| m)
        .collect();
    assert!(
        retries[0].contains("exited with code 1; retry 2 of 5 in"),
        "{retries:?}"
    );
    assert!(retries[1].contains("retry 3 of 5 in"), "{retries:?}");
}

#[tokio::test]
async fn a_bot_that_always_fails_ends_dead_and_its_replay_is_a_new_execution() {
    let cluster = Cluster::start(1, &[]).await;
    let c = &cluster.client;
    let bot = c.bot(json!({"name": "doomed", "runtime": "bash", "script": "exit 7", "max_attempts": 2, "retry": {"backoff_base_s": 0.1}})).await;
    let stop = c.bot(json!({"name": "hopeless", "runtime": "bash", "script": "exit 2", "max_attempts": 5, "retry": {"no_retry_exit_codes": [2]}})).await;
    let marker = c.bot(json!({"name": "honest", "runtime": "bash", "script": "echo '::no-retry:: the config is wrong'\nexit 1", "max_attempts": 5})).await;
    let (id, stop_id, marker_id) = (
        c.run(&bot, json!({"n": 1})).await,
        c.run(&stop, json!({})).await,
        c.run(&marker, json!({})).await,
    );
    let e = c.finished(&id, LONG).await;
    assert_eq!(
        (e["status"].clone(), e["attempt"].clone()),
        (json!("failed"), json!(2)),
        "{e}"
    );
    for (id, why) in [
        (&stop_id, "retry.no_retry_exit_codes"),
        (&marker_id, "::no-retry::"),
    ] {
        let e = c.finished(id, LONG).await;
        assert_eq!(
            (e["status"].clone(), e["attempt"].clone()),
            (json!("failed"), json!(1)),
            "not retried: {e}"
        );
        assert!(e["error"].as_str().unwrap().contains(why), "{e}");
    }
    let dead = c.get("/executions?status=dead").await;
    let dead_ids: Vec<&str> = dead
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert!(
        dead_ids.contains(&id.as_str()) && dead_ids.len() == 3,
        "{dead_ids:?}"
    );
    let (status, replay) = c.post(&format!("/executions/{id}/replay"), json!({})).await;
    assert_eq!(status, 202, "{replay}");
    assert_ne!(replay["id"], json!(id));
    assert_eq!(
        (replay["replay_of"].clone(), replay["input"].clone()),
        (json!(id), json!({"n": 1}))
    );
    assert_eq!(
        c.finished(replay["id"].as_str().unwrap(), LONG).await["status"],
        "failed"
    );
    assert_eq!(
        c.call(reqwest::Method::GET, "/executions?status=finished", None)
            .await
            .0,
        422
    );
}

#[tokio::test]
async fn with_max_concurrency_2_never_more_than_2_run_and_the_waiting_ones_say_why() {
    let cluster = Cluster::start(2, &[("CODEX32_CONCURRENCY", "6")]).await;
    let c = &cluster.client;
    let bot = c.bot(json!({"name": "narrow", "runtime": "bash", "script": "sleep 0.5", "max_concurrency": 2})).await;
    let mut ids = Vec::new();
    for i in 0..10 {
        ids.push(c.run(&bot, json!(i)).await);
    }
    let spans = succeeded_spans(c, &ids).await;
    let most = most_at_once(&spans);
    assert!(
        most <= 2,
        "{most} ran at once under a limit of 2: {spans:?}"
    );
    let mut waited = 0;
    for id in &ids {
        if let Some((_, m)) = timeline(c, id)
            .await
            .into_iter()
            .find(|(k, _)| k == "waiting")
        {
            assert!(
                m.contains("concurrency limit of bot") && m.contains("/2 running"),
                "{m}"
            );
            waited += 1;
        }
    }
    assert!(waited > 0, "some executions waited for a slot and said so");
}

type Time = chrono::DateTime<chrono::Utc>;

/// Waits for each execution, checks it succeeded, and returns when it ran.
async fn succeeded_spans(c: &Client, ids: &[String]) -> Vec<(Time, Time)> {
    let mut spans = Vec::new();
    for id in ids {
        let e = c.finished(id, LONG).await;
        assert_eq!(e["status"], "succeeded", "{e}");
        spans.push((ts(&e["started_at"]), ts(&e["finished_at"])));
    }
    spans
}

/// The most executions running at once, from their `started_at`/`finished_at`. A start is
/// stamped just before its claim's SQL runs (which may wait a few ms for a connection or a
/// lock) and a finish just before it is written, so spans that overlap by less than `SKEW`
/// are not counted; a real breach with 0.5 s bots overlaps by far more.
fn most_at_once(spans: &[(Time, Time)]) -> usize {
    const SKEW: chrono::Duration = chrono::Duration::milliseconds(200);
    spans
        .iter()
        .map(|(s, _)| {
            spans
                .iter()
                .filter(|(a, b)| a <= s && *s + SKEW < *b)
                .count()
        })
        .max()
        .unwrap_or(0)
}

fn ts(v: &Value) -> chrono::DateTime<chrono::Utc> {
    v.as_str().unwrap().parse().unwrap()
}

/// Fire times of a bot's executions (the schedule's, not when they ran), sorted.
async fn fire_times(db: &sqlx::PgPool, bot: &str) -> Vec<i64> {
    let rows: Vec<(chrono::DateTime<chrono::Utc>,)> =
        sqlx::query_as("SELECT scheduled_for FROM executions WHERE bot_id = $1::uuid AND scheduled_for IS NOT NULL ORDER BY scheduled_for")
            .bind(bot)
            .fetch_all(db)
            .await
            .unwrap();
    rows.into_iter().map(|(t,)| t.timestamp()).collect()
}

#[tokio::test]
async fn an_every_second_schedule_fires_once_a_second_with_two_schedulers_and_survives_the_leaders_death()
 {
    let mut cluster = Cluster::start(1, &[("CODEX32_CONCURRENCY", "8")]).await;
    cluster.add_scheduler();
    let c = cluster.client.clone();
    let db = cluster.db().await;
    let bot = c
        .bot(
            json!({"name": "ticker", "runtime": "bash", "script": "true",
        "schedule": {"cron": "* * * * * *", "overlap": "allow", "missed": "run_once"}}),
        )
        .await;
    let view = c.get(&format!("/bots/{bot}")).await;
    assert_eq!(view["next_runs"].as_array().unwrap().len(), 5, "{view}");

    let start = chrono::Utc::now().timestamp() + 1;
    tokio::time::sleep(Duration::from_secs(31)).await;
    let fired: Vec<i64> = fire_times(&db, &bot)
        .await
        .into_iter()
        .filter(|t| (start..start + 30).contains(t))
        .collect();
    assert!(
        (29..=31).contains(&fired.len()),
        "{} fires in 30 s: {fired:?}",
        fired.len()
    );
    let (dupes,): (i64,) = sqlx::query_as("SELECT count(*) FROM (SELECT scheduled_for FROM executions GROUP BY bot_id, scheduled_for HAVING count(*) > 1) d")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(dupes, 0, "no fire time has two executions");

    let (holder,): (String,) =
        sqlx::query_as("SELECT holder FROM leader_leases WHERE name = 'cron'")
            .fetch_one(&db)
            .await
            .unwrap();
    let leader_pid: i32 = holder.rsplit('-').nth(1).unwrap().parse().unwrap();
    let killed = chrono::Utc::now().timestamp();
    if cluster.scheduler.pid() == leader_pid {
        cluster.scheduler.signal(Signal::SIGKILL);
    } else {
        cluster
            .more_schedulers
            .iter()
            .find(|s| s.pid() == leader_pid)
            .expect("the leader is one of ours")
            .signal(Signal::SIGKILL);
    }
    tokio::time::sleep(Duration::from_secs(10)).await;
    let after: Vec<i64> = fire_times(&db, &bot)
        .await
        .into_iter()
        .filter(|t| (killed..killed + 10).contains(t))
        .collect();
    let lost = 10 - after.len() as i64;
    assert!(
        lost <= 5,
        "lost {lost} fire times around a takeover: {after:?}"
    );
    let catch_up: (i64,) = sqlx::query_as(
        "SELECT count(*) FROM executions WHERE bot_id = $1::uuid AND queued_at - scheduled_for > interval '1500 milliseconds'",
    )
    .bind(&bot)
    .fetch_one(&db)
    .await
    .unwrap();
    assert!(
        lost == 0 || catch_up.0 >= 1,
        "run_once made up one missed fire time after the takeover"
    );
}

#[tokio::test]
async fn a_schedule_created_between_ticks_fires_on_time() {
    // Ticks a minute apart: only the bot change heard on the bus can tell the cron leader of
    // the new schedule before its first fire times.
    let cluster = Cluster::start(1, &[("CODEX32_SCHEDULER_TICK_MS", "60000")]).await;
    let c = cluster.client.clone();
    let db = cluster.db().await;
    let bot = c
        .bot(
            json!({"name": "new-ticker", "runtime": "bash", "script": "true",
            "schedule": {"cron": "* * * * * *", "overlap": "allow", "missed": "skip"}}),
        )
        .await;
    let fired = eventually(
        Duration::from_secs(20),
        "three fires of the new schedule",
        || {
            let (db, bot) = (db.clone(), bot.clone());
            async move {
                let times = fire_times(&db, &bot).await;
                (times.len() >= 3).then_some(times)
            }
        },
    )
    .await;
    let (late,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM executions WHERE bot_id = $1::uuid AND queued_at - scheduled_for > interval '1 second'",
    )
    .bind(&bot)
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(late, 0, "every fire within a second of its time: {fired:?}");
}

#[tokio::test]
async fn overlap_policies_behave_as_named_with_a_bot_slower_than_its_schedule() {
    let cluster = Cluster::start(2, &[("CODEX32_CONCURRENCY", "12")]).await;
    let c = cluster.client.clone();
    let db = cluster.db().await;
    let mut bots = Vec::new();
    for policy in ["skip", "queue_one", "allow", "cancel_previous"] {
        let spec = json!({"name": format!("slow-{policy}"), "runtime": "bash", "script": "sleep 3.5", "max_attempts": 1,
            "schedule": {"cron": "* * * * * *", "overlap": policy, "missed": "skip"}});
        bots.push((policy, c.bot(spec).await));
    }
    tokio::time::sleep(Duration::from_secs(8)).await;
    for (_, bot) in &bots {
        c.call(reqwest::Method::POST, &format!("/bots/{bot}/pause"), None)
            .await;
    }
    for (policy, bot) in &bots {
        let rows: Vec<(String, Option<Time>, Option<Time>)> =
            sqlx::query_as("SELECT status, started_at, finished_at FROM executions WHERE bot_id = $1::uuid ORDER BY scheduled_for")
                .bind(bot)
                .fetch_all(&db)
                .await
                .unwrap();
        let made = rows.len();
        let cancelled = rows.iter().filter(|r| r.0 == "cancelled").count();
        match *policy {
            "skip" => assert!(
                (2..=4).contains(&made) && cancelled == 0,
                "skip made {made}: {rows:?}"
            ),
            "queue_one" => assert!(
                (2..=5).contains(&made) && cancelled == 0,
                "queue_one made {made}: {rows:?}"
            ),
            "allow" => assert!(made >= 6, "allow made {made}"),
            _ => assert!(
                made >= 6 && cancelled >= made - 2,
                "cancel_previous made {made}, cancelled {cancelled}: {rows:?}"
            ),
        }
    }
}

#[tokio::test]
async fn an_execution_for_a_pool_without_workers_says_why_it_waits_and_runs_on_a_worker_of_that_pool()
 {
    let mut cluster = Cluster::start(1, &[]).await;
    let c = cluster.client.clone();
    let gpu = c
        .bot(json!({"name": "needs-gpu", "runtime": "bash", "script": "true", "pool": "gpu"}))
        .await;
    let plain = c
        .bot(json!({"name": "plain", "runtime": "bash", "script": "true"}))
        .await;
    let waiting = c.run(&gpu, json!({})).await;
    let reason = eventually(LONG, "the waiting reason", || {
        let (c, id) = (c.clone(), waiting.clone());
        async move {
            timeline(&c, &id)
                .await
                .into_iter()
                .find(|(k, _)| k == "waiting")
                .map(|(_, m)| m)
        }
    })
    .await;
    assert_eq!(reason, "waiting: no worker in pool gpu");
    assert_eq!(
        c.get(&format!("/executions/{waiting}")).await["status"],
        "queued"
    );

    cluster.add_worker(&[("CODEX32_POOLS", "gpu")]);
    let e = c.finished(&waiting, LONG).await;
    assert_eq!(
        (e["status"].clone(), e["worker_id"].clone()),
        (json!("succeeded"), json!("w1")),
        "{e}"
    );
    for _ in 0..3 {
        let (g, p) = (c.run(&gpu, json!({})).await, c.run(&plain, json!({})).await);
        assert_eq!(
            c.finished(&g, LONG).await["worker_id"],
            "w1",
            "gpu work only on the gpu worker"
        );
        assert_eq!(
            c.finished(&p, LONG).await["worker_id"],
            "w0",
            "default work only on the default worker"
        );
    }
}

#[tokio::test]
async fn a_pool_limit_caps_running_executions_across_workers_and_bots() {
    let cluster = Cluster::start(2, &[("CODEX32_CONCURRENCY", "6")]).await;
    let c = &cluster.client;
    let (status, pool) = c
        .call(
            reqwest::Method::PUT,
            "/pools/default",
            Some(json!({"max_concurrency": 3})),
        )
        .await;
    assert_eq!(
        (status, pool["max_concurrency"].clone()),
        (200, json!(3)),
        "{pool}"
    );
    let a = c
        .bot(json!({"name": "a", "runtime": "bash", "script": "sleep 0.5"}))
        .await;
    let b = c
        .bot(json!({"name": "b", "runtime": "bash", "script": "sleep 0.5"}))
        .await;
    let mut ids = Vec::new();
    for i in 0..6 {
        ids.push(c.run(&a, json!(i)).await);
        ids.push(c.run(&b, json!(i)).await);
    }
    let spans = succeeded_spans(c, &ids).await;
    let most = most_at_once(&spans);
    assert!(most <= 3, "{most} ran at once in a pool limited to 3");
    let mut reasons = Vec::new();
    for id in &ids {
        reasons.extend(
            timeline(c, id)
                .await
                .into_iter()
                .filter(|(k, _)| k == "waiting")
                .map(|(_, m)| m),
        );
    }
    assert!(
        reasons
            .iter()
            .any(|m| m.starts_with("waiting: concurrency limit of pool default (3/3 running)")),
        "{reasons:?}"
    );
    let (status, _) = c
        .call(
            reqwest::Method::PUT,
            "/pools/default",
            Some(json!({"max_concurrency": 0})),
        )
        .await;
    assert_eq!(status, 422);
}
