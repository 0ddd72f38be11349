//! The template root: what every sandbox sees as `/`, planned in the engine and built once by
//! each launcher inside its private mount namespace.
//!
//! Invariants: [`plan`] runs in the engine (it inspects the host and allocates freely);
//! [`build`] runs in the launcher after fork and only executes the prepared operations with
//! raw syscalls. The template is a small tmpfs holding read-only binds of the host's /usr
//! (and /bin, /lib… as dirs or symlinks, as on the host), copies of the /etc essentials,
//! /dev nodes, and empty mount points (proc, tmp, work). Per-sandbox mounts land on those
//! mount points in the sandbox's own copy of the namespace, so the template never changes
//! after it is built (except mount points for per-spec binds, created on demand).

use std::ffi::{CStr, CString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;

use crate::error::SandboxError;
use crate::sys::{self, SysResult};

/// Host top-level entries bound (or recreated as symlinks) in host mode.
const HOST_TOP: &[&str] = &["usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32"];
/// /etc files copied into the template (content snapshot taken when a launcher starts).
const ETC_FILES: &[&str] = &[
    "passwd",
    "group",
    "hosts",
    "resolv.conf",
    "nsswitch.conf",
    "host.conf",
    "gai.conf",
    "ld.so.cache",
    "ld.so.conf",
    "localtime",
    "timezone",
    "mime.types",
];
/// /etc directories bound read-only.
const ETC_DIRS: &[&str] = &[
    "ssl",
    "ca-certificates",
    "pki",
    "alternatives",
    "ld.so.conf.d",
];
/// Character devices in /dev: (name, major, minor).
const DEVICES: &[(&str, u32, u32)] = &[
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
];
/// Flags of every read-only bind in the template.
pub const RO_FLAGS: libc::c_ulong = libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV;

/// One prepared operation on the template (paths are absolute, under the template root).
#[derive(Debug, Clone)]
pub enum Op {
    Mkdir(CString),
    /// `mkdir -p`, on a mutable NUL-terminated buffer.
    MkdirP(Vec<u8>),
    Symlink {
        target: CString,
        link: CString,
    },
    BindRo {
        src: CString,
        dst: CString,
        dir: bool,
    },
    Copy {
        src: CString,
        dst: CString,
    },
    Mknod {
        path: CString,
        major: u32,
        minor: u32,
    },
}

/// Fixed paths of a template root.
#[derive(Debug, Clone)]
pub struct RootPaths {
    pub root: CString,
    pub proc: CString,
    pub tmp: CString,
    pub work: CString,
}

fn cpath(p: &Path) -> Result<CString, SandboxError> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| SandboxError::InvalidSpec(format!("NUL in path {}", p.display())))
}

/// `root` + absolute `path` as bytes.
pub fn under(root: &Path, path: &Path) -> PathBuf {
    root.join(path.strip_prefix("/").unwrap_or(path))
}

impl RootPaths {
    pub fn new(root: &Path) -> Result<Self, SandboxError> {
        Ok(Self {
            root: cpath(root)?,
            proc: cpath(&root.join("proc"))?,
            tmp: cpath(&root.join("tmp"))?,
            work: cpath(&root.join("work"))?,
        })
    }
}

/// An entry of the source tree reproduced at `dst`: symlinks as symlinks, directories as
/// read-only binds, regular files as read-only binds (or copies when `copy_files`).
fn mirror(src: &Path, dst: &Path, copy_files: bool, ops: &mut Vec<Op>) -> Result<(), SandboxError> {
    let Ok(meta) = std::fs::symlink_metadata(src) else {
        return Ok(());
    };
    if meta.file_type().is_symlink() {
        let target = std::fs::read_link(src).map_err(|e| SandboxError::io("readlink", src, e))?;
        // A relative link (bin -> usr/bin) works as is; an absolute one resolves inside the
        // sandbox too. Files in /etc are copied instead (their target may not be bound).
        if copy_files && std::fs::metadata(src).is_ok_and(|m| m.is_file()) {
            ops.push(Op::Copy {
                src: cpath(src)?,
                dst: cpath(dst)?,
            });
        } else {
            ops.push(Op::Symlink {
                target: cpath(&target)?,
                link: cpath(dst)?,
            });
        }
    } else if meta.is_dir() {
        ops.push(Op::BindRo {
            src: cpath(src)?,
            dst: cpath(dst)?,
            dir: true,
        });
    } else if meta.is_file() {
        let (s, d) = (cpath(src)?, cpath(dst)?);
        ops.push(if copy_files {
            Op::Copy { src: s, dst: d }
        } else {
            Op::BindRo {
                src: s,
                dst: d,
                dir: false,
            }
        });
    }
    Ok(())
}

