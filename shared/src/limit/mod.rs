//! Rate limits: a fixed-window counter per key (a caller, an IP, an account being logged into),
//! shared by every API process through Redis in the distributed deployment and kept in
//! process in the embedded one. A limiter that cannot reach Redis lets requests through
//! (and says so in the log): an outage of the limiter must not become an outage of the API.

pub mod memory;
pub mod redis;

use std::time::Duration;

use async_trait::async_trait;

/// The answer for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    /// Over the limit: try again after this long.
    Limited {
        retry_after: Duration,
    },
}

#[derive(Debug, thiserror::Error)]
#[error("rate limiter unavailable: {0}")]
pub struct LimitError(pub String);

/// Counts hits per key within a window.
#[async_trait]
pub trait Limiter: Send + Sync {
    /// Counts one hit of `key`; more than `limit` in the `window` that began with the key's first
    /// hit is limited.
    async fn hit(&self, key: &str, limit: u32, window: Duration) -> Result<Decision, LimitError>;
}
