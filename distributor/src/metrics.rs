//! Every metric the distributor exports, by name. Units are in the names; per-target series
//! carry a `target` label (the target's name).

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Client connections forwarded, by `target`.
pub const CONNECTIONS_TOTAL: &str = "plexgate_distributor_connections_total";
/// Client connections open now, by `target`.
pub const CONNECTIONS_ACTIVE: &str = "plexgate_distributor_connections_active";
/// Client connections closed without being forwarded, by `reason`
/// (`max_connections`, `no_target`).
pub const CONNECTIONS_REFUSED_TOTAL: &str = "plexgate_distributor_connections_refused_total";
/// Connects to a target that failed (each one made the connection fall through), by `target`.
pub const CONNECT_FAILURES_TOTAL: &str = "plexgate_distributor_connect_failures_total";
/// Client connections replayed on the next candidate because a target closed or reset them
/// before its first byte, by `target` (the one that closed).
pub const REPLAYED_TOTAL: &str = "plexgate_distributor_replayed_total";
/// Client connections closed because a target closed them before its first byte when the
/// client had sent more than `replayBytes` (nothing could be replayed), by `target`.
pub const NOT_REPLAYED_TOTAL: &str = "plexgate_distributor_not_replayed_total";
/// Background lookups of a target's host name, by `target` and `result` (`ok`, `failed`).
pub const RESOLUTIONS_TOTAL: &str = "plexgate_distributor_resolutions_total";
/// Connections closed by the idle timeout.
pub const IDLE_CLOSED_TOTAL: &str = "plexgate_distributor_idle_closed_total";
/// Connections closed because their target became unreachable, by `target`.
pub const SESSIONS_CLOSED_TOTAL: &str = "plexgate_distributor_unreachable_closed_total";
/// Bytes from clients to a target, by `target`.
pub const BYTES_IN_TOTAL: &str = "plexgate_distributor_received_bytes_total";
/// Bytes from a target to its clients, by `target`.
pub const BYTES_OUT_TOTAL: &str = "plexgate_distributor_sent_bytes_total";
/// 1 when a target takes new connections, 0 when it is down or suspect, by `target`.
pub const TARGET_UP: &str = "plexgate_distributor_target_up";
/// Health state changes, by `target` and new `state`.
pub const STATE_CHANGES_TOTAL: &str = "plexgate_distributor_state_changes_total";
/// Time one active health check took, by `target` and `result` (`ok`, `failed`).
pub const HEALTH_CHECK_DURATION_SECONDS: &str = "plexgate_distributor_health_check_duration_seconds";

/// Latency buckets, from 100 us to 5 s.
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
