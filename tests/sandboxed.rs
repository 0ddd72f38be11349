//! Bots in the container engine, end to end through `codex32 dev` (which isolates bots
//! whenever the machine allows it; these tests need root and skip, saying so, where the
//! engine is unavailable).

mod common;

use std::time::Duration;

use codex32_shared::testing::eventually;
use common::{Client, Dev, marker, processes_with_arg};
use serde_json::{Value, json};

const LONG: Duration = Duration::from_secs(60);

/// A dev instance whose worker must isolate bots; None (with a note) where it cannot.
async fn isolated_dev() -> Option<Dev> {
    if !codex32_sandbox::Engine::probe().usable() {
        eprintln!(
            "skipped: the container engine is unavailable on this machine (needs root, namespaces and cgroups)"
        );
        return None;
    }
    Some(Dev::start(&[("CODEX32_SANDBOX", "isolated")]).await)
}

async fn run_bash(c: &Client, name: &str, script: &str, extra: Value) -> Value {
    let mut spec = json!({"name": name, "runtime": "bash", "script": script, "max_attempts": 1, "timeout_s": 30});
    spec.as_object_mut()
        .unwrap()
        .extend(extra.as_object().cloned().unwrap_or_default());
    let bot = c.bot(spec).await;
    let id = c.run(&bot, json!({})).await;
    c.finished(&id, LONG).await
}

#[tokio::test]
async fn a_sandboxed_bot_cannot_see_or_touch_the_host() {
    let Some(dev) = isolated_dev().await else {
        return;
    };
    let c = &dev.client;
    let script = r#"
        set -u
        echo "processes=$(ls /proc | grep -c '^[0-9]')"
        cat /root/.bashrc >/dev/null 2>&1 && echo "root=readable" || echo "root=denied"
        env | grep -q CODEX32_DATABASE_URL && echo "env=leaked" || echo "env=clean"
        (echo x > /usr/x) 2>/dev/null && echo "usr=writable" || echo "usr=denied"
        (echo x > /tmp/x && echo x > $HOME/x) && echo "scratch=writable" || echo "scratch=denied"
        (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null && echo "net=open" || echo "net=closed"
        mount -t tmpfs none /tmp 2>/dev/null && echo "mount=allowed" || echo "mount=denied"
        grep CapEff /proc/self/status
        echo "uid=$(id -u) host=$(hostname)"
    "#;
    let e = run_bash(c, "prisoner", script, json!({})).await;
    assert_eq!(e["status"], "succeeded", "{e}");
    assert_eq!(e["sandboxed"], true, "{e}");
    let logs = c.logs(e["id"].as_str().unwrap()).await;
    for want in [
        "root=denied",
        "env=clean",
        "usr=denied",
        "scratch=writable",
        "net=closed",
        "mount=denied",
        "CapEff:\t0000000000000000",
    ] {
        assert!(
            logs.iter().any(|l| l == want),
            "missing {want:?} in {logs:?}"
        );
    }
    let processes: usize = logs
        .iter()
        .find_map(|l| l.strip_prefix("processes=")?.parse().ok())
        .unwrap();
    assert!(processes <= 4, "sees {processes} processes: {logs:?}");
    assert!(
        logs.iter()
            .any(|l| l == &format!("uid=65534 host={}", e["id"].as_str().unwrap())),
        "{logs:?}"
    );
}

#[tokio::test]
async fn network_true_gives_a_bot_the_network() {
    let Some(dev) = isolated_dev().await else {
        return;
    };
    let e = run_bash(
        &dev.client,
        "online",
        "exec 3<>/dev/tcp/127.0.0.1/5432 && echo connected",
        json!({"resources": {"network": true}}),
    )
    .await;
    assert_eq!(e["status"], "succeeded", "{e}");
    assert!(
        dev.client
            .logs(e["id"].as_str().unwrap())
            .await
            .contains(&"connected".to_owned())
    );
}

#[tokio::test]
async fn a_memory_hog_fails_as_oom_killed_and_a_fork_bomb_stops_at_the_pids_limit() {
    let Some(dev) = isolated_dev().await else {
        return;
    };
    let c = &dev.client;
    let hog = run_bash(
        c,
        "hog",
        "x=x; while true; do x=$x$x; done",
        json!({"resources": {"memory_mb": 32}}),
    )
    .await;
    assert_eq!(hog["status"], "failed", "{hog}");
    assert_eq!(hog["usage"]["oom_killed"], true, "{hog}");
    assert!(
        hog["error"].as_str().unwrap().contains("out of memory"),
        "{hog}"
    );

    let bomb = ":(){ :|:& };:\nsleep 30";
    let e = run_bash(
        c,
        "bomb",
        bomb,
        json!({"resources": {"pids": 16}, "timeout_s": 3}),
    )
    .await;
    assert!(
        ["failed", "timed_out"].contains(&e["status"].as_str().unwrap()),
        "{e}"
    );
    let logs = c.logs(e["id"].as_str().unwrap()).await;
    assert!(
        logs.iter()
            .any(|l| l.contains("Resource temporarily unavailable")),
        "the bomb hits the pids limit: {logs:?}"
    );
    let ok = run_bash(c, "after", "echo still fine", json!({})).await;
    assert_eq!(ok["status"], "succeeded", "the worker stays healthy: {ok}");
}

#[tokio::test]
async fn a_daemonised_grandchild_does_not_outlive_its_bot() {
    let Some(dev) = isolated_dev().await else {
        return;
    };
    let mark = marker(299);
    let e = run_bash(
        &dev.client,
        "daemon",
        &format!("setsid sleep {mark} </dev/null >/dev/null 2>&1 &\necho spawned"),
        json!({}),
    )
    .await;
    assert_eq!(e["status"], "succeeded", "{e}");
    eventually(
        Duration::from_secs(5),
        "the grandchild to be gone",
        || async { (processes_with_arg(&mark) == 0).then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn sandbox_none_runs_plain_processes_marked_unsandboxed() {
    let dev = Dev::start(&[("CODEX32_SANDBOX", "none")]).await;
    let e = run_bash(&dev.client, "plain", "echo '{\"ok\": true}'", json!({})).await;
    assert_eq!(e["status"], "succeeded", "{e}");
    assert_eq!(e["sandboxed"], false, "{e}");
    assert_eq!(e["output"], json!({"ok": true}));
    let logs = dev.client.logs(e["id"].as_str().unwrap()).await;
    assert!(
        logs.iter().any(|l| l.contains("without a sandbox")),
        "{logs:?}"
    );
}
