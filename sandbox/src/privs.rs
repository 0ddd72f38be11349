//! Dropping privileges in the sandbox child: capabilities, ids, no_new_privs, seccomp.
//!
//! Invariants: runs after fork and before execve, so nothing here allocates. The order matters
//! and is fixed by [`drop_privileges`]: the bounding set needs CAP_SETPCAP, so it goes before
//! the uid change; the uid change clears the permitted and effective sets; seccomp goes last
//! because the filter denies calls made earlier (mount, setns, …).

use nix::errno::Errno;

use crate::sys::{self, SysResult};

/// The capability version the kernel's capset expects for 64-bit sets.
const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// A step of privilege dropping that failed, for the child's error report.
#[derive(Debug, Clone, Copy)]
pub enum PrivStep {
    Bounding,
    Ambient,
    Setgroups,
    Setresgid,
    Setresuid,
    Pdeathsig,
    Capset,
    NoNewPrivs,
    Seccomp,
}

/// Drops every capability from the bounding set. Stops at the first EINVAL, which means the
/// kernel knows no capability with that number (past CAP_LAST_CAP).
fn drop_bounding_set() -> SysResult<()> {
    for cap in 0..64 {
        match sys::prctl(libc::PR_CAPBSET_DROP, cap) {
            Ok(()) => {}
            Err(Errno::EINVAL) if cap > 0 => return Ok(()),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Sets effective, permitted and inheritable sets to zero.
fn clear_capsets() -> SysResult<()> {
    let mut header = CapHeader {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [CapData {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // SAFETY: header and data have the layout capset(2) expects for version 3 (two data words).
    let ret = unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) };
    if ret < 0 { Err(Errno::last()) } else { Ok(()) }
}

fn set_ids(uid: u32, gid: u32) -> Result<(), (PrivStep, Errno)> {
    // SAFETY: an empty group list with a null pointer is valid for setgroups.
    if unsafe { libc::setgroups(0, std::ptr::null()) } < 0 {
        return Err((PrivStep::Setgroups, Errno::last()));
    }
    // SAFETY: no pointers.
    if unsafe { libc::setresgid(gid, gid, gid) } < 0 {
        return Err((PrivStep::Setresgid, Errno::last()));
    }
    // SAFETY: no pointers.
    if unsafe { libc::setresuid(uid, uid, uid) } < 0 {
        return Err((PrivStep::Setresuid, Errno::last()));
    }
    Ok(())
}

/// Installs a compiled seccomp program on the calling thread (no_new_privs must be set).
fn install_seccomp(program: &[libc::sock_filter]) -> SysResult<()> {
    let prog = libc::sock_fprog {
        len: program.len() as libc::c_ushort,
        filter: program.as_ptr().cast_mut(),
    };
    // SAFETY: prog points at a valid BPF program that outlives the call (the kernel copies it).
    let ret = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            0,
            &prog as *const libc::sock_fprog,
        )
    };
    if ret < 0 { Err(Errno::last()) } else { Ok(()) }
}

/// Everything between "mounts are done" and execve: after this the process has no
/// capabilities in any set, runs as `uid:gid` with no supplementary groups, cannot gain
/// privileges through exec, and is under the seccomp filter.
pub fn drop_privileges(
    uid: u32,
    gid: u32,
    filter: &[libc::sock_filter],
) -> Result<(), (PrivStep, Errno)> {
    drop_bounding_set().map_err(|e| (PrivStep::Bounding, e))?;
    sys::prctl(
        libc::PR_CAP_AMBIENT,
        libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
    )
    .map_err(|e| (PrivStep::Ambient, e))?;
    set_ids(uid, gid)?;
    // After the uid change (which clears it): if the launcher dies, so does the sandbox, and
    // with it the whole PID namespace. Not cleared by execve of our unprivileged programs.
    sys::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong)
        .map_err(|e| (PrivStep::Pdeathsig, e))?;
    clear_capsets().map_err(|e| (PrivStep::Capset, e))?;
    sys::prctl(libc::PR_SET_NO_NEW_PRIVS, 1).map_err(|e| (PrivStep::NoNewPrivs, e))?;
    install_seccomp(filter).map_err(|e| (PrivStep::Seccomp, e))
}
