//! cgroup v2: one unified tree. Controllers are enabled down the path
//! (`cgroup.subtree_control` of the root, `codex32` and the engine directory); the slot is a
//! leaf holding the launcher and its sandboxes. Limits: memory.max (and memory.swap.max 0),
//! cpu.max, pids.max. Accounting: memory.peak through a file descriptor reset before each run
//! (Linux 6.12+; older kernels report no peak), `oom_kill` of memory.events as a delta.
//!
//! Not exercised on the development machine (its v2 tree has no memory/cpu/pids controllers);
//! covered by the scratch-tree unit test below.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::{Cgroups, OWN_DIR, SlotCgroup, SlotStats, keyed, mkdir_all, read_u64, write};
use crate::error::SandboxError;
use crate::spec::{CgroupVersion, Enforcement, Limits, Usage};

const CPU_PERIOD_US: u64 = 100_000;
const WANTED: [&str; 3] = ["memory", "cpu", "pids"];

/// The v2 back-end rooted at a cgroup2 mount.
#[derive(Debug, Clone)]
pub struct V2 {
    mount: PathBuf,
    controllers: Vec<String>,
}

impl V2 {
    /// Reads which of memory, cpu, pids the root offers.
    pub fn new(mount: &Path) -> Self {
        let text = std::fs::read_to_string(mount.join("cgroup.controllers")).unwrap_or_default();
        let controllers = text
            .split_whitespace()
            .filter(|c| WANTED.contains(c))
            .map(String::from)
            .collect();
        Self {
            mount: mount.to_path_buf(),
            controllers,
        }
    }

    fn has(&self, ctrl: &str) -> bool {
        self.controllers.iter().any(|c| c == ctrl)
    }

    pub fn complete(&self) -> bool {
        WANTED.iter().all(|c| self.has(c))
    }

    pub fn any(&self) -> bool {
        !self.controllers.is_empty()
    }

    fn base(&self) -> PathBuf {
        self.mount.join(OWN_DIR)
    }

    /// Enables our controllers for the children of `dir`.
    fn delegate(&self, dir: &Path) -> Result<(), SandboxError> {
        let value: Vec<String> = self.controllers.iter().map(|c| format!("+{c}")).collect();
        write(&dir.join("cgroup.subtree_control"), &value.join(" "))
    }
}

impl Cgroups for V2 {
    fn enforcement(&self) -> Enforcement {
        Enforcement {
            cgroup: CgroupVersion::V2,
            memory: self.has("memory"),
            cpu: self.has("cpu"),
            pids: self.has("pids"),
        }
    }

    fn create_slot(&self, engine: &str, slot: usize) -> Result<Box<dyn SlotCgroup>, SandboxError> {
        let engine_dir = self.base().join(engine);
        mkdir_all(&engine_dir)?;
        for dir in [self.mount.clone(), self.base(), engine_dir.clone()] {
            self.delegate(&dir)?;
        }
        let dir = engine_dir.join(format!("slot{slot}"));
        mkdir_all(&dir)?;
        Ok(Box::new(V2Slot {
            dir,
            enforcement: self.enforcement(),
            applied: None,
            peak: None,
            oom_kills_before: None,
        }))
    }

    fn engine_dirs(&self, engine: &str) -> Vec<PathBuf> {
        vec![self.base().join(engine)]
    }

    fn own_dirs(&self) -> Vec<PathBuf> {
        vec![self.base()]
    }
}

struct V2Slot {
    dir: PathBuf,
    enforcement: Enforcement,
    applied: Option<Limits>,
    /// memory.peak opened and reset for the current run.
    peak: Option<File>,
    oom_kills_before: Option<u64>,
}

