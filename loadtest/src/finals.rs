//! Waiting until every accepted execution is final, cheaply — the queue's depth for the
//! progress bar, two one-row list calls to confirm — and then reading them all back in pages
//! of 500 for their timestamps. No per-execution polling: the waiting costs codex32 a few
//! requests a second whatever the load.

use std::time::{Duration, Instant};

use indicatif::ProgressBar;
use uuid::Uuid;

use crate::client::{Api, CallError, ExecRow, PAGE};

/// How often the queue depth is read while waiting.
const POLL: Duration = Duration::from_millis(100);
/// How long the wait goes on once the run was interrupted.
const AFTER_INTERRUPT: Duration = Duration::from_secs(10);
/// How often the store is asked, when the queue does not say the pool is empty.
const CONFIRM_EVERY: Duration = Duration::from_secs(1);

/// Waits until none of `bots`' executions (None: none at all that the key sees) is queued
/// or running, up to `timeout`; false if some still were then. The bar shows `expected`
/// minus what the pool's queue still holds.
pub async fn await_finals(
    api: &Api,
    bots: Option<&[Uuid]>,
    pool: &str,
    expected: u64,
    timeout: Duration,
    bar: &ProgressBar,
) -> bool {
    let mut deadline = Instant::now() + timeout;
    let mut last_confirm = Instant::now();
    loop {
        if crate::interrupt::requested() {
            // Idempotent: once cut, a later `now + AFTER_INTERRUPT` is never the earlier one.
            deadline = deadline.min(Instant::now() + AFTER_INTERRUPT);
        }
        let depth = api.queue_depth(pool).await.ok();
        if let Some(depth) = depth {
            bar.set_position(expected.saturating_sub(depth));
        }
        let confirm = depth == Some(0) || last_confirm.elapsed() >= CONFIRM_EVERY;
        if confirm {
            last_confirm = Instant::now();
            match none_live(api, bots).await {
                Ok(true) => {
                    bar.set_position(expected);
                    return true;
                }
                // The key's rate limit: asking again before it allows only spends the wait.
                Err(e) if e.is_rate_limited() => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    let wait = e.retry_after.unwrap_or(POLL).min(MAX_RETRY_WAIT).min(left);
                    tokio::time::sleep(wait).await;
                }
                _ => {}
            }
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Whether no execution of these bots (None: of any bot) is queued or running.
async fn none_live(api: &Api, bots: Option<&[Uuid]>) -> Result<bool, CallError> {
    let scope: Vec<Option<Uuid>> = match bots {
        Some(bots) => bots.iter().copied().map(Some).collect(),
        None => vec![None],
    };
    for bot in scope {
        for status in ["queued", "running"] {
            if !api.list(bot, Some(status), None, 1).await?.is_empty() {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// Every execution of `bot` not older than `since` (an id: ids grow with time), newest first.
pub async fn fetch_all(
    api: &Api,
    bot: Uuid,
    since: Option<Uuid>,
) -> Result<Vec<ExecRow>, CallError> {
    let mut all = Vec::new();
    let mut before = None;
    loop {
        let page = with_retries(|| api.list(Some(bot), None, before, PAGE)).await?;
        let full = page.len() == PAGE;
        before = page.last().map(|e| e.id);
        let old_reached = page.iter().any(|e| since.is_some_and(|s| e.id < s));
        all.extend(page.into_iter().filter(|e| since.is_none_or(|s| e.id >= s)));
        if !full || old_reached {
            return Ok(all);
        }
    }
}

/// How often a read after the load is tried before the run gives up on it; more often when
/// the API's rate limit refused it, since its `Retry-After` says when it will not.
const TRIES: u32 = 5;
const TRIES_RATE_LIMITED: u32 = 30;
/// The longest wait between two tries, whatever `Retry-After` says.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(5);

/// A read after the load: a busy server gets a few tries before the run gives up on it.
async fn with_retries<T, F, Fut>(mut call: F) -> Result<T, CallError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, CallError>>,
{
    let mut tries = 0;
    loop {
        match call().await {
            Ok(v) => return Ok(v),
            Err(e) => {
                let most = if e.is_rate_limited() {
                    TRIES_RATE_LIMITED
                } else {
                    TRIES
                };
                if tries >= most {
                    return Err(e);
                }
                tries += 1;
                let backoff = Duration::from_millis(200 * u64::from(tries));
                let wait = e
                    .retry_after
                    .map_or(backoff, |after| after.min(MAX_RETRY_WAIT));
                tokio::time::sleep(wait).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    /// A call that fails `failures` times with `kind`, then answers; and how often it ran.
    async fn flaky(kind: &str, failures: u32) -> (Result<(), CallError>, u32) {
        let calls = AtomicU32::new(0);
        let result = with_retries(|| {
            let n = calls.fetch_add(1, Ordering::Relaxed);
            let error = CallError {
                kind: kind.to_owned(),
                message: None,
                retry_after: Some(Duration::from_millis(1)),
            };
            async move { if n < failures { Err(error) } else { Ok(()) } }
        })
        .await;
        (result, calls.load(Ordering::Relaxed))
    }

    #[tokio::test]
    async fn reads_refused_by_the_rate_limit_are_tried_until_it_allows_them() {
        let (result, calls) = flaky("http 429 rate_limited", TRIES + 3).await;
        assert!(result.is_ok());
        assert_eq!(calls, TRIES + 4);
        let (result, calls) = flaky("http 429 rate_limited", TRIES_RATE_LIMITED + 1).await;
        assert_eq!(result.unwrap_err().kind, "http 429 rate_limited");
        assert_eq!(calls, TRIES_RATE_LIMITED + 1);
    }

    #[tokio::test]
    async fn other_failed_reads_get_a_few_tries() {
        let (result, calls) = flaky("http 500 internal", 2).await;
        assert!(result.is_ok());
        assert_eq!(calls, 3);
        let (result, calls) = flaky("http 500 internal", TRIES + 1).await;
        assert_eq!(result.unwrap_err().kind, "http 500 internal");
        assert_eq!(calls, TRIES + 1);
    }
}
