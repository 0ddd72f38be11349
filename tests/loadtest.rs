//! The load harness against real deployments (small sizes: these prove it counts right, not
//! how fast codex32 is), the no-op executor it measures with, and the batch endpoint.

mod common;

use std::time::Duration;

use clap::Parser;
use codex32_loadtest::{Args, Report, Scenario};
use common::{Client, Cluster, Dev};
use serde_json::{Value, json};

const LONG: Duration = Duration::from_secs(90);
const NOOP: (&str, &str) = ("CODEX32_EXECUTOR", "noop");

/// A scenario as its command line gives it, against `c`'s deployment with a fresh API key.
async fn scenario(c: &Client, args: &[&str]) -> Scenario {
    let key = c.api_key("user").await;
    let (name, rest) = args.split_first().expect("a scenario name");
    let line = [
        "codex32-loadtest",
        name,
        "--url",
        &c.base,
        "--api-key",
        &key,
    ]
    .into_iter()
    .chain(["--no-progress", "--drain-timeout-s", "60"])
    .chain(rest.iter().copied());
    Args::try_parse_from(line)
        .expect("valid arguments")
        .scenario
        .expect("a scenario")
}

async fn run(c: &Client, args: &[&str]) -> Report {
    let scenario = scenario(c, args).await;
    codex32_loadtest::execute(&scenario)
        .await
        .expect("the scenario runs")
}

/// Every accepted execution succeeded exactly once, and every latency was measured.
fn assert_all_succeeded_once(r: &Report, n: u64, requests: u64) {
    let table = r.table();
    assert_eq!((r.counts.submitted, r.counts.accepted), (n, n), "{table}");
    assert_eq!(r.counts.by_status.get("succeeded"), Some(&n), "{table}");
    assert_eq!(r.counts.by_status.len(), 1, "{table}");
    assert_eq!(
        (r.counts.lost, r.counts.duplicates, r.counts.reruns),
        (0, 0, 0),
        "{table}"
    );
    assert!(r.errors.is_empty(), "{table}");
    assert_eq!(r.latency_ms["enqueue"].count, requests, "{table}");
    assert_eq!(r.latency_ms["dispatch"].count, n, "{table}");
    assert_eq!(r.latency_ms["end_to_end"].count, n, "{table}");
    assert_eq!(r.throughput.processed, n, "{table}");
    assert!(r.throughput.processed_per_s > 0.0, "{table}");
    assert!(!r.timeline.is_empty(), "{table}");
}

#[tokio::test]
async fn burst_and_steady_runs_against_dev_with_the_noop_executor_end_every_execution_once() {
    let dev = Dev::start(&[NOOP]).await;
    let c = &dev.client;
    let burst = run(c, &["burst", "-n", "300", "-c", "8"]).await;
    assert_all_succeeded_once(&burst, 300, 300);
    assert!(
        burst
            .resources
            .iter()
            .any(|p| p.name == "codex32 dev" && p.cpu_s > 0.0 && p.cpu_s_per_1000.is_some()),
        "{}",
        burst.table()
    );
    let batched = run(c, &["burst", "-n", "300", "-c", "2", "--batch", "50"]).await;
    assert_all_succeeded_once(&batched, 300, 6);
    let steady = run(c, &["steady", "--rate", "100", "--duration-s", "2"]).await;
    assert_all_succeeded_once(&steady, 200, 200);
    assert_eq!(steady.throughput.offered_per_s, Some(100.0));

    // The files, and a comparison of two of them.
    let out = tempfile::tempdir().expect("tempdir");
    let (a, b) = (out.path().join("a"), out.path().join("b"));
    let written = burst.write(&a).expect("write a");
    batched.write(&b).expect("write b");
    for name in ["report.json", "latency.svg", "throughput.svg", "cpu.svg"] {
        assert!(written.contains(&a.join(name)), "{name} in {written:?}");
    }
    let read = Report::read(&a.join("report.json")).expect("read back");
    assert_eq!(read.counts.accepted, 300);
    let compare = Args::try_parse_from([
        "codex32-loadtest",
        "--compare",
        a.join("report.json").to_str().unwrap(),
        b.join("report.json").to_str().unwrap(),
    ])
    .expect("compare arguments");
    codex32_loadtest::run(compare).await.expect("compare");
    let summarize = Args::try_parse_from([
        "codex32-loadtest",
        "--summarize",
        a.join("report.json").to_str().unwrap(),
        b.join("report.json").to_str().unwrap(),
    ])
    .expect("summarize arguments");
    codex32_loadtest::run(summarize).await.expect("summarize");
}