impl V2Slot {
    fn apply(&self, limits: &Limits) -> Result<(), SandboxError> {
        let last = self.applied;
        let max = |v: Option<u64>| v.map_or_else(|| "max".to_string(), |v| v.to_string());
        if self.enforcement.memory && last.is_none_or(|l| l.memory_mb != limits.memory_mb) {
            write(
                &self.dir.join("memory.max"),
                &max(limits.memory_mb.map(|mb| mb * 1024 * 1024)),
            )?;
            let swap = self.dir.join("memory.swap.max");
            if swap.exists() {
                write(
                    &swap,
                    if limits.memory_mb.is_some() {
                        "0"
                    } else {
                        "max"
                    },
                )?;
            }
        }
        if self.enforcement.cpu && last.is_none_or(|l| l.cpu_millis != limits.cpu_millis) {
            let quota = max(limits
                .cpu_millis
                .map(|m| (m * CPU_PERIOD_US / 1000).max(1000)));
            write(
                &self.dir.join("cpu.max"),
                &format!("{quota} {CPU_PERIOD_US}"),
            )?;
        }
        if self.enforcement.pids && last.is_none_or(|l| l.pids != limits.pids) {
            write(&self.dir.join("pids.max"), &max(limits.pids.map(|n| n + 1)))?;
        }
        Ok(())
    }

    /// Opens memory.peak and resets it for this descriptor; None where resets are unsupported.
    fn open_peak(&self) -> Option<File> {
        let mut f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(self.dir.join("memory.peak"))
            .ok()?;
        f.write_all(b"reset\n").ok()?;
        Some(f)
    }
}

impl SlotCgroup for V2Slot {
    fn adopt(&mut self, pid: libc::pid_t) -> Result<(), SandboxError> {
        write(&self.dir.join("cgroup.procs"), &pid.to_string())
    }

    fn prepare(&mut self, limits: &Limits) -> Result<(), SandboxError> {
        self.apply(limits)?;
        self.applied = Some(*limits);
        if self.enforcement.memory {
            self.peak = self.open_peak();
            self.oom_kills_before = keyed(&self.dir.join("memory.events"), "oom_kill");
        }
        Ok(())
    }

    fn collect(&mut self) -> Result<SlotStats, SandboxError> {
        let peak = self.peak.take().and_then(|mut f| {
            let mut s = String::new();
            f.seek(SeekFrom::Start(0)).ok()?;
            f.read_to_string(&mut s).ok()?;
            s.trim().parse().ok()
        });
        let after = keyed(&self.dir.join("memory.events"), "oom_kill");
        let oom_killed = matches!((self.oom_kills_before, after), (Some(b), Some(a)) if a > b);
        Ok(SlotStats {
            peak_memory_bytes: peak,
            oom_killed,
        })
    }

    fn usage(&self) -> Usage {
        Usage {
            memory_bytes: read_u64(&self.dir.join("memory.current")),
            pids: read_u64(&self.dir.join("pids.current")).map(|n| n.saturating_sub(1)),
        }
    }

    fn dirs(&self) -> Vec<PathBuf> {
        vec![self.dir.clone()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_slot_gets_delegated_controllers_and_limits() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(
            tmp.path().join("cgroup.controllers"),
            "cpuset cpu io memory pids\n",
        )
        .unwrap();
        let v2 = V2::new(tmp.path());
        assert!(v2.complete());
        let mut slot = v2.create_slot("e9-1", 0).unwrap();
        let dir = &slot.dirs()[0];
        std::fs::write(
            dir.join("memory.events"),
            "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n",
        )
        .unwrap();
        let limits = Limits {
            memory_mb: Some(1),
            cpu_millis: Some(500),
            pids: None,
            ..Limits::default()
        };
        slot.prepare(&limits).unwrap();
        let read = |p: PathBuf| std::fs::read_to_string(p).unwrap();
        assert_eq!(
            read(tmp.path().join("codex32/cgroup.subtree_control")),
            "+cpu +memory +pids"
        );
        assert_eq!(read(dir.join("memory.max")), "1048576");
        assert_eq!(read(dir.join("cpu.max")), "50000 100000");
        assert_eq!(read(dir.join("pids.max")), "max");
        std::fs::write(dir.join("memory.events"), "oom 1\noom_kill 1\n").unwrap();
        assert!(slot.collect().unwrap().oom_killed);
    }
}
