//! The sandbox child: everything between clone and execve.
//!
//! Invariants: runs in a process cloned from the (single-threaded) launcher with fresh PID,
//! mount, UTS, IPC and cgroup namespaces; it is PID 1 of its PID namespace, so when it exits
//! the kernel kills everything else inside. It shares the launcher's memory until execve
//! (vfork-style, on its own stack; the launcher sleeps meanwhile), so: only raw syscalls on
//! prepared data, no allocation, no locks, and no writes outside its own stack. Any failure
//! is reported as (step, errno) on the close-on-exec error pipe and ends the child with
//! status 127; a successful execve closes the pipe, which the launcher reads as "started".

use std::ffi::CStr;
use std::os::fd::RawFd;

use nix::errno::Errno;

use crate::launcher::LauncherCtx;
use crate::privs::{self, PrivStep};
use crate::rootfs::RO_FLAGS;
use crate::step::Step;
use crate::sys::{self, SysResult};
use crate::wire::{FLAG_NETWORK, Request};

type StepResult = Result<(), (Step, Errno)>;

trait At<T> {
    fn at(self, step: Step) -> Result<T, (Step, Errno)>;
}

impl<T> At<T> for SysResult<T> {
    fn at(self, step: Step) -> Result<T, (Step, Errno)> {
        self.map_err(|e| (step, e))
    }
}

/// Runs the child to execve; never returns.
pub fn run(ctx: &LauncherCtx, req: &Request<'_>, stdio: [RawFd; 3], err_pipe: RawFd) -> ! {
    let (step, errno) = match setup(ctx, req, stdio) {
        Ok(()) => exec(req),
        Err(failure) => failure,
    };
    let mut msg = [0u8; 8];
    msg[..4].copy_from_slice(&(step as u32).to_ne_bytes());
    msg[4..].copy_from_slice(&(errno as i32).to_ne_bytes());
    let _ = sys::write_all(err_pipe, &msg);
    // SAFETY: _exit is async-signal-safe and skips atexit handlers inherited from the worker.
    unsafe { libc::_exit(127) }
}

fn exec(req: &Request<'_>) -> (Step, Errno) {
    // SAFETY: argv and envp are NULL-terminated arrays of C strings living in the launcher's
    // request buffer, which stays untouched while the launcher sleeps until this execve.
    unsafe { libc::execve(req.program.as_ptr(), req.argv.as_ptr(), req.envp.as_ptr()) };
    (Step::Execve, Errno::last())
}

fn setup(ctx: &LauncherCtx, req: &Request<'_>, stdio: [RawFd; 3]) -> StepResult {
    network(ctx, req)?;
    // The launcher protects itself from the OOM killer; its sandboxes must be fair game.
    if ctx.oom_protected {
        write_file(c"/proc/self/oom_score_adj", b"0").at(Step::OomScore)?;
    }
    mounts(ctx, req)?;
    enter_root(ctx)?;
    sys::sethostname(req.hostname.to_bytes()).at(Step::Hostname)?;
    sys::setrlimit(libc::RLIMIT_NOFILE, req.nofile).at(Step::Rlimit)?;
    sys::setrlimit(libc::RLIMIT_CORE, 0).at(Step::Rlimit)?;
    for (i, fd) in stdio.into_iter().enumerate() {
        sys::dup2(fd, i as RawFd).at(Step::Stdio)?;
    }
    // Everything but stdio closes at exec (the error pipe too, which signals success).
    sys::cloexec_from(3).at(Step::CloseFds)?;
    sys::reset_signals();
    // SAFETY: umask has no failure mode.
    unsafe { libc::umask(0o022) };
    privs::drop_privileges(ctx.uid, ctx.gid, &ctx.seccomp).map_err(|(s, e)| (priv_step(s), e))
}

fn priv_step(s: PrivStep) -> Step {
    match s {
        PrivStep::Bounding => Step::Bounding,
        PrivStep::Ambient => Step::Ambient,
        PrivStep::Setgroups => Step::Setgroups,
        PrivStep::Setresgid => Step::Setresgid,
        PrivStep::Setresuid => Step::Setresuid,
        PrivStep::Pdeathsig => Step::Pdeathsig,
        PrivStep::Capset => Step::Capset,
        PrivStep::NoNewPrivs => Step::NoNewPrivs,
        PrivStep::Seccomp => Step::Seccomp,
    }
}

