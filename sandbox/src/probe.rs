//! Host checks and clean-up: [`probe`] says whether namespaces and cgroups are usable here
//! (and why not); [`sweep`] removes what a crashed worker left behind.
//!
//! Invariants: `probe` changes nothing on the host except creating the `codex32` cgroup
//! directories (to prove they can be created); `sweep` only touches entries named
//! `e<pid>-<n>` whose pid is not a live process, so it is safe to run beside live engines.

use std::path::Path;
use std::time::{Duration, Instant};

use nix::errno::Errno;

use crate::cgroup::{self, Cgroups};
use crate::error::SandboxError;
use crate::spec::{Enforcement, Probe, SweepReport};

/// Checks namespaces (by creating them in a throw-away child) and cgroups.
pub fn probe() -> Probe {
    Probe {
        namespaces: namespaces(),
        cgroups: cgroups(),
    }
}

fn namespaces() -> Result<(), String> {
    // SAFETY: geteuid has no failure mode.
    if unsafe { libc::geteuid() } != 0 {
        return Err("not running as root: namespaces, mounts and cgroups need root".into());
    }
    // SAFETY: PR_GET_SECCOMP takes no pointers.
    if unsafe { libc::prctl(libc::PR_GET_SECCOMP, 0, 0, 0, 0) } < 0 {
        return Err("the kernel has no seccomp support".into());
    }
    // SAFETY: pidfd_open of our own pid; the fd is closed right away.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, libc::getpid(), 0) };
    if pidfd < 0 {
        return Err(format!("pidfd_open: {} (Linux 5.3+ needed)", Errno::last()));
    }
    crate::sys::close(pidfd as i32);
    let flags = libc::CLONE_NEWNS
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWUTS
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWNET
        | libc::CLONE_NEWCGROUP;
    // SAFETY: the child only calls unshare and _exit (async-signal-safe).
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: as above.
        let code = unsafe {
            if libc::unshare(flags) < 0 {
                Errno::last() as i32 & 0xff
            } else {
                0
            }
        };
        // SAFETY: _exit is async-signal-safe.
        unsafe { libc::_exit(code) };
    }
    if pid < 0 {
        return Err(format!("fork: {}", Errno::last()));
    }
    let mut status = 0;
    // SAFETY: reaping our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    match libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)) {
        Some(0) => Ok(()),
        Some(code) => Err(format!(
            "unshare(pid, mount, uts, ipc, net, cgroup): {}",
            Errno::from_raw(code)
        )),
        None => Err("namespace check child died".into()),
    }
}

fn cgroups() -> Result<Enforcement, String> {
    let backend = cgroup::detect()?;
    for dir in backend.own_dirs() {
        std::fs::create_dir_all(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
    }
    Ok(backend.enforcement())
}

/// Whether an engine directory name belongs to a process that no longer exists.
fn stale(name: &str) -> bool {
    let Some(pid) = name
        .strip_prefix('e')
        .and_then(|r| r.split_once('-'))
        .and_then(|(p, _)| p.parse::<i32>().ok())
    else {
        return false;
    };
    // SAFETY: signal 0 only checks for existence.
    pid != std::process::id() as i32
        && unsafe { libc::kill(pid, 0) } < 0
        && Errno::last() == Errno::ESRCH
}

fn stale_entries(dir: &Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.file_name().to_str().is_some_and(stale))
        .map(|e| e.path())
        .collect()
}

/// Waits (bounded) until no process is left in a cgroup tree after killing them.
fn wait_empty(dir: &Path, deadline: Duration) {
    let start = Instant::now();
    while cgroup::kill_all(dir) > 0 && start.elapsed() < deadline {
        std::thread::yield_now();
    }
}

/// Removes stale engines' cgroups (killing their processes) and state directories.
pub fn sweep(
    cgroups: &dyn Cgroups,
    state_parent: Option<&Path>,
) -> Result<SweepReport, SandboxError> {
    let mut report = SweepReport::default();
    for own in cgroups.own_dirs() {
        for dir in stale_entries(&own) {
            report.processes_killed += cgroup::kill_all(&dir);
            wait_empty(&dir, Duration::from_secs(2));
            report.cgroups_removed += cgroup::remove_tree(&dir)?;
        }
    }
    if let Some(parent) = state_parent {
        for dir in stale_entries(parent) {
            std::fs::remove_dir_all(&dir)
                .map_err(|e| SandboxError::io("remove_dir_all", &dir, e))?;
            report.dirs_removed += 1;
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_dead_engines_are_stale() {
        assert!(!stale(&format!("e{}-0", std::process::id())));
        assert!(!stale("e1-0"), "pid 1 is alive");
        assert!(!stale("slot0"));
        assert!(stale(&format!("e{}-3", i32::MAX - 7)));
    }
}
