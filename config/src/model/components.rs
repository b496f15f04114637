//! `components.*`: the gateway, the caching service and the distributor.
//!
//! Keys Zowe defines for these components but plexgate does not use (`debug`, `server`,
//! parts of `apiml`, ...) are accepted as opaque values so a real zowe.yaml loads cleanly.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Certificate, Dur, Secret};

/// Gateway port when neither `components.gateway.port` nor an instance sets it (Zowe's).
pub const DEFAULT_GATEWAY_PORT: i64 = 7554;
/// Caching service port (Zowe's).
pub const DEFAULT_CACHING_SERVICE_PORT: i64 = 7555;
/// Zowe's discovery service port (`components.discovery.port`).
pub const DEFAULT_DISCOVERY_PORT: i64 = 7553;
/// Most instances the discovery service keeps registered (registrations are the gateways'
/// own state, never refused for room other callers took, so they are bounded here).
pub const DEFAULT_DISCOVERY_MAX_INSTANCES: i64 = 10_000;
/// Largest caching-service request body, in bytes.
pub const DEFAULT_MAX_REQUEST_SIZE: i64 = 1024 * 1024;
/// Changes the caching service keeps for reconnecting feed subscribers.
pub const DEFAULT_FEED_RETENTION: i64 = 100_000;
/// Heartbeat interval of an idle change feed.
pub const DEFAULT_FEED_HEARTBEAT: Dur = Dur::ms(1_000);
/// Authentication provider when none is configured (Zowe's default).
pub const DEFAULT_AUTH_PROVIDER: &str = "zosmf";
/// Storage mode of the caching service: the embedded single-file store.
pub const DEFAULT_STORAGE_MODE: &str = "durable";
/// Entries the caching service holds (Zowe's default).
pub const DEFAULT_STORAGE_SIZE: i64 = 10_000;
/// What happens when the storage is full (Zowe's default).
pub const DEFAULT_EVICTION_STRATEGY: &str = "reject";
/// Redis timeout in seconds (Zowe's default).
pub const DEFAULT_REDIS_TIMEOUT_SECONDS: i64 = 60;
/// Distribution method of the distributor.
pub const DEFAULT_DISTRIBUTOR_METHOD: &str = "hotStandby";
/// How often the distributor checks every target.
pub const DEFAULT_HEALTH_INTERVAL: Dur = Dur::ms(250);
/// How long one health check may take.
pub const DEFAULT_HEALTH_TIMEOUT: Dur = Dur::ms(1_000);
/// Path of the gateway's health endpoint.
pub const DEFAULT_HEALTH_PATH: &str = "/application/health";
/// Failed checks in a row before a target is marked down.
pub const DEFAULT_UNHEALTHY_THRESHOLD: i64 = 2;
/// Successful checks in a row before a target is marked up again.
pub const DEFAULT_HEALTHY_THRESHOLD: i64 = 2;
/// Address of the distributor's admin listener (loopback: status is not for the world).
pub const DEFAULT_ADMIN_ADDRESS: &str = "127.0.0.1";
/// Port of the distributor's admin listener.
pub const DEFAULT_ADMIN_PORT: i64 = 7560;
/// Concurrent client connections the distributor accepts in total.
pub const DEFAULT_MAX_CONNECTIONS: i64 = 20_000;
/// A connection with no byte either way for this long is closed.
pub const DEFAULT_IDLE_TIMEOUT: Dur = Dur::ms(300_000);
/// How long a stopping process lets open connections finish.
pub const DEFAULT_DRAIN_TIMEOUT: Dur = Dur::ms(30_000);
/// Client bytes the distributor keeps until a target's first byte, to replay them on the
/// next target when that one closes or resets the connection before answering: 16 KiB holds
/// a TLS ClientHello (with a PROXY header in front) with room to spare.
pub const DEFAULT_REPLAY_BYTES: i64 = 16 * 1024;
/// Largest `components.distributor.replayBytes` allowed (it is held per connecting client).
pub const MAX_REPLAY_BYTES: i64 = 1024 * 1024;

