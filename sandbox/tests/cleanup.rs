//! Clean-up: nothing outlives a sandbox or an engine.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use codex32_sandbox::{Engine, EngineConfig, SandboxError};
use common::{bash, engine, eventually, spec, workdir};

/// Host processes whose command line contains `needle`.
fn processes_matching(needle: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(needle))
        .collect()
}

/// The engine's directories in every cgroup hierarchy and in the state dir.
fn engine_dirs(id: &str) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/sys/fs/cgroup")
        .map(|d| {
            d.flatten()
                .map(|h| h.path().join("codex32").join(id))
                .collect()
        })
        .unwrap_or_default();
    dirs.push(EngineConfig::default().state_dir.join(id));
    dirs
}

#[test]
fn a_daemonised_grandchild_dies_with_the_sandbox() {
    let Some(engine) = engine(1) else { return };
    let marker = format!("1000.{}{}", std::process::id(), 4242);
    let run = bash(
        &engine,
        &format!("setsid sleep {marker} >/dev/null 2>&1 < /dev/null & disown; echo started"),
    );
    assert_eq!(run.stdout, "started\n");
    assert_eq!(run.outcome.exit_code, Some(0));
    // The PID namespace is gone once its init has been reaped: nothing to wait for.
    assert!(
        processes_matching(&marker).is_empty(),
        "{:?}",
        processes_matching(&marker)
    );
}

#[test]
fn kill_ends_a_long_running_sandbox_and_is_idempotent() {
    let Some(engine) = engine(1) else { return };
    let wd = workdir();
    let (spec, _out, _err) = spec(
        "/usr/bin/bash",
        &["-c", "sleep 1000 & sleep 1000"],
        wd.path(),
    );
    let sandbox = engine.spawn(spec).expect("spawn");
    sandbox.kill();
    sandbox.kill();
    let outcome = sandbox.wait().expect("wait");
    assert_eq!(outcome.signal, Some(libc::SIGKILL));
    assert_eq!(
        bash(&engine, "exit 7").outcome.exit_code,
        Some(7),
        "the slot is reusable"
    );
}

#[test]
fn dropping_a_sandbox_kills_it_and_frees_its_slot() {
    let Some(engine) = engine(1) else { return };
    let wd = workdir();
    let (spec, _out, _err) = spec("/usr/bin/sleep", &["1000"], wd.path());
    let pid = engine.spawn(spec).expect("spawn").pid();
    assert!(!Path::new(&format!("/proc/{pid}")).exists() || proc_is_zombie_or_other(pid));
    assert_eq!(bash(&engine, "exit 0").outcome.exit_code, Some(0));
}

fn proc_is_zombie_or_other(pid: i32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    !stat.contains("(sleep)")
}

#[test]
fn slots_bound_concurrency_and_run_in_parallel() {
    let Some(engine) = engine(2) else { return };
    let wd = workdir();
    let (a, _, _) = spec("/usr/bin/sleep", &["1000"], wd.path());
    let (b, _, _) = spec("/usr/bin/sleep", &["1000"], wd.path());
    let (c, _, _) = spec("/usr/bin/true", &[], wd.path());
    let first = engine.spawn(a).expect("first slot");
    let second = engine.spawn(b).expect("second slot");
    assert!(matches!(engine.spawn(c), Err(SandboxError::NoFreeSlot(2))));
    assert!(first.pid() != second.pid());
    first.kill();
    second.kill();
    assert_eq!(first.wait().unwrap().signal, Some(libc::SIGKILL));
    assert_eq!(second.wait().unwrap().signal, Some(libc::SIGKILL));
}

#[test]
fn the_exit_fd_becomes_readable_when_the_sandbox_ends() {
    let Some(engine) = engine(1) else { return };
    let wd = workdir();
    let (spec, _out, _err) = spec("/usr/bin/true", &[], wd.path());
    let sandbox = engine.spawn(spec).expect("spawn");
    let fd = std::os::fd::AsRawFd::as_raw_fd(&sandbox.exit_fd());
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let ready = unsafe { libc::poll(&mut pfd, 1, 10_000) };
    assert_eq!(ready, 1);
    assert_eq!(sandbox.wait().unwrap().exit_code, Some(0));
}

#[test]
fn many_runs_leave_no_mounts_cgroups_processes_or_directories() {
    let Some(engine) = engine(2) else { return };
    let mounts_before = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let id = engine.id().to_string();
    let mut pids = Vec::new();
    for i in 0..200 {
        let run_engine = engine.clone();
        let wd = workdir();
        let (spec, _out, _err) = spec(
            "/usr/bin/bash",
            &["-c", &format!("exit {}", i % 3)],
            wd.path(),
        );
        let sandbox = run_engine.spawn(spec).expect("spawn");
        pids.push(sandbox.pid());
        assert_eq!(sandbox.wait().unwrap().exit_code, Some(i % 3));
    }
    assert!(
        engine_dirs(&id).iter().any(|d| d.exists()),
        "the engine's own dirs exist while it lives"
    );
    drop(engine);
    assert_eq!(
        std::fs::read_to_string("/proc/self/mountinfo").unwrap(),
        mounts_before
    );
    let left: Vec<PathBuf> = engine_dirs(&id)
        .into_iter()
        .filter(|d| d.exists())
        .collect();
    assert!(left.is_empty(), "{left:?}");
    let alive: Vec<i32> = pids
        .into_iter()
        .filter(|p| Path::new(&format!("/proc/{p}")).exists())
        .collect();
    assert!(
        alive.iter().all(|&p| proc_is_zombie_or_other(p)),
        "{alive:?}"
    );
}

#[test]
fn sweep_removes_a_dead_workers_leftovers_only() {
    let Some(engine) = engine(1) else { return };
    // pid_max is at most 2^22, so this pid never exists.
    let stale = format!("e{}-0", i32::MAX - 11);
    let mut planted = engine_dirs(&stale);
    planted.retain(|d| d.parent().is_some_and(|p| p.exists()));
    for dir in &planted {
        std::fs::create_dir_all(dir.join("slot0")).unwrap();
    }
    let report = engine.sweep().expect("sweep");
    assert!(
        report.cgroups_removed + report.dirs_removed >= planted.len(),
        "{report:?}"
    );
    assert!(planted.iter().all(|d| !d.exists()), "{planted:?}");
    assert!(
        engine_dirs(engine.id()).iter().any(|d| d.exists()),
        "a live engine is untouched"
    );
    assert!(eventually(Duration::from_secs(1), || bash(
        &engine, "exit 0"
    )
    .outcome
    .exit_code
        == Some(0)));
}

#[test]
fn a_second_engine_in_the_same_process_is_independent() {
    let (Some(a), Some(b)) = (engine(1), engine(1)) else {
        return;
    };
    assert_ne!(a.id(), b.id());
    let _ = Engine::probe();
    assert_eq!(bash(&a, "exit 1").outcome.exit_code, Some(1));
    assert_eq!(bash(&b, "exit 2").outcome.exit_code, Some(2));
}

#[test]
fn a_launcher_killed_from_outside_is_replaced_transparently() {
    let Some(engine) = engine(1) else { return };
    let old = engine.launcher_pids()[0];
    // SAFETY: signalling the engine's own launcher process.
    unsafe { libc::kill(old, libc::SIGKILL) };
    assert_eq!(bash(&engine, "exit 5").outcome.exit_code, Some(5));
    let new = engine.launcher_pids()[0];
    assert_ne!(old, new);
    assert_eq!(bash(&engine, "exit 6").outcome.exit_code, Some(6));
}
