//! Resource limits through cgroups: one [`Cgroups`] trait, a v1 and a v2 back-end, chosen at
//! start by [`detect`].
//!
//! Layout: `<hierarchy>/codex32/<engine-id>/slot<N>` in every hierarchy used. A slot's cgroup
//! lives as long as the engine; its launcher is moved in once and every sandbox of the slot is
//! born inside it, so limits are set by rewriting the slot's control files before each run
//! (only when they change) and accounting is read as deltas (OOM kills) or after a reset
//! (peak memory). Invariants: the launcher is the slot's only resident between sandboxes;
//! engine directories are named `e<pid>-<n>` so [`crate::Engine::sweep`] can tell a dead
//! worker's leftovers from a live one's.

mod v1;
mod v2;

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::SandboxError;
use crate::spec::{Enforcement, Limits, Usage};

pub use v1::V1;
pub use v2::V2;

/// The sub-directory of each hierarchy root that codex32 owns.
pub const OWN_DIR: &str = "codex32";

/// Accounting read from a slot after its sandbox ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SlotStats {
    pub peak_memory_bytes: Option<u64>,
    pub oom_killed: bool,
}

/// A cgroup back-end: creates and removes slot cgroups.
pub trait Cgroups: Send + Sync {
    /// Which limits this back-end enforces.
    fn enforcement(&self) -> Enforcement;
    /// Creates `codex32/<engine>/slot<slot>` in every hierarchy used.
    fn create_slot(&self, engine: &str, slot: usize) -> Result<Box<dyn SlotCgroup>, SandboxError>;
    /// Every directory of `engine` (root first), in every hierarchy, whether or not it exists.
    fn engine_dirs(&self, engine: &str) -> Vec<PathBuf>;
    /// The `codex32` directory of every hierarchy used.
    fn own_dirs(&self) -> Vec<PathBuf>;
}

/// The cgroup of one slot.
pub trait SlotCgroup: Send {
    /// Moves a process (the launcher) into the slot: the one slow migration, done at start.
    fn adopt(&mut self, pid: libc::pid_t) -> Result<(), SandboxError>;
    /// Applies `limits` (writing only what changed) and resets the per-run accounting.
    fn prepare(&mut self, limits: &Limits) -> Result<(), SandboxError>;
    /// Reads the per-run accounting once the sandbox has ended.
    fn collect(&mut self) -> Result<SlotStats, SandboxError>;
    /// Current usage (processes exclude the launcher).
    fn usage(&self) -> Usage;
    /// The slot's directories.
    fn dirs(&self) -> Vec<PathBuf>;
}

/// A back-end that enforces nothing (no usable cgroups).
pub struct NoCgroups;

struct NoSlot;

impl Cgroups for NoCgroups {
    fn enforcement(&self) -> Enforcement {
        Enforcement {
            cgroup: crate::spec::CgroupVersion::None,
            memory: false,
            cpu: false,
            pids: false,
        }
    }
    fn create_slot(&self, _: &str, _: usize) -> Result<Box<dyn SlotCgroup>, SandboxError> {
        Ok(Box::new(NoSlot))
    }
    fn engine_dirs(&self, _: &str) -> Vec<PathBuf> {
        Vec::new()
    }
    fn own_dirs(&self) -> Vec<PathBuf> {
        Vec::new()
    }
}

impl SlotCgroup for NoSlot {
    fn adopt(&mut self, _: libc::pid_t) -> Result<(), SandboxError> {
        Ok(())
    }
    fn prepare(&mut self, _: &Limits) -> Result<(), SandboxError> {
        Ok(())
    }
    fn collect(&mut self) -> Result<SlotStats, SandboxError> {
        Ok(SlotStats::default())
    }
    fn usage(&self) -> Usage {
        Usage::default()
    }
    fn dirs(&self) -> Vec<PathBuf> {
        Vec::new()
    }
}

/// Cgroup mounts found in /proc/self/mountinfo.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Mounts {
    /// v1 hierarchies: mount point and the controllers attached to it.
    pub v1: Vec<(PathBuf, Vec<String>)>,
    pub v2: Option<PathBuf>,
}