/// `components.*`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Components {
    /// `components.gateway`.
    pub gateway: Gateway,
    /// `components.caching-service`.
    #[serde(rename = "caching-service")]
    pub caching_service: CachingService,
    /// `components.distributor`: our own section.
    pub distributor: Distributor,
    /// `components.discovery`: the Eureka-compatible endpoint onboarding enablers register with.
    pub discovery: Discovery,
    /// `components.sample-service`: our own; the built-in sample API service `plexgate up` runs.
    #[serde(rename = "sample-service")]
    pub sample_service: SampleService,
}

/// `components.discovery`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Discovery {
    /// Whether this instance runs a discovery endpoint (default false).
    pub enabled: bool,
    /// HTTPS port (Zowe's 7553).
    pub port: i64,
    /// Our own: most instances kept registered; a registration beyond is refused (507).
    pub max_instances: i64,
    /// Certificates of this component, overriding `zowe.certificate`.
    pub certificate: Option<Certificate>,
    /// Zowe's (accepted, unused).
    pub debug: Option<Value>,
    /// Zowe's (accepted, unused).
    pub apiml: Option<Value>,
    /// Zowe's (accepted, unused).
    pub server: Option<Value>,
    /// Zowe's (accepted, unused).
    pub spring: Option<Value>,
    /// Zowe's (accepted, unused: every plexgate discovery instance reads the one shared store).
    pub replicas: Option<Value>,
}

impl Default for Discovery {
    fn default() -> Discovery {
        Discovery {
            enabled: false,
            port: DEFAULT_DISCOVERY_PORT,
            max_instances: DEFAULT_DISCOVERY_MAX_INSTANCES,
            certificate: None,
            debug: None,
            apiml: None,
            server: None,
            spring: None,
            replicas: None,
        }
    }
}

/// `components.sample-service`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct SampleService {
    /// Whether `plexgate up` runs it (and routes `/sample/api/v1/**` to it).
    pub enabled: bool,
    /// One instance per port, on 127.0.0.1.
    pub ports: Vec<i64>,
}

/// `components.gateway`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Gateway {
    /// Whether this instance runs a gateway.
    pub enabled: bool,
    /// HTTPS port.
    pub port: i64,
    /// `apiml.*`, of which plexgate reads `apiml.security.auth.provider`.
    pub apiml: GatewayApiml,
    /// Our own: the users file of the `users-file` provider (default `<workspace>/users.yaml`).
    pub users_file: Option<String>,
    /// Our own: users who may revoke other users' tokens and evict (besides users-file admins).
    pub admin_users: Vec<String>,
    /// Our own: login tokens and their keys.
    pub jwt: Jwt,
    /// Our own: failed-login limits.
    pub login_rate_limit: LoginRateLimit,
    /// Our own: how long a gateway trusts its revocation view without the change feed.
    pub revocation: Revocation,
    /// Our own: what a gateway does on SIGTERM.
    pub shutdown: Shutdown,
    /// Our own: verified tokens remembered (each entry saves an RS256 verification).
    pub token_cache_size: i64,
    /// Our own: directories (or files) of static API service definitions in Zowe's format
    /// (default `<workspace>/api-mediation/api-defs`).
    pub static_definitions_directories: Option<Vec<String>>,
    /// Our own: forwarding to API services.
    pub routing: Routing,
    /// Our own: every connection starts with a PROXY protocol v2 header from the distributor.
    pub proxy_protocol: bool,
    /// Our own: addresses or networks (`10.1.0.0/16`) whose PROXY headers are believed; any
    /// other peer's connection is closed. Default: the distributor's address as far as the
    /// configuration names it (see `validate::gateway::proxy_sources`).
    pub proxy_protocol_trusted_sources: Option<Vec<String>>,
    /// Our own: the admin listener (plain HTTP, loopback by default) with the detailed health
    /// and the metrics, which the northbound port does not show.
    pub admin: GatewayAdmin,
    /// Certificates of this component, overriding `zowe.certificate`.
    pub certificate: Option<Certificate>,
    /// Zowe's (accepted, unused).
    pub debug: Option<Value>,
    /// Zowe's (accepted, unused).
    pub server: Option<Value>,
    /// Zowe's (accepted, unused).
    pub spring: Option<Value>,
    /// Zowe's (accepted, unused).
    pub ssl_debug: Option<Value>,
}

