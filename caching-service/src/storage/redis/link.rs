//! The connection to the Redis master, with or without Sentinel.
//!
//! - Without Sentinel: one [`ConnectionManager`], created lazily so that an unreachable Redis
//!   at start is not an error. It reconnects by itself after a dropped connection. It does not
//!   notice a connection that silently stopped answering (a host that vanished without a TCP
//!   reset), so on a timeout the manager is replaced by a fresh one.
//! - With Sentinel: `ConnectionManager` would keep reconnecting to the address it started
//!   with, which after a failover is a dead host or a read-only replica. So the link holds one
//!   plain multiplexed connection to the master Sentinel named, and drops it on any sign that
//!   it no longer talks to a writable master (I/O error, timeout, `READONLY`, `MASTERDOWN`,
//!   `LOADING`, `NOREPLICAS`); the next operation asks Sentinel again. A master that Sentinel
//!   replaced while it stayed up answers normally, so [`watch_sentinel`] also asks Sentinel
//!   every second which node is the master, and drops the connection when it names another.
//!
//! Every replacement bumps a generation number, so the revision follower (which holds its own
//! connection for `XREAD BLOCK`) can tell that the master changed and follow it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use ::redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use ::redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use ::redis::{
    AsyncConnectionConfig, Client, Cmd, ConnectionAddr, IntoConnectionInfo, Pipeline, RedisConnectionInfo, RedisError, RedisFuture,
    RedisResult, TlsCertificates, TlsMode, Value,
};
use plexgate_config::{Certificates, RedisConfig, RedisNode};

use crate::error::CacheError;

/// After a failed attempt to reach the master through Sentinel, further attempts within this
/// pause fail at once instead of all asking Sentinel again.
const SENTINEL_RETRY_PAUSE: Duration = Duration::from_millis(200);

/// How often Sentinel is asked whether the master changed.
const SENTINEL_CHECK: Duration = Duration::from_secs(1);

/// Where connections come from.
enum Source {
    /// One Redis server.
    Direct { client: Client, manager: RwLock<ConnectionManager>, config: ConnectionManagerConfig },
    /// The master a Sentinel group names.
    Sentinel {
        sentinel: Box<tokio::sync::Mutex<SentinelState>>,
        current: Mutex<Option<(MultiplexedConnection, Address)>>,
        config: AsyncConnectionConfig,
        /// The master's name in Sentinel.
        name: String,
    },
}

/// Host and port of a Redis node.
type Address = (String, u16);

struct SentinelState {
    client: SentinelClient,
    /// When the last attempt failed, and why.
    failed: Option<(Instant, RedisError)>,
}

/// The link to the Redis master.
pub(super) struct Link {
    source: Source,
    /// Bumped whenever the connection to the master is replaced.
    generation: AtomicU64,
    /// Where we connect to, for logs (never with credentials).
    pub(super) target: String,
}

/// A connection to the master, as handed out by [`Link::conn`].
pub(super) struct Conn {
    inner: Inner,
    /// The link's generation when this connection was handed out.
    generation: u64,
}

