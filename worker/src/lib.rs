//! The codex32 worker: pulls executions of its pools from the queue, leases them in the
//! store, runs each through an [`executor::Executor`], heartbeats its leases, and writes the
//! result only while it still holds the lease (design §3.2). On shutdown it stops pulling,
//! lets running executions finish within a grace period, and hands back the rest.

mod dispatch;
pub mod executor;
mod health;
mod heartbeat;
mod logs;
pub mod noop;
mod runner;
pub mod sandboxed;
mod service;
mod verdict;

pub use dispatch::run;
pub use logs::LogSink;