impl Default for Gateway {
    fn default() -> Gateway {
        Gateway {
            enabled: true,
            port: DEFAULT_GATEWAY_PORT,
            apiml: GatewayApiml::default(),
            users_file: None,
            admin_users: Vec::new(),
            jwt: Jwt::default(),
            login_rate_limit: LoginRateLimit::default(),
            revocation: Revocation::default(),
            shutdown: Shutdown::default(),
            token_cache_size: DEFAULT_TOKEN_CACHE_SIZE,
            static_definitions_directories: None,
            routing: Routing::default(),
            proxy_protocol: false,
            proxy_protocol_trusted_sources: None,
            admin: GatewayAdmin::default(),
            certificate: None,
            debug: None,
            server: None,
            spring: None,
            ssl_debug: None,
        }
    }
}

/// Lifetime of a login token (Zowe's default).
pub const DEFAULT_JWT_LIFETIME: Dur = Dur::ms(8 * 3600 * 1000);
/// Clock skew tolerated when checking `exp`, `nbf` and `iat`.
pub const DEFAULT_JWT_LEEWAY: Dur = Dur::ms(30_000);
/// The `dom` claim of login tokens.
pub const DEFAULT_JWT_DOMAIN: &str = "security-domain";
/// Failed logins of one user from one client address within the window before that user's
/// further attempts from that address are refused (the limit a password guesser meets).
pub const DEFAULT_MAX_FAILURES_PER_USER_AND_ADDRESS: i64 = 5;
/// Failed logins of one user from all addresses within the window before all of that user's
/// attempts are refused: a ceiling against guessing from many addresses, high enough that a
/// few addresses cannot lock a user out.
pub const DEFAULT_MAX_FAILURES_PER_USER: i64 = 100;
/// Failed logins from one client address, any user names, within the window before further
/// attempts from it are refused: a ceiling against spraying names from one address.
pub const DEFAULT_MAX_FAILURES_PER_ADDRESS: i64 = 100;
/// The window of the failed-login limits.
pub const DEFAULT_RATE_LIMIT_WINDOW: Dur = Dur::ms(60_000);
/// How long the revocation view is trusted while its change feed is down.
pub const DEFAULT_STALENESS_BOUND: Dur = Dur::ms(30_000);
/// How often each gateway evicts expired revocations, old rules and idle sticky routes.
pub const DEFAULT_EVICT_INTERVAL: Dur = Dur::ms(600_000);
/// How long a sticky route (`apiml.lb.type: authentication`) lives without being used.
pub const DEFAULT_STICKY_IDLE_TIMEOUT: Dur = Dur::ms(8 * 3_600_000);
/// After SIGTERM, how long the gateway reports DRAINING while still accepting connections.
pub const DEFAULT_SHUTDOWN_GRACE: Dur = Dur::ms(2_000);
/// After the grace period, how long open requests may take to finish.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Dur = Dur::ms(30_000);
/// Verified tokens remembered.
pub const DEFAULT_TOKEN_CACHE_SIZE: i64 = 100_000;

/// Time to open a connection to an API service instance.
pub const DEFAULT_CONNECT_TIMEOUT: Dur = Dur::ms(2_000);
/// Time for an API service to start answering (Zowe's `apiml.connection.timeout`).
pub const DEFAULT_RESPONSE_TIMEOUT: Dur = Dur::ms(60_000);
/// Longest pause between two pieces of a body, either way, before the exchange is cut.
pub const DEFAULT_BODY_IDLE_TIMEOUT: Dur = Dur::ms(60_000);
/// Extra attempts on other instances for a failed request.
pub const DEFAULT_RETRIES: i64 = 2;
/// Interval of active health checks of API service instances.
pub const DEFAULT_SERVICE_HEALTH_INTERVAL: Dur = Dur::ms(2_000);
/// First ejection of an instance after a failure; doubled per further failure, up to a minute.
pub const DEFAULT_EJECTION: Dur = Dur::ms(2_000);

/// How far above the gateway's port its admin listener is by default.
pub const DEFAULT_GATEWAY_ADMIN_PORT_OFFSET: i64 = 6;

