//! Every metric the gateway exports, by name. Units are in the names.

use plexgate_metrics_recorder::PrometheusHandle;

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
/// Times a worker stopped accepting at the connections the open-files limit holds until one
/// closed (clients meanwhile wait in the kernel's accept queue).
pub const ACCEPT_PAUSED_TOTAL: &str = "plexgate_gateway_accept_paused_total";
/// Connections closed at once because their peer is not among
/// `components.gateway.proxyProtocolTrustedSources` (it could claim any client address).
pub const PROXY_UNTRUSTED_CONNECTIONS_TOTAL: &str = "plexgate_gateway_proxy_untrusted_connections_total";
/// Age of the revocation view, in seconds (time since its last feed event).
pub const REVOCATION_VIEW_AGE_SECONDS: &str = "plexgate_gateway_revocation_view_age_seconds";

/// Installs the process-wide recorder (shared by every plexgate process); `None` if one is
/// installed already.
pub fn install() -> Option<PrometheusHandle> {
    plexgate_metrics_recorder::install()
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
