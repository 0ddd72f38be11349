//! cgroup v1: one hierarchy per controller (memory, cpu, pids; cpu may be co-mounted with
//! cpuacct). Limits: memory.limit_in_bytes (and memsw when swap accounting exists),
//! cpu.cfs_quota_us over a 100 ms period, pids.max. Accounting: memory.max_usage_in_bytes is
//! reset to the current usage before each run (peak), and the `oom_kill` counter of
//! memory.oom_control is compared before and after (OOM kill).
//!
//! The launcher counts against its slot: one process (pids.max is the limit + 1) and a few
//! hundred KiB of memory.

use std::path::{Path, PathBuf};

use super::{Cgroups, OWN_DIR, SlotCgroup, SlotStats, keyed, mkdir_all, read_u64, write};
use crate::error::SandboxError;
use crate::spec::{CgroupVersion, Enforcement, Limits, Usage};

/// CFS period: quota = millis × 100 µs.
const CFS_PERIOD_US: u64 = 100_000;

/// The v1 back-end: `codex32` directories of the hierarchies that carry each controller.
#[derive(Debug, Clone, Default)]
pub struct V1 {
    memory: Option<PathBuf>,
    cpu: Option<PathBuf>,
    pids: Option<PathBuf>,
}

impl V1 {
    /// From the v1 mounts: (mount point, controllers).
    pub fn from_mounts(mounts: &[(PathBuf, Vec<String>)]) -> Self {
        let find = |ctrl: &str| {
            mounts
                .iter()
                .find(|(_, c)| c.iter().any(|x| x == ctrl))
                .map(|(p, _)| p.join(OWN_DIR))
        };
        Self {
            memory: find("memory"),
            cpu: find("cpu"),
            pids: find("pids"),
        }
    }

    /// A back-end rooted at explicit `codex32` directories (tests use a scratch tree).
    #[cfg(test)]
    pub fn at(memory: Option<PathBuf>, cpu: Option<PathBuf>, pids: Option<PathBuf>) -> Self {
        Self { memory, cpu, pids }
    }

    pub fn any(&self) -> bool {
        self.memory.is_some() || self.cpu.is_some() || self.pids.is_some()
    }

    fn bases(&self) -> Vec<&PathBuf> {
        let mut out: Vec<&PathBuf> = Vec::new();
        for p in [&self.memory, &self.cpu, &self.pids].into_iter().flatten() {
            if !out.contains(&p) {
                out.push(p);
            }
        }
        out
    }
}

impl Cgroups for V1 {
    fn enforcement(&self) -> Enforcement {
        Enforcement {
            cgroup: CgroupVersion::V1,
            memory: self.memory.is_some(),
            cpu: self.cpu.is_some(),
            pids: self.pids.is_some(),
        }
    }

    fn create_slot(&self, engine: &str, slot: usize) -> Result<Box<dyn SlotCgroup>, SandboxError> {
        let dir = |base: &Option<PathBuf>| {
            base.as_ref()
                .map(|b| b.join(engine).join(format!("slot{slot}")))
        };
        let s = V1Slot {
            memory: dir(&self.memory),
            cpu: dir(&self.cpu),
            pids: dir(&self.pids),
            ..V1Slot::default()
        };
        for d in s.dirs() {
            mkdir_all(&d)?;
        }
        Ok(Box::new(s))
    }

    fn engine_dirs(&self, engine: &str) -> Vec<PathBuf> {
        self.bases().into_iter().map(|b| b.join(engine)).collect()
    }

    fn own_dirs(&self) -> Vec<PathBuf> {
        self.bases().into_iter().cloned().collect()
    }
}

/// One slot's directories in each hierarchy, and what was last written there.
#[derive(Debug, Default)]
struct V1Slot {
    memory: Option<PathBuf>,
    cpu: Option<PathBuf>,
    pids: Option<PathBuf>,
    applied: Option<Limits>,
    oom_kills_before: Option<u64>,
}

fn oom_kills(memory: &Path) -> Option<u64> {
    keyed(&memory.join("memory.oom_control"), "oom_kill")
}

impl V1Slot {
    fn set_memory(dir: &Path, mb: Option<u64>) -> Result<(), SandboxError> {
        let memsw = dir.join("memory.memsw.limit_in_bytes");
        let has_memsw = memsw.exists();
        // memsw must stay >= the memory limit: lift it first, then set both.
        if has_memsw {
            write(&memsw, "-1")?;
        }
        let value = mb.map_or_else(|| "-1".to_string(), |mb| (mb * 1024 * 1024).to_string());
        write(&dir.join("memory.limit_in_bytes"), &value)?;
        if has_memsw && mb.is_some() {
            write(&memsw, &value)?;
        }
        Ok(())
    }

