//! Thin, allocation-free wrappers over the raw syscalls the launcher and the sandbox child make.
//!
//! Invariants: nothing in this module allocates, locks or touches Rust's std I/O, so every
//! function may be called between `fork` and `execve` (only async-signal-safe work there).
//! Paths come in as `&CStr` prepared before the fork. Each wrapper returns the raw `Errno`; the
//! caller attaches the context (which step, which path) because building a message allocates.

use std::ffi::CStr;
use std::os::fd::RawFd;
use std::ptr;

use nix::errno::Errno;

/// Result of a raw syscall: the errno is all the context a post-fork caller can afford.
pub type SysResult<T> = Result<T, Errno>;

fn check(ret: libc::c_int) -> SysResult<libc::c_int> {
    if ret < 0 { Err(Errno::last()) } else { Ok(ret) }
}

fn check_long(ret: libc::c_long) -> SysResult<libc::c_long> {
    if ret < 0 { Err(Errno::last()) } else { Ok(ret) }
}

fn opt_ptr(s: Option<&CStr>) -> *const libc::c_char {
    s.map_or(ptr::null(), CStr::as_ptr)
}

/// mount(2).
pub fn mount(
    src: Option<&CStr>,
    target: &CStr,
    fstype: Option<&CStr>,
    flags: libc::c_ulong,
    data: Option<&CStr>,
) -> SysResult<()> {
    // SAFETY: all pointers are NUL-terminated strings or null, valid for the call.
    let ret = unsafe {
        libc::mount(
            opt_ptr(src),
            target.as_ptr(),
            opt_ptr(fstype),
            flags,
            opt_ptr(data).cast(),
        )
    };
    check(ret).map(drop)
}

/// A read-only bind mount takes two calls: the bind, then a remount that applies the flags
/// (the kernel ignores MS_RDONLY on the bind itself).
pub fn bind_mount(src: &CStr, target: &CStr, extra: libc::c_ulong) -> SysResult<()> {
    mount(Some(src), target, None, libc::MS_BIND | libc::MS_REC, None)?;
    if extra != 0 {
        remount_bind(target, extra)?;
    }
    Ok(())
}

/// Changes the per-mount flags of an existing (bind) mount.
pub fn remount_bind(target: &CStr, flags: libc::c_ulong) -> SysResult<()> {
    mount(
        None,
        target,
        None,
        libc::MS_REMOUNT | libc::MS_BIND | flags,
        None,
    )
}

/// umount2(target, MNT_DETACH).
pub fn umount_detach(target: &CStr) -> SysResult<()> {
    // SAFETY: `target` is a valid C string.
    check(unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) }).map(drop)
}

/// pivot_root(2); there is no libc wrapper.
pub fn pivot_root(new_root: &CStr, put_old: &CStr) -> SysResult<()> {
    // SAFETY: both are valid C strings.
    let ret = unsafe { libc::syscall(libc::SYS_pivot_root, new_root.as_ptr(), put_old.as_ptr()) };
    check_long(ret).map(drop)
}

pub fn chdir(path: &CStr) -> SysResult<()> {
    // SAFETY: valid C string.
    check(unsafe { libc::chdir(path.as_ptr()) }).map(drop)
}

/// mkdir(2) that treats an existing entry as success.
pub fn mkdir(path: &CStr, mode: libc::mode_t) -> SysResult<()> {
    // SAFETY: valid C string.
    match check(unsafe { libc::mkdir(path.as_ptr(), mode) }) {
        Ok(_) | Err(Errno::EEXIST) => Ok(()),
        Err(e) => Err(e),
    }
}

/// `mkdir -p` on a mutable NUL-terminated buffer: each '/' is turned into a NUL in turn, so no
/// allocation is needed. The buffer is restored before returning.
pub fn mkdir_p(path: &mut [u8], mode: libc::mode_t) -> SysResult<()> {
    let len = path.iter().position(|&b| b == 0).ok_or(Errno::EINVAL)?;
    for i in 1..=len {
        if i == len || path[i] == b'/' {
            let saved = path[i];
            path[i] = 0;
            // SAFETY: path[..=i] is NUL-terminated now.
            let ret = unsafe { libc::mkdir(path.as_ptr().cast(), mode) };
            let err = Errno::last();
            path[i] = saved;
            if ret < 0 && err != Errno::EEXIST {
                return Err(err);
            }
        }
    }
    Ok(())
}

