//! `components.distributor.virtualAddress`: the address the distributor hosts share, moved
//! between them by keepalived (VRRP), as a dynamic VIPA moves between TCP/IP stacks.
//!
//! Every field is optional here so that every key is known to [`crate::unknown`] (it reads
//! them off these defaults); [`crate::validate`] says which are required once `address` is set.

use serde::{Deserialize, Serialize};

use super::{Dur, Secret};

/// Interval of VRRP advertisements (keepalived `advert_int`).
pub const DEFAULT_ADVERT_INTERVAL: Dur = Dur::ms(1_000);
/// keepalived priority of the first distributor host (the preferred one); each further host
/// in file order gets [`DEFAULT_PRIORITY_STEP`] less. High priorities keep the VRRP skew
/// time `(256 - priority) / 256 x advertInterval` short, so a backup takes over sooner.
pub const DEFAULT_FIRST_PRIORITY: i64 = 250;
/// Priority difference between distributor hosts in file order.
pub const DEFAULT_PRIORITY_STEP: i64 = 10;
/// How often keepalived runs the distributor check (whole seconds: keepalived's unit).
pub const DEFAULT_CHECK_INTERVAL: Dur = Dur::ms(1_000);
/// How long one check may take before it counts as failed (whole seconds).
pub const DEFAULT_CHECK_TIMEOUT: Dur = Dur::ms(1_000);
/// Failed checks in a row that make a host give up the address.
pub const DEFAULT_CHECK_FALL: i64 = 1;
/// Successful checks in a row before a host may hold the address again.
pub const DEFAULT_CHECK_RISE: i64 = 1;
/// The only VRRP authentication keepalived still offers for VRRPv2: a clear-text password.
pub const AUTH_TYPES: &[&str] = &["PASS"];
/// Longest VRRP password (the protocol carries 8 bytes).
pub const MAX_PASSWORD_LEN: usize = 8;

/// `components.distributor.virtualAddress`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct VirtualAddress {
    /// The address with its prefix length (`10.1.0.100/24`); unset: no virtual address.
    pub address: Option<String>,
    /// The network interface it is added to (`eth0`).
    pub interface: Option<String>,
    /// VRRP virtual router id, 1-255, the same on every host sharing the address and unique on the network.
    pub virtual_router_id: Option<i64>,
    /// Interval of VRRP advertisements; a backup takes over after about three missed ones.
    pub advert_interval: Dur,
    /// This host's keepalived priority, 1-254 (default: by file order, the first highest).
    pub priority: Option<i64>,
    /// Whether the preferred host takes the address back once it is healthy again
    /// (`false`: keepalived `nopreempt`, the address stays where it is).
    pub auto_switch_back: bool,
    /// Unicast VRRP: the other hosts' addresses (default: multicast to 224.0.0.18).
    pub unicast_peers: Option<Vec<String>>,
    /// VRRP authentication (optional).
    pub authentication: Authentication,
    /// How keepalived checks the local distributor.
    pub check: Check,
}

impl Default for VirtualAddress {
    fn default() -> VirtualAddress {
        VirtualAddress {
            address: None,
            interface: None,
            virtual_router_id: None,
            advert_interval: DEFAULT_ADVERT_INTERVAL,
            priority: None,
            auto_switch_back: true,
            unicast_peers: None,
            authentication: Authentication::default(),
            check: Check::default(),
        }
    }
}

/// `components.distributor.virtualAddress.authentication`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Authentication {
    /// `PASS` (the default when a password is given).
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// Up to 8 characters; never printed.
    pub password: Option<Secret>,
}

/// `components.distributor.virtualAddress.check`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct Check {
    /// Between checks (whole seconds).
    pub interval: Dur,
    /// One check's limit (whole seconds).
    pub timeout: Dur,
    /// Failures in a row before the host gives up the address.
    pub fall: i64,
    /// Successes in a row before it may hold it again.
    pub rise: i64,
}

impl Default for Check {
    fn default() -> Check {
        Check { interval: DEFAULT_CHECK_INTERVAL, timeout: DEFAULT_CHECK_TIMEOUT, fall: DEFAULT_CHECK_FALL, rise: DEFAULT_CHECK_RISE }
    }
}