    fn apply(&self, limits: &Limits) -> Result<(), SandboxError> {
        let last = self.applied;
        if let Some(dir) = &self.memory
            && last.is_none_or(|l| l.memory_mb != limits.memory_mb)
        {
            Self::set_memory(dir, limits.memory_mb)?;
        }
        if let Some(dir) = &self.cpu
            && last.is_none_or(|l| l.cpu_millis != limits.cpu_millis)
        {
            write(&dir.join("cpu.cfs_period_us"), &CFS_PERIOD_US.to_string())?;
            let quota = limits.cpu_millis.map_or_else(
                || "-1".to_string(),
                |m| (m.max(1) * CFS_PERIOD_US / 1000).max(1000).to_string(),
            );
            write(&dir.join("cpu.cfs_quota_us"), &quota)?;
        }
        if let Some(dir) = &self.pids
            && last.is_none_or(|l| l.pids != limits.pids)
        {
            // +1: the launcher lives in the slot too.
            let value = limits
                .pids
                .map_or_else(|| "max".to_string(), |n| (n + 1).to_string());
            write(&dir.join("pids.max"), &value)?;
        }
        Ok(())
    }
}

impl SlotCgroup for V1Slot {
    fn adopt(&mut self, pid: libc::pid_t) -> Result<(), SandboxError> {
        for d in self.dirs() {
            write(&d.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    fn prepare(&mut self, limits: &Limits) -> Result<(), SandboxError> {
        self.apply(limits)?;
        self.applied = Some(*limits);
        if let Some(dir) = &self.memory {
            write(&dir.join("memory.max_usage_in_bytes"), "0")?;
            self.oom_kills_before = oom_kills(dir);
        }
        Ok(())
    }

    fn collect(&mut self) -> Result<SlotStats, SandboxError> {
        let Some(dir) = &self.memory else {
            return Ok(SlotStats::default());
        };
        let after = oom_kills(dir);
        let oom_killed = matches!((self.oom_kills_before, after), (Some(b), Some(a)) if a > b);
        Ok(SlotStats {
            peak_memory_bytes: read_u64(&dir.join("memory.max_usage_in_bytes")),
            oom_killed,
        })
    }

    fn usage(&self) -> Usage {
        Usage {
            memory_bytes: self
                .memory
                .as_ref()
                .and_then(|d| read_u64(&d.join("memory.usage_in_bytes"))),
            pids: self
                .pids
                .as_ref()
                .and_then(|d| read_u64(&d.join("pids.current")))
                .map(|n| n.saturating_sub(1)),
        }
    }

    fn dirs(&self) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = Vec::new();
        for p in [&self.memory, &self.cpu, &self.pids].into_iter().flatten() {
            if !out.contains(p) {
                out.push(p.clone());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch() -> (tempfile::TempDir, V1) {
        let tmp = tempfile::tempdir().unwrap();
        let v1 = V1::at(
            Some(tmp.path().join("memory")),
            Some(tmp.path().join("cpu")),
            Some(tmp.path().join("pids")),
        );
        (tmp, v1)
    }

    #[test]
    fn limits_are_written_to_the_slot_files_and_only_when_they_change() {
        let (_tmp, v1) = scratch();
        let mut slot = v1.create_slot("e1-0", 3).unwrap();
        let dirs = slot.dirs();
        assert_eq!(dirs.len(), 3);
        std::fs::write(
            dirs[0].join("memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        )
        .unwrap();
        let limits = Limits {
            memory_mb: Some(64),
            cpu_millis: Some(200),
            pids: Some(10),
            ..Limits::default()
        };
        slot.prepare(&limits).unwrap();
        let read = |d: &PathBuf, f: &str| std::fs::read_to_string(d.join(f)).unwrap();
        assert_eq!(
            read(&dirs[0], "memory.limit_in_bytes"),
            (64u64 << 20).to_string()
        );
        assert_eq!(read(&dirs[1], "cpu.cfs_quota_us"), "20000");
        assert_eq!(read(&dirs[2], "pids.max"), "11");
        std::fs::write(dirs[2].join("pids.max"), "untouched").unwrap();
        slot.prepare(&limits).unwrap();
        assert_eq!(read(&dirs[2], "pids.max"), "untouched");
        std::fs::write(dirs[0].join("memory.oom_control"), "oom_kill 3\n").unwrap();
        std::fs::write(dirs[0].join("memory.max_usage_in_bytes"), "4096").unwrap();
        let stats = slot.collect().unwrap();
        assert_eq!(
            stats,
            SlotStats {
                peak_memory_bytes: Some(4096),
                oom_killed: true
            }
        );
    }
}
