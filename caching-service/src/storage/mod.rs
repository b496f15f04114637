//! Storage back ends behind one trait, chosen by `storage.mode`.
//!
//! Every back end keeps, per caller namespace, the key-value entries of `/cache` and the maps
//! of `/cache-list`, enforces `storage.size` and the eviction strategy, and keeps an ordered
//! log of map changes (the change feed) with a revision number, so a subscriber can take a
//! consistent snapshot at revision R and then follow every change after R.
//!
//! Counting rule for `storage.size`: every `/cache` key and every entry of every `/cache-list`
//! map counts as one, summed over all counted namespaces; each namespace also has its own
//! quota (`storage.sizePerNamespace`), so one caller cannot take every other caller's room.
//! The trusted gateways' own namespace ([`Room::Exempt`]: revocations, PAT rules, sticky
//! routes, the salt) counts against neither and is never refused for lack of room: a logout
//! must not fail because another caller filled the store. It is bounded instead by the
//! gateways' automatic eviction of expired entries. `removeOldest` evicts the oldest counted
//! `/cache` entry (of the namespace, when its quota is reached) and never a map entry: maps
//! hold revocations, and evicting one would make a revoked token valid again. When only map
//! entries are left, a full store rejects (507).
//!
//! Every store has an epoch: an id made when the store is created and kept with it. The feed
//! carries it, so a subscriber never resumes a revision of one store on another (an inMemory
//! store restarted, a flushed Redis, another instance's store).

pub(crate) mod embedded;
mod redis;
pub mod replicated;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use plexgate_config::{CachingServiceConfig, EvictionStrategy, StorageMode};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

pub use embedded::Embedded;
pub use redis::RedisStorage;

use crate::error::CacheError;

/// One `/cache` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The key, exactly as given.
    pub key: String,
    /// The value, exactly as given.
    pub value: String,
    /// When it was created, epoch milliseconds.
    pub created: u64,
}

/// The contents of one map: key to value, ordered by key.
pub type MapEntries = BTreeMap<String, String>;

/// One change of one map, as the feed carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// Its revision: every change has a higher one than the change before it.
    pub revision: u64,
    /// The namespace it happened in.
    pub namespace: String,
    /// The map.
    pub map: String,
    /// What happened.
    #[serde(flatten)]
    pub op: Op,
}

/// What a change did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Op {
    /// `key` now has `value`.
    Put {
        /// The key.
        key: String,
        /// Its new value.
        value: String,
    },
    /// `key` is gone.
    Delete {
        /// The key.
        key: String,
    },
}

/// Whether a write counts against `storage.size` and the namespace quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Room {
    /// A caller's namespace: counted, refused (or evicting) when full.
    Counted,
    /// The trusted gateways' own namespace: never counted, never refused for room, never
    /// evicted by `removeOldest`.
    Exempt,
}

/// How `map_put` combines the new value with a stored one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Merge {
    /// The new value replaces the stored one (Zowe's `cache-list` semantics).
    Overwrite,
    /// Both are unsigned integers and the larger one stays (revocation rules only rise), decided
    /// atomically inside the store's write.
    Max,
}

/// What [`Storage::map_remove_if`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// The entry held the expected value and is gone.
    Removed,
    /// There was no such entry.
    Absent,
    /// The entry holds another value and stays.
    Changed,
}

impl Removal {
    /// The count [`embedded::apply`] returns for it (the replicated store applies the same).
    pub(crate) fn from_count(n: u64) -> Removal {
        match n {
            1 => Removal::Removed,
            0 => Removal::Absent,
            _ => Removal::Changed,
        }
    }
}

/// Maps of one namespace as of one revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Snapshot {
    /// The store's epoch (see the module doc).
    pub epoch: String,
    /// Every change up to and including this revision is in `maps`.
    pub revision: u64,
    /// The requested maps (absent ones are empty).
    pub maps: BTreeMap<String, MapEntries>,
}

/// Limits every back end enforces.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most entries (see the module's counting rule).
    pub size: u64,
    /// What a full store does.
    pub eviction: EvictionStrategy,
    /// Most counted entries of one namespace.
    pub per_namespace: u64,
    /// Changes kept in the feed log.
    pub feed_retention: u64,
}

/// What the change feed has after a revision.
#[derive(Debug)]
pub enum Since {
    /// Every change after the asked revision, in order (possibly none).
    Changes(Vec<Change>),
    /// The log no longer reaches back that far, the revision belongs to another epoch, or it
    /// is ahead of the store: take a snapshot instead.
    TooOld,
}

