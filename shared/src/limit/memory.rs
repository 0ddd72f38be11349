//! The in-process limiter of the embedded deployment.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::{Decision, LimitError, Limiter};

/// Keys kept before expired windows are swept.
const SWEEP_AT: usize = 10_000;

#[derive(Default)]
pub struct MemoryLimiter {
    windows: Mutex<HashMap<String, (u32, Instant)>>,
}

#[async_trait]
impl Limiter for MemoryLimiter {
    async fn hit(&self, key: &str, limit: u32, window: Duration) -> Result<Decision, LimitError> {
        let mut windows = self
            .windows
            .lock()
            .map_err(|_| LimitError("poisoned".into()))?;
        let now = Instant::now();
        if windows.len() > SWEEP_AT {
            windows.retain(|_, (_, ends)| *ends > now);
        }
        let entry = windows.entry(key.to_owned()).or_insert((0, now + window));
        if entry.1 <= now {
            *entry = (0, now + window);
        }
        entry.0 += 1;
        Ok(if entry.0 > limit {
            Decision::Limited {
                retry_after: entry.1 - now,
            }
        } else {
            Decision::Allowed
        })
    }
}
