//! The HA drills' harness (issue 7): the whole topology as real processes
//! ([`topology::Topology`]), an open-model load generator ([`load`]), long requests and WebSockets
//! ([`long`]), the report every drill
//! prints and appends to `$PLEXGATE_DRILL_REPORT` ([`report`]), a Sentinel-managed Redis
//! group ([`redis_group`]), the revocation race ([`race`]) and network namespaces for the
//! network-cut drill ([`netns`]).
//!
//! The drills themselves are `tests/drills.rs`; `cargo run -p plexgate-tests --bin drills --
//! --report` runs them and writes `docs/ha-drills.md`.

pub mod load;
pub mod long;
pub mod netns;
pub mod race;
pub mod redis_group;
pub mod report;
pub mod topology;

/// Drills run one at a time, even when the test harness runs tests in parallel: each one
/// measures latency and failover times, and a second topology on a 2-core machine would be
/// part of what it measures.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
