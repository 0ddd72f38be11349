//! What the API reads on nearly every request — the caller's API key, the bot an execution is
//! for — kept for a short time, so a client sending thousands of requests a second does not
//! cost a database read each. A change evicts its entry at once on the API process that made
//! it and, through the bus, on every other; an entry also expires after [`TTL`], which bounds
//! how long it can outlive a change whose bus event was missed.

use std::borrow::Borrow;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use codex32_shared::bus::{Bus, Event};
use codex32_shared::cache::{Mark, TtlCache};
use codex32_shared::domain::{ApiKey, Bot};
use tokio::sync::broadcast::error::RecvError;
use uuid::Uuid;

/// How long a value read from the store is trusted without reading it again.
pub const TTL: Duration = Duration::from_secs(2);

/// Values by key, each evicted when the bus names its id.
pub struct BusCache<K, V> {
    entries: TtlCache<K, V>,
    id_of: fn(&V) -> Uuid,
}

/// API keys by the hash of their secret; a revoke evicts.
pub type KeyCache = BusCache<String, ApiKey>;
/// Bots by id; any change to a bot (a new version, a delete, a pause) evicts.
pub type BotCache = BusCache<Uuid, Bot>;

pub fn key_cache(bus: Arc<dyn Bus>, ttl: Duration) -> Arc<KeyCache> {
    BusCache::start(bus, ttl, |key| key.id, revoked_key)
}

pub fn bot_cache(bus: Arc<dyn Bus>, ttl: Duration) -> Arc<BotCache> {
    BusCache::start(bus, ttl, |bot| bot.id, changed_bot)
}

fn revoked_key(event: &Event) -> Option<Uuid> {
    match event {
        Event::ApiKeyRevoked { key_id } => Some(*key_id),
        _ => None,
    }
}

fn changed_bot(event: &Event) -> Option<Uuid> {
    match event {
        Event::BotChanged { bot_id } => Some(*bot_id),
        _ => None,
    }
}

impl<K, V> BusCache<K, V>
where
    K: Eq + Hash + Send + 'static,
    V: Clone + Send + 'static,
{
    /// A cache trusting values for `ttl` that evicts the value whose id (`id_of`) an event
    /// names (`named`), as the bus announces it.
    fn start(
        bus: Arc<dyn Bus>,
        ttl: Duration,
        id_of: fn(&V) -> Uuid,
        named: fn(&Event) -> Option<Uuid>,
    ) -> Arc<Self> {
        let cache = Arc::new(Self {
            entries: TtlCache::new(ttl),
            id_of,
        });
        let mut events = bus.subscribe();
        let weak = Arc::downgrade(&cache);
        tokio::spawn(async move {
            loop {
                let event = events.recv().await;
                let Some(cache) = weak.upgrade() else { return };
                match event {
                    Ok(event) => {
                        if let Some(id) = named(&event) {
                            cache.evict(id);
                        }
                    }
                    // Missed events may include a change: start over rather than guess.
                    Err(RecvError::Lagged(_)) => cache.entries.clear(),
                    Err(RecvError::Closed) => return,
                }
            }
        });
        cache
    }

    /// The value for this key, if it was read less than the cache's TTL ago.
    pub fn get<Q: Eq + Hash + ?Sized>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
    {
        self.entries.get(key)
    }

    /// [`TtlCache::since`]: take it before reading a value from the store.
    pub fn since(&self) -> Mark {
        self.entries.since()
    }

    /// [`TtlCache::put`]: not kept if something was evicted after `read_after`.
    pub fn put(&self, key: K, value: V, read_after: Mark) {
        self.entries.put(key, value, read_after);
    }

    /// Forgets the value with this id.
    pub fn evict(&self, id: Uuid) {
        let id_of = self.id_of;
        self.entries.retain(|_, value| id_of(value) != id);
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
    async fn an_event_on_the_bus_evicts_only_the_value_it_names() {
        let bus: Arc<dyn Bus> = Arc::new(MemoryBus::default());
        // Entries never expire here: only the bus event can remove one.
        let cache = key_cache(bus.clone(), Duration::from_secs(3600));
        let (revoked, kept) = (key(), key());
        let mark = cache.since();
        cache.put("a".into(), revoked.clone(), mark);
        cache.put("b".into(), kept.clone(), mark);
        assert_eq!(cache.get("a").map(|k| k.id), Some(revoked.id));
        // Events of other kinds leave every entry alone.
        bus.publish(&Event::BotChanged { bot_id: revoked.id })
            .await
            .expect("publish");
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

    #[test]
    fn the_bot_cache_evicts_on_a_bot_change_and_the_key_cache_on_a_revoke() {
        let id = Uuid::now_v7();
        let changed = Event::BotChanged { bot_id: id };
        let revoked = Event::ApiKeyRevoked { key_id: id };
        assert_eq!(
            (changed_bot(&changed), changed_bot(&revoked)),
            (Some(id), None)
        );
        assert_eq!(
            (revoked_key(&revoked), revoked_key(&changed)),
            (Some(id), None)
        );
    }

    #[tokio::test]
    async fn a_value_read_before_an_eviction_is_not_kept() {
        let bus: Arc<dyn Bus> = Arc::new(MemoryBus::default());
        let cache: Arc<BusCache<Uuid, i32>> = BusCache::start(
            bus,
            Duration::from_secs(3600),
            |v| Uuid::from_u128(*v as u128),
            |_| None,
        );
        let (one, two) = (Uuid::from_u128(1), Uuid::from_u128(2));
        // A request reads version 1, a change commits and evicts, then the request caches.
        let read_before = cache.since();
        cache.evict(one);
        cache.put(one, 1, read_before);
        assert_eq!(cache.get(&one), None, "the stale read is not kept");
        let read_after = cache.since();
        cache.put(two, 2, read_after);
        assert_eq!(cache.get(&two), Some(2));
    }
}
