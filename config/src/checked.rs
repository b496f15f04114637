//! The checked configuration: what every plexgate process runs on.
//!
//! Built once at start by [`crate::load`] from the merged zowe.yaml of one instance; every
//! value here is valid, every default is filled in and every path is resolved, so the rest of
//! plexgate never re-checks or re-derives configuration.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::model::Secret;

/// The configuration of one process: the whole file seen from one haInstance (or from none).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Config {
    /// The file it came from (or `<embedded default>`).
    pub source: String,
    /// The haInstance this view belongs to, if any.
    pub ha_instance: Option<String>,
    /// Names of the virtual address.
    pub external_domains: Vec<String>,
    /// Port of the virtual address.
    pub external_port: u16,
    /// Absolute workspace directory.
    pub workspace_directory: PathBuf,
    /// How peers' certificates are checked.
    pub verify_certificates: VerifyCertificates,
    /// Allowed TLS versions.
    pub tls: TlsVersions,
    /// PEM files this process uses.
    pub certificates: Certificates,
    /// Every haInstance, in file order, with its merged gateway and caching-service settings.
    pub instances: Vec<Instance>,
    /// The gateway of this instance.
    pub gateway: GatewayConfig,
    /// The caching service of this instance.
    pub caching_service: CachingServiceConfig,
    /// `https://host:port` of every caching service in the topology, in file order.
    pub caching_service_urls: Vec<String>,
    /// The distributor.
    pub distributor: DistributorConfig,
    /// The discovery endpoint of this instance.
    pub discovery: DiscoveryConfig,
    /// z/OSMF, when configured.
    pub zosmf: Option<ZosmfConfig>,
    /// Ports of the built-in sample service's instances (empty: not run).
    pub sample_service_ports: Vec<u16>,
}

/// `zowe.verifyCertificates`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum VerifyCertificates {
    /// Trust chain and host name.
    Strict,
    /// Trust chain only.
    Nonstrict,
    /// Nothing checked (development only).
    Disabled,
}

/// A TLS protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum TlsVersion {
    /// TLS 1.2.
    #[serde(rename = "TLSv1.2")]
    Tls12,
    /// TLS 1.3.
    #[serde(rename = "TLSv1.3")]
    Tls13,
}

/// The range of TLS versions servers and clients accept.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct TlsVersions {
    /// Lowest.
    pub min: TlsVersion,
    /// Highest.
    pub max: TlsVersion,
}

/// PEM files, resolved to absolute paths.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Certificates {
    /// Server private key.
    pub key: PathBuf,
    /// Server certificate chain.
    pub certificate: PathBuf,
    /// CA certificates trusted for peers.
    pub certificate_authorities: Vec<PathBuf>,
    /// Client private key for mutual TLS to the caching service.
    pub client_key: PathBuf,
    /// Client certificate for mutual TLS to the caching service.
    pub client_certificate: PathBuf,
    /// True when these are the development certificates `plexgate init certificate` makes.
    pub generated: bool,
}

/// One haInstance as the topology sees it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Instance {
    /// Its id under `haInstances`.
    pub id: String,
    /// Where it runs.
    pub hostname: String,
    /// z/OS system name, if given.
    pub sysname: Option<String>,
    /// Its gateway port, when its gateway is enabled.
    pub gateway_port: Option<u16>,
    /// Its caching-service port, when its caching service is enabled.
    pub caching_service_port: Option<u16>,
    /// Its discovery port, when its discovery endpoint is enabled.
    pub discovery_port: Option<u16>,
    /// Whether it is a distributor host (`haInstances.<id>.components.distributor.enabled: true`
    /// in its view): `plexgate up --ha-instance <id>` runs a distributor there.
    pub distributor: bool,
}

/// The discovery endpoint of this instance (`components.discovery`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DiscoveryConfig {
    /// Whether it runs.
    pub enabled: bool,
    /// Host it listens on.
    pub host: String,
    /// Its HTTPS port.
    pub port: u16,
    /// Most instances kept registered.
    pub max_instances: usize,
    /// Its certificates (`components.discovery.certificate` over `zowe.certificate`).
    pub certificates: Certificates,
}

