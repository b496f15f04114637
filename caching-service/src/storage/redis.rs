//! The `redis` back end (being written by a helper; replaced before commit).

use async_trait::async_trait;
use plexgate_config::{Certificates, RedisConfig};

use super::Limits;
use crate::error::CacheError;

/// Redis-backed storage.
pub struct RedisStorage;

impl RedisStorage {
    /// Connects.
    pub async fn connect(_c: &RedisConfig, _t: &Certificates, _l: Limits) -> Result<RedisStorage, CacheError> {
        Err(CacheError::Startup("redis: not yet".into()))
    }
}

#[async_trait]
impl super::Storage for RedisStorage {
    async fn create(&self, _: &str, _: &str, _: &str) -> Result<(), CacheError> { unreachable!() }
    async fn get(&self, _: &str, _: &str) -> Result<super::Entry, CacheError> { unreachable!() }
    async fn list(&self, _: &str) -> Result<Vec<super::Entry>, CacheError> { unreachable!() }
    async fn update(&self, _: &str, _: &str, _: &str) -> Result<(), CacheError> { unreachable!() }
    async fn delete(&self, _: &str, _: &str) -> Result<(), CacheError> { unreachable!() }
    async fn clear(&self, _: &str) -> Result<(), CacheError> { unreachable!() }
    async fn map_put(&self, _: &str, _: &str, _: &str, _: &str) -> Result<(), CacheError> { unreachable!() }
    async fn map_get(&self, _: &str, _: &str) -> Result<Option<super::MapEntries>, CacheError> { unreachable!() }
    async fn maps(&self, _: &str) -> Result<std::collections::BTreeMap<String, super::MapEntries>, CacheError> { unreachable!() }
    async fn map_remove(&self, _: &str, _: &str, _: &[String]) -> Result<usize, CacheError> { unreachable!() }
    async fn snapshot(&self, _: &str, _: &[String]) -> Result<super::Snapshot, CacheError> { unreachable!() }
    async fn since(&self, _: u64, _: usize) -> Result<super::Since, CacheError> { unreachable!() }
    fn revisions(&self) -> tokio::sync::watch::Receiver<u64> { unreachable!() }
    async fn len(&self) -> Result<u64, CacheError> { unreachable!() }
    async fn health(&self) -> Result<(), CacheError> { unreachable!() }
    fn mode(&self) -> &'static str { "redis" }
}
