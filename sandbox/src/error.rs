//! The crate's one error type. Every variant carries its context: which syscall or step,
//! which path, which slot. Nothing here knows about HTTP or the worker's retry policy;
//! [`SandboxError::retryable`] tells the caller whether trying again could help.

use std::path::PathBuf;

use nix::errno::Errno;

/// Errors from the container engine.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// A file-system operation on a host path failed (cgroup files, state dirs, templates).
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// A syscall made by the engine itself failed.
    #[error("{call} failed: {errno}")]
    Sys { call: &'static str, errno: Errno },
    /// The sandbox child failed while setting itself up, before exec (bad program path,
    /// missing workdir, …). Nothing was left running.
    #[error("sandbox setup failed at step {step}: {errno}")]
    Setup { step: &'static str, errno: Errno },
    /// A launcher failed to build its template root or died.
    #[error("launcher of slot {slot}: {reason}")]
    Launcher { slot: usize, reason: String },
    /// Every slot is running a sandbox.
    #[error("all {0} sandbox slots are busy")]
    NoFreeSlot(usize),
    /// The spec cannot be run as given.
    #[error("invalid sandbox spec: {0}")]
    InvalidSpec(String),
    /// The seccomp filter could not be compiled.
    #[error("seccomp filter: {0}")]
    Seccomp(String),
    /// Namespaces or cgroups are not usable on this host.
    #[error("sandboxing unavailable: {0}")]
    Unavailable(String),
}

impl SandboxError {
    /// Whether the same request may succeed later on this worker (a busy slot, a launcher that
    /// can be replaced) as opposed to a bad spec or a host that cannot sandbox at all.
    pub fn retryable(&self) -> bool {
        match self {
            SandboxError::NoFreeSlot(_) | SandboxError::Launcher { .. } => true,
            SandboxError::Io { .. } | SandboxError::Sys { .. } => true,
            SandboxError::Setup { .. }
            | SandboxError::InvalidSpec(_)
            | SandboxError::Seccomp(_)
            | SandboxError::Unavailable(_) => false,
        }
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        SandboxError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn sys(call: &'static str, errno: Errno) -> Self {
        SandboxError::Sys { call, errno }
    }
}
