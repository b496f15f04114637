//! Every metric the caching service exports, by name. Units are in the names.

use plexgate_metrics_recorder::PrometheusHandle;

/// Requests answered, by `endpoint` (route pattern) and `status`.
pub const REQUESTS_TOTAL: &str = "plexgate_caching_requests_total";
/// Time to answer a request, by `endpoint`.
pub const REQUEST_DURATION_SECONDS: &str = "plexgate_caching_request_duration_seconds";
/// Entries held by the storage (the `storage.size` counting rule).
pub const STORAGE_ENTRIES: &str = "plexgate_caching_storage_entries";
/// Open change-feed subscriptions.
pub const FEED_SUBSCRIBERS: &str = "plexgate_caching_feed_subscribers";

/// Installs the process-wide recorder (shared by every plexgate process); `None` if one is
/// installed already.
pub fn install() -> Option<PrometheusHandle> {
    plexgate_metrics_recorder::install()
}