pub fn symlink(target: &CStr, link: &CStr) -> SysResult<()> {
    // SAFETY: valid C strings.
    match check(unsafe { libc::symlink(target.as_ptr(), link.as_ptr()) }) {
        Ok(_) | Err(Errno::EEXIST) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Creates a character device node (the template's /dev).
pub fn mknod_char(path: &CStr, major: u32, minor: u32) -> SysResult<()> {
    let dev = libc::makedev(major, minor);
    // SAFETY: valid C string.
    match check(unsafe { libc::mknod(path.as_ptr(), libc::S_IFCHR | 0o666, dev) }) {
        Ok(_) | Err(Errno::EEXIST) => Ok(()),
        Err(e) => Err(e),
    }
}

/// open(2) returning the raw fd; O_CLOEXEC is always added.
pub fn open(path: &CStr, flags: libc::c_int, mode: libc::mode_t) -> SysResult<RawFd> {
    // SAFETY: valid C string.
    check(unsafe { libc::open(path.as_ptr(), flags | libc::O_CLOEXEC, mode) })
}

pub fn close(fd: RawFd) {
    // SAFETY: closing an fd we own; errors are irrelevant here.
    unsafe { libc::close(fd) };
}

/// Writes all of `buf`, retrying on EINTR and short writes.
pub fn write_all(fd: RawFd, mut buf: &[u8]) -> SysResult<()> {
    while !buf.is_empty() {
        // SAFETY: buf is a valid slice.
        let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if n < 0 {
            match Errno::last() {
                Errno::EINTR => continue,
                e => return Err(e),
            }
        }
        buf = &buf[n as usize..];
    }
    Ok(())
}

/// read(2) retrying on EINTR.
pub fn read(fd: RawFd, buf: &mut [u8]) -> SysResult<usize> {
    loop {
        // SAFETY: buf is a valid mutable slice.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            return Ok(n as usize);
        }
        match Errno::last() {
            Errno::EINTR => continue,
            e => return Err(e),
        }
    }
}

pub fn sethostname(name: &[u8]) -> SysResult<()> {
    // SAFETY: name is a valid slice; the kernel takes an explicit length.
    check(unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) }).map(drop)
}

pub fn setrlimit(resource: libc::__rlimit_resource_t, value: u64) -> SysResult<()> {
    let lim = libc::rlimit {
        rlim_cur: value,
        rlim_max: value,
    };
    // SAFETY: lim is a valid rlimit.
    check(unsafe { libc::setrlimit(resource, &lim) }).map(drop)
}

pub fn unshare(flags: libc::c_int) -> SysResult<()> {
    // SAFETY: no pointers.
    check(unsafe { libc::unshare(flags) }).map(drop)
}

pub fn setns(fd: RawFd, nstype: libc::c_int) -> SysResult<()> {
    // SAFETY: no pointers.
    check(unsafe { libc::setns(fd, nstype) }).map(drop)
}

pub fn dup2(from: RawFd, to: RawFd) -> SysResult<()> {
    // SAFETY: no pointers.
    check(unsafe { libc::dup2(from, to) }).map(drop)
}

/// Marks every fd from `first` upwards close-on-exec (close_range, Linux 5.11+).
pub fn cloexec_from(first: RawFd) -> SysResult<()> {
    // SAFETY: no pointers.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first as libc::c_uint,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    check_long(ret).map(drop)
}

/// Closes every fd in `first..=last`.
pub fn close_range(first: RawFd, last: RawFd) {
    if first > last {
        return;
    }
    // SAFETY: no pointers; closing fds this process owns.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first as libc::c_uint,
            last as libc::c_uint,
            0,
        )
    };
}

/// The stack a vfork-style sandbox child runs on, with a guard page below it.
///
/// Mapped once per launcher, so starting a sandbox never allocates. The child cannot use the
/// launcher's stack: both run in one address space until the child's execve.
pub struct ChildStack {
    base: *mut libc::c_void,
    len: usize,
}

impl ChildStack {
    /// Room for the child's setup (a few KiB deep: one PATH_MAX buffer is the largest frame)
    /// with a wide margin; untouched pages cost nothing.
    const LEN: usize = 256 * 1024;

    /// mmap(2)s the stack and makes its lowest page a guard, so an overflow faults instead of
    /// writing over the launcher's memory.
    pub fn map() -> SysResult<Self> {
        let len = Self::LEN;
        // SAFETY: a fresh anonymous mapping; no existing memory is touched.
        let base = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(Errno::last());
        }
        // SAFETY: the first page of the mapping made above.
        if unsafe { libc::mprotect(base, page_size(), libc::PROT_NONE) } < 0 {
            let e = Errno::last();
            // SAFETY: unmapping exactly the mapping made above.
            unsafe { libc::munmap(base, len) };
            return Err(e);
        }
        Ok(Self { base, len })
    }

    /// The initial stack pointer: the top of the mapping, 16-byte aligned as both ABIs want.
    fn top(&self) -> *mut libc::c_void {
        let top = self.base as usize + self.len;
        (top & !15) as *mut libc::c_void
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size).unwrap_or(4096)
}

