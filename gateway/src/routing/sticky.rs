//! Sticky routes shared by every gateway: for services whose metadata asks for
//! `apiml.lb.type: authentication`, the user-to-instance choice lives in the caching service
//! (map `stickyRoutes`, key `<serviceId>/<user>`), and each gateway follows it through the
//! change feed, so a user lands on the same instance whichever gateway serves the request.

use std::time::Duration;

use plexgate_cache_client::{CacheClient, MapView};

/// The caching-service map of sticky routes.
pub const STICKY_MAP: &str = "stickyRoutes";

/// The shared user-to-instance choices.
pub struct StickyRoutes {
    client: CacheClient,
    view: MapView,
}

impl StickyRoutes {
    /// Starts following the map.
    pub fn start(client: CacheClient) -> StickyRoutes {
        let view = MapView::start(client.clone(), &[STICKY_MAP], Duration::from_secs(5));
        StickyRoutes { client, view }
    }

    fn key(service: &str, user: &str) -> String {
        format!("{service}/{}", user.to_lowercase())
    }

    /// The instance `user` is bound to for `service`, if any.
    pub fn get(&self, service: &str, user: &str) -> Option<String> {
        self.view.get(STICKY_MAP, &Self::key(service, user))
    }

    /// Binds `user` to `instance` for `service`, for every gateway. A failure to record it is
    /// logged, not fatal: the request itself was served.
    pub async fn set(&self, service: &str, user: &str, instance: &str) {
        let key = Self::key(service, user);
        match self.client.map_put(STICKY_MAP, &key, instance).await {
            Ok(()) => self.view.apply_local(STICKY_MAP, &key, instance),
            Err(e) => tracing::warn!(service, error = %e, "sticky route not recorded in the caching service"),
        }
    }
}