/// `components.gateway.admin`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct GatewayAdmin {
    /// Whether to open it.
    pub enabled: bool,
    /// Its address (loopback by default: what it shows is for operators).
    pub address: String,
    /// Its port (default: the gateway's port + [`DEFAULT_GATEWAY_ADMIN_PORT_OFFSET`]).
    pub port: Option<i64>,
}

impl Default for GatewayAdmin {
    fn default() -> GatewayAdmin {
        GatewayAdmin { enabled: true, address: DEFAULT_ADMIN_ADDRESS.to_owned(), port: None }
    }
}

/// `components.gateway.routing`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Routing {
    /// Time to connect to an instance.
    pub connect_timeout: Dur,
    /// Time until the first byte of the answer, counted from the end of the request body.
    pub response_timeout: Dur,
    /// Longest pause between two pieces of a request or response body.
    pub idle_timeout: Dur,
    /// Offer HTTP/2 to API services (by ALPN) besides HTTP/1.1.
    pub http2: bool,
    /// Extra attempts on other instances.
    pub retries: i64,
    /// Interval of active health checks.
    pub health_check_interval: Dur,
    /// First ejection after a failure.
    pub ejection: Dur,
    /// How long a sticky route lives unused before it is evicted.
    pub sticky_idle_timeout: Dur,
}

impl Default for Routing {
    fn default() -> Routing {
        Routing {
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            response_timeout: DEFAULT_RESPONSE_TIMEOUT,
            idle_timeout: DEFAULT_BODY_IDLE_TIMEOUT,
            http2: false,
            retries: DEFAULT_RETRIES,
            health_check_interval: DEFAULT_SERVICE_HEALTH_INTERVAL,
            ejection: DEFAULT_EJECTION,
            sticky_idle_timeout: DEFAULT_STICKY_IDLE_TIMEOUT,
        }
    }
}

/// `components.gateway.jwt`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Jwt {
    /// Lifetime of a login token.
    pub lifetime: Dur,
    /// Clock skew tolerated.
    pub leeway: Dur,
    /// The `dom` claim.
    pub domain: String,
    /// PEM private key that signs tokens (default: the gateway's certificate key, as Zowe's keystore key).
    pub signing_key: Option<String>,
    /// PEM certificate of that key (default: the gateway's certificate).
    pub signing_certificate: Option<String>,
    /// Certificates of former signing keys still accepted (key rotation without logging anyone out).
    pub verification_certificates: Vec<String>,
}

impl Default for Jwt {
    fn default() -> Jwt {
        Jwt {
            lifetime: DEFAULT_JWT_LIFETIME,
            leeway: DEFAULT_JWT_LEEWAY,
            domain: DEFAULT_JWT_DOMAIN.to_owned(),
            signing_key: None,
            signing_certificate: None,
            verification_certificates: Vec::new(),
        }
    }
}

/// `components.gateway.loginRateLimit`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct LoginRateLimit {
    /// Failed logins per (user, client address) within the window.
    pub max_failures_per_user_and_address: i64,
    /// Failed logins per user within the window.
    pub max_failures_per_user: i64,
    /// Failed logins per client address within the window.
    pub max_failures_per_address: i64,
    /// The window.
    pub window: Dur,
}

impl Default for LoginRateLimit {
    fn default() -> LoginRateLimit {
        LoginRateLimit {
            max_failures_per_user_and_address: DEFAULT_MAX_FAILURES_PER_USER_AND_ADDRESS,
            max_failures_per_user: DEFAULT_MAX_FAILURES_PER_USER,
            max_failures_per_address: DEFAULT_MAX_FAILURES_PER_ADDRESS,
            window: DEFAULT_RATE_LIMIT_WINDOW,
        }
    }
}

/// `components.gateway.revocation`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Revocation {
    /// How long the view is trusted without its change feed; past it, the caching service is asked per request.
    pub staleness_bound: Dur,
    /// How often expired revocations (after `exp` plus the leeway), rules older than 90 days
    /// and idle sticky routes are evicted from the caching service.
    pub evict_interval: Dur,
}

impl Default for Revocation {
    fn default() -> Revocation {
        Revocation { staleness_bound: DEFAULT_STALENESS_BOUND, evict_interval: DEFAULT_EVICT_INTERVAL }
    }
}