/// vfork-like clone(2) with extra namespace flags and CLONE_PIDFD: the child runs
/// `child(arg)` on `stack`, sharing the caller's memory, and the caller sleeps until the child
/// has called execve or exited. Returns the child's host pid and a pidfd for it.
///
/// Why not fork-like: copying the launcher's address space (a fork of the worker, so its
/// whole page table) and tearing the copy down again at execve was ~7 % of the CPU of a
/// sandboxed burst, for a child that only makes syscalls on prepared data.
///
/// # Safety
/// `child` must never return into the caller's frames: it makes only raw syscalls on memory
/// that stays valid while the caller sleeps, writes nothing the caller reads afterwards, and
/// ends in execve or `_exit`. The caller must be single-threaded (the launcher is), so no
/// other thread runs on the shared memory meanwhile.
pub unsafe fn clone_vfork(
    ns_flags: libc::c_int,
    stack: &ChildStack,
    child: extern "C" fn(*mut libc::c_void) -> libc::c_int,
    arg: *mut libc::c_void,
) -> SysResult<(libc::pid_t, RawFd)> {
    let mut pidfd: libc::c_int = -1;
    let flags = ns_flags | libc::CLONE_VM | libc::CLONE_VFORK | libc::CLONE_PIDFD | libc::SIGCHLD;
    // SAFETY: the stack is a live mapping of ours; with CLONE_PIDFD the kernel writes the
    // pidfd through the parent_tid argument, which outlives the call.
    let pid = unsafe {
        libc::clone(
            child,
            stack.top(),
            flags,
            arg,
            &mut pidfd as *mut libc::c_int,
        )
    };
    check(pid).map(|pid| (pid, pidfd))
}

/// pidfd_send_signal(2): signals exactly the process the pidfd names, never a recycled pid.
pub fn pidfd_kill(pidfd: RawFd, sig: libc::c_int) -> SysResult<()> {
    // SAFETY: null siginfo is allowed.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd,
            sig,
            ptr::null::<u8>(),
            0,
        )
    };
    check_long(ret).map(drop)
}

/// wait4(pid) blocking; returns the raw wait status and the child's resource usage.
pub fn wait4(pid: libc::pid_t) -> SysResult<(libc::c_int, libc::rusage)> {
    let mut status = 0;
    // SAFETY: rusage is plain data; zeroed is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: status and usage are valid out-pointers.
        let ret = unsafe { libc::wait4(pid, &mut status, libc::__WALL, &mut usage) };
        match check(ret) {
            Ok(_) => return Ok((status, usage)),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Polls two fds for readability; returns (first ready, second ready).
pub fn poll2(a: RawFd, b: RawFd, timeout_ms: libc::c_int) -> SysResult<(bool, bool)> {
    let mut fds = [
        libc::pollfd {
            fd: a,
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: b,
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    loop {
        // SAFETY: fds is a valid array of two pollfd.
        let ret = unsafe { libc::poll(fds.as_mut_ptr(), 2, timeout_ms) };
        match check(ret) {
            Ok(_) => return Ok((fds[0].revents != 0, fds[1].revents != 0)),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Restores default dispositions for signals a parent may ignore (Rust ignores SIGPIPE) and
/// unblocks everything: ignored signals and the mask survive execve.
pub fn reset_signals() {
    for sig in [
        libc::SIGPIPE,
        libc::SIGCHLD,
        libc::SIGINT,
        libc::SIGQUIT,
        libc::SIGTERM,
        libc::SIGHUP,
    ] {
        // SAFETY: SIG_DFL is always a valid disposition.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    }
    // SAFETY: an empty set, built in place.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, ptr::null_mut());
    }
}

/// prctl with integer arguments.
pub fn prctl(option: libc::c_int, arg2: libc::c_ulong) -> SysResult<()> {
    // SAFETY: integer-only prctl options.
    check(unsafe { libc::prctl(option, arg2, 0, 0, 0) }).map(drop)
}

/// Brings the loopback interface of the current network namespace up (a fresh namespace has
/// `lo` down, so even 127.0.0.1 would be unreachable).
pub fn loopback_up() -> SysResult<()> {
    // SAFETY: plain socket creation.
    let sock =
        check(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: ifreq is plain data; zeroed is valid.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    req.ifr_name[0] = b'l' as libc::c_char;
    req.ifr_name[1] = b'o' as libc::c_char;
    req.ifr_ifru.ifru_flags = (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
    // SAFETY: SIOCSIFFLAGS reads a valid ifreq.
    let ret = unsafe { libc::ioctl(sock, libc::SIOCSIFFLAGS, &req) };
    close(sock);
    check(ret).map(drop)
}

/// CLOCK_MONOTONIC in nanoseconds.
pub fn monotonic_ns() -> u64 {
    // SAFETY: timespec is plain data; clock_gettime fills it.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
