//! Resource limits and accounting through the slot's cgroups.

mod common;

use std::time::Duration;

use codex32_sandbox::Limits;
use common::{engine, eventually, limits_enforced, python, run_spec, spec, workdir};

#[test]
fn forks_stop_at_the_pids_limit() {
    let Some(engine) = engine(1) else { return };
    if !limits_enforced(&engine) {
        return;
    }
    // Forks sleepers until fork fails, then reports how many it got.
    let script = r#"
import os, time
n = 0
try:
    while n < 1000:
        if os.fork() == 0:
            time.sleep(30)
            os._exit(0)
        n += 1
except OSError:
    pass
print(n)
"#;
    let wd = workdir();
    let (py, _) = python();
    let (mut spec, out, err) = spec(&py, &["-c", script], wd.path());
    spec.limits = Limits {
        pids: Some(16),
        ..Limits::default()
    };
    let run = run_spec(&engine, spec, out, err);
    let forked: u64 = run
        .stdout
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{} / {}", run.stdout, run.stderr));
    assert!(
        forked < 16,
        "python itself counts: {forked} children under a limit of 16"
    );
    assert!(
        forked >= 10,
        "the limit, not something else, stopped it: {forked}"
    );
}

#[test]
fn a_fork_loop_plateaus_at_the_pids_limit_and_dies_with_the_sandbox() {
    let Some(engine) = engine(1) else { return };
    if !limits_enforced(&engine) {
        return;
    }
    let wd = workdir();
    let (mut spec, _out, _err) = spec(
        "/usr/bin/bash",
        &["-c", "for i in $(seq 200); do sleep 1000 & done; wait"],
        wd.path(),
    );
    spec.limits = Limits {
        pids: Some(32),
        ..Limits::default()
    };
    let sandbox = engine.spawn(spec).expect("spawn");
    let mut max_seen = 0;
    let reached = eventually(Duration::from_secs(20), || {
        let pids = sandbox.usage().pids.unwrap_or(0);
        max_seen = max_seen.max(pids);
        pids >= 32
    });
    assert!(reached, "the loop should fill the limit (saw {max_seen})");
    assert!(max_seen <= 32, "never above the limit: {max_seen}");
    sandbox.kill();
    let outcome = sandbox.wait().expect("wait");
    assert_eq!(outcome.signal, Some(libc::SIGKILL));
}

#[test]
fn a_memory_hog_is_oom_killed_and_reported() {
    let Some(engine) = engine(1) else { return };
    if !limits_enforced(&engine) {
        return;
    }
    let wd = workdir();
    let (mut spec, out, err) = spec(
        "/usr/bin/bash",
        &["-c", "s=x; while :; do s=\"$s$s\"; done"],
        wd.path(),
    );
    spec.limits = Limits {
        memory_mb: Some(32),
        ..Limits::default()
    };
    let run = run_spec(&engine, spec, out, err);
    assert!(run.outcome.oom_killed, "{:?}", run.outcome);
    assert_eq!(run.outcome.signal, Some(libc::SIGKILL));
    let peak = run
        .outcome
        .peak_memory_bytes
        .expect("peak memory on this backend");
    assert!(
        peak > 16 << 20 && peak <= 33 << 20,
        "peak {peak} near the 32 MiB limit"
    );
}

#[test]
fn a_normal_run_is_not_reported_as_oom_and_has_a_small_peak() {
    let Some(engine) = engine(1) else { return };
    if !limits_enforced(&engine) {
        return;
    }
    let wd = workdir();
    let (mut spec, out, err) = spec("/usr/bin/bash", &["-c", "echo fine"], wd.path());
    spec.limits = Limits {
        memory_mb: Some(64),
        cpu_millis: Some(500),
        pids: Some(8),
        ..Limits::default()
    };
    let run = run_spec(&engine, spec, out, err);
    assert_eq!(run.outcome.exit_code, Some(0));
    assert!(!run.outcome.oom_killed);
    let peak = run
        .outcome
        .peak_memory_bytes
        .expect("peak memory on this backend");
    assert!(peak > 0 && peak < 64 << 20, "{peak}");
}

#[test]
fn a_cpu_hog_gets_about_its_share_of_a_core() {
    let Some(engine) = engine(1) else { return };
    if !limits_enforced(&engine) {
        return;
    }
    let script = "import time\nt = time.monotonic()\nwhile time.monotonic() - t < 1.0:\n    pass\n";
    let wd = workdir();
    let (py, _) = python();
    let (mut spec, out, err) = spec(&py, &["-c", script], wd.path());
    spec.limits = Limits {
        cpu_millis: Some(200),
        ..Limits::default()
    };
    let run = run_spec(&engine, spec, out, err);
    assert_eq!(run.outcome.exit_code, Some(0), "{}", run.stderr);
    let share = run.outcome.cpu_time_ms as f64 / run.outcome.wall_ms as f64;
    assert!(
        (0.1..=0.35).contains(&share),
        "cpu {} ms over {} ms wall",
        run.outcome.cpu_time_ms,
        run.outcome.wall_ms
    );
}