/// The gateway of this instance.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayConfig {
    /// Whether it runs.
    pub enabled: bool,
    /// Host it listens on.
    pub host: String,
    /// Its HTTPS port.
    pub port: u16,
    /// How passwords are checked.
    pub auth_provider: AuthProvider,
    /// The users file (read by the `users-file` provider, written by `plexgate users add`).
    pub users_file: PathBuf,
    /// Its certificates (`components.gateway.certificate` over `zowe.certificate`).
    pub certificates: Certificates,
    /// Users with admin rights besides the users file's admins.
    pub admin_users: Vec<String>,
    /// Login tokens.
    pub jwt: JwtConfig,
    /// Failed-login limits.
    pub login_rate_limit: RateLimitConfig,
    /// How long the revocation view is trusted without its feed.
    #[serde(with = "humantime_serde_compat")]
    pub staleness_bound: Duration,
    /// How often expired revocations, old rules and idle sticky routes are evicted.
    #[serde(with = "humantime_serde_compat")]
    pub evict_interval: Duration,
    /// After SIGTERM: DRAINING while still accepting.
    #[serde(with = "humantime_serde_compat")]
    pub shutdown_grace: Duration,
    /// After the grace: time for open requests.
    #[serde(with = "humantime_serde_compat")]
    pub shutdown_timeout: Duration,
    /// Verified tokens remembered.
    pub token_cache_size: usize,
    /// Where static service definitions are read from.
    pub static_definitions: Vec<PathBuf>,
    /// Forwarding to API services.
    pub routing: RoutingConfig,
    /// Connections start with a PROXY protocol v2 header.
    pub proxy_protocol: bool,
    /// Peers whose PROXY headers are believed (others' connections are closed).
    pub proxy_protocol_trusted_sources: Vec<crate::cidr::AddressRange>,
    /// The admin listener (detailed health, metrics), if enabled.
    pub admin: Option<AdminConfig>,
}

/// Forwarding to API services, checked.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RoutingConfig {
    /// Time to connect to an instance.
    #[serde(with = "humantime_serde_compat")]
    pub connect_timeout: Duration,
    /// Time until the first byte of the answer, counted from the end of the request body.
    #[serde(with = "humantime_serde_compat")]
    pub response_timeout: Duration,
    /// Longest pause between two pieces of a request or response body.
    #[serde(with = "humantime_serde_compat")]
    pub idle_timeout: Duration,
    /// Offer HTTP/2 to API services (by ALPN); otherwise HTTP/1.1 over a connection pool.
    pub http2: bool,
    /// Extra attempts on other instances.
    pub retries: u32,
    /// Interval of active health checks.
    #[serde(with = "humantime_serde_compat")]
    pub health_check_interval: Duration,
    /// First ejection after a failure.
    #[serde(with = "humantime_serde_compat")]
    pub ejection: Duration,
    /// How long a sticky route lives unused.
    #[serde(with = "humantime_serde_compat")]
    pub sticky_idle_timeout: Duration,
}

/// Login tokens, checked.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JwtConfig {
    /// Lifetime of a login token.
    #[serde(with = "humantime_serde_compat")]
    pub lifetime: Duration,
    /// Clock skew tolerated.
    #[serde(with = "humantime_serde_compat")]
    pub leeway: Duration,
    /// The `dom` claim.
    pub domain: String,
    /// The signing key (PEM).
    pub signing_key: PathBuf,
    /// Its certificate (PEM).
    pub signing_certificate: PathBuf,
    /// Certificates of keys still accepted.
    pub verification_certificates: Vec<PathBuf>,
}

/// Failed-login limits, checked.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitConfig {
    /// Per (user, client address): the first limit a guesser meets.
    pub max_failures_per_user_and_address: u32,
    /// Per user, from every address.
    pub max_failures_per_user: u32,
    /// Per client address.
    pub max_failures_per_address: u32,
    /// Window.
    #[serde(with = "humantime_serde_compat")]
    pub window: Duration,
}

/// `components.gateway.apiml.security.auth.provider`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuthProvider {
    /// Ask z/OSMF.
    Zosmf,
    /// plexgate's Argon2id users file.
    UsersFile,
}

