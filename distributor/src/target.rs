//! One target at run time: its configuration, its health state and its counters.
//!
//! Health states, and why:
//! - `unverified`: at start, before the first check has answered. Treated as up, so traffic
//!   flows at once (the first check runs immediately); one failed check marks it down,
//!   since nothing shows it ever worked.
//! - `up`: takes new connections. Down after `unhealthyThreshold` failed checks in a row.
//! - `suspect`: a connect to it just failed (passive check). No new connections; the next
//!   active check decides: success makes it up again, failure down.
//! - `down`: no new connections. Up after `healthyThreshold` successful checks in a row.
//!
//! Every change is logged with its reason and counted.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use plexgate_config::{HealthCheckConfig, TargetConfig};
use serde::{Deserialize, Serialize};

use crate::metrics as m;

/// Health state of a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Not checked yet; takes connections.
    Unverified,
    /// Healthy; takes connections.
    Up,
    /// A connect failed; waits for the next check.
    Suspect,
    /// Failed its checks.
    Down,
}

impl State {
    /// Whether new connections may go to a target in this state.
    pub fn takes_connections(self) -> bool {
        matches!(self, State::Unverified | State::Up)
    }
}

/// The result of the latest active check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastCheck {
    /// Whether it passed.
    pub ok: bool,
    /// What was seen (status and body, or the error).
    pub detail: String,
    /// When it finished, milliseconds since the Unix epoch.
    pub at: u64,
}

struct Health {
    state: State,
    since: SystemTime,
    failures: u32,
    successes: u32,
    last_check: Option<LastCheck>,
}

/// A target with its live state. Shared by the accept loop, its health checker and the admin
/// listener.
pub struct Target {
    /// Its configuration.
    pub config: TargetConfig,
    health: Mutex<Health>,
    takes_connections: AtomicBool,
    active: AtomicU64,
    total: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    /// Bumped by [`Target::close_sessions`]. Every connection subscribes when it reserves
    /// its slot, before it connects, so a close issued while it is still connecting or
    /// writing its PROXY header is seen too (a `Notify` would only wake those already waiting).
    close: tokio::sync::watch::Sender<u64>,
    /// Where to connect: the address itself, or the host name's addresses as last resolved
    /// in the background ([`crate::resolve`]), so no connection waits on the resolver.
    addresses: Mutex<Arc<[SocketAddr]>>,
    /// Asks the resolver for a fresh lookup (after a failed connect).
    pub(crate) resolve_now: tokio::sync::Notify,
    metrics: Metrics,
}

/// Handles of this target's series, so the data path does no label lookup.
struct Metrics {
    total: metrics::Counter,
    active: metrics::Gauge,
    bytes_in: metrics::Counter,
    bytes_out: metrics::Counter,
    connect_failures: metrics::Counter,
    up: metrics::Gauge,
}

impl Target {
    /// A target in state `unverified`, with zero counters.
    pub fn new(config: TargetConfig) -> Target {
        let name = config.name.clone();
        let metrics = Metrics {
            total: metrics::counter!(m::CONNECTIONS_TOTAL, "target" => name.clone()),
            active: metrics::gauge!(m::CONNECTIONS_ACTIVE, "target" => name.clone()),
            bytes_in: metrics::counter!(m::BYTES_IN_TOTAL, "target" => name.clone()),
            bytes_out: metrics::counter!(m::BYTES_OUT_TOTAL, "target" => name.clone()),
            connect_failures: metrics::counter!(m::CONNECT_FAILURES_TOTAL, "target" => name.clone()),
            up: metrics::gauge!(m::TARGET_UP, "target" => name),
        };
        metrics.up.set(1.0);
        let addresses: Arc<[SocketAddr]> = match config.host.trim_matches(['[', ']']).parse::<IpAddr>() {
            Ok(ip) => Arc::new([SocketAddr::new(ip, config.port)]),
            Err(_) => Arc::new([]),
        };
        let health = Health { state: State::Unverified, since: SystemTime::now(), failures: 0, successes: 0, last_check: None };
        Target {
            config,
            health: Mutex::new(health),
            takes_connections: AtomicBool::new(true),
            active: AtomicU64::new(0),
            total: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            close: tokio::sync::watch::Sender::new(0),
            addresses: Mutex::new(addresses),
            resolve_now: tokio::sync::Notify::new(),
            metrics,
        }
    }

    /// Whether it is named by a host name (resolved in the background), not an IP address.
    pub fn by_host_name(&self) -> bool {
        self.config.host.trim_matches(['[', ']']).parse::<IpAddr>().is_err()
    }