/// `components.gateway.shutdown`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct Shutdown {
    /// Time reporting DRAINING while still accepting, so the distributor moves away first.
    pub grace: Dur,
    /// Time for open requests to finish afterwards.
    pub timeout: Dur,
}

impl Default for Shutdown {
    fn default() -> Shutdown {
        Shutdown { grace: DEFAULT_SHUTDOWN_GRACE, timeout: DEFAULT_SHUTDOWN_TIMEOUT }
    }
}

/// `components.gateway.apiml`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct GatewayApiml {
    /// `apiml.security`.
    pub security: ApimlSecurity,
    /// Zowe's (accepted, unused).
    pub service: Option<Value>,
    /// Zowe's (accepted, unused).
    pub gateway: Option<Value>,
    /// Zowe's (accepted, unused).
    pub health: Option<Value>,
    /// Zowe's (accepted, unused).
    pub banner: Option<Value>,
    /// Zowe's (accepted, unused).
    pub catalog: Option<Value>,
    /// Zowe's (accepted, unused).
    #[serde(rename = "connectionTimeout")]
    pub connection_timeout: Option<Value>,
    /// Zowe's (accepted, unused).
    #[serde(rename = "loadBalancer")]
    pub load_balancer: Option<Value>,
}

/// `components.gateway.apiml.security`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ApimlSecurity {
    /// `apiml.security.auth`.
    pub auth: ApimlAuth,
    /// Zowe's (accepted, unused).
    pub authorization: Option<Value>,
    /// Zowe's (accepted, unused).
    pub x509: Option<Value>,
    /// Zowe's (accepted, unused).
    pub saf: Option<Value>,
    /// Zowe's (accepted, unused).
    pub oidc: Option<Value>,
    /// Zowe's (accepted, unused).
    pub personal_access_token: Option<Value>,
    /// Zowe's (accepted, unused).
    pub use_internal_mapper: Option<Value>,
    /// Zowe's (accepted, unused).
    pub ssl: Option<Value>,
    /// Zowe's (accepted, unused).
    pub allow_token_refresh: Option<Value>,
    /// Zowe's (accepted, unused).
    pub jwt_initializer_timeout: Option<Value>,
}

/// `components.gateway.apiml.security.auth`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ApimlAuth {
    /// `zosmf` (Zowe's default) or `users-file` (plexgate's own).
    pub provider: String,
    /// Zowe's (accepted, unused).
    pub zosmf: Option<Value>,
    /// Zowe's (accepted, unused).
    pub jwt: Option<Value>,
    /// Zowe's (accepted, unused).
    pub passticket: Option<Value>,
}

impl Default for ApimlAuth {
    fn default() -> ApimlAuth {
        ApimlAuth { provider: DEFAULT_AUTH_PROVIDER.to_owned(), zosmf: None, jwt: None, passticket: None }
    }
}

/// `components.caching-service`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct CachingService {
    /// Whether this instance runs a caching service.
    pub enabled: bool,
    /// HTTPS port.
    pub port: i64,
    /// Where and how entries are kept.
    pub storage: Storage,
    /// Our own: largest request body accepted, in bytes (larger: 413).
    pub max_request_size: i64,
    /// Our own: subject DNs of gateway certificates allowed to pass a caller's identity in
    /// `X-Certificate-DistinguishedName` (default: the configured client and server certificates).
    pub trusted_gateways: Vec<String>,
    /// Our own: the change feed the gateways follow.
    pub change_feed: ChangeFeed,
    /// Certificates of this component, overriding `zowe.certificate`.
    pub certificate: Option<Certificate>,
    /// Zowe's (accepted, unused).
    pub debug: Option<Value>,
    /// Zowe's (accepted, unused).
    pub apiml: Option<Value>,
    /// Zowe's (accepted, unused).
    pub server: Option<Value>,
    /// Zowe's (accepted, unused).
    pub spring: Option<Value>,
}

impl Default for CachingService {
    fn default() -> CachingService {
        CachingService {
            enabled: true,
            port: DEFAULT_CACHING_SERVICE_PORT,
            storage: Storage::default(),
            max_request_size: DEFAULT_MAX_REQUEST_SIZE,
            trusted_gateways: Vec::new(),
            change_feed: ChangeFeed::default(),
            certificate: None,
            debug: None,
            apiml: None,
            server: None,
            spring: None,
        }
    }
}

