//! Storage back ends behind one trait, chosen by `storage.mode`.
//!
//! Every back end keeps, per caller namespace, the key-value entries of `/cache` and the maps
//! of `/cache-list`, enforces `storage.size` and the eviction strategy, and keeps an ordered
//! log of map changes (the change feed) with a revision number, so a subscriber can take a
//! consistent snapshot at revision R and then follow every change after R.
//!
//! Counting rule for `storage.size`: every `/cache` key and every entry of every `/cache-list`
//! map counts as one, summed over all namespaces. `removeOldest` evicts the oldest `/cache`
//! entry and never a map entry: maps hold revocations, and evicting one would make a
//! revoked token valid again. When only map entries are left, a full store rejects (507).

mod embedded;
mod redis;

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

/// Maps of one namespace as of one revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Snapshot {
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
    /// Changes kept in the feed log.
    pub feed_retention: u64,
}

/// What the change feed has after a revision.
#[derive(Debug)]
pub enum Since {
    /// Every change after the asked revision, in order (possibly none).
    Changes(Vec<Change>),
    /// The log no longer reaches back that far: take a snapshot instead.
    TooOld,
}

/// A storage back end.
#[async_trait]
pub trait Storage: Send + Sync + 'static {
    /// Creates `key`; [`CacheError::Conflict`] if it exists, [`CacheError::Full`] if no room.
    async fn create(&self, ns: &str, key: &str, value: &str) -> Result<(), CacheError>;
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
    /// Sets `key` in `map`, overwriting; recorded in the change feed.
    async fn map_put(&self, ns: &str, map: &str, key: &str, value: &str) -> Result<(), CacheError>;
    /// The entries of `map`, or `None` when the namespace has no such map.
    async fn map_get(&self, ns: &str, map: &str) -> Result<Option<MapEntries>, CacheError>;
    /// Every map of the namespace.
    async fn maps(&self, ns: &str) -> Result<BTreeMap<String, MapEntries>, CacheError>;
    /// Removes `keys` from `map` (absent ones are skipped); recorded in the feed. Returns how many went.
    async fn map_remove(&self, ns: &str, map: &str, keys: &[String]) -> Result<usize, CacheError>;
    /// `maps` of the namespace and the revision they are at, read consistently.
    async fn snapshot(&self, ns: &str, maps: &[String]) -> Result<Snapshot, CacheError>;
    /// Changes (of any namespace) after `revision`, at most `limit` of them.
    async fn since(&self, revision: u64, limit: usize) -> Result<Since, CacheError>;
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
    /// A name for logs and health: `inMemory`, `durable`, `redis`.
    fn mode(&self) -> &'static str;
}

/// Opens the back end `config` asks for.
pub async fn open(config: &CachingServiceConfig) -> Result<Arc<dyn Storage>, CacheError> {
    let s = &config.storage;
    let limits = Limits { size: s.size, eviction: s.eviction_strategy, feed_retention: config.feed_retention };
    Ok(match s.mode {
        StorageMode::InMemory => Arc::new(Embedded::memory(limits)?),
        StorageMode::Durable => Arc::new(Embedded::file(&s.durable_file, limits).await?),
        StorageMode::Redis => {
            let redis = s.redis.as_ref().ok_or_else(|| CacheError::Startup("storage mode redis without redis settings".to_owned()))?;
            Arc::new(RedisStorage::connect(redis, &config.certificates, limits).await?)
        }
        StorageMode::Infinispan => {
            return Err(CacheError::Startup(
                "storage mode `infinispan` is Zowe's Java data grid and is not run by plexgate; use `durable` (embedded, persistent), `inMemory` or `redis`".to_owned(),
            ));
        }
    })
}

/// Milliseconds since the epoch, now.
pub fn now_millis() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}
