//! The per-slot launcher: a long-lived process, forked from the engine once, that lives in
//! its slot's cgroups and clones every sandbox of that slot (vfork-style: see `sys::clone_vfork`).
//!
//! Why: moving a process between cgroups costs ~15 ms on this kernel when no migration
//! happened recently (an RCU grace period in the cgroup threadgroup lock). A sandbox cloned by
//! a launcher that already sits in the slot's cgroups is born there: no migration on the hot
//! path, on v1 and v2 alike. The launcher also owns a private mount namespace holding the
//! template root (built once) and, by default, the slot's loopback-only network namespace.
//!
//! Invariants: the launcher may be a fork of a multi-threaded process, so after the fork it
//! never allocates or takes locks: it works on [`LauncherCtx`] and [`Buffers`] prepared before
//! the fork, and ends with `_exit`. It runs one sandbox at a time and reports, in order,
//! READY (or FATAL) once, then for each request STARTED (with a pidfd) then EXITED, or FAILED.
//! It exits when the engine's end of the socket closes, killing its running sandbox first.

use std::ffi::c_char;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;

use crate::child;
use crate::error::SandboxError;
use crate::rootfs::{self, Op, RootPaths};
use crate::seccomp;
use crate::step::Step;
use crate::sys;
use crate::wire::{
    self, FLAG_NETWORK, REPLY_EXITED, REPLY_FAILED, REPLY_FATAL, REPLY_READY, REPLY_STARTED, Reply,
};

/// Everything a launcher needs, prepared by the engine before the fork.
#[derive(Clone)]
pub struct LauncherCtx {
    pub paths: RootPaths,
    pub template: Vec<Op>,
    pub seccomp: seccomp::Program,
    pub uid: u32,
    pub gid: u32,
    pub netns_per_sandbox: bool,
    /// The host's network namespace (opened by the launcher before it leaves it).
    pub host_netns: RawFd,
    /// Whether the launcher lowered its oom_score_adj (children must then restore it).
    pub oom_protected: bool,
}

/// Receive buffers, allocated before the fork so the launcher never allocates.
pub struct Buffers {
    buf: Vec<u8>,
    ptrs: Vec<*const c_char>,
}

impl Default for Buffers {
    fn default() -> Self {
        Self {
            buf: vec![0; wire::MAX_REQUEST],
            ptrs: Vec::with_capacity(wire::MAX_STRINGS),
        }
    }
}

/// Forks a launcher; returns its pid and the engine's end of its socket.
pub fn spawn(ctx: LauncherCtx, bufs: Buffers) -> Result<(libc::pid_t, OwnedFd), SandboxError> {
    let mut pair = [0; 2];
    let kind = libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC;
    // SAFETY: pair is a valid out-array of two fds.
    if unsafe { libc::socketpair(libc::AF_UNIX, kind, 0, pair.as_mut_ptr()) } < 0 {
        return Err(SandboxError::sys("socketpair", Errno::last()));
    }
    // SAFETY: socketpair returned two fresh fds we now own.
    let (ours, theirs) = unsafe { (OwnedFd::from_raw_fd(pair[0]), OwnedFd::from_raw_fd(pair[1])) };
    // SAFETY: fork is sound here because the child only runs `serve`, which never allocates,
    // locks or returns (see module docs); glibc's fork keeps the malloc state consistent anyway.
    match unsafe { libc::fork() } {
        -1 => Err(SandboxError::sys("fork", Errno::last())),
        0 => serve(ctx, bufs, theirs.as_raw_fd()),
        pid => Ok((pid, ours)),
    }
}

fn reply(sock: RawFd, kind: i64, vals: [i64; 5], fds: &[RawFd]) {
    // A failed send means the engine is gone; the next recv sees EOF and we exit then.
    let _ = wire::send_msg(sock, &Reply::new(kind, vals).to_bytes(), fds);
}

fn exit(code: libc::c_int) -> ! {
    // SAFETY: _exit skips the atexit handlers and destructors inherited from the engine.
    unsafe { libc::_exit(code) }
}

