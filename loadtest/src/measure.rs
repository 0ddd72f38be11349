//! What the load generators observe from the client side, recorded as it happens: every
//! call's intended start and latency, failures by kind, and the ids codex32 accepted.
//!
//! Latency runs from the moment a call was *due*, not from when it was sent: an open-loop
//! generator that falls behind (or waits for a free connection) shows the delay as latency
//! instead of hiding it (no coordinated omission).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::client::CallError;

/// One call: when it was due (since the run started), how long until its answer, and how
/// many executions it carried (a batch carries many).
#[derive(Debug, Clone, Copy)]
pub struct Call {
    pub due: Duration,
    pub latency: Duration,
    pub items: u32,
}

/// Everything observed, once the load has stopped.
#[derive(Debug, Default)]
pub struct Observed {
    /// Submissions: one per request (a batch request is one call).
    pub enqueues: Vec<Call>,
    /// Dashboard-like reads, by kind (`list`, `get`, `logs`).
    pub reads: BTreeMap<&'static str, Vec<Call>>,
    /// Failed calls by kind, e.g. `submit: http 503 unavailable`.
    pub errors: BTreeMap<String, u64>,
    /// Executions asked for.
    pub submitted: u64,
    /// Ids codex32 answered with, in arrival order (duplicates kept).
    pub accepted: Vec<Uuid>,
}

/// Shared by every generator task of a run.
pub struct Recorder {
    pub start: Instant,
    pub started_at: DateTime<Utc>,
    accepted_count: AtomicU64,
    inner: Mutex<Observed>,
}

impl Recorder {
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
            started_at: Utc::now(),
            accepted_count: AtomicU64::new(0),
            inner: Mutex::default(),
        }
    }

    fn call(&self, due: Instant, items: usize) -> Call {
        Call {
            due: due.saturating_duration_since(self.start),
            latency: due.elapsed(),
            items: u32::try_from(items).unwrap_or(u32::MAX),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut Observed) -> R) -> R {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut inner)
    }

    /// A submission of `items` executions due at `due` ended with `result`.
    pub fn submitted(&self, due: Instant, items: usize, result: Result<Vec<Uuid>, CallError>) {
        let call = self.call(due, items);
        match result {
            Ok(ids) => {
                self.accepted_count
                    .fetch_add(ids.len() as u64, Ordering::Relaxed);
                self.with(|o| {
                    o.submitted += items as u64;
                    o.enqueues.push(call);
                    o.accepted.extend(ids);
                });
            }
            Err(e) => self.with(|o| {
                o.submitted += items as u64;
                *o.errors.entry(format!("submit: {}", e.kind)).or_default() += 1;
            }),
        }
    }

    /// A read of `kind` due at `due` ended with `result`.
    pub fn read(&self, kind: &'static str, due: Instant, result: Result<(), CallError>) {
        let call = self.call(due, 1);
        self.with(|o| match result {
            Ok(()) => o.reads.entry(kind).or_default().push(call),
            Err(e) => *o.errors.entry(format!("{kind}: {}", e.kind)).or_default() += 1,
        });
    }

    /// A failure outside the submit and read calls (a WebSocket closed, a poll failed).
    pub fn error(&self, kind: String) {
        self.with(|o| *o.errors.entry(kind).or_default() += 1);
    }

    /// Executions accepted so far (for the progress bar).
    pub fn accepted(&self) -> u64 {
        self.accepted_count.load(Ordering::Relaxed)
    }

    /// Some accepted id, chosen by `pick` among those so far (for reads of live executions).
    pub fn some_accepted(&self, pick: usize) -> Option<Uuid> {
        self.with(|o| {
            let n = o.accepted.len();
            (n > 0).then(|| o.accepted[pick % n])
        })
    }

    /// The oldest accepted id: ids grow with time, so nothing the run made is older.
    pub fn first_accepted(&self) -> Option<Uuid> {
        self.with(|o| o.accepted.iter().min().copied())
    }

    /// Everything recorded so far, leaving the recorder empty.
    pub fn take(&self) -> Observed {
        self.with(std::mem::take)
    }
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}