#[tokio::test]
async fn codex32_loadtest_on_the_command_line_prints_the_table_and_writes_the_report() {
    let dev = Dev::start(&[NOOP]).await;
    let key = dev.client.api_key("user").await;
    let out = dev.dir.path().join("results");
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_codex32"))
        .args(["loadtest", "burst", "-n", "50", "--no-progress", "--url"])
        .arg(&dev.client.base)
        .arg("--out")
        .arg(&out)
        .env("CODEX32_API_KEY", key)
        .output()
        .await
        .expect("run codex32 loadtest");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(
        stdout.contains("accepted 50  [succeeded 50]  lost 0  duplicates 0"),
        "{stdout}"
    );
    assert!(out.join("report.json").exists());
}

#[tokio::test]
async fn burst_and_mixed_runs_against_the_distributed_deployment_lose_and_duplicate_nothing() {
    let cluster = Cluster::start(2, &[NOOP]).await;
    let c = &cluster.client;
    let burst = run(c, &["burst", "-n", "300", "-c", "8"]).await;
    assert_all_succeeded_once(&burst, 300, 300);
    let batched = run(c, &["burst", "-n", "300", "-c", "2", "--batch", "100"]).await;
    assert_all_succeeded_once(&batched, 300, 3);
    let mixed = run(
        c,
        &[
            "mixed",
            "--rate",
            "100",
            "--duration-s",
            "2",
            "--read-rate",
            "30",
            "--subscribers",
            "2",
        ],
    )
    .await;
    assert_all_succeeded_once(&mixed, 200, 200);
    let ws = mixed.websocket.as_ref().expect("websocket figures");
    assert_eq!((ws.subscribers, ws.connected, ws.dropped), (2, 2, 0));
    assert!(ws.events >= 200, "{ws:?}");
    let reads: u64 = ["read_list", "read_get", "read_logs"]
        .iter()
        .filter_map(|k| mixed.latency_ms.get(*k))
        .map(|s| s.count)
        .sum();
    assert_eq!(reads, 60, "{}", mixed.table());
}

#[tokio::test]
async fn the_batch_endpoint_names_a_bad_item_and_creates_nothing_or_everything_durably() {
    let dev = Dev::start(&[NOOP]).await;
    let c = &dev.client;
    let bot = c
        .bot(json!({"name": "bulk", "runtime": "bash", "script": "exit 3"}))
        .await;
    let path = format!("/bots/{bot}/executions/batch");
    let bad_priority =
        json!({"executions": [{"input": 1}, {"input": 2}, {"input": 3, "priority": 101}]});
    let (status, body) = c.post(&path, bad_priority).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["details"]["field"], "executions[2].priority");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("executions[2].priority")
    );
    let (status, body) = c
        .post(&path, json!({"executions": [{}, {"inptu": 1}]}))
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["details"]["field"], "executions[1]");
    let (status, _) = c.post(&path, json!({"executions": []})).await;
    assert_eq!(status, 422);
    let (status, _) = c
        .post(&path, json!({"executions": vec![json!({}); 1001]}))
        .await;
    assert_eq!(status, 422);
    let unknown = "/bots/00000000-0000-7000-8000-000000000000/executions/batch";
    assert_eq!(c.post(unknown, json!({"executions": [{}]})).await.0, 404);
    let listed = c.get(&format!("/executions?bot_id={bot}")).await;
    assert_eq!(listed, json!([]), "a refused batch creates nothing");

    let items: Vec<Value> = (0..4)
        .map(|i| json!({"input": {"i": i}, "priority": i}))
        .chain([json!({"input": {"i": 4}, "idempotency_key": "k"})])
        .chain([json!({"input": {"i": 5}, "idempotency_key": "k"})])
        .collect();
    let (status, body) = c.post(&path, json!({ "executions": items })).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["created"], 5);
    let made = body["executions"].as_array().expect("executions");
    assert_eq!(made.len(), 6);
    assert_eq!(made[4]["id"], made[5]["id"], "one key, one execution");
    assert_eq!(made[5]["input"], json!({"i": 4}));
    let listed = c.get(&format!("/executions?bot_id={bot}")).await;
    assert_eq!(
        listed.as_array().unwrap().len(),
        5,
        "durable before the 202"
    );
    for (i, e) in made.iter().enumerate().take(5) {
        let done = c.finished(e["id"].as_str().unwrap(), LONG).await;
        assert_eq!(done["status"], "succeeded", "{done}");
        assert_eq!(
            done["output"],
            json!({ "i": i }),
            "the no-op executor echoes the input"
        );
    }
    let workers = c.get("/workers").await;
    assert!(
        workers[0]["sandbox"].as_str().unwrap().starts_with("noop"),
        "{workers}"
    );
}

