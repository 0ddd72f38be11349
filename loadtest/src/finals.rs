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
    let deadline = Instant::now() + timeout;
    let mut last_confirm = Instant::now();
    loop {
        let depth = api.queue_depth(pool).await.ok();
        if let Some(depth) = depth {
            bar.set_position(expected.saturating_sub(depth));
        }
        let confirm = depth == Some(0) || last_confirm.elapsed() >= CONFIRM_EVERY;
        if confirm {
            last_confirm = Instant::now();
            if matches!(none_live(api, bots).await, Ok(true)) {
                bar.set_position(expected);
                return true;
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
            Err(e) if tries >= 5 => return Err(e),
            Err(_) => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(200 * tries)).await;
            }
        }
    }
}