/// The launcher's whole life.
fn serve(mut ctx: LauncherCtx, mut bufs: Buffers, sock: RawFd) -> ! {
    if let Err((step, errno)) = init(&mut ctx, sock) {
        reply(sock, REPLY_FATAL, [step as i64, errno as i64, 0, 0, 0], &[]);
        exit(1);
    }
    // Never unmapped: it lives as long as the launcher, which ends in _exit.
    let stack = match sys::ChildStack::map() {
        Ok(stack) => stack,
        Err(errno) => {
            reply(
                sock,
                REPLY_FATAL,
                [Step::Clone as i64, errno as i64, 0, 0, 0],
                &[],
            );
            exit(1);
        }
    };
    reply(sock, REPLY_READY, [0; 5], &[]);
    loop {
        let mut fds = [-1; 4];
        let (n, nfds) = match wire::recv_msg(sock, &mut bufs.buf, &mut fds) {
            Ok(got) => got,
            Err(_) => exit(1),
        };
        if n == 0 {
            exit(0);
        }
        match wire::decode_request(&bufs.buf[..n], &mut bufs.ptrs) {
            Ok(req) if nfds == 3 => run_one(&ctx, &stack, &req, [fds[0], fds[1], fds[2]], sock),
            Ok(_) => reply(
                sock,
                REPLY_FAILED,
                [Step::Stdio as i64, Errno::EINVAL as i64, 0, 0, 0],
                &[],
            ),
            Err(e) => reply(
                sock,
                REPLY_FAILED,
                [Step::Clone as i64, e as i64, 0, 0, 0],
                &[],
            ),
        }
        for fd in fds.into_iter().take(nfds) {
            sys::close(fd);
        }
    }
}

/// One-time setup: quiet stdio, OOM immunity, the slot's network namespace, a private mount
/// namespace and the template root.
fn init(ctx: &mut LauncherCtx, sock: RawFd) -> Result<(), (Step, Errno)> {
    let at = |step| move |e| (step, e);
    let null = sys::open(c"/dev/null", libc::O_RDWR, 0).map_err(at(Step::LauncherStdio))?;
    for fd in 0..3 {
        sys::dup2(null, fd).map_err(at(Step::LauncherStdio))?;
    }
    // Drop every inherited fd (the worker's sockets, other slots' socket ends…).
    sys::close_range(3, sock - 1);
    sys::close_range(sock + 1, RawFd::MAX);
    sys::reset_signals();
    // SAFETY: umask cannot fail; template entries get exactly the modes we ask for.
    unsafe { libc::umask(0) };
    // Best effort: some hosts forbid lowering oom_score_adj even to root. The launcher is
    // tiny, so the OOM killer prefers the sandbox's processes anyway.
    ctx.oom_protected = sys::open(c"/proc/self/oom_score_adj", libc::O_WRONLY, 0)
        .and_then(|fd| {
            let written = sys::write_all(fd, b"-1000");
            sys::close(fd);
            written
        })
        .is_ok();
    ctx.host_netns =
        sys::open(c"/proc/self/ns/net", libc::O_RDONLY, 0).map_err(at(Step::LauncherNetns))?;
    if !ctx.netns_per_sandbox {
        sys::unshare(libc::CLONE_NEWNET).map_err(at(Step::LauncherNetns))?;
        sys::loopback_up().map_err(at(Step::LauncherLoopback))?;
    }
    sys::unshare(libc::CLONE_NEWNS).map_err(at(Step::LauncherMountns))?;
    sys::mount(None, c"/", None, libc::MS_REC | libc::MS_PRIVATE, None)
        .map_err(at(Step::LauncherMountns))?;
    rootfs::build(&ctx.paths.root, &mut ctx.template).map_err(|(i, e)| {
        if i == usize::MAX {
            (Step::TemplateTmpfs, e)
        } else {
            (Step::TemplateOp, e)
        }
    })
}

/// What a sandbox child gets from the launcher's frame (they share memory until execve).
struct ChildJob<'a> {
    ctx: &'a LauncherCtx,
    req: &'a wire::Request<'a>,
    stdio: [RawFd; 3],
    err_pipe: RawFd,
}

