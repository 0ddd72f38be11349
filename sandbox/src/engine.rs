//! The engine: a fixed set of slots, each a launcher process in its own cgroup, and the
//! spawn path that hands a request to a free slot's launcher.
//!
//! Invariants: a slot index is either in the free list or owned by exactly one [`Sandbox`];
//! only the owner talks to the slot's launcher, so request/reply order on its socket is
//! STARTED|FAILED then EXITED, never interleaved. Dropping the engine (after its last
//! sandbox) closes the sockets, which makes every launcher kill its sandbox and exit; then the
//! launchers are reaped and the cgroup and state directories removed.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::cgroup::{self, Cgroups, NoCgroups, SlotStats};
use crate::error::SandboxError;
use crate::launcher::{self, Buffers, LauncherCtx};
use crate::rootfs::{self, RootPaths};
use crate::sandbox::Sandbox;
use crate::seccomp;
use crate::slot::{Slot, reap_launcher};
use crate::spec::{Enforcement, EngineConfig, Probe, SandboxSpec, SweepReport};
use crate::wire::{self, Reply};

static ENGINE_SEQ: AtomicUsize = AtomicUsize::new(0);

pub(crate) struct Inner {
    pub id: String,
    pub state_dir: PathBuf,
    /// The template root's path (a mount point inside each launcher's namespace).
    pub root: PathBuf,
    pub cgroups: Box<dyn Cgroups>,
    pub slots: Vec<Mutex<Slot>>,
    pub free: Mutex<Vec<usize>>,
    /// Kept to replace a launcher that died.
    pub ctx: LauncherCtx,
}

/// The container engine of one worker process. Cheap to clone (shared state).
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a slot cannot leave it inconsistent beyond what the next reply
    // check catches, so poisoning is ignored.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Engine {
    /// Detects the cgroup back-end, builds the seccomp filter, plans the template root and
    /// starts one launcher per slot (each moved once into its slot's cgroups).
    ///
    /// Call it early in `main`, before the async runtime starts threads: launchers are forks
    /// of the calling process, and a small single-threaded parent makes them lean.
    pub fn new(config: EngineConfig) -> Result<Self, SandboxError> {
        if config.slots == 0 {
            return Err(SandboxError::InvalidSpec("slots must be at least 1".into()));
        }
        let seq = ENGINE_SEQ.fetch_add(1, Ordering::Relaxed);
        let id = format!("e{}-{seq}", std::process::id());
        let state_dir = config.state_dir.join(&id);
        let root = state_dir.join("root");
        let ctx = LauncherCtx {
            paths: RootPaths::new(&root)?,
            template: rootfs::plan(&root, config.rootfs.as_deref(), &config.ro_binds)?,
            seccomp: seccomp::program()?,
            uid: config.uid,
            gid: config.gid,
            netns_per_sandbox: config.netns_per_sandbox,
            host_netns: -1,
            oom_protected: false,
        };
        std::fs::create_dir_all(&root).map_err(|e| SandboxError::io("mkdir", &root, e))?;
        let cgroups: Box<dyn Cgroups> = cgroup::detect().unwrap_or_else(|_| Box::new(NoCgroups));
        let free = Mutex::new(Vec::new());
        let mut inner = Inner {
            id,
            state_dir,
            root,
            cgroups,
            slots: Vec::new(),
            free,
            ctx,
        };
        // From here on, dropping `inner` cleans up whatever was started.
        inner.start_slots(config.slots)?;
        *lock(&inner.free) = (0..config.slots).rev().collect();
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// Whether this host can sandbox, and which limits it would enforce.
    pub fn probe() -> Probe {
        crate::probe::probe()
    }

    /// Which limits are in force (for the worker to report).
    pub fn enforced(&self) -> Enforcement {
        self.inner.cgroups.enforcement()
    }

    /// Removes what crashed workers left: cgroups and state directories of engines whose
    /// process is gone (their processes are killed first).
    pub fn sweep(&self) -> Result<SweepReport, SandboxError> {
        crate::probe::sweep(self.inner.cgroups.as_ref(), self.inner.state_dir.parent())
    }

    /// This engine's name: its cgroups are `<hierarchy>/codex32/<id>` and its scratch space
    /// `<state_dir>/<id>`; both are removed when the engine is dropped.
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// The launcher processes' pids, one per slot (for diagnostics and tests).
    pub fn launcher_pids(&self) -> Vec<i32> {
        self.inner.slots.iter().map(|s| lock(s).launcher).collect()
    }

    /// Number of slots (maximum concurrent sandboxes).
    pub fn slots(&self) -> usize {
        self.inner.slots.len()
    }

    /// Starts a sandbox on a free slot. Returns once the program has been exec'd (setup
    /// errors, such as a missing program, come back here as [`SandboxError::Setup`]).
    pub fn spawn(&self, spec: SandboxSpec) -> Result<Sandbox, SandboxError> {
        let binds = validate(&spec, &self.inner.root)?;
        let index = lock(&self.inner.free)
            .pop()
            .ok_or(SandboxError::NoFreeSlot(self.inner.slots.len()))?;
        match self.start(index, &spec, &binds) {
            Ok((pid, pidfd)) => Ok(Sandbox::new(Arc::clone(&self.inner), index, pid, pidfd)),
            Err(e) => {
                lock(&self.inner.free).push(index);
                Err(e)
            }
        }
    }

    fn start(
        &self,
        index: usize,
        spec: &SandboxSpec,
        binds: &[wire::BindPair],
    ) -> Result<(i32, OwnedFd), SandboxError> {
        let mut slot = lock(&self.inner.slots[index]);
        slot.cg.prepare(&spec.limits)?;
        let workdir = spec.workdir_host.as_os_str().as_bytes();
        let tmp_opts = format!("size={}m,mode=1777", spec.limits.tmp_mb.max(1));
        let request = wire::encode_request(&wire::RequestOut {
            flags: if spec.network { wire::FLAG_NETWORK } else { 0 },
            nofile: spec.limits.nofile,
            program: &spec.program,
            hostname: &spec.hostname,
            workdir,
            tmp_opts: &tmp_opts,
            args: &spec.args,
            env: &spec.env,
            binds,
        })
        .map_err(SandboxError::InvalidSpec)?;
        let fds = [
            spec.stdin.as_raw_fd(),
            spec.stdout.as_raw_fd(),
            spec.stderr.as_raw_fd(),
        ];
        slot.request(&self.inner.ctx, &request, &fds)
    }
}

