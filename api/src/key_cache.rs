//! API keys recently seen, so a client sending thousands of requests a second does not cost a
//! database read per request. A revoke evicts the key at once on the API process that made it
//! and, through the bus, on every other; an entry also expires after [`TTL`], which bounds how
//! long a key can outlive its revoke when a bus event is missed.

use std::sync::Arc;
use std::time::Duration;

use codex32_shared::bus::{Bus, Event};
use codex32_shared::cache::TtlCache;
use codex32_shared::domain::ApiKey;
use tokio::sync::broadcast::error::RecvError;
use uuid::Uuid;

/// How long a key read from the store is trusted without reading it again.
pub const TTL: Duration = Duration::from_secs(2);

/// Keys by the hash of their secret.
pub struct KeyCache {
    keys: TtlCache<String, ApiKey>,
}

impl KeyCache {
    /// A cache of keys trusted for `ttl` that forgets keys revoked anywhere, as the bus
    /// announces them.
    pub fn start(bus: Arc<dyn Bus>, ttl: Duration) -> Arc<Self> {
        let cache = Arc::new(Self {
            keys: TtlCache::new(ttl),
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
                    Err(RecvError::Lagged(_)) => cache.keys.clear(),
                    Err(RecvError::Closed) => return,
                }
            }
        });
        cache
    }

    /// The key with this hash, if it was read less than the cache's TTL ago.
    pub fn get(&self, hash: &str) -> Option<ApiKey> {
        self.keys.get(hash)
    }

    pub fn put(&self, hash: String, key: ApiKey) {
        self.keys.put(hash, key);
    }

    pub fn evict(&self, key_id: Uuid) {
        self.keys.retain(|_, key| key.id != key_id);
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
}
