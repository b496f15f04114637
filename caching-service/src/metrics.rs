//! Every metric the caching service exports, by name. Units are in the names.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Requests answered, by `endpoint` (route pattern) and `status`.
pub const REQUESTS_TOTAL: &str = "plexgate_caching_requests_total";
/// Time to answer a request, by `endpoint`.
pub const REQUEST_DURATION_SECONDS: &str = "plexgate_caching_request_duration_seconds";
/// Entries held by the storage (the `storage.size` counting rule).
pub const STORAGE_ENTRIES: &str = "plexgate_caching_storage_entries";
/// Open change-feed subscriptions.
pub const FEED_SUBSCRIBERS: &str = "plexgate_caching_feed_subscribers";

/// Latency buckets, from 100 us to 5 s.
const BUCKETS: &[f64] = &[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

/// Installs the process-wide Prometheus recorder; `None` if one is installed already.
pub fn install() -> Option<PrometheusHandle> {
    PrometheusBuilder::new().set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), BUCKETS).ok()?.install_recorder().ok()
}
