//! Every metric the gateway exports, by name. Units are in the names.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Requests answered, by `endpoint` and `status`.
pub const REQUESTS_TOTAL: &str = "plexgate_gateway_requests_total";
/// Time to answer a request, by `endpoint`.
pub const REQUEST_DURATION_SECONDS: &str = "plexgate_gateway_request_duration_seconds";
/// Logins, by `result` (success, bad_credentials, rate_limited, provider_unavailable).
pub const LOGINS_TOTAL: &str = "plexgate_gateway_logins_total";
/// Token verifications, by `result` (cache_hit, verified).
pub const TOKEN_VERIFICATIONS_TOTAL: &str = "plexgate_gateway_token_verifications_total";
/// Requests forwarded to API services, by `service`, `instance` and `status`.
pub const ROUTED_REQUESTS_TOTAL: &str = "plexgate_gateway_routed_requests_total";
/// Time waiting for API service instances' answers (to the response headers, all attempts of
/// one request), by `service` and `instance` (the last one tried).
pub const ROUTED_UPSTREAM_SECONDS: &str = "plexgate_gateway_routed_upstream_seconds";
/// Connections closed at once because their peer is not among
/// `components.gateway.proxyProtocolTrustedSources` (it could claim any client address).
pub const PROXY_UNTRUSTED_CONNECTIONS_TOTAL: &str = "plexgate_gateway_proxy_untrusted_connections_total";
/// Age of the revocation view, in seconds (time since its last feed event).
pub const REVOCATION_VIEW_AGE_SECONDS: &str = "plexgate_gateway_revocation_view_age_seconds";

const BUCKETS: &[f64] = &[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

/// How often histogram samples are folded into their buckets without a scrape.
const UPKEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// Installs the process-wide Prometheus recorder and its upkeep thread; `None` if one is
/// installed already.
pub fn install() -> Option<PrometheusHandle> {
    let handle =
        PrometheusBuilder::new().set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), BUCKETS).ok()?.install_recorder().ok()?;
    // `install_recorder` spawns no upkeep: histogram samples pile up until a scrape drains
    // them (about 45 bytes a request when nobody scrapes), so drain them on a timer. A thread,
    // not a task, so a busy or stopped runtime cannot starve it.
    let upkeep = handle.clone();
    let spawned = std::thread::Builder::new().name("metrics-upkeep".to_owned()).spawn(move || {
        loop {
            std::thread::sleep(UPKEEP_INTERVAL);
            upkeep.run_upkeep();
        }
    });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "no metrics upkeep thread: histograms grow until scraped");
    }
    Some(handle)
}

/// Counters of one series by HTTP status, each made on first use and kept: a lookup by
/// labels hashes them and allocates their Strings on every request; a kept handle is one
/// atomic add. (Made lazily, so the recorder is installed by then.)
pub struct ByStatus {
    name: &'static str,
    labels: Vec<metrics::Label>,
    /// Statuses 100..=599 by `status - 100`.
    slots: Box<[std::sync::OnceLock<metrics::Counter>]>,
}

impl ByStatus {
    /// The counters of `name` with `labels` (a `status` label is added per status).
    pub fn new(name: &'static str, labels: Vec<metrics::Label>) -> ByStatus {
        ByStatus { name, labels, slots: (100..600).map(|_| std::sync::OnceLock::new()).collect() }
    }

    fn make(&self, status: u16) -> metrics::Counter {
        let mut labels = self.labels.clone();
        labels.push(metrics::Label::new("status", status.to_string()));
        metrics::counter!(self.name, labels)
    }

    /// Counts one answer with `status`.
    pub fn increment(&self, status: u16) {
        match self.slots.get(usize::from(status).wrapping_sub(100)) {
            Some(slot) => slot.get_or_init(|| self.make(status)).increment(1),
            None => self.make(status).increment(1),
        }
    }
}

/// Handles of a series without runtime labels (or with fixed ones), made on first use.
pub mod handles {
    use std::sync::LazyLock;

    use metrics::{Counter, Histogram};

    /// `TOKEN_VERIFICATIONS_TOTAL{result="cache_hit"}`.
    pub static TOKEN_CACHE_HIT: LazyLock<Counter> =
        LazyLock::new(|| metrics::counter!(super::TOKEN_VERIFICATIONS_TOTAL, "result" => "cache_hit"));
    /// `TOKEN_VERIFICATIONS_TOTAL{result="verified"}`.
    pub static TOKEN_VERIFIED: LazyLock<Counter> =
        LazyLock::new(|| metrics::counter!(super::TOKEN_VERIFICATIONS_TOTAL, "result" => "verified"));
    /// `REQUESTS_TOTAL{endpoint="unmatched"}` by status: every routed request.
    pub static UNMATCHED_REQUESTS: LazyLock<super::ByStatus> =
        LazyLock::new(|| super::ByStatus::new(super::REQUESTS_TOTAL, vec![metrics::Label::new("endpoint", super::UNMATCHED)]));
    /// `REQUEST_DURATION_SECONDS{endpoint="unmatched"}`.
    pub static UNMATCHED_DURATION: LazyLock<Histogram> =
        LazyLock::new(|| metrics::histogram!(super::REQUEST_DURATION_SECONDS, "endpoint" => super::UNMATCHED));
}

/// The `endpoint` label of requests no route of the gateway's own matched (routed ones).
pub const UNMATCHED: &str = "unmatched";
