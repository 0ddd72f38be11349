//! A small map whose entries are trusted for a fixed time: for values read from the store on
//! every request or execution (API keys, secrets) that change rarely. Whoever changes such a
//! value announces it on the bus and holders evict it; the time bounds a missed announcement.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Entries kept at most; the map starts over when full.
const MAX_ENTRIES: usize = 10_000;

pub struct TtlCache<K, V> {
    entries: Mutex<HashMap<K, (V, Instant)>>,
    ttl: Duration,
}

impl<K: Eq + Hash, V: Clone> TtlCache<K, V> {
    pub fn new(ttl: Duration) -> Self {
        Self {
            entries: Mutex::default(),
            ttl,
        }
    }

    /// The value, if it was put less than the TTL ago.
    pub fn get<Q: Eq + Hash + ?Sized>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
    {
        let entries = self.entries.lock().ok()?;
        let (value, put) = entries.get(key)?;
        (put.elapsed() < self.ttl).then(|| value.clone())
    }

    pub fn put(&self, key: K, value: V) {
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
            entries.insert(key, (value, Instant::now()));
        }
    }

    /// Keeps only the entries `keep` accepts.
    pub fn retain(&self, mut keep: impl FnMut(&K, &V) -> bool) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.retain(|k, (v, _)| keep(k, v));
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
        cache.put("a", 1);
        cache.put("b", 2);
        assert_eq!((cache.get("a"), cache.get("c")), (Some(1), None));
        cache.retain(|k, _| *k != "a");
        assert_eq!((cache.get("a"), cache.get("b")), (None, Some(2)));
        cache.clear();
        assert_eq!(cache.get("b"), None);
        let expired = TtlCache::new(Duration::ZERO);
        expired.put("a", 1);
        assert_eq!(expired.get("a"), None);
    }
}