    /// The addresses to connect to (empty: a host name not resolved yet).
    pub fn addresses(&self) -> Arc<[SocketAddr]> {
        self.addresses.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Stores the addresses a lookup found.
    pub(crate) fn set_addresses(&self, found: Vec<SocketAddr>) {
        *self.addresses.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = found.into();
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Whether new connections may go to it (lock-free; read on every selection).
    pub fn takes_connections(&self) -> bool {
        self.takes_connections.load(Ordering::Relaxed)
    }

    /// Its current state.
    pub fn state(&self) -> State {
        self.lock().state
    }

    /// Open connections now.
    pub fn active(&self) -> u64 {
        self.active.load(Ordering::Relaxed)
    }

    /// Reserves a connection slot, unless `limit` (0: none) is reached.
    pub fn try_acquire(self: &std::sync::Arc<Self>, limit: u32) -> Option<ActiveGuard> {
        let before = self.active.fetch_add(1, Ordering::AcqRel);
        if limit > 0 && before >= u64::from(limit) {
            self.active.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        self.metrics.active.increment(1.0);
        Some(ActiveGuard { target: self.clone(), connected: false, closed: self.close.subscribe() })
    }

    /// Counts bytes a client sent to this target.
    pub fn add_bytes_in(&self, n: u64) {
        self.bytes_in.fetch_add(n, Ordering::Relaxed);
        self.metrics.bytes_in.increment(n);
    }

    /// Counts bytes this target sent to a client.
    pub fn add_bytes_out(&self, n: u64) {
        self.bytes_out.fetch_add(n, Ordering::Relaxed);
        self.metrics.bytes_out.increment(n);
    }

    /// Records an active check's result and moves the state per the thresholds.
    pub fn record_check(&self, ok: bool, detail: String, thresholds: &HealthCheckConfig) {
        let mut h = self.lock();
        h.last_check = Some(LastCheck { ok, detail: detail.clone(), at: epoch_ms(SystemTime::now()) });
        if ok {
            h.failures = 0;
            h.successes = h.successes.saturating_add(1);
            let next = match h.state {
                State::Unverified | State::Suspect => Some(State::Up),
                State::Down if h.successes >= thresholds.healthy_threshold => Some(State::Up),
                _ => None,
            };
            if let Some(next) = next {
                let reason = format!("{} successful health check(s): {detail}", h.successes);
                self.change(&mut h, next, &reason);
            }
        } else {
            h.successes = 0;
            h.failures = h.failures.saturating_add(1);
            let next = match h.state {
                State::Unverified | State::Suspect => Some(State::Down),
                State::Up if h.failures >= thresholds.unhealthy_threshold => Some(State::Down),
                _ => None,
            };
            if let Some(next) = next {
                let reason = format!("{} failed health check(s) in a row, last: {detail}", h.failures);
                self.change(&mut h, next, &reason);
            }
        }
    }

    /// A connect to it failed: no new connections until the next active check says otherwise.
    pub fn connect_failed(&self, detail: &str) {
        self.metrics.connect_failures.increment(1);
        // The host may have moved: look it up again (a stored permit, so none is lost).
        self.resolve_now.notify_one();
        let mut h = self.lock();
        if h.state.takes_connections() {
            h.successes = 0;
            self.change(&mut h, State::Suspect, &format!("connect failed: {detail}"));
        }
    }

    /// Closes every connection open to it now, including those still connecting (it cannot
    /// be reached: they would hang). See [`ActiveGuard::closing`].
    pub fn close_sessions(&self) {
        let open = self.active();
        if open > 0 {
            tracing::warn!(target_name = %self.config.name, open, "target unreachable: closing the connections still open to it");
            metrics::counter!(m::SESSIONS_CLOSED_TOTAL, "target" => self.config.name.clone()).increment(open);
            self.close.send_modify(|generation| *generation += 1);
        }
    }

    /// Its state and counters for the admin listener.
    pub fn status(&self) -> crate::status::TargetStatus {
        let h = self.lock();
        let (role, rank) = match self.config.role {
            plexgate_config::Role::Preferred => ("preferred", None),
            plexgate_config::Role::Backup { rank } => ("backup", Some(rank)),
        };
        crate::status::TargetStatus {
            name: self.config.name.clone(),
            host: self.config.host.clone(),
            port: self.config.port,
            role: role.to_owned(),
            rank,
            weight: self.config.weight,
            state: h.state,
            since: epoch_ms(h.since),
            active: self.active(),
            total: self.total.load(Ordering::Relaxed),
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            bytes_out: self.bytes_out.load(Ordering::Relaxed),
            last_check: h.last_check.clone(),
        }
    }

    fn change(&self, h: &mut Health, next: State, reason: &str) {
        let previous = h.state;
        h.state = next;
        h.since = SystemTime::now();
        if next == State::Down {
            h.successes = 0;
        }
        self.takes_connections.store(next.takes_connections(), Ordering::Relaxed);
        self.metrics.up.set(if next.takes_connections() { 1.0 } else { 0.0 });
        metrics::counter!(m::STATE_CHANGES_TOTAL, "target" => self.config.name.clone(), "state" => format!("{next:?}").to_lowercase())
            .increment(1);
        let (name, host, port) = (&self.config.name, &self.config.host, self.config.port);
        if next.takes_connections() {
            tracing::info!(target_name = %name, %host, port, from = ?previous, to = ?next, %reason, "distributor target state changed");
        } else {
            tracing::warn!(target_name = %name, %host, port, from = ?previous, to = ?next, %reason, "distributor target state changed");
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Health> {
        // A panic while holding this lock leaves consistent plain data; keep serving.
        self.health.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// One reserved connection slot on a target; released when dropped. It is also the
/// connection's entry in the target's registry of sessions: [`ActiveGuard::closing`] completes
/// after any [`Target::close_sessions`] issued since the slot was reserved.
pub struct ActiveGuard {
    target: std::sync::Arc<Target>,
    connected: bool,
    closed: tokio::sync::watch::Receiver<u64>,
}

impl ActiveGuard {
    /// Completes once the target's sessions are to be closed: at once if that was ordered
    /// since this slot was reserved (while connecting, say), else when it is.
    pub async fn closing(&mut self) {
        // The sender lives in the target this guard holds, so this only ends by a change.
        let _ = self.closed.changed().await;
    }

    /// The target.
    pub fn target(&self) -> &std::sync::Arc<Target> {
        &self.target
    }

    /// The connect succeeded: count it in the target's total.
    pub fn connected(&mut self) {
        if !self.connected {
            self.connected = true;
            self.target.total.fetch_add(1, Ordering::Relaxed);
            self.target.metrics.total.increment(1);
        }
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.target.active.fetch_sub(1, Ordering::AcqRel);
        self.target.metrics.active.decrement(1.0);
    }
}

/// Milliseconds since the Unix epoch.
pub fn epoch_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

#[cfg(test)]
#[path = "target_tests.rs"]
mod tests;