/// The caching service of this instance.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CachingServiceConfig {
    /// Whether it runs.
    pub enabled: bool,
    /// Host it listens on.
    pub host: String,
    /// Its HTTPS port.
    pub port: u16,
    /// Its storage.
    pub storage: StorageConfig,
    /// Largest request body, in bytes.
    pub max_request_size: usize,
    /// Subject DNs allowed to pass a caller's identity (empty: the configured certificates').
    pub trusted_gateways: Vec<String>,
    /// Changes kept for reconnecting feed subscribers.
    pub feed_retention: u64,
    /// Heartbeat interval of an idle change feed.
    #[serde(with = "humantime_serde_compat")]
    pub feed_heartbeat: Duration,
    /// Its certificates (`components.caching-service.certificate` over `zowe.certificate`).
    pub certificates: Certificates,
}

/// `components.caching-service.storage`, checked.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StorageConfig {
    /// The back end.
    pub mode: StorageMode,
    /// Most entries.
    pub size: u64,
    /// Most counted entries of one namespace.
    pub size_per_namespace: u64,
    /// What happens when full.
    pub eviction_strategy: EvictionStrategy,
    /// The file of the `durable` back end.
    pub durable_file: PathBuf,
    /// Redis settings, for the `redis` back end.
    pub redis: Option<RedisConfig>,
    /// The directory of this replica's log and state, for `replicated`.
    pub replicated_dir: PathBuf,
    /// The group's cluster id, for `replicated`: peers of another are refused.
    pub cluster_name: String,
}

/// Storage back end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum StorageMode {
    /// Process memory; nothing persists.
    InMemory,
    /// Embedded single-file ACID store (also what `VSAM` means here).
    Durable,
    /// A Redis server or Sentinel-managed group.
    Redis,
    /// The embedded store replicated by a Raft group of every haInstance's caching service.
    Replicated,
    /// Accepted in the file for compatibility; the caching service refuses it at start.
    Infinispan,
}

/// `storage.evictionStrategy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum EvictionStrategy {
    /// Refuse new entries when full (507).
    Reject,
    /// Drop the oldest entry to make room.
    RemoveOldest,
}

/// Redis settings, checked.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RedisConfig {
    /// The master, without Sentinel.
    pub master: Option<RedisNode>,
    /// Time to wait for Redis.
    #[serde(with = "humantime_serde_compat")]
    pub timeout: Duration,
    /// Sentinel, when enabled.
    pub sentinel: Option<SentinelConfig>,
    /// TLS, when enabled.
    pub tls: Option<RedisTls>,
}

/// A Redis or Sentinel node.
#[derive(Debug, Clone, Serialize)]
pub struct RedisNode {
    /// Host name.
    pub host: String,
    /// Port.
    pub port: u16,
    /// ACL user, if any.
    pub user: Option<String>,
    /// Password, if any (never printed).
    pub password: Option<Secret>,
}

/// Sentinel settings.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SentinelConfig {
    /// The master's name in Sentinel.
    pub master_instance: String,
    /// The Sentinels.
    pub nodes: Vec<RedisNode>,
}

/// TLS to Redis.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RedisTls {
    /// CA certificates to verify Redis with (default: the configured CAs).
    pub ca: Vec<PathBuf>,
}

/// The distributor, checked.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DistributorConfig {
    /// Whether it runs.
    pub enabled: bool,
    /// Listen host.
    pub address: String,
    /// Listen port.
    pub port: u16,
    /// Distribution method.
    pub method: Method,
    /// hotStandby: go back to the preferred target when it recovers.
    pub auto_switch_back: bool,
    /// Targets in order of preference.
    pub targets: Vec<TargetConfig>,
    /// Active health checks.
    pub health_check: HealthCheckConfig,
    /// The admin listener, if enabled.
    pub admin: Option<AdminConfig>,
    /// Most concurrent client connections.
    pub max_connections: u32,
    /// Most concurrent connections per target (0: no limit of its own).
    pub max_connections_per_target: u32,
    /// Close connections idle this long.
    #[serde(with = "humantime_serde_compat")]
    pub idle_timeout: Duration,
    /// On SIGTERM, time for open connections to finish.
    #[serde(with = "humantime_serde_compat")]
    pub drain_timeout: Duration,
    /// Send PROXY protocol v2 to the gateways.
    pub proxy_protocol: bool,
    /// Client bytes kept until a target's first byte, for a replay on the next target (0: off).
    pub replay_bytes: u32,
    /// The virtual address shared with the other distributor hosts through keepalived, if any.
    pub virtual_address: Option<VirtualAddressConfig>,
}