/// Checks the spec and computes the per-spec binds' (source, target-under-template) pairs.
fn validate(spec: &SandboxSpec, root: &Path) -> Result<Vec<wire::BindPair>, SandboxError> {
    let bad = |m: String| Err(SandboxError::InvalidSpec(m));
    if !spec.program.starts_with('/') {
        return bad(format!(
            "program {:?} must be an absolute path inside the sandbox",
            spec.program
        ));
    }
    if spec.hostname.is_empty() || spec.hostname.len() > 64 {
        return bad(format!(
            "hostname {:?} must be 1 to 64 bytes",
            spec.hostname
        ));
    }
    let strings = [&spec.program, &spec.hostname]
        .into_iter()
        .chain(&spec.args);
    if strings
        .chain(spec.env.iter().flat_map(|(k, v)| [k, v]))
        .any(|s| s.contains('\0'))
        || spec
            .env
            .iter()
            .any(|(k, _)| k.is_empty() || k.contains('='))
    {
        return bad("NUL in program, args or env, or a bad env name".into());
    }
    if !spec.workdir_host.is_absolute() || !spec.workdir_host.is_dir() {
        return bad(format!(
            "workdir {} must be an existing absolute directory",
            spec.workdir_host.display()
        ));
    }
    let mut binds = Vec::new();
    for path in &spec.extra_ro_binds {
        if !path.is_absolute() || !path.exists() {
            return bad(format!(
                "extra bind {} must be an existing absolute path",
                path.display()
            ));
        }
        binds.push((
            path.as_os_str().as_bytes().to_vec(),
            rootfs::under(root, path).as_os_str().as_bytes().to_vec(),
        ));
    }
    Ok(binds)
}

/// The raw fd of a slot's socket (stable while the slot's launcher is not replaced, which
/// only happens in `spawn`, never while a sandbox holds the slot).
pub(crate) fn slot_fd(inner: &Inner, slot: usize) -> RawFd {
    lock(&inner.slots[slot]).sock.as_raw_fd()
}

pub(crate) fn slot_usage(inner: &Inner, slot: usize) -> crate::spec::Usage {
    lock(&inner.slots[slot]).cg.usage()
}

/// Blocks for a slot's EXITED reply, then reads its cgroup accounting.
pub(crate) fn collect_exit(inner: &Inner, slot: usize) -> Result<(Reply, SlotStats), SandboxError> {
    lock(&inner.slots[slot]).collect()
}

/// Returns a slot to the free list.
pub(crate) fn release(inner: &Inner, slot: usize) {
    lock(&inner.free).push(slot);
}

impl Inner {
    /// Forks every launcher first, then collects READY and migrates them: templates build in
    /// parallel, and the migrations run back to back (only the first pays the RCU wait).
    fn start_slots(&mut self, count: usize) -> Result<(), SandboxError> {
        let mut pending = Vec::new();
        for _ in 0..count {
            match launcher::spawn(self.ctx.clone(), Buffers::default()) {
                Ok(started) => pending.push(started),
                Err(e) => {
                    pending
                        .into_iter()
                        .for_each(|(pid, sock)| reap_launcher(pid, Some(sock), true));
                    return Err(e);
                }
            }
        }
        let mut pending = pending.into_iter().enumerate();
        while let Some((index, started)) = pending.next() {
            let slot = self
                .cgroups
                .create_slot(&self.id, index)
                .and_then(|cg| Slot::start(index, started, cg));
            match slot {
                Ok(slot) => self.slots.push(Mutex::new(slot)),
                Err(e) => {
                    pending.for_each(|(_, (pid, sock))| reap_launcher(pid, Some(sock), true));
                    return Err(e);
                }
            }
        }
        Ok(())
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let slots = std::mem::take(&mut self.slots);
        let mut dirs = Vec::new();
        for slot in slots {
            let slot = slot.into_inner().unwrap_or_else(|p| p.into_inner());
            dirs.extend(slot.cg.dirs());
            // Closing the socket makes the launcher kill its sandbox (if any) and exit.
            reap_launcher(slot.launcher, Some(slot.sock), false);
        }
        for dir in dirs.iter().chain(&self.cgroups.engine_dirs(&self.id)) {
            let _ = cgroup::rmdir(dir, Duration::from_secs(2));
        }
        for dir in self.cgroups.own_dirs() {
            // Fails while other engines use it; the last one out removes it.
            let _ = std::fs::remove_dir(&dir);
        }
        let _ = std::fs::remove_dir_all(&self.state_dir);
        if let Some(parent) = self.state_dir.parent() {
            let _ = std::fs::remove_dir(parent);
        }
    }
}
