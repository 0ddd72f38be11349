//! Service bots end to end through the `codex32` binary: kept running, restarted by policy
//! with growing delays into `crash_loop`, restarted by a failing health probe or through the
//! API, replaced by a new version, stopped; and moved to another worker when theirs is
//! killed or drained (PostgreSQL + Redis).

mod common;

use std::time::{Duration, Instant};

use codex32_shared::testing::eventually;
use common::{Client, Cluster, Dev, marker, processes_with_arg};
use nix::sys::signal::Signal;
use serde_json::{Value, json};

async fn service(c: &Client, bot: &str) -> Value {
    c.get(&format!("/bots/{bot}/service")).await
}

/// Waits until the service is in `state` (and, if given, on a worker other than `not_on`).
async fn await_state(c: &Client, bot: &str, state: &str, not_on: Option<&str>) -> Value {
    eventually(
        Duration::from_secs(30),
        &format!("service {bot} to be {state}"),
        || async move {
            let s = service(c, bot).await;
            let moved = not_on.is_none_or(|w| s["worker_id"].as_str().is_some_and(|x| x != w));
            (s["state"] == state && moved).then_some(s)
        },
    )
    .await
}

async fn timeline(c: &Client, exec: &str) -> Vec<Value> {
    c.get(&format!("/executions/{exec}/timeline"))
        .await
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The delays (seconds) announced by each restart in the timeline.
fn restart_delays(events: &[Value]) -> Vec<f64> {
    events
        .iter()
        .filter(|e| e["kind"] == "restarted")
        .filter_map(|e| {
            let m = e["message"].as_str()?;
            let rest = m.split("starting again in ").nth(1)?;
            rest.trim_end_matches(" s").parse().ok()
        })
        .collect()
}

/// CPU seconds (user + system) the process and its reaped children used so far.
fn cpu_seconds(pid: i32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks: f64 = [11, 12, 13, 14]
        .iter()
        .filter_map(|i| fields.get(*i)?.parse::<f64>().ok())
        .sum();
    ticks / 100.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashing_service_backs_off_into_crash_loop_without_burning_a_core() {
    let dev = Dev::start(&[]).await;
    let c = &dev.client;
    let bot = c
        .bot(json!({
            "name": "crasher", "runtime": "bash", "kind": "service",
            "script": "echo \"boom: missing config\" >&2; exit 1",
            "service": {"max_restarts": 2, "window_s": 60, "backoff_base_s": 0.5, "backoff_max_s": 4}
        }))
        .await;
    let s = await_state(c, &bot, "crash_loop", None).await;
    assert_eq!(s["last_exit_code"], 1, "{s}");
    assert!(
        s["last_reason"]
            .as_str()
            .unwrap()
            .contains("exited with code 1"),
        "{s}"
    );
    assert!(
        s["log_tail"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l == "boom: missing config"),
        "{s}"
    );
    // Growing delays, capped, and few restarts while it crash-loops.
    let pid = dev.proc.as_ref().unwrap().pid();
    let (cpu_before, restarts_before) = (cpu_seconds(pid), s["restarts"].as_i64().unwrap());
    tokio::time::sleep(Duration::from_secs(8)).await;
    let s = service(c, &bot).await;
    let restarts = s["restarts"].as_i64().unwrap() - restarts_before;
    let cpu = cpu_seconds(pid) - cpu_before;
    assert!(restarts <= 4, "{restarts} restarts in 8 s with a 4 s cap");
    assert!(
        cpu < 4.0,
        "codex32 used {cpu:.1} CPU seconds in 8 s of crash loop"
    );
    let exec = s["execution_id"].as_str().unwrap().to_owned();
    let delays = restart_delays(&timeline(c, &exec).await);
    assert!(delays.len() >= 4, "{delays:?}");
    assert_eq!(&delays[..4], &[0.5, 1.0, 2.0, 4.0], "{delays:?}");
    assert!(delays[4..].iter().all(|d| *d == 4.0), "{delays:?}");
    // Still one execution, running, through all of it.
    let e = c.get(&format!("/executions/{exec}")).await;
    assert_eq!(e["status"], "running", "{e}");

    // Stopped through the API: the execution ends cancelled; starting again resets the count.
    let (status, body) = c
        .post(&format!("/bots/{bot}/service/stop"), json!({}))
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(
        c.finished(&exec, Duration::from_secs(20)).await["status"],
        "cancelled"
    );
    let s = await_state(c, &bot, "stopped", None).await;
    assert_eq!(s["desired"], "stopped");
    let (status, body) = c
        .post(&format!("/bots/{bot}/service/start"), json!({}))
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["desired"], "running", "{body}");
    assert_eq!(body["restarts"], 0, "{body}");
    let s = await_state(c, &bot, "backoff", None).await;
    assert_ne!(
        s["execution_id"].as_str(),
        Some(exec.as_str()),
        "a new execution"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_is_kept_running_restarted_replaced_and_stopped() {
    let dev = Dev::start(&[]).await;
    let c = &dev.client;
    let m = marker(600);
    let bot = c
        .bot(json!({
            "name": "svc", "runtime": "bash", "kind": "service",
            "script": format!("echo started; exec sleep {m}")
        }))
        .await;
    let s = await_state(c, &bot, "running", None).await;
    let exec = s["execution_id"].as_str().unwrap().to_owned();
    eventually(Duration::from_secs(10), "the service's process", || async {
        (processes_with_arg(&m) == 1).then_some(())
    })
    .await;
    assert_eq!(s["restarts"], 0, "{s}");

    // Jobs' triggers are refused for a service, with what to do instead.
    let (status, body) = c.post(&format!("/bots/{bot}/run-now"), json!({})).await;
    assert_eq!(status, 422, "{body}");
    let (status, body) = c
        .post(&format!("/bots/{bot}/executions"), json!({"input": 1}))
        .await;
    assert_eq!(status, 422, "{body}");
    let (status, body) = c
        .post(
            &format!("/bots/{bot}/executions/batch"),
            json!({"executions": [{"input": 1}]}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("service/start"),
        "{body}"
    );
    let (status, body) = c
        .post(
            "/bots",
            json!({"name": "cron-svc", "runtime": "bash", "script": "sleep 1", "kind": "service",
                   "schedule": {"cron": "* * * * *"}}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["details"]["field"], "schedule", "{body}");

    // Restart through the API: at once, in the same execution, with the reason recorded.
    let (status, body) = c
        .post(&format!("/bots/{bot}/service/restart"), json!({}))
        .await;
    assert_eq!(status, 202, "{body}");
    let s = eventually(Duration::from_secs(15), "the restart", || async {
        let s = service(c, &bot).await;
        (s["restarts"] == 1 && s["state"] == "running").then_some(s)
    })
    .await;
    assert_eq!(s["execution_id"], exec.as_str());
    assert!(
        s["last_reason"]
            .as_str()
            .unwrap()
            .contains("restart requested by"),
        "{s}"
    );
    eventually(
        Duration::from_secs(10),
        "one process after the restart",
        || async { (processes_with_arg(&m) == 1).then_some(()) },
    )
    .await;
    eventually(Duration::from_secs(10), "two starts in the log", || async {
        let logs = c.logs(&exec).await;
        (logs.iter().filter(|l| *l == "started").count() == 2).then_some(())
    })
    .await;

    // A new version replaces the running program.
    let m2 = marker(600);
    let (status, body) = c
        .call(
            reqwest::Method::PATCH,
            &format!("/bots/{bot}"),
            Some(json!({"script": format!("exec sleep {m2}")})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        c.finished(&exec, Duration::from_secs(20)).await["status"],
        "cancelled"
    );
    eventually(Duration::from_secs(20), "version 2 running", || async {
        (processes_with_arg(&m2) == 1 && processes_with_arg(&m) == 0).then_some(())
    })
    .await;
    let s = await_state(c, &bot, "running", None).await;
    let exec2 = s["execution_id"].as_str().unwrap().to_owned();
    assert_eq!(
        c.get(&format!("/executions/{exec2}")).await["bot_version"],
        2
    );

    // Stop: the program ends and the service stays stopped.
    let (status, _) = c
        .post(&format!("/bots/{bot}/service/stop"), json!({}))
        .await;
    assert_eq!(status, 202);
    assert_eq!(
        c.finished(&exec2, Duration::from_secs(20)).await["status"],
        "cancelled"
    );
    eventually(Duration::from_secs(10), "no process", || async {
        (processes_with_arg(&m2) == 0).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let s = service(c, &bot).await;
    assert_eq!(
        (s["desired"].as_str(), s["state"].as_str()),
        (Some("stopped"), Some("stopped")),
        "{s}"
    );
    assert_eq!(processes_with_arg(&m2), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_health_probe_restarts_the_service_and_a_passing_one_does_not() {
    let dev = Dev::start(&[]).await;
    let c = &dev.client;
    let probe = |command: &str| json!({"command": command, "interval_s": 1, "timeout_s": 5, "failures": 2, "initial_delay_s": 0});
    let sick = c
        .bot(json!({
            "name": "sick", "runtime": "bash", "kind": "service",
            "script": format!("exec sleep {}", marker(600)),
            "service": {"backoff_base_s": 0.2, "health": probe("echo not ready; exit 1")}
        }))
        .await;
    let healthy = c
        .bot(json!({
            "name": "healthy", "runtime": "bash", "kind": "service",
            "script": format!("touch ready; exec sleep {}", marker(600)),
            "service": {"health": probe("test -f ready")}
        }))
        .await;
    let s = eventually(Duration::from_secs(30), "a probe restart", || async {
        let s = service(c, &sick).await;
        (s["restarts"].as_i64() >= Some(1)).then_some(s)
    })
    .await;
    let reason = s["last_reason"].as_str().unwrap();
    assert!(
        reason.contains("health probe failed 2 times in a row"),
        "{reason}"
    );
    assert!(reason.contains("not ready"), "{reason}");
    let s = await_state(c, &healthy, "running", None).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let s2 = service(c, &healthy).await;
    assert_eq!(
        (s2["restarts"].clone(), s2["state"].clone()),
        (json!(0), json!("running")),
        "{s} {s2}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_moves_to_another_worker_when_its_worker_is_killed_or_drained() {
    let mut cluster = Cluster::start(2, &[]).await;
    let m = marker(600);
    let c = &cluster.client;
    let bot = c
        .bot(json!({
            "name": "mover", "runtime": "bash", "kind": "service",
            "script": format!("exec sleep {m}")
        }))
        .await;
    let s = await_state(c, &bot, "running", None).await;
    let first = s["worker_id"].as_str().unwrap().to_owned();
    let exec = s["execution_id"].as_str().unwrap().to_owned();

    // kill -9 of its worker: running elsewhere within the lease (2 s) plus a few seconds.
    let index: usize = first.trim_start_matches('w').parse().unwrap();
    let killed_at = Instant::now();
    cluster.workers[index].signal(Signal::SIGKILL);
    let c = &cluster.client;
    let s = await_state(c, &bot, "running", Some(&first)).await;
    let moved_in = killed_at.elapsed();
    assert!(
        moved_in < Duration::from_secs(15),
        "moved after {moved_in:?}"
    );
    assert_eq!(
        s["execution_id"],
        exec.as_str(),
        "the same execution, next attempt"
    );
    eventually(Duration::from_secs(10), "exactly one process", || async {
        (processes_with_arg(&m) == 1).then_some(())
    })
    .await;
    let second = s["worker_id"].as_str().unwrap().to_owned();
    let events = timeline(c, &exec).await;
    assert!(
        events.iter().any(|e| e["message"]
            .as_str()
            .unwrap_or("")
            .contains("the service moves")),
        "{events:?}"
    );

    // Drain (SIGTERM) of the worker it moved to: handed over at once, not after the grace.
    let spare = cluster.replacement_worker(&[]);
    cluster.await_workers(2).await;
    let index: usize = second.trim_start_matches('w').parse().unwrap();
    let drained_at = Instant::now();
    cluster.workers[index].signal(Signal::SIGTERM);
    let c = &cluster.client;
    let s = await_state(c, &bot, "running", Some(&second)).await;
    assert!(
        drained_at.elapsed() < Duration::from_secs(15),
        "{:?}",
        drained_at.elapsed()
    );
    assert_eq!(s["execution_id"], exec.as_str());
    eventually(Duration::from_secs(10), "exactly one process", || async {
        (processes_with_arg(&m) == 1).then_some(())
    })
    .await;
    let db = cluster.db().await;
    let (live,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM executions WHERE status IN ('queued', 'running')")
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(live, 1, "one execution carries the service");
    cluster.workers.push(spare);
}
