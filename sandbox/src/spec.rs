//! The public data types: what the caller asks for (engine config, sandbox spec, limits) and
//! what it gets back (outcome, enforcement, probe). Plain data, no behaviour beyond defaults
//! and validation.

use std::os::fd::OwnedFd;
use std::path::PathBuf;

/// Per-engine configuration (one engine per worker process).
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// How many sandboxes may run at once; one launcher process and one cgroup per slot.
    pub slots: usize,
    /// Scratch space for template mount points; one sub-directory per engine, removed on drop.
    pub state_dir: PathBuf,
    /// Use this directory's top-level entries as the root instead of the host's /usr, /etc….
    pub rootfs: Option<PathBuf>,
    /// Host paths bound read-only at the same path in every sandbox, set up once per launcher
    /// (cheaper than [`SandboxSpec::extra_ro_binds`]): put the python install here.
    pub ro_binds: Vec<PathBuf>,
    /// The unprivileged identity sandboxes run as.
    pub uid: u32,
    pub gid: u32,
    /// `false` (default): each slot keeps one private, loopback-only network namespace that its
    /// sandboxes reuse one after another (nothing survives a sandbox: all its processes are
    /// dead and it never had CAP_NET_ADMIN). `true`: a fresh namespace per sandbox (~1 ms more).
    pub netns_per_sandbox: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            slots: 4,
            state_dir: PathBuf::from("/run/codex32-sandbox"),
            rootfs: None,
            ro_binds: Vec::new(),
            uid: 65534,
            gid: 65534,
            netns_per_sandbox: false,
        }
    }
}

/// Resource limits of one sandbox. `None` means unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Memory (RSS + page cache charged to the sandbox) in MiB; exceeding it OOM-kills.
    pub memory_mb: Option<u64>,
    /// CPU bandwidth in thousandths of a core (1000 = one full core).
    pub cpu_millis: Option<u64>,
    /// Maximum number of processes and threads inside the sandbox.
    pub pids: Option<u64>,
    /// Size of the private /tmp tmpfs in MiB.
    pub tmp_mb: u64,
    /// RLIMIT_NOFILE.
    pub nofile: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_mb: None,
            cpu_millis: None,
            pids: None,
            tmp_mb: 64,
            nofile: 1024,
        }
    }
}

/// One program to run in a fresh sandbox.
#[derive(Debug)]
pub struct SandboxSpec {
    /// Absolute path inside the sandbox, e.g. `/usr/bin/bash`.
    pub program: String,
    /// argv[1..]; argv[0] is `program`.
    pub args: Vec<String>,
    /// Exactly this environment; nothing is inherited.
    pub env: Vec<(String, String)>,
    /// Host directory bound read-write at [`SandboxSpec::WORKDIR`]; must be writable by the
    /// engine's uid/gid for the program to write there.
    pub workdir_host: PathBuf,
    /// The sandbox's hostname (the execution id), at most 64 bytes.
    pub hostname: String,
    pub limits: Limits,
    /// `false`: loopback only. `true`: the host's network namespace.
    pub network: bool,
    /// Host paths bound read-only at the same path, for this sandbox only (two mounts each).
    pub extra_ro_binds: Vec<PathBuf>,
    pub stdin: OwnedFd,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

impl SandboxSpec {
    /// Where the workdir appears inside the sandbox (also its initial cwd).
    pub const WORKDIR: &'static str = "/work";
}

/// How a sandbox ended and what it used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Exit status when the program exited normally.
    pub exit_code: Option<i32>,
    /// The signal that killed it (SIGKILL after `kill()` or an OOM kill).
    pub signal: Option<i32>,
    /// The memory limit was hit and the kernel killed a process of the sandbox.
    pub oom_killed: bool,
    /// Peak memory of the sandbox's cgroup, when the backend can tell.
    pub peak_memory_bytes: Option<u64>,
    /// User + system CPU time of the sandbox's processes.
    pub cpu_time_ms: u64,
    /// From just before clone to reaping.
    pub wall_ms: u64,
    /// `wall_ms` in microseconds, for benchmarks.
    pub wall_us: u64,
}

/// Which cgroup hierarchy limits go through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupVersion {
    V1,
    V2,
    /// No usable cgroup controllers: no resource limits.
    None,
}

/// What the engine actually enforces, for the worker to report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enforcement {
    pub cgroup: CgroupVersion,
    pub memory: bool,
    pub cpu: bool,
    pub pids: bool,
}

/// Whether this host can sandbox, and if not, why.
#[derive(Debug, Clone)]
pub struct Probe {
    /// `Err(reason)` when namespaces cannot be created (not root, seccomp missing, …).
    pub namespaces: Result<(), String>,
    /// What limits would be enforced; `Err(reason)` when cgroups are unusable.
    pub cgroups: Result<Enforcement, String>,
}

impl Probe {
    /// Isolation works (limits may still be partial: check `cgroups`).
    pub fn usable(&self) -> bool {
        self.namespaces.is_ok()
    }

    /// Isolation works and memory, CPU and pids limits are all enforced.
    pub fn fully_enforced(&self) -> bool {
        matches!(&self.cgroups, Ok(e) if e.memory && e.cpu && e.pids) && self.usable()
    }
}

/// What [`crate::Engine::sweep`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepReport {
    pub cgroups_removed: usize,
    pub processes_killed: usize,
    pub dirs_removed: usize,
}

/// Live usage of a running sandbox's cgroup.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub memory_bytes: Option<u64>,
    /// Processes in the slot's cgroup, excluding the launcher.
    pub pids: Option<u64>,
}
