//! Sticky routes shared by every gateway: for services whose metadata asks for
//! `apiml.lb.type: authentication`, the user-to-instance choice lives in the caching service
//! (map `stickyRoutes`, key `<serviceId>/<user>`), and each gateway follows it through the
//! change feed, so a user lands on the same instance whichever gateway serves the request.
//!
//! A binding's value is `{"instance": id, "expiration": epoch millis}`: it expires after
//! `routing.stickyIdleTimeout` without use. Use refreshes it at most once per half of that
//! time (one write per user and service per half-period, not per request), and every gateway
//! evicts expired bindings in the background with the caching service's token eviction, which
//! reads `expiration`. A bare instance id (written before expiry existed) is still honoured.
//!
//! Writes happen in the background: an answer never waits on the caching service. Until a
//! write lands, this gateway keeps the user on the instance it chose (the pending binding), so
//! the user stays put here even while the caching service hangs; a failed write is tried again
//! by a later request of that user, at most once per [`RETRY_AFTER`], never one per request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use plexgate_cache_client::{CacheClient, MapView};
use serde::{Deserialize, Serialize};

/// The caching-service map of sticky routes.
pub const STICKY_MAP: &str = "stickyRoutes";

/// A failed write of a binding is tried again no sooner than this.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);
/// Pending bindings kept at most; past it, those whose write is not in flight are forgotten
/// (a caching service down for long with many users must not grow the gateway without bound).
const MAX_PENDING: usize = 10_000;

/// A binding chosen here whose write has not landed yet.
struct Pending {
    instance: String,
    /// A write is in flight; none other for this key is started meanwhile.
    writing: bool,
    /// When the last write failed (a new one waits [`RETRY_AFTER`] after it).
    failed_at: Option<Instant>,
}

/// One stored binding.
#[derive(Serialize, Deserialize)]
struct Binding {
    instance: String,
    expiration: u64,
}

/// The shared user-to-instance choices.
pub struct StickyRoutes {
    client: CacheClient,
    view: MapView,
    idle: Duration,
    /// Bindings chosen here and not yet stored, by key (only sticky services touch this).
    pending: Mutex<HashMap<String, Pending>>,
}

fn now_millis() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// The instance and expiry of a stored value.
fn parse(value: &str) -> (String, Option<u64>) {
    match serde_json::from_str::<Binding>(value) {
        Ok(b) => (b.instance, Some(b.expiration)),
        Err(_) => (value.to_owned(), None),
    }
}

impl StickyRoutes {
    /// Starts following the map; bindings unused for `idle` expire, and expired ones are
    /// evicted every `evict_interval`; a feed silent for `feed_idle` is given up.
    pub fn start(client: CacheClient, idle: Duration, evict_interval: Duration, feed_idle: Duration) -> Arc<StickyRoutes> {
        let view = MapView::start(client.clone(), &[STICKY_MAP], feed_idle);
        let s = Arc::new(StickyRoutes { client, view, idle, pending: Mutex::new(HashMap::new()) });
        crate::periodic::every(evict_interval, Arc::downgrade(&s), |s: Arc<StickyRoutes>| async move {
            if let Err(e) = s.client.evict_tokens(STICKY_MAP).await {
                tracing::warn!(error = %e, "background eviction of idle sticky routes failed; tried again later");
            }
        });
        s
    }

    fn key(service: &str, user: &str) -> String {
        format!("{service}/{}", user.to_lowercase())
    }

    /// The instance `user` is bound to for `service`, if any and not expired: the one chosen
    /// here whose write is pending, else the stored one.
    pub fn get(&self, service: &str, user: &str) -> Option<String> {
        let key = Self::key(service, user);
        if let Some(p) = self.lock_pending().get(&key) {
            return Some(p.instance.clone());
        }
        let (instance, expiration) = parse(&self.view.get(STICKY_MAP, &key)?);
        expiration.is_none_or(|e| e > now_millis()).then_some(instance)
    }

    fn lock_pending(&self) -> std::sync::MutexGuard<'_, HashMap<String, Pending>> {
        self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `user` was served by `instance` for `service`: binds them for every gateway when the
    /// binding is new or another, or refreshes it when half its idle time has passed. The write
    /// runs in the background; a failure is logged and tried again by a later request.
    pub fn served(self: &Arc<Self>, service: &str, user: &str, instance: &str) {
        let key = Self::key(service, user);
        let now = now_millis();
        let idle = self.idle.as_millis() as u64;
        let current = self.view.get(STICKY_MAP, &key).map(|v| parse(&v));
        let fresh = matches!(&current, Some((bound, Some(expiration))) if bound == instance && expiration.saturating_sub(now) > idle / 2);
        {
            let mut pending = self.lock_pending();
            if fresh {
                // Stored meanwhile (by this gateway's write or another's): nothing pending.
                if pending.get(&key).is_some_and(|p| !p.writing) {
                    pending.remove(&key);
                }
                return;
            }
            match pending.get_mut(&key) {
                Some(p) if p.writing => {
                    p.instance = instance.to_owned();
                    return;
                }
                Some(p) if p.failed_at.is_some_and(|at| at.elapsed() < RETRY_AFTER) => {
                    p.instance = instance.to_owned();
                    return;
                }
                Some(p) => {
                    p.instance = instance.to_owned();
                    p.writing = true;
                }
                None => {
                    if pending.len() >= MAX_PENDING {
                        pending.retain(|_, p| p.writing);
                    }
                    pending.insert(key.clone(), Pending { instance: instance.to_owned(), writing: true, failed_at: None });
                }
            }
        }
        let s = self.clone();
        let (service, instance) = (service.to_owned(), instance.to_owned());
        tokio::spawn(async move { s.write(&service, key, &instance, now + idle).await });
    }

    /// Stores one binding; on success it is in the view, and no longer pending unless another
    /// instance was chosen meanwhile.
    async fn write(&self, service: &str, key: String, instance: &str, expiration: u64) {
        let value = serde_json::json!({"instance": instance, "expiration": expiration}).to_string();
        let result = self.client.map_put(STICKY_MAP, &key, &value).await;
        if result.is_ok() {
            self.view.apply_local(STICKY_MAP, &key, &value);
        }
        let mut pending = self.lock_pending();
        match result {
            Ok(()) => {
                if pending.get(&key).is_some_and(|p| p.instance == instance) {
                    pending.remove(&key);
                } else if let Some(p) = pending.get_mut(&key) {
                    // Moved to another instance while this write ran: that one is written next.
                    p.writing = false;
                }
            }
            Err(e) => {
                tracing::warn!(service, error = %e, "sticky route not recorded in the caching service; tried again later");
                if let Some(p) = pending.get_mut(&key) {
                    p.writing = false;
                    p.failed_at = Some(Instant::now());
                }
            }
        }
    }
}
