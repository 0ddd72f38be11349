//! When API keys and webhooks were last used, written at most once a minute per credential.
//!
//! The value read from the store cannot be the only guard: the key cache holds it for a while
//! (and a webhook is read fresh on each delivery), so every request in that window would see
//! the same old `last_used_at` and write its own update — at a thousand requests a second,
//! hundreds of updates of one row, queued on its lock, holding the pool's connections while
//! the requests behind them wait. This process remembers which writes it has started.

use std::collections::HashMap;
use std::sync::Mutex;

use codex32_shared::Timestamp;
use uuid::Uuid;

/// How stale a recorded use may be before the next use is written.
pub const EVERY_MS: i64 = 60_000;

/// Marks kept before the old ones are dropped (they only stop a write, never cause one).
const MARKS_KEPT: usize = 10_000;

/// The uses this process has started writing, by credential id.
#[derive(Default)]
pub struct LastUse {
    written: Mutex<HashMap<Uuid, i64>>,
}

impl LastUse {
    /// Whether a use of credential `id` at `now` is to be written, given the last use the store
    /// knew of (`stored`). True at most once per [`EVERY_MS`] per id in this process; the
    /// caller that gets true writes.
    pub fn due(&self, id: Uuid, stored: Option<Timestamp>, now: Timestamp) -> bool {
        let now = now.millis();
        let fresh = |at: i64| now - at <= EVERY_MS;
        if stored.is_some_and(|at| fresh(at.millis())) {
            return false;
        }
        let mut written = self.written.lock().unwrap_or_else(|p| p.into_inner());
        if written.get(&id).is_some_and(|at| fresh(*at)) {
            return false;
        }
        if written.len() >= MARKS_KEPT {
            written.retain(|_, at| fresh(*at));
        }
        written.insert(id, now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(millis: i64) -> Timestamp {
        Timestamp::from_millis(millis)
    }

    #[test]
    fn a_credential_is_written_once_a_minute_however_stale_the_stored_value() {
        let uses = LastUse::default();
        let (key, other) = (Uuid::now_v7(), Uuid::now_v7());
        let start = 1_800_000_000_000;
        assert!(uses.due(key, None, at(start)));
        // The cache still says "never used": no second write within the minute.
        for ms in [0, 1, 30_000, EVERY_MS] {
            assert!(!uses.due(key, None, at(start + ms)), "{ms} ms later");
        }
        // Another credential has its own minute.
        assert!(uses.due(other, None, at(start + 1)));
        assert!(uses.due(key, None, at(start + EVERY_MS + 1)));
    }

    #[test]
    fn a_recent_use_in_the_store_needs_no_write() {
        let uses = LastUse::default();
        let key = Uuid::now_v7();
        let now = 1_800_000_000_000;
        // Another API process wrote it 10 s ago.
        assert!(!uses.due(key, Some(at(now - 10_000)), at(now)));
        assert!(uses.due(key, Some(at(now - EVERY_MS - 1)), at(now)));
    }

    #[test]
    fn old_marks_are_dropped_when_many_credentials_were_used() {
        let uses = LastUse::default();
        let start = 1_800_000_000_000;
        for _ in 0..MARKS_KEPT {
            assert!(uses.due(Uuid::now_v7(), None, at(start)));
        }
        let recent = Uuid::now_v7();
        assert!(uses.due(recent, None, at(start + EVERY_MS + 1)));
        let kept = uses.written.lock().expect("not poisoned").len();
        assert_eq!(kept, 1, "only the fresh mark is kept");
        assert!(!uses.due(recent, None, at(start + EVERY_MS + 2)));
    }
}
