//! One slot: a launcher process, the socket to it and the slot's cgroup.
//!
//! Invariants: the launcher sits in the slot's cgroup before any request is sent (it is
//! adopted right after READY). A slot whose launcher stopped answering is marked `broken`;
//! the next request replaces the launcher (one slow cgroup migration) instead of failing
//! forever.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;

use crate::cgroup::{SlotCgroup, SlotStats};
use crate::error::SandboxError;
use crate::launcher::{self, Buffers, LauncherCtx};
use crate::step::Step;
use crate::wire::{
    self, REPLY_EXITED, REPLY_FAILED, REPLY_FATAL, REPLY_READY, REPLY_STARTED, Reply,
};

pub(crate) struct Slot {
    pub index: usize,
    pub launcher: libc::pid_t,
    pub sock: OwnedFd,
    pub cg: Box<dyn SlotCgroup>,
    pub broken: bool,
}

/// Receives one reply (and at most one fd) from a launcher; EOF or garbage is a lost launcher.
fn recv_reply(slot: usize, sock: RawFd) -> Result<(Reply, Option<OwnedFd>), SandboxError> {
    let mut buf = [0u8; 64];
    let mut fds = [-1; 4];
    let got = wire::recv_msg(sock, &mut buf, &mut fds);
    let lost = |reason: String| SandboxError::Launcher { slot, reason };
    let (n, nfds) = got.map_err(|e| lost(format!("recvmsg: {e}")))?;
    // SAFETY: recv_msg returned `nfds` fresh fds that nothing else owns.
    let mut owned: Vec<OwnedFd> = fds[..nfds]
        .iter()
        .map(|&fd| unsafe { OwnedFd::from_raw_fd(fd) })
        .collect();
    if n == 0 {
        return Err(lost("exited (socket closed)".into()));
    }
    let reply =
        Reply::from_bytes(&buf[..n]).ok_or_else(|| lost("sent a malformed reply".into()))?;
    Ok((reply, owned.pop()))
}

fn step_error(vals: [i64; 5]) -> (&'static str, Errno) {
    let step = Step::from_code(vals[0]).map_or("unknown step", Step::name);
    (step, Errno::from_raw(vals[1] as i32))
}

/// Kills (if still running) and reaps a launcher. Its pid cannot have been reused: it is our
/// unreaped child until the waitpid below.
pub(crate) fn reap_launcher(pid: libc::pid_t, sock: Option<OwnedFd>, force: bool) {
    drop(sock);
    if force {
        // SAFETY: signalling our own unreaped child.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let mut status = 0;
    // SAFETY: reaping our own child; status is a valid out-pointer.
    unsafe { libc::waitpid(pid, &mut status, 0) };
}

/// Waits for a new launcher's READY and moves it into `cg`.
fn adopt(
    index: usize,
    pid: libc::pid_t,
    sock: &OwnedFd,
    cg: &mut dyn SlotCgroup,
) -> Result<(), SandboxError> {
    let fail = |reason: String| SandboxError::Launcher {
        slot: index,
        reason,
    };
    let (reply, _) = recv_reply(index, sock.as_raw_fd())?;
    match reply.kind {
        REPLY_READY => cg.adopt(pid).map_err(|e| fail(e.to_string())),
        REPLY_FATAL => {
            let (step, errno) = step_error(reply.vals);
            Err(fail(format!("setup failed at {step}: {errno}")))
        }
        other => Err(fail(format!("unexpected first reply {other}"))),
    }
}

impl Slot {
    /// Takes over a freshly forked launcher once it is READY and inside the slot's cgroup.
    pub fn start(
        index: usize,
        (pid, sock): (libc::pid_t, OwnedFd),
        mut cg: Box<dyn SlotCgroup>,
    ) -> Result<Self, SandboxError> {
        if let Err(e) = adopt(index, pid, &sock, cg.as_mut()) {
            reap_launcher(pid, Some(sock), true);
            return Err(e);
        }
        Ok(Self {
            index,
            launcher: pid,
            sock,
            cg,
            broken: false,
        })
    }

    /// Replaces a broken launcher with a fresh one.
    fn revive(&mut self, ctx: &LauncherCtx) -> Result<(), SandboxError> {
        let (pid, sock) = launcher::spawn(ctx.clone(), Buffers::default())?;
        let old_sock = std::mem::replace(&mut self.sock, sock);
        reap_launcher(
            std::mem::replace(&mut self.launcher, pid),
            Some(old_sock),
            true,
        );
        if let Err(e) = adopt(self.index, pid, &self.sock, self.cg.as_mut()) {
            // Leave it broken (the next request tries again); kill the half-started one.
            // SAFETY: our own unreaped child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            return Err(e);
        }
        self.broken = false;
        Ok(())
    }

    /// Sends a start request; returns the sandbox's pid and pidfd once it has exec'd. A
    /// launcher found dead (killed from outside) is replaced and the request sent once more;
    /// a sandbox it had started died with it (parent-death signal).
    pub fn request(
        &mut self,
        ctx: &LauncherCtx,
        request: &[u8],
        fds: &[RawFd; 3],
    ) -> Result<(i32, OwnedFd), SandboxError> {
        for attempt in 0..2 {
            if self.broken {
                self.revive(ctx)?;
            }
            match self.exchange(request, fds) {
                Err(SandboxError::Launcher { .. }) if attempt == 0 => self.broken = true,
                Err(e @ SandboxError::Launcher { .. }) => {
                    self.broken = true;
                    return Err(e);
                }
                other => return other,
            }
        }
        unreachable!("the second attempt always returns")
    }

    fn exchange(
        &mut self,
        request: &[u8],
        fds: &[RawFd; 3],
    ) -> Result<(i32, OwnedFd), SandboxError> {
        let lost = |e: Errno| SandboxError::Launcher {
            slot: self.index,
            reason: format!("sendmsg: {e}"),
        };
        wire::send_msg(self.sock.as_raw_fd(), request, fds).map_err(lost)?;
        let (reply, fd) = recv_reply(self.index, self.sock.as_raw_fd())?;
        match (reply.kind, fd) {
            (REPLY_STARTED, Some(pidfd)) => Ok((reply.vals[0] as i32, pidfd)),
            (REPLY_FAILED, _) => {
                let (step, errno) = step_error(reply.vals);
                Err(SandboxError::Setup { step, errno })
            }
            (kind, _) => Err(SandboxError::Launcher {
                slot: self.index,
                reason: format!("unexpected reply {kind}"),
            }),
        }
    }

    /// Blocks for the EXITED reply, then reads the cgroup accounting.
    pub fn collect(&mut self) -> Result<(Reply, SlotStats), SandboxError> {
        let got =
            recv_reply(self.index, self.sock.as_raw_fd()).and_then(|(reply, _)| match reply.kind {
                REPLY_EXITED => Ok(reply),
                kind => Err(SandboxError::Launcher {
                    slot: self.index,
                    reason: format!("unexpected reply {kind}"),
                }),
            });
        let reply = got.inspect_err(|_| self.broken = true)?;
        Ok((reply, self.cg.collect()?))
    }
}