/// `components.distributor.virtualAddress`, checked: what keepalived.conf is generated from.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VirtualAddressConfig {
    /// The address.
    pub address: std::net::IpAddr,
    /// Its prefix length on the interface.
    pub prefix: u8,
    /// The interface it is added to on this host.
    pub interface: String,
    /// VRRP virtual router id.
    pub virtual_router_id: u8,
    /// Interval of VRRP advertisements.
    #[serde(with = "humantime_serde_compat")]
    pub advert_interval: Duration,
    /// The preferred host takes the address back when healthy again (else keepalived `nopreempt`).
    pub auto_switch_back: bool,
    /// Unicast VRRP peers (empty: multicast), without this host's own address.
    pub unicast_peers: Vec<std::net::IpAddr>,
    /// The VRRP password (`PASS` authentication), if any; never printed.
    pub password: Option<Secret>,
    /// How keepalived checks the local distributor.
    pub check: VirtualAddressCheck,
    /// Every distributor host sharing the address, in file order.
    pub hosts: Vec<VirtualAddressHost>,
}

impl VirtualAddressConfig {
    /// The host `instance`, if it shares the address.
    pub fn host(&self, instance: &str) -> Option<&VirtualAddressHost> {
        self.hosts.iter().find(|h| h.instance == instance)
    }

    /// The preferred host: the highest priority.
    pub fn preferred(&self) -> Option<&VirtualAddressHost> {
        self.hosts.iter().max_by_key(|h| h.priority)
    }
}

/// One distributor host of the virtual address.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VirtualAddressHost {
    /// Its haInstance id.
    pub instance: String,
    /// Its keepalived priority (the highest is the preferred host).
    pub priority: u8,
}

/// The keepalived check of the local distributor, checked.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VirtualAddressCheck {
    /// Between checks (whole seconds).
    #[serde(with = "humantime_serde_compat")]
    pub interval: Duration,
    /// One check's limit (whole seconds).
    #[serde(with = "humantime_serde_compat")]
    pub timeout: Duration,
    /// Failures in a row that give the address up.
    pub fall: u32,
    /// Successes in a row before the address may be held again.
    pub rise: u32,
}

/// `components.distributor.method`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Method {
    /// All to the preferred target; backups in rank order when it fails.
    HotStandby,
    /// In turn.
    RoundRobin,
    /// In proportion to weights.
    Weighted,
    /// To the target with the fewest open connections.
    LeastConnections,
}

/// One distributor target.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetConfig {
    /// A name for logs and status (the instance id, or the address).
    pub name: String,
    /// Host to connect to.
    pub host: String,
    /// Port to connect to.
    pub port: u16,
    /// hotStandby role.
    pub role: Role,
    /// weighted share.
    pub weight: u32,
}

/// hotStandby role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Role {
    /// Gets all new connections while healthy.
    Preferred,
    /// Used when every better target is down; rank 1 is the first backup.
    Backup {
        /// 1-based rank among backups.
        rank: u32,
    },
}

/// Health check settings, checked.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheckConfig {
    /// Between checks.
    #[serde(with = "humantime_serde_compat")]
    pub interval: Duration,
    /// One check's limit.
    #[serde(with = "humantime_serde_compat")]
    pub timeout: Duration,
    /// HTTPS GET path.
    pub path: String,
    /// Failures that mark down.
    pub unhealthy_threshold: u32,
    /// Successes that mark up.
    pub healthy_threshold: u32,
    /// Close a target's open connections when it is marked down as unreachable.
    pub close_sessions_when_unreachable: bool,
}

/// The admin listener.
#[derive(Debug, Clone, Serialize)]
pub struct AdminConfig {
    /// Where it listens.
    pub address: String,
    /// Its port.
    pub port: u16,
}

impl AdminConfig {
    /// The socket address, when `address` is an IP literal.
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        format!("{}:{}", self.address, self.port).parse().ok()
    }
}

/// z/OSMF, checked.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ZosmfConfig {
    /// Host.
    pub host: String,
    /// Port.
    pub port: u16,
    /// APPLID, if given.
    pub appl_id: Option<String>,
    /// Path of the authenticate call.
    pub auth_path: String,
    /// Timeout of one call.
    #[serde(with = "humantime_serde_compat")]
    pub timeout: Duration,
}

/// Durations print as `250ms`, `8h` in `config show`.
mod humantime_serde_compat {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }
}
