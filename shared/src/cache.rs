//! A small map whose entries are trusted for a fixed time: for values read from the store on
//! every request or execution (API keys, bots, secrets) that change rarely. Whoever changes
//! such a value announces it on the bus and holders evict it; the time bounds a missed
//! announcement.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Entries kept at most; the map starts over when full.
const MAX_ENTRIES: usize = 10_000;

pub struct TtlCache<K, V> {
    state: Mutex<State<K, V>>,
    ttl: Duration,
}

struct State<K, V> {
    entries: HashMap<K, (V, Instant)>,
    /// Counts evictions, so a value read before one is not put back after it (a reader that
    /// read just before a change committed would otherwise cache what the change replaced).
    evictions: u64,
}

/// Where [`TtlCache::since`] was taken: a value read after it is only kept if nothing was
/// evicted meanwhile.
#[derive(Debug, Clone, Copy)]
pub struct Mark(u64);

impl<K: Eq + Hash, V: Clone> TtlCache<K, V> {
    pub fn new(ttl: Duration) -> Self {
        Self {
            state: Mutex::new(State {
                entries: HashMap::new(),
                evictions: 0,
            }),
            ttl,
        }
    }

    /// The value, if it was put less than the TTL ago.
    pub fn get<Q: Eq + Hash + ?Sized>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
    {
        let state = self.state.lock().ok()?;
        let (value, put) = state.entries.get(key)?;
        (put.elapsed() < self.ttl).then(|| value.clone())
    }

    /// Take this before reading a value from the store; hand it to [`Self::put`].
    pub fn since(&self) -> Mark {
        Mark(self.state.lock().map_or(u64::MAX, |s| s.evictions))
    }

    /// Keeps a value read from the store after `read_after` — unless something was evicted
    /// since, when the value may predate the change that evicted it.
    pub fn put(&self, key: K, value: V, read_after: Mark) {
        if let Ok(mut state) = self.state.lock()
            && state.evictions == read_after.0
        {
            if state.entries.len() >= MAX_ENTRIES {
                state.entries.clear();
            }
            state.entries.insert(key, (value, Instant::now()));
        }
    }

    /// Keeps only the entries `keep` accepts (an eviction: see [`Self::since`]).
    pub fn retain(&self, mut keep: impl FnMut(&K, &V) -> bool) {
        if let Ok(mut state) = self.state.lock() {
            state.evictions += 1;
            state.entries.retain(|k, (v, _)| keep(k, v));
        }
    }

    pub fn clear(&self) {
        self.retain(|_, _| false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_and_can_be_evicted() {
        let cache = TtlCache::new(Duration::from_secs(3600));
        cache.put("a", 1, cache.since());
        cache.put("b", 2, cache.since());
        assert_eq!((cache.get("a"), cache.get("c")), (Some(1), None));
        cache.retain(|k, _| *k != "a");
        assert_eq!((cache.get("a"), cache.get("b")), (None, Some(2)));
        cache.clear();
        assert_eq!(cache.get("b"), None);
        let expired = TtlCache::new(Duration::ZERO);
        expired.put("a", 1, expired.since());
        assert_eq!(expired.get("a"), None);
    }
}
