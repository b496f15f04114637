//! Every metric the distributor exports, by name. Units are in the names; per-target series
//! carry a `target` label (the target's name).

use plexgate_metrics_recorder::PrometheusHandle;

/// Client connections forwarded, by `target`.
pub const CONNECTIONS_TOTAL: &str = "plexgate_distributor_connections_total";
/// Client connections open now, by `target`.
pub const CONNECTIONS_ACTIVE: &str = "plexgate_distributor_connections_active";
/// Client connections closed without being forwarded, by `reason` (`no_target`).
pub const CONNECTIONS_REFUSED_TOTAL: &str = "plexgate_distributor_connections_refused_total";
/// Times a thread stopped accepting at the connection limit (`maxConnections`, or what the
/// open-files limit allows) until a connection closed; the clients meanwhile wait in the
/// kernel's accept queue.
pub const ACCEPT_PAUSED_TOTAL: &str = "plexgate_distributor_accept_paused_total";
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

/// Installs the process-wide recorder (shared by every plexgate process); `None` if one is
/// installed already.
pub fn install() -> Option<PrometheusHandle> {
    plexgate_metrics_recorder::install()
}
