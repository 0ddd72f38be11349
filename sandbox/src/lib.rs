//! codex32 container engine: runs bots in lightweight sandboxes built from Linux namespaces,
//! a read-only pivot_root'ed root, dropped capabilities, seccomp and cgroup limits.
//!
//! Shape: an [`Engine`] per worker owns a fixed number of slots. Each slot is a long-lived
//! launcher process living in the slot's cgroups, so every sandbox it clones is born inside
//! them (moving a process between cgroups is the slow part on v1 kernels). [`Engine::spawn`]
//! returns a [`Sandbox`] once the program is exec'd; [`Sandbox::wait`] returns its
//! [`Outcome`]; [`Sandbox::kill`] ends it (timeouts are the caller's).
//!
//! The API is synchronous and runtime-agnostic: run `wait` on a blocking thread, or poll
//! [`Sandbox::exit_fd`] for readability first.
//!
//! Module map: `engine` (spawn, lifecycle), `slot` (one launcher and its cgroup), `sandbox` (handle), `launcher` (the per-slot process),
//! `child` (clone → execve), `rootfs` (template root), `privs` + `seccomp` (privilege drop),
//! `cgroup` (v1/v2 back-ends), `wire` (engine ↔ launcher messages), `sys` (raw syscalls),
//! `probe` (host checks and sweep).

mod cgroup;
mod child;
mod engine;
mod error;
mod launcher;
mod privs;
mod probe;
mod rootfs;
mod sandbox;
mod seccomp;
mod slot;
mod spec;
mod step;
mod sys;
mod wire;

pub use engine::Engine;
pub use error::SandboxError;
pub use sandbox::Sandbox;
pub use spec::{
    CgroupVersion, Enforcement, EngineConfig, Limits, Outcome, Probe, SandboxSpec, SweepReport,
    Usage,
};
