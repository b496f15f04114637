//! Services registered through Eureka discovery, followed as revocations are: the discovery
//! server writes each registration into the caching-service map `eurekaRegistrations` (key
//! `APP/instanceId`), and every gateway follows that map through the change feed and rebuilds
//! its routing table when a change matters for routing.
//!
//! The gateway never judges a lease by its own clock: expiry is decided once, by discovery,
//! and arrives here as the key's deletion. A heartbeat rewrites a value with a new renewal
//! time only; [`Registered`] holds what routing reads, so such a rewrite compares equal and
//! rebuilds nothing (health and metrics of every instance stay as they are anyway, since a
//! rebuild reuses instances by id).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Weak};
use std::time::Duration;

use http::Uri;
use plexgate_cache_client::{CacheClient, MapChange, MapView};
use plexgate_discovery::{ApimlMetadata, Record, Status};
use tokio::sync::broadcast::error::RecvError;

use super::Routes;

/// The caching-service map of registrations (written by the discovery server).
pub const MAP: &str = plexgate_discovery::registry::MAP;

/// What routing reads of one registration: equal for two values that differ only in their
/// renewal time.
#[derive(Debug, Clone, PartialEq)]
pub struct Registered {
    /// The map key, `APP/instanceId`.
    pub key: String,
    /// The app, lower-cased: the serviceId it is routed as.
    pub service_id: String,
    /// The instance id (Zowe's enablers send `host:serviceId:port`).
    pub instance_id: String,
    /// Where requests go.
    pub base: Uri,
    /// Its own health check URL, if it registered one.
    pub health_url: Option<Uri>,
    /// Its Eureka status (an override wins).
    pub status: Status,
    /// Routes, title, scheme, timeouts, stickiness from its `apiml.*` metadata.
    pub settings: ApimlMetadata,
    /// First registration, milliseconds since the epoch (the newest one's routes win).
    pub registered_ms: u64,
}

impl Registered {
    /// Reads one map entry; an error says why it cannot be routed.
    pub fn read(key: &str, value: &str) -> Result<Registered, String> {
        let record = Record::from_stored(value).map_err(|e| e.to_string())?;
        if record.key() != key {
            return Err(format!("the value is the registration of `{}`, not of its key", record.key()));
        }
        let i = &record.instance;
        let settings = ApimlMetadata::from_metadata(&i.metadata).map_err(|e| e.to_string())?;
        let base: Uri = i.base_url().parse().map_err(|e| format!("base URL `{}`: {e}", i.base_url()))?;
        let health_url = match &i.health_check_url {
            Some(u) => Some(u.parse::<Uri>().map_err(|e| format!("healthCheckUrl `{u}`: {e}"))?),
            None => None,
        };
        Ok(Registered {
            key: key.to_owned(),
            service_id: i.app.to_ascii_lowercase(),
            instance_id: i.instance_id.clone(),
            base,
            health_url,
            status: record.status(),
            settings,
            registered_ms: record.times.registered_ms,
        })
    }

    /// Whether it may get requests.
    pub fn up(&self) -> bool {
        self.status == Status::Up
    }
}

/// Every registration that reads, by key, and the warnings given for those that do not.
#[derive(Debug, Default)]
pub struct Registrations {
    by_key: BTreeMap<String, Registered>,
    /// Keys whose value was skipped, with why (warned once per key and reason).
    skipped: HashMap<String, String>,
}

impl Registrations {
    /// Applies a put; whether routing changed.
    pub fn put(&mut self, key: &str, value: &str) -> bool {
        match Registered::read(key, value) {
            Ok(r) => {
                if self.skipped.remove(key).is_some() {
                    tracing::info!(key, "registration readable again: routed");
                }
                if self.by_key.get(key) == Some(&r) {
                    return false;
                }
                self.by_key.insert(key.to_owned(), r);
                true
            }
            Err(why) => {
                if self.skipped.get(key) != Some(&why) {
                    tracing::warn!(map = MAP, key, reason = %why, "registration skipped: not routed; other services are unaffected");
                    self.skipped.insert(key.to_owned(), why);
                }
                // Whatever it was before, it is no longer known to be a valid registration.
                self.by_key.remove(key).is_some()
            }
        }
    }

    /// Applies a delete (deregistration or lease expiry); whether routing changed.
    pub fn delete(&mut self, key: &str) -> bool {
        self.skipped.remove(key);
        self.by_key.remove(key).is_some()
    }

    /// Replaces everything with a snapshot of the map; whether routing changed.
    pub fn reset(&mut self, entries: impl IntoIterator<Item = (String, String)>) -> bool {
        let entries: BTreeMap<String, String> = entries.into_iter().collect();
        let before = std::mem::take(&mut self.by_key);
        self.skipped.retain(|k, _| entries.contains_key(k));
        for (k, v) in &entries {
            self.put(k, v);
        }
        before != self.by_key
    }

