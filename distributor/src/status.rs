//! The admin listener's JSON status, as served (`GET /status`) and as read back by
//! `plexgate status`: one type for both ends, so they cannot drift apart.

use serde::{Deserialize, Serialize};

use crate::target::{LastCheck, State};

/// The distributor as a whole.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    /// The listen address, `host:port`.
    pub address: String,
    /// `hotStandby`, `roundRobin`, `weighted` or `leastConnections`.
    pub method: String,
    /// hotStandby: whether new connections go back to the preferred target once it recovers.
    pub auto_switch_back: bool,
    /// hotStandby: the target new connections go to now, if any takes them.
    pub current: Option<String>,
    /// Client connections open now.
    pub active: u64,
    /// Whether it is draining (stopped accepting after SIGTERM).
    pub draining: bool,
    /// Every target in configuration order.
    pub targets: Vec<TargetStatus>,
}

/// One target.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TargetStatus {
    /// Its name (the haInstance id, or the address).
    pub name: String,
    /// Host connected to.
    pub host: String,
    /// Port connected to.
    pub port: u16,
    /// `preferred` or `backup`.
    pub role: String,
    /// Backup rank (1 is the first backup).
    pub rank: Option<u32>,
    /// Weight for `weighted`.
    pub weight: u32,
    /// Health state.
    pub state: State,
    /// When the state last changed, milliseconds since the Unix epoch.
    pub since: u64,
    /// Connections open now.
    pub active: u64,
    /// Connections forwarded since start.
    pub total: u64,
    /// Bytes clients sent to it.
    pub bytes_in: u64,
    /// Bytes it sent to clients.
    pub bytes_out: u64,
    /// The latest active health check, if one finished.
    pub last_check: Option<LastCheck>,
}