/// The operations that build a template root at `root` from the host (or from `rootfs`),
/// plus `ro_binds` at their own paths.
pub fn plan(
    root: &Path,
    rootfs: Option<&Path>,
    ro_binds: &[PathBuf],
) -> Result<Vec<Op>, SandboxError> {
    let mut ops = Vec::new();
    if let Some(base) = rootfs {
        let entries = std::fs::read_dir(base).map_err(|e| SandboxError::io("read_dir", base, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| SandboxError::io("read_dir", base, e))?;
            let name = entry.file_name();
            if matches!(
                name.as_bytes(),
                b"proc" | b"dev" | b"tmp" | b"work" | b"sys"
            ) {
                continue;
            }
            mirror(&entry.path(), &root.join(&name), false, &mut ops)?;
        }
    } else {
        for name in HOST_TOP {
            mirror(
                &Path::new("/").join(name),
                &root.join(name),
                false,
                &mut ops,
            )?;
        }
        ops.push(Op::Mkdir(cpath(&root.join("etc"))?));
        for name in ETC_FILES {
            mirror(
                &Path::new("/etc").join(name),
                &root.join("etc").join(name),
                true,
                &mut ops,
            )?;
        }
        for name in ETC_DIRS {
            mirror(
                &Path::new("/etc").join(name),
                &root.join("etc").join(name),
                false,
                &mut ops,
            )?;
        }
    }
    for dir in ["proc", "tmp", "work", "dev"] {
        ops.push(Op::Mkdir(cpath(&root.join(dir))?));
    }
    plan_dev(&root.join("dev"), &mut ops)?;
    for path in ro_binds {
        let dst = under(root, path);
        let mut buf = dst.as_os_str().as_bytes().to_vec();
        let is_dir = std::fs::metadata(path)
            .map_err(|e| SandboxError::io("stat", path, e))?
            .is_dir();
        if !is_dir {
            buf = dst.parent().unwrap_or(root).as_os_str().as_bytes().to_vec();
        }
        buf.push(0);
        ops.push(Op::MkdirP(buf));
        ops.push(Op::BindRo {
            src: cpath(path)?,
            dst: cpath(&dst)?,
            dir: is_dir,
        });
    }
    Ok(ops)
}

fn plan_dev(dev: &Path, ops: &mut Vec<Op>) -> Result<(), SandboxError> {
    for (name, major, minor) in DEVICES {
        ops.push(Op::Mknod {
            path: cpath(&dev.join(name))?,
            major: *major,
            minor: *minor,
        });
    }
    let links = [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
    ];
    for (name, target) in links
        .into_iter()
        .chain([("stderr", "/proc/self/fd/2"), ("shm", "/tmp")])
    {
        ops.push(Op::Symlink {
            target: cpath(Path::new(target))?,
            link: cpath(&dev.join(name))?,
        });
    }
    Ok(())
}

/// Creates an empty regular file as a bind-mount target.
fn touch(path: &CStr) -> SysResult<()> {
    let fd = sys::open(path, libc::O_WRONLY | libc::O_CREAT, 0o644)?;
    sys::close(fd);
    Ok(())
}

/// Copies a small file with a stack buffer.
fn copy_file(src: &CStr, dst: &CStr) -> SysResult<()> {
    let from = sys::open(src, libc::O_RDONLY, 0)?;
    let to = match sys::open(dst, libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC, 0o644) {
        Ok(fd) => fd,
        Err(e) => {
            sys::close(from);
            return Err(e);
        }
    };
    let mut buf = [0u8; 8192];
    let result = loop {
        match sys::read(from, &mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => {
                if let Err(e) = sys::write_all(to, &buf[..n]) {
                    break Err(e);
                }
            }
            Err(e) => break Err(e),
        }
    };
    sys::close(from);
    sys::close(to);
    result
}

/// Executes one operation (launcher side, after fork: no allocation).
fn apply(op: &mut Op) -> SysResult<()> {
    match op {
        Op::Mkdir(p) => sys::mkdir(p, 0o755),
        Op::MkdirP(buf) => sys::mkdir_p(buf, 0o755),
        Op::Symlink { target, link } => sys::symlink(target, link),
        Op::Copy { src, dst } => copy_file(src, dst),
        Op::Mknod { path, major, minor } => sys::mknod_char(path, *major, *minor),
        Op::BindRo { src, dst, dir } => {
            if *dir {
                sys::mkdir(dst, 0o755)?
            } else {
                touch(dst)?
            }
            sys::bind_mount(src, dst, RO_FLAGS)
        }
    }
}

/// Builds the template: a fresh tmpfs at `root` filled by `ops`. Returns the index of the
/// failing op with its errno.
pub fn build(root: &CStr, ops: &mut [Op]) -> Result<(), (usize, Errno)> {
    sys::mount(
        Some(c"tmpfs"),
        root,
        Some(c"tmpfs"),
        libc::MS_NOSUID,
        Some(c"size=16m,mode=0755"),
    )
    .map_err(|e| (usize::MAX, e))?;
    for (i, op) in ops.iter_mut().enumerate() {
        apply(op).map_err(|e| (i, e))?;
    }
    Ok(())
}