/// `components.caching-service.changeFeed`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct ChangeFeed {
    /// Changes kept for subscribers that reconnect (older ones get a fresh snapshot instead).
    pub retention: i64,
    /// Interval of heartbeats on an idle feed, so subscribers can tell it is alive.
    pub heartbeat: Dur,
}

impl Default for ChangeFeed {
    fn default() -> ChangeFeed {
        ChangeFeed { retention: DEFAULT_FEED_RETENTION, heartbeat: DEFAULT_FEED_HEARTBEAT }
    }
}

/// `components.caching-service.storage`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Storage {
    /// `inMemory`, `durable` (default), `VSAM` (alias of `durable`), `redis` or `infinispan`.
    pub mode: String,
    /// Most entries held (per the caching service's counting rule).
    pub size: i64,
    /// Our own: most entries one caller's namespace may hold (default: a quarter of `size`),
    /// so one caller cannot take every other caller's room. `0` means the default.
    pub size_per_namespace: i64,
    /// `reject` (507 when full) or `removeOldest`.
    pub eviction_strategy: String,
    /// Our own: the `durable` store.
    pub durable: Durable,
    /// Our own: the `replicated` store.
    pub replicated: Replicated,
    /// `redis` settings.
    pub redis: Redis,
    /// Zowe's (accepted; the mode itself is refused at start).
    pub infinispan: Option<Value>,
    /// Zowe's (accepted; `VSAM` maps to `durable`).
    pub vsam: Option<Value>,
}

impl Default for Storage {
    fn default() -> Storage {
        Storage {
            mode: DEFAULT_STORAGE_MODE.to_owned(),
            size: DEFAULT_STORAGE_SIZE,
            size_per_namespace: 0,
            eviction_strategy: DEFAULT_EVICTION_STRATEGY.to_owned(),
            durable: Durable::default(),
            replicated: Replicated::default(),
            redis: Redis::default(),
            infinispan: None,
            vsam: None,
        }
    }
}

/// `components.caching-service.storage.durable`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Durable {
    /// The store file (default `<workspace>/caching-service/<instance>.redb`).
    pub file: Option<String>,
}

/// `components.caching-service.storage.replicated`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Replicated {
    /// The group's cluster id (default: derived from the first external domain and the
    /// external port); replicas refuse peers of another cluster.
    pub cluster_name: Option<String>,
    /// This replica's directory (default `<workspace>/caching-service/<instance>`).
    pub directory: Option<String>,
}

/// `components.caching-service.storage.redis`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Redis {
    /// `[user:password@]host:port` of the master (without Sentinel).
    pub master_node_uri: Option<Secret>,
    /// Seconds to wait for Redis.
    pub timeout: i64,
    /// Sentinel discovery of the master.
    pub sentinel: Sentinel,
    /// TLS to Redis.
    pub ssl: RedisSsl,
}

impl Default for Redis {
    fn default() -> Redis {
        Redis { master_node_uri: None, timeout: DEFAULT_REDIS_TIMEOUT_SECONDS, sentinel: Sentinel::default(), ssl: RedisSsl::default() }
    }
}

/// `components.caching-service.storage.redis.sentinel`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Sentinel {
    /// Whether to find the master through Sentinel.
    pub enabled: bool,
    /// The master's name as Sentinel knows it.
    pub master_instance: Option<String>,
    /// Sentinel nodes: `[password@]host:port` strings or `{host, port, password}` mappings.
    pub nodes: Vec<Value>,
}

/// `components.caching-service.storage.redis.ssl`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct RedisSsl {
    /// Whether to speak TLS to Redis.
    pub enabled: bool,
    /// Client keystore (Zowe's; PEM accepted too).
    pub keystore: Option<String>,
    /// Its password (never printed).
    pub keystore_password: Option<Secret>,
    /// CA certificates to verify Redis with.
    pub trust_store: Option<String>,
    /// Its password (never printed).
    pub trust_store_password: Option<Secret>,
}

