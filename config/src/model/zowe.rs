//! The `zowe.*` section: what plexgate reads of it; the rest is kept and ignored.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Secret;

/// Port of the virtual address when `zowe.externalPort` is not set.
pub const DEFAULT_EXTERNAL_PORT: i64 = 7554;
/// Workspace directory when `zowe.workspaceDirectory` is not set (relative to the current directory).
pub const DEFAULT_WORKSPACE_DIRECTORY: &str = "workspace";

/// `zowe.*`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Zowe {
    /// Names of the virtual address; the first one is where the distributor listens by default.
    pub external_domains: Vec<String>,
    /// Port of the virtual address (default 7554).
    pub external_port: i64,
    /// Where plexgate keeps certificates, the users file, durable storage and state.
    pub workspace_directory: String,
    /// Zowe's log directory (accepted; plexgate logs to standard error).
    pub log_directory: Option<String>,
    /// `STRICT` (trust and host name), `NONSTRICT` (trust only) or `DISABLED`.
    pub verify_certificates: String,
    /// `zowe.network.*`: TLS versions.
    pub network: Network,
    /// `zowe.certificate.*`: keystore, truststore and PEM files.
    pub certificate: Certificate,
}

impl Default for Zowe {
    fn default() -> Zowe {
        Zowe {
            external_domains: vec!["localhost".to_owned()],
            external_port: DEFAULT_EXTERNAL_PORT,
            workspace_directory: DEFAULT_WORKSPACE_DIRECTORY.to_owned(),
            log_directory: None,
            verify_certificates: "STRICT".to_owned(),
            network: Network::default(),
            certificate: Certificate::default(),
        }
    }
}

/// `zowe.network`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Network {
    /// `zowe.network.server`.
    pub server: NetworkSide,
    /// `zowe.network.client` (accepted, as Zowe has it).
    pub client: Option<Value>,
}

/// `zowe.network.server`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct NetworkSide {
    /// `zowe.network.server.tls`.
    pub tls: Tls,
}

/// `zowe.network.server.tls`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Tls {
    /// Lowest TLS version: `TLSv1.2` (default) or `TLSv1.3`.
    pub min_tls: Option<String>,
    /// Highest TLS version: `TLSv1.3` (default) or `TLSv1.2`.
    pub max_tls: Option<String>,
}

/// `zowe.certificate` (also `components.<c>.certificate`).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Certificate {
    /// `keystore`: `type` PKCS12 or PEM, `file`, `password`, `alias`.
    pub keystore: Keystore,
    /// `truststore`: `type`, `file`, `password`.
    pub truststore: Keystore,
    /// `pem`: the PEM files plexgate uses.
    pub pem: Pem,
}

/// A keystore or truststore reference.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Keystore {
    /// `PKCS12` or `PEM`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// The keystore file.
    pub file: Option<String>,
    /// Its password (never printed).
    pub password: Option<Secret>,
    /// The alias of the key inside it.
    pub alias: Option<String>,
}

/// `certificate.pem`: PEM files.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Pem {
    /// The server's private key.
    pub key: Option<String>,
    /// The server's certificate (chain).
    pub certificate: Option<String>,
    /// The CA certificates to trust: a list, or one comma-separated string as Zowe writes it.
    pub certificate_authorities: Option<Value>,
    /// Our own: the private key a gateway presents to the caching service (default: `key`).
    pub client_key: Option<String>,
    /// Our own: the certificate a gateway presents to the caching service (default: `certificate`).
    pub client_certificate: Option<String>,
}
