//! Everything the codex32 processes share: the domain types, the typed configuration,
//! telemetry set-up, and the three side-effect boundaries — the store (source of truth),
//! the queue (dispatch index) and the bus (event fanout) — each a trait with a distributed
//! (PostgreSQL / Redis) and an embedded (SQLite / in-process) implementation.

pub mod backends;
pub mod batch;
pub mod bus;
pub mod cache;
pub mod config;
pub mod cron;
pub mod domain;
pub mod limit;
pub mod panics;
pub mod queue;
pub mod retry;
pub mod secrets;
pub mod services;
pub mod store;
pub mod submit;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
pub mod time;

pub use backends::Backends;
pub use config::Config;
pub use time::Timestamp;
