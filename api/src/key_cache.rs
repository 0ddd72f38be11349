//! API keys recently seen, so a client sending thousands of requests a second does not cost a
//! database read per request. A revoke evicts the key at once on the API process that made it
//! and, through the bus, on every other; an entry also expires after [`TTL`], which bounds how
//! long a key can outlive its revoke when a bus event is missed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use codex32_shared::bus::{Bus, Event};
use codex32_shared::domain::ApiKey;
use tokio::sync::broadcast::error::RecvError;
use uuid::Uuid;

/// How long a key read from the store is trusted without reading it again.
pub const TTL: Duration = Duration::from_secs(2);
/// Keys kept at most; the cache starts over when full (a few hundred bytes each).
const MAX_ENTRIES: usize = 10_000;

/// Keys by the hash of their secret, with when they were read.
pub struct KeyCache {
    entries: Mutex<HashMap<String, (ApiKey, Instant)>>,
    ttl: Duration,
}

impl KeyCache {
    /// A cache of keys trusted for `ttl` that forgets keys revoked anywhere, as the bus
    /// announces them.
    pub fn start(bus: Arc<dyn Bus>, ttl: Duration) -> Arc<Self> {
        let cache = Arc::new(Self {
            entries: Mutex::default(),
            ttl,
        });
        let mut events = bus.subscribe();
        let weak = Arc::downgrade(&cache);
        tokio::spawn(async move {
            loop {
                let event = events.recv().await;
                let Some(cache) = weak.upgrade() else { return };
                match event {
                    Ok(Event::ApiKeyRevoked { key_id }) => cache.evict(key_id),
                    Ok(_) => {}
                    // Missed events may include a revoke: start over rather than guess.
                    Err(RecvError::Lagged(_)) => cache.clear(),
                    Err(RecvError::Closed) => return,
                }
            }
        });
        cache
    }

    /// The key with this hash, if it was read less than the cache's TTL ago.
    pub fn get(&self, hash: &str) -> Option<ApiKey> {
        let entries = self.entries.lock().ok()?;
        let (key, read) = entries.get(hash)?;
        (read.elapsed() < self.ttl).then(|| key.clone())
    }

    pub fn put(&self, hash: String, key: ApiKey) {
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
            entries.insert(hash, (key, Instant::now()));
        }
    }

    pub fn evict(&self, key_id: Uuid) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.retain(|_, (key, _)| key.id != key_id);
        }
    }

    fn clear(&self) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use codex32_shared::Timestamp;
    use codex32_shared::bus::memory::MemoryBus;
    use codex32_shared::domain::Role;

    use super::*;

    fn key() -> ApiKey {
        ApiKey {
            id: Uuid::now_v7(),
            user_id: Uuid::now_v7(),
            name: "ci".into(),
            prefix: "c32_abcd".into(),
            key_hash: "h".into(),
            role: Role::User,
            created_at: Timestamp::now(),
            last_used_at: None,
            expires_at: None,
            revoked_at: None,
        }
    }

    #[tokio::test]
    async fn a_revoke_on_the_bus_evicts_only_that_key() {
        let bus: Arc<dyn Bus> = Arc::new(MemoryBus::default());
        // Entries never expire here: only the bus event can remove one.
        let cache = KeyCache::start(bus.clone(), Duration::from_secs(3600));
        let (revoked, kept) = (key(), key());
        cache.put("a".into(), revoked.clone());
        cache.put("b".into(), kept.clone());
        assert_eq!(cache.get("a").map(|k| k.id), Some(revoked.id));
        bus.publish(&Event::ApiKeyRevoked { key_id: revoked.id })
            .await
            .expect("publish");
        let evicted = async {
            while cache.get("a").is_some() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), evicted)
            .await
            .expect("the revoked key is evicted");
        assert_eq!(cache.get("b").map(|k| k.id), Some(kept.id));
        assert!(cache.get("unknown").is_none());
    }

    #[tokio::test]
    async fn an_entry_older_than_the_ttl_is_read_again() {
        let cache = KeyCache::start(Arc::new(MemoryBus::default()), Duration::ZERO);
        cache.put("a".into(), key());
        assert!(cache.get("a").is_none());
    }
}
