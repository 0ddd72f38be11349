//! Helpers shared by the integration tests: an engine that skips (with a message) when the
//! host cannot sandbox, a workdir owned by the sandbox user, and a runner that captures
//! stdout/stderr through temporary files (no pipe can fill up and block the sandbox).

#![allow(dead_code)]

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use codex32_sandbox::{Engine, EngineConfig, Limits, Outcome, SandboxSpec};

pub const NOBODY: u32 = 65534;

/// The python install to bind into sandboxes: a pyenv version if present (this machine),
/// else the system one (already under /usr).
pub fn python() -> (String, Option<PathBuf>) {
    let pyenv = PathBuf::from("/root/.pyenv/versions/3.11.7");
    if pyenv.join("bin/python3").exists() {
        return (pyenv.join("bin/python3").display().to_string(), Some(pyenv));
    }
    ("/usr/bin/python3".into(), None)
}

/// An engine with `slots` slots, or None (after printing why) when sandboxing is unavailable.
pub fn engine(slots: usize) -> Option<Engine> {
    let probe = Engine::probe();
    if let Err(why) = &probe.namespaces {
        eprintln!("SKIPPED: sandboxing unavailable here: {why}");
        return None;
    }
    let config = EngineConfig {
        slots,
        ro_binds: python().1.into_iter().collect(),
        ..EngineConfig::default()
    };
    Some(Engine::new(config).expect("engine starts"))
}

/// Whether the engine enforces all three limits (tests of limits skip otherwise).
pub fn limits_enforced(engine: &Engine) -> bool {
    let e = engine.enforced();
    if !(e.memory && e.cpu && e.pids) {
        eprintln!("SKIPPED: limits not enforced here: {e:?}");
    }
    e.memory && e.cpu && e.pids
}

/// A scratch workdir writable by the sandbox user.
pub fn workdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::os::unix::fs::chown(dir.path(), Some(NOBODY), Some(NOBODY)).expect("chown workdir");
    dir
}

pub struct Run {
    pub outcome: Outcome,
    pub stdout: String,
    pub stderr: String,
}

fn capture() -> (File, OwnedFd) {
    let f = tempfile::tempfile().expect("tempfile");
    let fd = OwnedFd::from(f.try_clone().expect("dup"));
    (f, fd)
}

fn read_back(mut f: File) -> String {
    let mut s = String::new();
    f.seek(SeekFrom::Start(0)).unwrap();
    f.read_to_string(&mut s).unwrap();
    s
}

/// A spec for `program args…` with stdout/stderr going to the returned files.
pub fn spec(program: &str, args: &[&str], workdir: &std::path::Path) -> (SandboxSpec, File, File) {
    let (out, out_fd) = capture();
    let (err, err_fd) = capture();
    let spec = SandboxSpec {
        program: program.into(),
        args: args.iter().map(|s| s.to_string()).collect(),
        env: vec![
            ("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into()),
            ("HOME".into(), "/tmp".into()),
        ],
        workdir_host: workdir.to_path_buf(),
        hostname: "exec-test".into(),
        limits: Limits::default(),
        network: false,
        extra_ro_binds: Vec::new(),
        stdin: OwnedFd::from(File::open("/dev/null").unwrap()),
        stdout: out_fd,
        stderr: err_fd,
    };
    (spec, out, err)
}

/// Runs a spec to completion.
pub fn run_spec(engine: &Engine, spec: SandboxSpec, out: File, err: File) -> Run {
    let outcome = engine.spawn(spec).expect("spawn").wait().expect("wait");
    Run {
        outcome,
        stdout: read_back(out),
        stderr: read_back(err),
    }
}

/// `bash -c script` with default limits.
pub fn bash(engine: &Engine, script: &str) -> Run {
    let wd = workdir();
    let (spec, out, err) = spec("/usr/bin/bash", &["-c", script], wd.path());
    run_spec(engine, spec, out, err)
}

/// Polls `cond` until it holds or `deadline` passes.
pub fn eventually(deadline: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    cond()
}