extern "C" fn start_child(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the `ChildJob` of `run_one`, whose frame sleeps (CLONE_VFORK) until
    // this child has called execve or exited.
    let job = unsafe { &*arg.cast::<ChildJob<'_>>() };
    child::run(job.ctx, job.req, job.stdio, job.err_pipe)
}

/// Clones one sandbox, reports STARTED or FAILED, then supervises it to EXITED.
fn run_one(
    ctx: &LauncherCtx,
    stack: &sys::ChildStack,
    req: &wire::Request<'_>,
    stdio: [RawFd; 3],
    sock: RawFd,
) {
    let fail =
        |step: Step, e: Errno| reply(sock, REPLY_FAILED, [step as i64, e as i64, 0, 0, 0], &[]);
    let mut pipe = [0; 2];
    // SAFETY: pipe is a valid out-array.
    if unsafe { libc::pipe2(pipe.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return fail(Step::Clone, Errno::last());
    }
    let mut flags = libc::CLONE_NEWPID
        | libc::CLONE_NEWNS
        | libc::CLONE_NEWUTS
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWCGROUP;
    if ctx.netns_per_sandbox && req.flags & FLAG_NETWORK == 0 {
        flags |= libc::CLONE_NEWNET;
    }
    let started_ns = sys::monotonic_ns();
    let mut job = ChildJob {
        ctx,
        req,
        stdio,
        err_pipe: pipe[1],
    };
    // SAFETY: `start_child` only runs `child::run` (raw syscalls on prepared data, ending in
    // execve or _exit); `job` lives on this frame, which sleeps until then.
    let cloned = unsafe {
        sys::clone_vfork(
            flags,
            stack,
            start_child,
            (&raw mut job).cast::<libc::c_void>(),
        )
    };
    let (pid, pidfd) = match cloned {
        Err(e) => {
            sys::close(pipe[0]);
            sys::close(pipe[1]);
            return fail(Step::Clone, e);
        }
        Ok(got) => got,
    };
    sys::close(pipe[1]);
    let mut msg = [0u8; 8];
    let got = sys::read(pipe[0], &mut msg).unwrap_or(0);
    sys::close(pipe[0]);
    if got == msg.len() {
        let _ = sys::wait4(pid);
        sys::close(pidfd);
        let step = u32::from_ne_bytes([msg[0], msg[1], msg[2], msg[3]]);
        let errno = i32::from_ne_bytes([msg[4], msg[5], msg[6], msg[7]]);
        return reply(
            sock,
            REPLY_FAILED,
            [i64::from(step), i64::from(errno), 0, 0, 0],
            &[],
        );
    }
    reply(sock, REPLY_STARTED, [i64::from(pid), 0, 0, 0, 0], &[pidfd]);
    supervise(pid, pidfd, started_ns, sock);
    sys::close(pidfd);
}

/// Waits for the sandbox's init to exit (its PID namespace dies with it) or for the engine to
/// go away (then kills the sandbox and exits).
fn supervise(pid: libc::pid_t, pidfd: RawFd, started_ns: u64, sock: RawFd) {
    loop {
        let Ok((sock_ready, child_ready)) = sys::poll2(sock, pidfd, -1) else {
            continue;
        };
        if child_ready {
            let (status, usage) = match sys::wait4(pid) {
                Ok(got) => got,
                Err(_) => (0, zero_rusage()),
            };
            let wall_ns = sys::monotonic_ns().saturating_sub(started_ns);
            let us = |t: libc::timeval| t.tv_sec * 1_000_000 + t.tv_usec;
            let vals = [
                i64::from(status),
                us(usage.ru_utime),
                us(usage.ru_stime),
                wall_ns as i64,
                0,
            ];
            return reply(sock, REPLY_EXITED, vals, &[]);
        }
        if sock_ready {
            let mut buf = [0u8; 64];
            let mut fds = [-1; 4];
            match wire::recv_msg(sock, &mut buf, &mut fds) {
                Ok((0, _)) | Err(_) => {
                    let _ = sys::pidfd_kill(pidfd, libc::SIGKILL);
                    let _ = sys::wait4(pid);
                    exit(0);
                }
                Ok((_, nfds)) => fds.into_iter().take(nfds).for_each(sys::close),
            }
        }
    }
}

fn zero_rusage() -> libc::rusage {
    // SAFETY: rusage is plain data.
    unsafe { std::mem::zeroed() }
}