/// The launcher sits in the slot's loopback-only namespace (or the child got a fresh one);
/// `network: true` moves the child back to the host's.
fn network(ctx: &LauncherCtx, req: &Request<'_>) -> StepResult {
    if req.flags & FLAG_NETWORK != 0 {
        sys::setns(ctx.host_netns, libc::CLONE_NEWNET).at(Step::JoinHostNet)
    } else if ctx.netns_per_sandbox {
        sys::loopback_up().at(Step::Loopback)
    } else {
        Ok(())
    }
}

fn write_file(path: &CStr, data: &[u8]) -> SysResult<()> {
    let fd = sys::open(path, libc::O_WRONLY, 0)?;
    let result = sys::write_all(fd, data);
    sys::close(fd);
    result
}

/// Per-sandbox mounts on the template's mount points (in this child's namespace only).
fn mounts(ctx: &LauncherCtx, req: &Request<'_>) -> StepResult {
    let paths = &ctx.paths;
    let hardened = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    sys::mount(Some(c"proc"), &paths.proc, Some(c"proc"), hardened, None).at(Step::MountProc)?;
    sys::mount(
        Some(c"tmpfs"),
        &paths.tmp,
        Some(c"tmpfs"),
        libc::MS_NOSUID | libc::MS_NODEV,
        Some(req.tmp_opts),
    )
    .at(Step::MountTmp)?;
    sys::bind_mount(req.workdir, &paths.work, libc::MS_NOSUID | libc::MS_NODEV)
        .at(Step::BindWorkdir)?;
    for pair in req.binds.chunks_exact(2) {
        // SAFETY: decode_request filled these with pointers to NUL-terminated strings in the
        // request buffer.
        let (src, dst) = unsafe { (CStr::from_ptr(pair[0]), CStr::from_ptr(pair[1])) };
        bind_extra(src, dst).at(Step::BindExtra)?;
    }
    sys::remount_bind(&paths.root, libc::MS_RDONLY | libc::MS_NOSUID).at(Step::RemountRootRo)
}

/// A per-spec read-only bind: creates the mount point (dir or file, like the source) first.
fn bind_extra(src: &CStr, dst: &CStr) -> SysResult<()> {
    // SAFETY: stat is plain data; zeroed is valid.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: src is a valid C string, st a valid out-pointer.
    if unsafe { libc::stat(src.as_ptr(), &mut st) } < 0 {
        return Err(Errno::last());
    }
    let is_dir = st.st_mode & libc::S_IFMT == libc::S_IFDIR;
    let bytes = dst.to_bytes_with_nul();
    let mut buf = [0u8; libc::PATH_MAX as usize];
    if bytes.len() > buf.len() {
        return Err(Errno::ENAMETOOLONG);
    }
    buf[..bytes.len()].copy_from_slice(bytes);
    if is_dir {
        sys::mkdir_p(&mut buf, 0o755)?;
    } else {
        let slash = bytes.iter().rposition(|&b| b == b'/').unwrap_or(0);
        buf[slash] = 0;
        sys::mkdir_p(&mut buf, 0o755)?;
        let fd = sys::open(dst, libc::O_WRONLY | libc::O_CREAT, 0o644)?;
        sys::close(fd);
    }
    sys::bind_mount(src, dst, RO_FLAGS)
}

/// pivot_root into the template and drop the old root: `pivot_root(".", ".")` stacks the old
/// root on the new one, and a lazy unmount of "." then removes it (no put_old directory
/// needed in a read-only root).
fn enter_root(ctx: &LauncherCtx) -> StepResult {
    sys::chdir(&ctx.paths.root).at(Step::PivotRoot)?;
    sys::pivot_root(c".", c".").at(Step::PivotRoot)?;
    sys::umount_detach(c".").at(Step::UmountOldRoot)?;
    sys::chdir(c"/work").at(Step::ChdirWorkdir)
}