#[tokio::test]
async fn without_executor_noop_the_worker_runs_the_bots_program() {
    let dev = Dev::start(&[]).await;
    let c = &dev.client;
    let bot = c
        .bot(json!({"name": "real", "runtime": "bash", "script": "echo '{\"ran\": true}'"}))
        .await;
    let id = c.run(&bot, json!({"i": 1})).await;
    let done = c.finished(&id, LONG).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["output"], json!({"ran": true}));
    let workers = c.get("/workers").await;
    assert!(
        !workers[0]["sandbox"].as_str().unwrap().contains("noop"),
        "{workers}"
    );
}

/// The check: a worker killed during a steady run shows up as latency (and reruns of
/// the executions it held), never as lost executions.
#[tokio::test]
async fn a_worker_killed_during_a_steady_run_costs_latency_not_executions() {
    let cluster = Cluster::start(2, &[NOOP]).await;
    let scenario = scenario(
        &cluster.client,
        &["steady", "--rate", "150", "--duration-s", "6"],
    )
    .await;
    let kill = async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        cluster.workers[0].signal(nix::sys::signal::Signal::SIGKILL);
    };
    let (r, ()) = tokio::join!(codex32_loadtest::execute(&scenario), kill);
    let r = r.expect("the scenario runs");
    let table = r.table();
    assert_eq!(r.counts.accepted, r.counts.submitted, "{table}");
    assert_eq!((r.counts.lost, r.counts.duplicates), (0, 0), "{table}");
    assert_eq!(
        r.counts.by_status.get("succeeded"),
        Some(&r.counts.accepted),
        "{table}"
    );
    assert!(r.counts.accepted >= 800, "{table}");
}

/// Load from one key meets the API's per-caller limit unless the API is started without it.
/// The 429s are counted as errors and said to be the limit, and the reads after the load wait
/// for the limit's window instead of counting the accepted executions as lost.
#[tokio::test]
async fn a_rate_limited_run_counts_its_refusals_and_still_reads_every_execution_back() {
    let dev = Dev::start(&[NOOP, ("CODEX32_RATE_LIMIT_PER_MIN", "120")]).await;
    let r = run(&dev.client, &["burst", "-n", "200", "-c", "2"]).await;
    let table = r.table();
    let refused = r.errors.get("submit: http 429 rate_limited").copied();
    assert!(refused.is_some_and(|n| n > 0), "{table}");
    assert_eq!(r.counts.accepted + refused.unwrap(), 200, "{table}");
    assert!(r.counts.accepted > 0, "{table}");
    assert_eq!(
        r.counts.by_status.get("succeeded"),
        Some(&r.counts.accepted),
        "{table}"
    );
    assert_eq!((r.counts.lost, r.counts.duplicates), (0, 0), "{table}");
    assert!(
        r.notes
            .iter()
            .any(|n| n.contains("CODEX32_RATE_LIMIT_PER_MIN=0")),
        "{table}"
    );
}

/// Ctrl-C ends the load early; the run still reports what it made and deletes its bot.
#[tokio::test]
async fn an_interrupted_run_reports_what_it_made_and_deletes_its_bot() {
    let dev = Dev::start(&[NOOP]).await;
    let key = dev.client.api_key("user").await;
    let out = dev.dir.path().join("interrupted");
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_codex32"))
        .args(["loadtest", "steady", "--rate", "50", "--duration-s", "120"])
        .args(["--no-progress", "--url", &dev.client.base])
        .arg("--out")
        .arg(&out)
        .env("CODEX32_API_KEY", key)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start codex32 loadtest");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pid = nix::unistd::Pid::from_raw(run.id().expect("running") as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).expect("SIGINT");
    let done = tokio::time::timeout(LONG, run.wait_with_output())
        .await
        .expect("the run ends soon after Ctrl-C")
        .expect("its output");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&done.stdout),
        String::from_utf8_lossy(&done.stderr),
    );
    assert!(done.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("interrupted (Ctrl-C)"), "{stdout}");
    let report = Report::read(&out.join("report.json")).expect("the report");
    // Two seconds of a 120-second load at 50/s: stopped long before its end.
    assert!(
        (1..1_000).contains(&report.counts.accepted),
        "{}",
        report.table()
    );
    assert_eq!(report.counts.lost, 0, "{}", report.table());
    let bots = dev.client.get("/bots").await;
    assert_eq!(bots.as_array().map(Vec::len), Some(0), "{bots}");
}