enum Inner {
    Manager(ConnectionManager),
    Plain(MultiplexedConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match &mut self.inner {
            Inner::Manager(c) => c.req_packed_command(cmd),
            Inner::Plain(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(&'a mut self, pipeline: &'a Pipeline, offset: usize, count: usize) -> RedisFuture<'a, Vec<Value>> {
        match &mut self.inner {
            Inner::Manager(c) => c.req_packed_commands(pipeline, offset, count),
            Inner::Plain(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match &self.inner {
            Inner::Manager(c) => c.get_db(),
            Inner::Plain(c) => c.get_db(),
        }
    }
}

impl Conn {
    /// The link generation this connection belongs to.
    pub(super) fn generation(&self) -> u64 {
        self.generation
    }
}

/// Whether `e` says the server answered at all (a reply), as opposed to a transport failure.
fn server_replied(e: &RedisError) -> bool {
    matches!(e.kind(), ::redis::ErrorKind::Server(_) | ::redis::ErrorKind::Extension)
}

/// Whether `e` says this connection does not reach a writable master (any more).
pub(super) fn not_master(e: &RedisError) -> bool {
    let code = e.code().unwrap_or_default();
    matches!(code, "READONLY" | "MASTERDOWN" | "LOADING" | "NOREPLICAS")
        || ["READONLY", "NOREPLICAS"].iter().any(|c| e.to_string().contains(c))
}

/// Whether the connection that gave `e` should be replaced.
fn connection_broken(e: &RedisError) -> bool {
    e.is_io_error() || e.is_timeout() || e.is_unrecoverable_error() || (!server_replied(e) && e.is_connection_dropped())
}

impl Link {
    /// Builds the link from the configuration; connects nothing yet.
    pub(super) fn new(c: &RedisConfig, certs: &Certificates) -> Result<Link, CacheError> {
        let tls =
            c.tls.as_ref().map(|t| tls_certificates(if t.ca.is_empty() { &certs.certificate_authorities } else { &t.ca })).transpose()?;
        let startup = |what: &str, e: RedisError| CacheError::Startup(format!("redis: {what}: {e}"));
        if let Some(s) = &c.sentinel {
            if s.nodes.is_empty() {
                return Err(CacheError::Startup("redis: sentinel is enabled but lists no Sentinel node".to_owned()));
            }
            let addrs = s.nodes.iter().map(|n| addr(n, tls.is_some()));
            let mut b = SentinelClientBuilder::new(addrs, &s.master_instance, SentinelServerType::Master)
                .map_err(|e| startup("sentinel settings", e))?;
            // The master's credentials are those of masterNodeUri, when given.
            if let Some(m) = &c.master {
                if let Some(u) = &m.user {
                    b = b.set_client_to_redis_username(u);
                }
                if let Some(p) = &m.password {
                    b = b.set_client_to_redis_password(p.expose());
                }
            }
            // The builder takes one set of Sentinel credentials: the first node that has any.
            if let Some(n) = s.nodes.iter().find(|n| n.password.is_some() || n.user.is_some()) {
                if let Some(u) = &n.user {
                    b = b.set_client_to_sentinel_username(u);
                }
                if let Some(p) = &n.password {
                    b = b.set_client_to_sentinel_password(p.expose());
                }
                if s.nodes.iter().any(|o| o.password.as_ref().map(|p| p.expose()) != n.password.as_ref().map(|p| p.expose())) {
                    tracing::warn!("redis: the Sentinel nodes have different passwords; all of them are asked with the first one's");
                }
            }
            if let Some(t) = tls {
                b = b
                    .set_client_to_sentinel_certificates(t.clone())
                    .set_client_to_redis_tls_mode(TlsMode::Secure)
                    .set_client_to_redis_certificates(t);
            }
            let client = b.build().map_err(|e| startup("sentinel settings", e))?;
            let target = format!(
                "master `{}` of Sentinel {}",
                s.master_instance,
                s.nodes.iter().map(|n| format!("{}:{}", n.host, n.port)).collect::<Vec<_>>().join(",")
            );
            let config = AsyncConnectionConfig::new().set_connection_timeout(Some(c.timeout)).set_response_timeout(Some(c.timeout));
            return Ok(Link {
                source: Source::Sentinel {
                    sentinel: Box::new(tokio::sync::Mutex::new(SentinelState { client, failed: None })),
                    current: Mutex::new(None),
                    name: s.master_instance.clone(),
                    config,
                },
                generation: AtomicU64::new(0),
                target,
            });
        }
        let Some(m) = &c.master else {
            return Err(CacheError::Startup("redis: neither masterNodeUri nor sentinel is configured".to_owned()));
        };
        let info =
            addr(m, tls.is_some()).into_connection_info().map_err(|e| startup("masterNodeUri", e))?.set_redis_settings(credentials(m));
        let client = match tls {
            Some(t) => Client::build_with_tls(info, t),
            None => Client::open(info),
        }
        .map_err(|e| startup("masterNodeUri", e))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(c.timeout))
            .set_response_timeout(Some(c.timeout))
            // Few quick retries: a request waits at most the timeout anyway, and the next
            // request starts a new attempt.
            .set_number_of_retries(2)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500));
        let manager = ConnectionManager::new_lazy_with_config(client.clone(), config.clone()).map_err(|e| startup("connection", e))?;
        Ok(Link {
            source: Source::Direct { client, manager: RwLock::new(manager), config },
            generation: AtomicU64::new(0),
            target: format!("{}:{}", m.host, m.port),
        })
    }

    /// Whether Sentinel finds the master.
    pub(super) fn uses_sentinel(&self) -> bool {
        matches!(self.source, Source::Sentinel { .. })
    }

    /// The current generation.
    pub(super) fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// A connection to the master (connecting, or asking Sentinel, when there is none).
    pub(super) async fn conn(&self) -> RedisResult<Conn> {
        match &self.source {
            Source::Direct { manager, .. } => {
                let generation = self.generation();
                let m = manager.read().unwrap_or_else(|p| p.into_inner()).clone();
                Ok(Conn { inner: Inner::Manager(m), generation })
            }
            Source::Sentinel { sentinel, current, config, .. } => {
                let generation = self.generation();
                if let Some((c, _)) = lock(current).clone() {
                    return Ok(Conn { inner: Inner::Plain(c), generation });
                }
                let mut state = sentinel.lock().await;
                // Another request may have connected while this one waited.
                let generation = self.generation();
                if let Some((c, _)) = lock(current).clone() {
                    return Ok(Conn { inner: Inner::Plain(c), generation });
                }
                if let Some((at, e)) = &state.failed
                    && at.elapsed() < SENTINEL_RETRY_PAUSE
                {
                    return Err(e.clone());
                }
                match open_master(&mut state.client, config).await {
                    Ok((c, address)) => {
                        state.failed = None;
                        tracing::info!(target = %self.target, master = %format!("{}:{}", address.0, address.1), "redis: connected to the master Sentinel names");
                        *lock(current) = Some((c.clone(), address));
                        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
                        Ok(Conn { inner: Inner::Plain(c), generation })
                    }
                    Err(e) => {
                        state.failed = Some((Instant::now(), e.clone()));
                        Err(e)
                    }
                }
            }
        }
    }

    /// Tells the link that an operation on a connection of `generation` failed with `e` (`None`: it timed out);
    /// replaces the connection when that is what it takes to recover.
    pub(super) fn failed(&self, generation: u64, e: Option<&RedisError>) {
        match &self.source {
            Source::Direct { client, manager, config } => {
                // The manager recovers from dropped connections itself; not from silence.
                if e.is_none_or(|e| e.is_timeout()) {
                    let mut m = manager.write().unwrap_or_else(|p| p.into_inner());
                    if self.generation() == generation
                        && let Ok(fresh) = ConnectionManager::new_lazy_with_config(client.clone(), config.clone())
                    {
                        *m = fresh;
                        self.generation.fetch_add(1, Ordering::SeqCst);
                        tracing::warn!(target = %self.target, "redis: no answer in time; reconnecting");
                    }
                }
            }
            Source::Sentinel { current, .. } => {
                if e.is_none_or(|e| connection_broken(e) || not_master(e)) {
                    let mut cur = lock(current);
                    if self.generation() == generation && cur.is_some() {
                        *cur = None;
                        tracing::warn!(target = %self.target, error = %e.map(ToString::to_string).unwrap_or_else(|| "timeout".to_owned()), "redis: lost the master; asking Sentinel again");
                    }
                }
            }
        }
    }

    /// A new connection of its own to the master (for a blocking command), answering within
    /// `response_timeout`.
    pub(super) async fn dedicated(&self, connect_timeout: Duration, response_timeout: Duration) -> RedisResult<MultiplexedConnection> {
        let config =
            AsyncConnectionConfig::new().set_connection_timeout(Some(connect_timeout)).set_response_timeout(Some(response_timeout));
        match &self.source {
            Source::Direct { client, .. } => client.get_multiplexed_async_connection_with_config(&config).await,
            Source::Sentinel { sentinel, .. } => open_master(&mut sentinel.lock().await.client, &config).await.map(|(c, _)| c),
        }
    }

    /// With Sentinel: asks a Sentinel (on `conn`, opened when `None`) which node is the master,
    /// and drops the connection to the current one when that is another node.
    ///
    /// Without this, a connection to a master that Sentinel replaced while it stayed up (a
    /// manual failover, a partition) keeps taking writes until Sentinel demotes it, which it
    /// does only when it next looks at it (up to 10 s); those writes are lost in the resync.
    async fn check_master(&self, conn: &mut Option<MultiplexedConnection>) -> RedisResult<()> {
        let Source::Sentinel { sentinel, current, config, name } = &self.source else { return Ok(()) };
        if conn.is_none() {
            let client = sentinel.lock().await.client.async_get_sentinel_client().await?;
            *conn = Some(client.get_multiplexed_async_connection_with_config(config).await?);
        }
        let Some(c) = conn.as_mut() else { return Ok(()) };
        let named: Option<(String, String)> = match ::redis::cmd("SENTINEL").arg("get-master-addr-by-name").arg(name).query_async(c).await {
            Ok(v) => v,
            Err(e) => {
                *conn = None;
                return Err(e);
            }
        };
        let Some((host, port)) = named else { return Ok(()) };
        let named = (host, port.parse::<u16>().unwrap_or_default());
        let mut cur = lock(current);
        if let Some((_, address)) = cur.as_ref()
            && *address != named
        {
            tracing::warn!(
                target = %self.target,
                old = %format!("{}:{}", address.0, address.1),
                new = %format!("{}:{}", named.0, named.1),
                "redis: Sentinel names a new master; switching"
            );
            *cur = None;
            self.generation.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }
}

/// With Sentinel: checks every [`SENTINEL_CHECK`] that the master in use is still the one
/// Sentinel names (see [`Link::check_master`]); runs until aborted.
pub(super) async fn watch_sentinel(link: std::sync::Arc<Link>) {
    let mut conn = None;
    loop {
        tokio::time::sleep(SENTINEL_CHECK).await;
        if let Err(e) = link.check_master(&mut conn).await {
            tracing::debug!(error = %e, "redis: cannot ask Sentinel for the master");
        }
    }
}

async fn open_master(client: &mut SentinelClient, config: &AsyncConnectionConfig) -> RedisResult<(MultiplexedConnection, Address)> {
    let master = client.async_get_client().await?;
    let address = match master.get_connection_info().addr() {
        ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. } => (host.clone(), *port),
        other => (format!("{other:?}"), 0),
    };
    Ok((master.get_multiplexed_async_connection_with_config(config).await?, address))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn addr(n: &RedisNode, tls: bool) -> ConnectionAddr {
    if tls {
        ConnectionAddr::TcpTls { host: n.host.clone(), port: n.port, insecure: false, tls_params: None }
    } else {
        ConnectionAddr::Tcp(n.host.clone(), n.port)
    }
}

fn credentials(n: &RedisNode) -> RedisConnectionInfo {
    let mut r = RedisConnectionInfo::default();
    if let Some(u) = &n.user {
        r = r.set_username(u);
    }
    if let Some(p) = &n.password {
        r = r.set_password(p.expose());
    }
    r
}

/// The CA certificates to verify Redis with, as the redis crate takes them (PEM). Each file is
/// parsed first so a bad one is named at start.
fn tls_certificates(cas: &[std::path::PathBuf]) -> Result<TlsCertificates, CacheError> {
    if cas.is_empty() {
        return Err(CacheError::Startup(
            "redis: TLS is enabled but no CA certificate is configured (storage.redis.ssl.trustStore or zowe.certificate CAs)".to_owned(),
        ));
    }
    let mut pem = Vec::new();
    for path in cas {
        plexgate_config::tls::load_certs(path).map_err(|e| CacheError::Startup(format!("redis TLS: {e}")))?;
        let bytes = std::fs::read(path).map_err(|e| CacheError::Startup(format!("redis TLS: cannot read {}: {e}", path.display())))?;
        pem.extend_from_slice(&bytes);
        pem.push(b'\n');
    }
    Ok(TlsCertificates { client_tls: None, root_cert: Some(pem) })
}