/// A storage back end.
#[async_trait]
pub trait Storage: Send + Sync + 'static {
    /// Creates `key`; [`CacheError::Conflict`] if it exists, [`CacheError::Full`] if no room.
    async fn create(&self, ns: &str, room: Room, key: &str, value: &str) -> Result<(), CacheError>;
    /// Reads `key`; [`CacheError::NotFound`] if absent.
    async fn get(&self, ns: &str, key: &str) -> Result<Entry, CacheError>;
    /// Every entry of the namespace.
    async fn list(&self, ns: &str) -> Result<Vec<Entry>, CacheError>;
    /// Replaces the value of an existing `key`; [`CacheError::NotFound`] if absent.
    async fn update(&self, ns: &str, key: &str, value: &str) -> Result<(), CacheError>;
    /// Deletes `key`; [`CacheError::NotFound`] if absent.
    async fn delete(&self, ns: &str, key: &str) -> Result<(), CacheError>;
    /// Deletes every `/cache` entry of the namespace (maps stay).
    async fn clear(&self, ns: &str) -> Result<(), CacheError>;
    /// Sets `key` in `map` as `merge` says; recorded in the change feed with the value stored.
    /// With [`Merge::Max`] a value that is not an unsigned integer is [`CacheError::BadPayload`].
    async fn map_put(&self, ns: &str, room: Room, map: &str, key: &str, value: &str, merge: Merge) -> Result<(), CacheError>;
    /// The entries of `map`, or `None` when the namespace has no such map.
    async fn map_get(&self, ns: &str, map: &str) -> Result<Option<MapEntries>, CacheError>;
    /// Every map of the namespace.
    async fn maps(&self, ns: &str) -> Result<BTreeMap<String, MapEntries>, CacheError>;
    /// Removes `keys` from `map` (absent ones are skipped); recorded in the feed. Returns how many went.
    async fn map_remove(&self, ns: &str, room: Room, map: &str, keys: &[String]) -> Result<usize, CacheError>;
    /// Removes `key` from `map` only while its stored value is `expected`, decided inside the
    /// store's write (compare-and-delete): a decision taken on a value read earlier (a lease
    /// that ran out) never removes a value written since (a renewal through another instance).
    async fn map_remove_if(&self, ns: &str, room: Room, map: &str, key: &str, expected: &str) -> Result<Removal, CacheError>;
    /// `maps` of the namespace, the revision they are at and the epoch, read consistently.
    async fn snapshot(&self, ns: &str, maps: &[String]) -> Result<Snapshot, CacheError>;
    /// Changes (of any namespace) after `revision` of `epoch`, at most `limit` of them; an
    /// empty list is a fresh proof (read from the store now) that nothing happened since.
    async fn since(&self, epoch: &str, revision: u64, limit: usize) -> Result<Since, CacheError>;
    /// Returns once this instance's own state holds every change committed before the call,
    /// so that a feed starting here never hands a subscriber a state older than one it was
    /// already shown elsewhere (a replica that is catching up would otherwise answer an older
    /// snapshot, and the revocations in between would be forgotten). Immediate for the stores
    /// that are their own single source.
    async fn caught_up(&self) -> Result<(), CacheError> {
        Ok(())
    }
    /// The latest revision, updated as changes happen (also those made by other caching
    /// service instances sharing the same store).
    fn revisions(&self) -> watch::Receiver<u64>;
    /// Entries held (the counting rule's number).
    async fn len(&self) -> Result<u64, CacheError>;
    /// Whether nothing is held.
    async fn is_empty(&self) -> Result<bool, CacheError> {
        Ok(self.len().await? == 0)
    }
    /// Whether the store answers.
    async fn health(&self) -> Result<(), CacheError>;
    /// More for the health endpoint (a replica's role, term, indexes).
    fn details(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
    /// A name for logs and health: `inMemory`, `durable`, `redis`, `replicated`.
    fn mode(&self) -> &'static str;
}

/// Opens the back end `config` asks for.
pub async fn open(config: &CachingServiceConfig) -> Result<Arc<dyn Storage>, CacheError> {
    open_with(config, limits(config)).await
}

/// The limits `config` sets.
pub fn limits(config: &CachingServiceConfig) -> Limits {
    let s = &config.storage;
    Limits { size: s.size, eviction: s.eviction_strategy, per_namespace: s.size_per_namespace, feed_retention: config.feed_retention }
}

async fn open_with(config: &CachingServiceConfig, limits: Limits) -> Result<Arc<dyn Storage>, CacheError> {
    let s = &config.storage;
    Ok(match s.mode {
        StorageMode::InMemory => Arc::new(Embedded::memory(limits)?),
        StorageMode::Durable => Arc::new(Embedded::file(&s.durable_file, limits).await?),
        StorageMode::Redis => {
            let redis = s.redis.as_ref().ok_or_else(|| CacheError::Startup("storage mode redis without redis settings".to_owned()))?;
            Arc::new(RedisStorage::connect(redis, &config.certificates, limits).await?)
        }
        StorageMode::Replicated => {
            return Err(CacheError::Startup("storage mode `replicated` is started by the caching service with its peers".to_owned()));
        }
        StorageMode::Infinispan => {
            return Err(CacheError::Startup(
                "storage mode `infinispan` is Zowe's Java data grid and is not run by plexgate; use `durable` (embedded, persistent), `inMemory` or `redis`".to_owned(),
            ));
        }
    })
}

/// The stored value of a [`Merge::Max`] write: the larger of `old` and `new`; `None` when
/// `new` is no unsigned integer. An unreadable stored value loses to any readable one.
pub fn max_value(old: Option<&str>, new: &str) -> Option<String> {
    let n = new.trim().parse::<u64>().ok()?;
    let o = old.and_then(|o| o.trim().parse::<u64>().ok()).unwrap_or(0);
    Some(n.max(o).to_string())
}

/// A new epoch id.
pub fn new_epoch() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Milliseconds since the epoch, now.
pub fn now_millis() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}
