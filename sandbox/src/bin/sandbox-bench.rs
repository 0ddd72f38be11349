//! sandbox-bench: start + run + reap latency of the engine against plain fork/exec.
//!
//! Usage: `sandbox-bench [--runs N] [--interval-ms MS] [--python PATH]`. For `/bin/true` and
//! `python3 -c pass` it interleaves a plain spawn and a sandboxed run (memory, CPU and pids
//! limits on) every interval, so each sandbox arrives "sporadically" as in production. It
//! prints median, p90 and max per variant, the launcher-side share (clone → reap), hangs
//! (no exit within 5 s), and leftover checks (host mounts, cgroups, state dirs, processes).

use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use codex32_sandbox::{Engine, EngineConfig, Limits, SandboxSpec};

struct Args {
    runs: usize,
    interval: Duration,
    python: PathBuf,
}

fn parse_args() -> Args {
    let mut args = Args {
        runs: 500,
        interval: Duration::from_millis(50),
        python: default_python(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--runs" => args.runs = value.parse().expect("--runs N"),
            "--interval-ms" => {
                args.interval = Duration::from_millis(value.parse().expect("--interval-ms MS"))
            }
            "--python" => args.python = PathBuf::from(value),
            other => panic!("unknown flag {other}"),
        }
    }
    args
}

fn default_python() -> PathBuf {
    let pyenv = PathBuf::from("/root/.pyenv/versions/3.11.7/bin/python3");
    if pyenv.exists() {
        pyenv
    } else {
        PathBuf::from("/usr/bin/python3")
    }
}

/// The install prefix to bind (…/versions/3.11.7 for …/versions/3.11.7/bin/python3).
fn install_dir(python: &Path) -> Option<PathBuf> {
    let prefix = python.parent()?.parent()?;
    (!prefix.starts_with("/usr")).then(|| prefix.to_path_buf())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn report(name: &str, samples: &mut [f64]) {
    samples.sort_by(f64::total_cmp);
    let (med, p90, max) = (
        percentile(samples, 0.5),
        percentile(samples, 0.9),
        percentile(samples, 1.0),
    );
    println!(
        "{name:<34} median {med:6.2} ms  p90 {p90:6.2} ms  max {max:7.2} ms  (n={})",
        samples.len()
    );
}

fn plain(cmd: &[&str]) -> f64 {
    let start = Instant::now();
    let status = Command::new(cmd[0])
        .args(&cmd[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status();
    assert!(status.expect("plain spawn").success());
    start.elapsed().as_secs_f64() * 1e3
}

fn null() -> OwnedFd {
    OwnedFd::from(
        File::options()
            .read(true)
            .write(true)
            .open("/dev/null")
            .expect("/dev/null"),
    )
}

/// One sandboxed run; returns (total ms, launcher-side ms) or None on a hang.
fn sandboxed(engine: &Engine, cmd: &[&str], workdir: &Path) -> Option<(f64, f64)> {
    let spec = SandboxSpec {
        program: cmd[0].into(),
        args: cmd[1..].iter().map(|s| s.to_string()).collect(),
        env: vec![("PATH".into(), "/usr/bin:/bin".into())],
        workdir_host: workdir.to_path_buf(),
        hostname: "bench".into(),
        limits: Limits {
            memory_mb: Some(256),
            cpu_millis: Some(1000),
            pids: Some(64),
            ..Limits::default()
        },
        network: false,
        extra_ro_binds: Vec::new(),
        stdin: null(),
        stdout: null(),
        stderr: null(),
    };
    let start = Instant::now();
    let sandbox = engine.spawn(spec).expect("spawn");
    let mut pfd = libc::pollfd {
        fd: std::os::fd::AsRawFd::as_raw_fd(&sandbox.exit_fd()),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    if unsafe { libc::poll(&mut pfd, 1, 5000) } == 0 {
        sandbox.kill();
        let _ = sandbox.wait();
        return None;
    }
    let outcome = sandbox.wait().expect("wait");
    assert_eq!(
        outcome.exit_code,
        Some(0),
        "{cmd:?} failed in the sandbox: {outcome:?}"
    );
    Some((
        start.elapsed().as_secs_f64() * 1e3,
        outcome.wall_us as f64 / 1e3,
    ))
}

fn children_of_self() -> usize {
    let me = std::process::id().to_string();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    entries
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter(|stat| {
            stat.rsplit_once(") ")
                .and_then(|(_, r)| r.split(' ').nth(1))
                == Some(me.as_str())
        })
        .count()
}

/// Engine directories of this process still present in any cgroup hierarchy.
fn own_cgroups_left() -> usize {
    let prefix = format!("e{}-", std::process::id());
    let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") else {
        return 0;
    };
    hierarchies
        .flatten()
        .filter_map(|h| std::fs::read_dir(h.path().join("codex32")).ok())
        .flat_map(|d| d.flatten())
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .count()
}

fn main() {
    let args = parse_args();
    let probe = Engine::probe();
    println!("probe: {probe:?}");
    let mounts_before = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let config = EngineConfig {
        slots: 1,
        ro_binds: install_dir(&args.python).into_iter().collect(),
        ..EngineConfig::default()
    };
    let state_dir = config.state_dir.clone();
    let engine = Engine::new(config).expect("engine");
    println!("enforced: {:?}", engine.enforced());
    let workdir = std::env::temp_dir().join(format!("codex32-bench-{}", std::process::id()));
    std::fs::create_dir_all(&workdir).expect("workdir");
    let py = args.python.display().to_string();
    let variants: [(&str, Vec<&str>); 2] = [
        ("/bin/true", vec!["/bin/true"]),
        ("python3 -c pass", vec![py.as_str(), "-c", "pass"]),
    ];
    let mut results: Vec<[Vec<f64>; 3]> = vec![Default::default(), Default::default()];
    let mut hangs = 0;
    for i in 0..args.runs {
        for (v, (_, cmd)) in variants.iter().enumerate() {
            let tick = Instant::now();
            results[v][0].push(plain(cmd));
            std::thread::sleep(args.interval.saturating_sub(tick.elapsed()));
            let tick = Instant::now();
            match sandboxed(&engine, cmd, &workdir) {
                Some((total, inner)) => {
                    results[v][1].push(total);
                    results[v][2].push(inner);
                }
                None => hangs += 1,
            }
            std::thread::sleep(args.interval.saturating_sub(tick.elapsed()));
        }
        if (i + 1) % 100 == 0 {
            eprintln!("{} runs", i + 1);
        }
    }
    for ((name, _), r) in variants.iter().zip(results.iter_mut()) {
        report(&format!("{name}: plain"), &mut r[0]);
        report(&format!("{name}: sandbox (spawn..wait)"), &mut r[1]);
        report(&format!("{name}: sandbox (clone..reap)"), &mut r[2]);
    }
    let engine_dirs: Vec<PathBuf> = std::fs::read_dir(&state_dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    drop(engine);
    let mounts_after = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    println!("hangs: {hangs}");
    println!(
        "host mountinfo unchanged: {}",
        mounts_before == mounts_after
    );
    println!(
        "state dirs left: {}",
        engine_dirs.iter().filter(|d| d.exists()).count()
    );
    println!("child processes left: {}", children_of_self());
    println!("engine cgroups left: {}", own_cgroups_left());
    let _ = std::fs::remove_dir(&workdir);
}
