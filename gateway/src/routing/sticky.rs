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

use std::sync::Arc;
use std::time::Duration;

use plexgate_cache_client::{CacheClient, MapView};
use serde::{Deserialize, Serialize};

/// The caching-service map of sticky routes.
pub const STICKY_MAP: &str = "stickyRoutes";

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
        let s = Arc::new(StickyRoutes { client, view, idle });
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

    /// The instance `user` is bound to for `service`, if any and not expired.
    pub fn get(&self, service: &str, user: &str) -> Option<String> {
        let (instance, expiration) = parse(&self.view.get(STICKY_MAP, &Self::key(service, user))?);
        expiration.is_none_or(|e| e > now_millis()).then_some(instance)
    }

    /// `user` was served by `instance` for `service`: binds them for every gateway when the
    /// binding is new or another, or refreshes it when half its idle time has passed. A failure
    /// to record it is logged, not fatal: the request itself was served.
    pub async fn served(&self, service: &str, user: &str, instance: &str) {
        let key = Self::key(service, user);
        let now = now_millis();
        let idle = self.idle.as_millis() as u64;
        let current = self.view.get(STICKY_MAP, &key).map(|v| parse(&v));
        if let Some((bound, Some(expiration))) = &current
            && bound == instance
            && expiration.saturating_sub(now) > idle / 2
        {
            return;
        }
        let value = serde_json::json!({"instance": instance, "expiration": now + idle}).to_string();
        match self.client.map_put(STICKY_MAP, &key, &value).await {
            Ok(()) => self.view.apply_local(STICKY_MAP, &key, &value),
            Err(e) => tracing::warn!(service, error = %e, "sticky route not recorded in the caching service"),
        }
    }
}