/// `components.distributor`: our own section, the front door on the virtual address.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Distributor {
    /// Whether to run it (default: when some haInstance has an enabled gateway).
    pub enabled: Option<bool>,
    /// Listen address (default `zowe.externalDomains[0]`).
    pub address: Option<String>,
    /// Listen port (default `zowe.externalPort`).
    pub port: Option<i64>,
    /// `hotStandby`, `roundRobin`, `weighted` or `leastConnections`.
    pub method: String,
    /// hotStandby: return to the preferred target once it is healthy again.
    pub auto_switch_back: bool,
    /// Targets; default: every instance whose gateway is enabled, in file order, the first preferred.
    pub targets: Option<Vec<Target>>,
    /// Active health checks.
    pub health_check: HealthCheck,
    /// The admin listener (JSON status, Prometheus metrics).
    pub admin: Admin,
    /// Most concurrent client connections in total (fewer when the open-files limit allows
    /// fewer, two descriptors each); past it new clients wait in the accept queue.
    pub max_connections: i64,
    /// Most concurrent connections per target (0: no limit of its own).
    pub max_connections_per_target: i64,
    /// Close a connection idle this long.
    pub idle_timeout: Dur,
    /// On SIGTERM, how long open connections may finish.
    pub drain_timeout: Dur,
    /// Send a PROXY protocol v2 header to the gateways.
    pub proxy_protocol: bool,
    /// Client bytes kept until the target's first byte, replayed on the next target when it
    /// closes or resets the connection before answering (0: no replay).
    pub replay_bytes: i64,
    /// Our own: the virtual address the distributor hosts share through keepalived.
    pub virtual_address: super::VirtualAddress,
}

impl Default for Distributor {
    fn default() -> Distributor {
        Distributor {
            enabled: None,
            address: None,
            port: None,
            method: DEFAULT_DISTRIBUTOR_METHOD.to_owned(),
            auto_switch_back: true,
            targets: None,
            health_check: HealthCheck::default(),
            admin: Admin::default(),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_target: 0,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            proxy_protocol: false,
            replay_bytes: DEFAULT_REPLAY_BYTES,
            virtual_address: super::VirtualAddress::default(),
        }
    }
}

/// One target of the distributor: an haInstance's gateway, or an explicit address.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct Target {
    /// The haInstance whose gateway this is.
    pub instance: Option<String>,
    /// Or an explicit `host:port`.
    pub address: Option<String>,
    /// hotStandby: `preferred` or `backup` (backups rank in list order).
    pub role: Option<String>,
    /// weighted: this target's share.
    pub weight: i64,
}

impl Default for Target {
    fn default() -> Target {
        Target { instance: None, address: None, role: None, weight: 1 }
    }
}

/// `components.distributor.healthCheck`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct HealthCheck {
    /// Time between checks of one target.
    pub interval: Dur,
    /// Time one check may take.
    pub timeout: Dur,
    /// Path of the HTTPS GET.
    pub path: String,
    /// Failures in a row that mark a target down.
    pub unhealthy_threshold: i64,
    /// Successes in a row that mark it up again.
    pub healthy_threshold: i64,
    /// When a target is marked down because it cannot be reached at all (no TCP connection),
    /// close the connections still open to it, so their clients reconnect to a healthy target
    /// instead of waiting on a dead link. A target that answers (even 503 DRAINING) keeps them.
    pub close_sessions_when_unreachable: bool,
}

impl Default for HealthCheck {
    fn default() -> HealthCheck {
        HealthCheck {
            interval: DEFAULT_HEALTH_INTERVAL,
            timeout: DEFAULT_HEALTH_TIMEOUT,
            path: DEFAULT_HEALTH_PATH.to_owned(),
            unhealthy_threshold: DEFAULT_UNHEALTHY_THRESHOLD,
            healthy_threshold: DEFAULT_HEALTHY_THRESHOLD,
            close_sessions_when_unreachable: true,
        }
    }
}

/// `components.distributor.admin`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct Admin {
    /// Whether to open the admin listener.
    pub enabled: bool,
    /// Its address (loopback by default).
    pub address: String,
    /// Its port.
    pub port: i64,
}

impl Default for Admin {
    fn default() -> Admin {
        Admin { enabled: true, address: DEFAULT_ADMIN_ADDRESS.to_owned(), port: DEFAULT_ADMIN_PORT }
    }
}
