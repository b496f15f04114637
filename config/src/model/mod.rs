//! The zowe.yaml file as written: serde structs with `#[serde(default)]` and documented
//! defaults. Nothing here is checked yet; [`crate::validate`] turns it into a [`crate::Config`].
//!
//! Sections we own are typed field by field, so [`crate::unknown`] can report a key we do not
//! know there (with the nearest known one). Keys of Zowe's that we do not use are either
//! accepted as opaque values or simply not modelled: serde skips them, so a real zowe.yaml
//! loads without a word about them. No `flatten`, which would hide error paths.

mod components;
mod duration;
mod secret;
mod virtual_address;
mod zowe;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use components::*;
pub use duration::Dur;
pub use secret::Secret;
pub use virtual_address::*;
pub use zowe::*;

/// The whole zowe.yaml.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ZoweYaml {
    /// `zowe.*`: domains, ports, directories, certificates.
    pub zowe: Zowe,
    /// `components.*`: the defaults of every component, for every instance.
    pub components: Components,
    /// `haInstances.<id>`: one entry per instance, in file order.
    pub ha_instances: IndexMap<String, HaInstance>,
    /// `zOSMF`: where z/OSMF is, for the `zosmf` authentication provider.
    #[serde(rename = "zOSMF")]
    pub zosmf: Option<Zosmf>,
}

/// `haInstances.<id>`: where an instance runs and what it overrides.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct HaInstance {
    /// Host name the instance's components listen on and are reached at.
    pub hostname: Option<String>,
    /// z/OS system name (informational).
    pub sysname: Option<String>,
    /// Overrides of `components.<c>.*` for this instance, merged key by key at any depth.
    pub components: Map<String, Value>,
}

/// `zOSMF`: the z/OSMF the `zosmf` provider checks passwords against.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Zosmf {
    /// Host name of z/OSMF.
    pub host: Option<String>,
    /// HTTPS port of z/OSMF (default 443).
    pub port: Option<i64>,
    /// z/OSMF's APPLID (informational).
    pub appl_id: Option<String>,
    /// Our own: the path of the authenticate call (default [`DEFAULT_ZOSMF_AUTH_PATH`]).
    pub auth_path: Option<String>,
    /// Our own: how long to wait for z/OSMF (default [`DEFAULT_ZOSMF_TIMEOUT`]).
    pub timeout: Option<Dur>,
}

/// Path z/OSMF authenticates on, as Zowe uses it.
pub const DEFAULT_ZOSMF_AUTH_PATH: &str = "/zosmf/services/authenticate";
/// How long a login waits for z/OSMF before answering 503.
pub const DEFAULT_ZOSMF_TIMEOUT: Dur = Dur::ms(10_000);
/// z/OSMF's default HTTPS port.
pub const DEFAULT_ZOSMF_PORT: i64 = 443;