    /// Every readable registration, by key.
    pub fn all(&self) -> impl Iterator<Item = &Registered> {
        self.by_key.values()
    }
}

/// Follows [`MAP`] through its own view of the caching service (its own feed, as sticky routes
/// have: a registration storm never delays a revocation) and rebuilds `routes` on every change
/// that matters, as it arrives: routing follows the feed within its latency, with no polling.
pub fn follow(routes: &Arc<Routes>, client: CacheClient, feed_idle: Duration) -> Arc<MapView> {
    let view = Arc::new(MapView::start(client, &[MAP], feed_idle));
    let changes = view.subscribe();
    tokio::spawn(apply_changes(Arc::downgrade(routes), Arc::downgrade(&view), changes));
    view
}

async fn apply_changes(routes: Weak<Routes>, view: Weak<MapView>, mut changes: tokio::sync::broadcast::Receiver<MapChange>) {
    // A snapshot may have landed before the subscription: start from what the view holds.
    if let (Some(r), Some(v)) = (routes.upgrade(), view.upgrade())
        && v.is_loaded()
    {
        r.registrations_reset(v.entries(MAP).into_iter().collect());
    }
    loop {
        let change = changes.recv().await;
        let (Some(r), Some(v)) = (routes.upgrade(), view.upgrade()) else { return };
        match change {
            Ok(MapChange::Put { map, key, value }) if map == MAP => r.registration_put(&key, &value),
            Ok(MapChange::Delete { map, key }) if map == MAP => r.registration_deleted(&key),
            Ok(MapChange::Put { .. } | MapChange::Delete { .. }) => {}
            // A snapshot, or changes missed by a slow receiver: read the whole map again.
            Ok(MapChange::Reset) | Err(RecvError::Lagged(_)) => r.registrations_reset(v.entries(MAP).into_iter().collect()),
            Err(RecvError::Closed) => return,
        }
    }
}

/// A stored registration, for tests: `app`'s instance `id` on 127.0.0.1:`port`, routed at
/// `api/v1` (or `gateway_url`), registered at `registered_ms`, renewed at `renewed_ms`.
#[cfg(test)]
pub(crate) fn stored_with(
    app: &str,
    id: &str,
    port: u16,
    status: &str,
    gateway_url: &str,
    registered_ms: u64,
    renewed_ms: u64,
) -> (String, String) {
    let body = serde_json::json!({"instance": {"instanceId": id, "app": app, "hostName": "127.0.0.1", "status": status,
        "securePort": {"$": port, "@enabled": "true"}, "healthCheckUrl": format!("https://127.0.0.1:{port}/application/health"),
        "metadata": {"apiml.routes.api_v1.gatewayUrl": gateway_url, "apiml.routes.api_v1.serviceUrl": "/x/api/v1", "apiml.service.title": "Registered"}}});
    let mut r = Record::registered(plexgate_discovery::Instance::from_registration(app, &body).unwrap(), None, registered_ms);
    r.times.renewed_ms = renewed_ms;
    (r.key(), r.to_stored())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(app: &str, id: &str, port: u16, status: &str, renewed_ms: u64) -> (String, String) {
        stored_with(app, id, port, status, "api/v1", 1_000, renewed_ms)
    }

    #[test]
    fn a_heartbeat_changes_nothing_and_a_status_change_does() {
        let mut regs = Registrations::default();
        let (k, v) = stored("hw", "h:hw:1", 1, "UP", 1_000);
        assert!(regs.put(&k, &v));
        let (_, beat) = stored("hw", "h:hw:1", 1, "UP", 31_000);
        assert_ne!(beat, v);
        assert!(!regs.put(&k, &beat), "a renewal alone does not change routing");
        let (_, down) = stored("hw", "h:hw:1", 1, "OUT_OF_SERVICE", 31_000);
        assert!(regs.put(&k, &down));
        assert!(!regs.all().next().unwrap().up());
        assert!(regs.delete(&k) && !regs.delete(&k));
    }

    #[test]
    fn corrupt_values_and_values_under_another_key_are_skipped() {
        let mut regs = Registrations::default();
        let (k, v) = stored("hw", "h:hw:1", 1, "UP", 1_000);
        assert!(regs.put(&k, &v));
        assert!(regs.put(&k, "{not json"), "a corrupt value replaces a routed one: it is no longer routed");
        assert!(!regs.put(&k, "{still not json"));
        assert!(!regs.put("HW/other", &v), "a value naming another key is not routed");
        assert_eq!(regs.all().count(), 0);
        assert_eq!(regs.skipped.len(), 2);
        assert!(regs.reset([(k.clone(), v.clone())]));
        assert_eq!(regs.skipped.len(), 0);
        assert!(!regs.reset([(k, v)]), "the same snapshot again changes nothing");
    }
}
