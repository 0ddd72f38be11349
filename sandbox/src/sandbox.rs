//! A running sandbox: kill it, watch its exit fd, wait for its [`Outcome`].
//!
//! Invariants: the handle owns its slot until [`Sandbox::wait`] (or drop) has read the
//! launcher's EXITED reply and the slot's accounting; then the slot returns to the free list.
//! Killing goes through a pidfd, so it can never hit a recycled pid, and killing the
//! sandbox's init tears down its whole PID namespace (daemonised grandchildren included).

use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::sync::Arc;

use crate::engine::Inner;
use crate::error::SandboxError;
use crate::spec::{Outcome, Usage};
use crate::sys;

/// Handle on a started sandbox. Dropping it without `wait` kills the sandbox and reaps it.
pub struct Sandbox {
    inner: Arc<Inner>,
    slot: usize,
    pid: i32,
    pidfd: OwnedFd,
    finished: bool,
}

impl Sandbox {
    pub(crate) fn new(inner: Arc<Inner>, slot: usize, pid: i32, pidfd: OwnedFd) -> Self {
        Self {
            inner,
            slot,
            pid,
            pidfd,
            finished: false,
        }
    }

    /// The sandbox's init process, as a pid of the host's PID namespace.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Kills the whole sandbox (SIGKILL to its init; the kernel then kills every process in
    /// its PID namespace). Idempotent; a no-op once it has exited.
    pub fn kill(&self) {
        let _ = sys::pidfd_kill(self.pidfd.as_raw_fd(), libc::SIGKILL);
    }

    /// Becomes readable once the outcome is ready: [`Sandbox::wait`] will then not block.
    /// Suitable for `tokio::io::unix::AsyncFd` (interest: readable).
    pub fn exit_fd(&self) -> BorrowedFd<'_> {
        let fd = crate::engine::slot_fd(&self.inner, self.slot);
        // SAFETY: the slot's socket lives as long as `inner`, which `self` keeps alive.
        unsafe { BorrowedFd::borrow_raw(fd) }
    }

    /// Current memory and process count of the sandbox's cgroup (None where not tracked).
    pub fn usage(&self) -> Usage {
        crate::engine::slot_usage(&self.inner, self.slot)
    }

    /// Blocks until the sandbox has ended and returns how it ended. Run it on a blocking
    /// thread (or after `exit_fd` is readable).
    pub fn wait(mut self) -> Result<Outcome, SandboxError> {
        self.finish()
    }

    fn finish(&mut self) -> Result<Outcome, SandboxError> {
        self.finished = true;
        let result = crate::engine::collect_exit(&self.inner, self.slot);
        crate::engine::release(&self.inner, self.slot);
        let (reply, stats) = result?;
        let [status, utime_us, stime_us, wall_ns, _] = reply.vals;
        let status = status as i32;
        let exited = libc::WIFEXITED(status);
        let signaled = libc::WIFSIGNALED(status);
        Ok(Outcome {
            exit_code: exited.then(|| libc::WEXITSTATUS(status)),
            signal: signaled.then(|| libc::WTERMSIG(status)),
            oom_killed: stats.oom_killed,
            peak_memory_bytes: stats.peak_memory_bytes,
            cpu_time_ms: ((utime_us + stime_us) / 1000) as u64,
            wall_ms: (wall_ns / 1_000_000) as u64,
            wall_us: (wall_ns / 1000) as u64,
        })
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if !self.finished {
            self.kill();
            let _ = self.finish();
        }
    }
}
