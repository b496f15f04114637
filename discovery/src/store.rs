//! Registrations kept in the caching service (map [`MAP`] in the gateways' own namespace),
//! so that every discovery instance answers for every registration and every gateway follows
//! them through the change feed, as it follows revocations.
//!
//! Reads come from a [`MapView`] of that map (no network call per heartbeat or fetch); writes
//! go through the caching service and are applied to the view at once, so the next call on
//! this instance sees them. A write acknowledged here is in the store (replicated: committed
//! on a majority) before the client gets its answer.
//!
//! Read-modify-write calls (heartbeat, status override, metadata) read the view: two of them
//! on two instances within the feed's propagation delay (milliseconds) can lose one of the two
//! changes, as Eureka's own peer replication can. Heartbeats carry no state of their own, so
//! what may be lost is an override or metadata change made in that window; the registration
//! itself never is.

use std::time::Duration;

use plexgate_cache_client::{CacheClient, ClientError, MapView};

use crate::error::DiscoveryError;
use crate::instance::{Instance, Status};
use crate::metadata::ApimlMetadata;
use crate::registry::{MAP, Record, key};

/// The registry: the view it reads and the client it writes with.
pub struct Registrations {
    client: CacheClient,
    view: MapView,
    max_instances: usize,
}

impl Registrations {
    /// Follows [`MAP`] through `client` (the gateways' client certificate, so their namespace).
    pub fn start(client: CacheClient, max_instances: usize) -> Registrations {
        let view = MapView::start(client.clone(), &[MAP], Duration::from_secs(5));
        Registrations { client, view, max_instances }
    }

    /// Waits until the registrations are loaded, at most `timeout`; whether they are.
    pub async fn wait_loaded(&self, timeout: Duration) -> bool {
        self.view.wait_loaded(timeout).await
    }

    /// The view, for the lease sweeper and health.
    pub fn view(&self) -> &MapView {
        &self.view
    }

    /// Every registration that reads (a corrupt value is skipped with a warning).
    pub fn all(&self) -> Vec<Record> {
        let mut out = Vec::new();
        for (k, v) in self.view.entries(MAP) {
            match Record::from_stored(&v) {
                Ok(r) => out.push(r),
                Err(e) => tracing::warn!(key = %k, error = %e, "unreadable registration skipped"),
            }
        }
        out
    }

    /// One registration.
    pub fn get(&self, app: &str, instance_id: &str) -> Result<Record, DiscoveryError> {
        let k = key(app, instance_id);
        let text = self.view.get(MAP, &k).ok_or_else(|| DiscoveryError::NotFound(format!("instance {k}")))?;
        Record::from_stored(&text)
    }

    /// `POST /eureka/apps/{app}`: a new registration, or a re-registration that keeps the
    /// first registration time and any status override.
    pub async fn register(&self, instance: Instance) -> Result<Record, DiscoveryError> {
        ApimlMetadata::from_metadata(&instance.metadata)?;
        let k = key(&instance.app, &instance.instance_id);
        let previous = self.view.get(MAP, &k).and_then(|t| Record::from_stored(&t).ok());
        if previous.is_none() && self.view.entries(MAP).len() >= self.max_instances {
            return Err(DiscoveryError::Full(self.max_instances));
        }
        let record = Record::registered(instance, previous.as_ref(), now_ms());
        self.put(&record).await?;
        Ok(record)
    }

    /// `PUT /eureka/apps/{app}/{id}`: the lease renewed ([`DiscoveryError::NotFound`] makes the
    /// client register again).
    pub async fn renew(&self, app: &str, instance_id: &str) -> Result<Record, DiscoveryError> {
        let mut record = self.get(app, instance_id)?;
        record.times.renewed_ms = now_ms();
        self.put(&record).await?;
        Ok(record)
    }

    /// `PUT .../status?value=` (`Some`) or `DELETE .../status` (`None`).
    pub async fn set_override(&self, app: &str, instance_id: &str, status: Option<Status>) -> Result<Record, DiscoveryError> {
        let mut record = self.get(app, instance_id)?;
        record.overridden = status;
        record.times.updated_ms = now_ms();
        self.put(&record).await?;
        Ok(record)
    }

    /// `PUT .../metadata?k=v...`: the pairs set, the whole metadata checked again (an invalid
    /// route is refused and nothing changes).
    pub async fn set_metadata(&self, app: &str, instance_id: &str, pairs: Vec<(String, String)>) -> Result<Record, DiscoveryError> {
        let mut record = self.get(app, instance_id)?;
        for (k, v) in pairs {
            record.instance.metadata.insert(k, v);
        }
        crate::instance::check_metadata(&record.instance.metadata)?;
        ApimlMetadata::from_metadata(&record.instance.metadata)?;
        record.times.updated_ms = now_ms();
        self.put(&record).await?;
        Ok(record)
    }

    /// `DELETE /eureka/apps/{app}/{id}`.
    pub async fn cancel(&self, app: &str, instance_id: &str) -> Result<(), DiscoveryError> {
        let k = key(app, instance_id);
        match self.client.map_remove(MAP, &k).await {
            Ok(()) => {}
            Err(ClientError::NotFound) => return Err(DiscoveryError::NotFound(format!("instance {k}"))),
            Err(e) => return Err(unavailable(e)),
        }
        self.view.remove_local(MAP, &k);
        tracing::info!(instance = %k, "instance deregistered");
        Ok(())
    }

    /// Removes `key` only while it still holds `value` (a lease that ran out; a renewal
    /// written since through another instance wins): whether it went.
    pub async fn expire(&self, k: &str, value: &str) -> Result<bool, DiscoveryError> {
        match self.client.map_remove_if(MAP, k, value).await {
            Ok(()) => {
                self.view.remove_local(MAP, k);
                Ok(true)
            }
            Err(ClientError::NotFound | ClientError::Changed) => Ok(false),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn put(&self, record: &Record) -> Result<(), DiscoveryError> {
        let (k, v) = (record.key(), record.to_stored());
        self.client.map_put(MAP, &k, &v).await.map_err(unavailable)?;
        self.view.apply_local(MAP, &k, &v);
        Ok(())
    }
}

fn unavailable(e: ClientError) -> DiscoveryError {
    DiscoveryError::Unavailable(e.to_string())
}

/// Milliseconds since the epoch (for Eureka's timestamps only; leases are timed locally).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}