/// Parses mountinfo: `… mountpoint … - fstype source superopts`.
pub fn parse_mountinfo(text: &str) -> Mounts {
    let mut mounts = Mounts::default();
    for line in text.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let Some(mountpoint) = left.split(' ').nth(4) else {
            continue;
        };
        let mut right = right.split(' ');
        let (fstype, _source, opts) = (right.next(), right.next(), right.next().unwrap_or(""));
        match fstype {
            Some("cgroup2") if mounts.v2.is_none() => mounts.v2 = Some(PathBuf::from(mountpoint)),
            Some("cgroup") => {
                let ctrls = opts
                    .split(',')
                    .filter(|o| matches!(*o, "memory" | "cpu" | "pids"))
                    .map(String::from);
                mounts.v1.push((PathBuf::from(mountpoint), ctrls.collect()));
            }
            _ => {}
        }
    }
    mounts
}

/// Picks the back-end: v2 when it has the memory, cpu and pids controllers; v1 when it has
/// any of them; otherwise v2 with whatever it offers; otherwise none.
pub fn detect() -> Result<Box<dyn Cgroups>, String> {
    let text = fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| format!("read /proc/self/mountinfo: {e}"))?;
    let mounts = parse_mountinfo(&text);
    let v2 = mounts.v2.as_deref().map(V2::new);
    if let Some(v2) = &v2
        && v2.complete()
    {
        return Ok(Box::new(v2.clone()));
    }
    let v1 = V1::from_mounts(&mounts.v1);
    if v1.any() {
        return Ok(Box::new(v1));
    }
    match v2 {
        Some(v2) if v2.any() => Ok(Box::new(v2)),
        _ => Err("no cgroup hierarchy with a memory, cpu or pids controller".into()),
    }
}

pub(crate) fn write(path: &Path, value: &str) -> Result<(), SandboxError> {
    fs::write(path, value).map_err(|e| SandboxError::io("write", path, e))
}

pub(crate) fn read_u64(path: &Path) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// A value from a flat keyed file (`key value` per line: memory.events, memory.oom_control).
pub(crate) fn keyed(path: &Path, key: &str) -> Option<u64> {
    let text = fs::read_to_string(path).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok())
}

pub(crate) fn mkdir_all(path: &Path) -> Result<(), SandboxError> {
    fs::create_dir_all(path).map_err(|e| SandboxError::io("mkdir", path, e))
}

/// Kills every process listed in `dir`'s cgroup.procs (and its children's); returns how many.
pub fn kill_all(dir: &Path) -> usize {
    let mut killed = 0;
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                killed += kill_all(&entry.path());
            }
        }
    }
    let procs = fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
    for pid in procs
        .lines()
        .filter_map(|l| l.trim().parse::<libc::pid_t>().ok())
    {
        // SAFETY: kill has no memory effects; a stale pid in a dead worker's cgroup is ours.
        if unsafe { libc::kill(pid, libc::SIGKILL) } == 0 {
            killed += 1;
        }
    }
    killed
}

/// rmdir with a short retry: a cgroup stays busy for a moment after its last task is reaped.
pub fn rmdir(dir: &Path, deadline: Duration) -> Result<bool, SandboxError> {
    let start = Instant::now();
    loop {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(true),
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(false),
            Err(e) if start.elapsed() < deadline && e.raw_os_error() == Some(libc::EBUSY) => {
                std::thread::yield_now();
            }
            Err(e) => return Err(SandboxError::io("rmdir", dir, e)),
        }
    }
}

/// Removes a directory tree of cgroups bottom-up, killing residents first.
pub fn remove_tree(dir: &Path) -> Result<usize, SandboxError> {
    let mut removed = 0;
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                removed += remove_tree(&entry.path())?;
            }
        }
    }
    if rmdir(dir, Duration::from_secs(2))? {
        removed += 1;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_with_v1_and_v2_hierarchies_is_parsed() {
        let text = "\
30 25 0:26 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
31 25 0:27 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
32 25 0:28 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
33 25 0:29 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd";
        let m = parse_mountinfo(text);
        assert_eq!(m.v2, Some(PathBuf::from("/sys/fs/cgroup/unified")));
        assert_eq!(m.v1.len(), 3);
        assert_eq!(
            m.v1[0],
            (
                PathBuf::from("/sys/fs/cgroup/memory"),
                vec!["memory".to_string()]
            )
        );
        assert!(m.v1[2].1.is_empty());
    }
}
