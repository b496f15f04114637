//! Routing to API services: `/<serviceId>/<gatewayUrl>/**` to
//! `<instanceBaseUrl><serviceRelativeUrl>/**` of one healthy instance, with failover.
//!
//! The table has two inputs: static definitions (read at start and on SIGHUP) and Eureka
//! registrations (followed through the caching service's change feed, [`dynamic`]). A change
//! of either rebuilds it from both ([`merge`]) and swaps it in whole; requests in flight keep
//! the table they started with.

pub mod definitions;
pub mod dynamic;
pub mod forward;
pub mod idle;
pub mod merge;
pub mod registry;
pub mod sticky;
pub mod upstream;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use plexgate_cache_client::{CacheClient, MapView};
use plexgate_config::{Config, RoutingConfig, tls};

use crate::error::GatewayError;
pub use registry::{Instance, Origin, Registry, Service};
pub use upstream::Upstream;

/// The HTTP(S) client to API services.
pub type HttpClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, axum::body::Body>;

/// The routing table and the client that forwards.
pub struct Routes {
    registry: RwLock<Arc<Registry>>,
    /// Pooled client, HTTP/1.1 and HTTP/2, TLS verified against the truststore, with
    /// `routing.connectTimeout`.
    pub client: HttpClient,
    /// Tells this table's clients apart in each serving thread's own set ([`Routes::client_for`]).
    id: usize,
    /// HTTP/1.1 only: protocol upgrades (WebSocket) exist only there.
    pub upgrade_client: HttpClient,
    /// Clients of services with their own `apiml.connectTimeout`, by that timeout (the
    /// connector owns the timeout, so each value has its own pool).
    by_connect_timeout: Mutex<HashMap<Duration, HttpClient>>,
    tls: rustls::ClientConfig,
    /// Timeouts and retries.
    pub config: RoutingConfig,
    sources: Vec<PathBuf>,
    /// What the table is built from; held while it is rebuilt, so rebuilds never interleave.
    inputs: Mutex<Inputs>,
    /// The view of the registrations map, once followed.
    registrations: OnceLock<Arc<MapView>>,
    /// Upgraded connections (WebSockets) open now: hyper's graceful shutdown no longer sees
    /// a connection once it is upgraded, so the drain waits on this count too.
    tunnels: tokio::sync::watch::Sender<usize>,
}

/// The two inputs of the table.
#[derive(Default)]
struct Inputs {
    statics: Vec<definitions::ServiceDef>,
    registrations: dynamic::Registrations,
    notes: merge::Notes,
}

thread_local! {
    /// A serving thread's clients: (routing table id, connect timeout, client); a handful at most.
    static WORKER_CLIENTS: std::cell::RefCell<Vec<(usize, Duration, Upstream)>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// One open upgraded connection, counted in [`Routes::tunnels_closed`]'s count while it lives.
pub struct TunnelGuard(tokio::sync::watch::Sender<usize>);

impl Drop for TunnelGuard {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

impl Routes {
    /// Reads the static definitions and builds the client.
    pub fn load(config: &Config) -> Result<Arc<Routes>, GatewayError> {
        let g = &config.gateway;
        let statics = read(&g.static_definitions)?;
        let registry = Arc::new(Registry::new(statics.clone()));
        let mut tls = tls::client_config(&g.certificates, config.tls, config.verify_certificates)
            .map_err(|e| GatewayError::Internal(e.to_string()))?;
        tls.alpn_protocols.clear();
        static NEXT_ID: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        Ok(Arc::new(Routes {
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            registry: RwLock::new(registry),
            client: pooled(&tls, g.routing.connect_timeout, g.routing.http2),
            upgrade_client: Client::builder(TokioExecutor::new())
                .pool_max_idle_per_host(0)
                .http1_max_buf_size(crate::server::MAX_HEADER_BYTES)
                .build(
                    hyper_rustls::HttpsConnectorBuilder::new()
                        .with_tls_config(tls.clone())
                        .https_or_http()
                        .enable_http1()
                        .wrap_connector(connector(g.routing.connect_timeout)),
                ),
            by_connect_timeout: Mutex::new(HashMap::new()),
            tls,
            config: g.routing.clone(),
            sources: g.static_definitions.clone(),
            inputs: Mutex::new(Inputs { statics, ..Inputs::default() }),
            registrations: OnceLock::new(),
            tunnels: tokio::sync::watch::Sender::new(0),
        }))
    }

    /// Counts an upgraded connection until the guard is dropped.
    pub fn tunnel_opened(&self) -> TunnelGuard {
        self.tunnels.send_modify(|n| *n += 1);
        TunnelGuard(self.tunnels.clone())
    }

    /// Upgraded connections open now.
    pub fn tunnels_open(&self) -> usize {
        *self.tunnels.borrow()
    }

    /// Completes when no upgraded connection is open.
    pub async fn tunnels_closed(&self) {
        let mut rx = self.tunnels.subscribe();
        let _ = rx.wait_for(|n| *n == 0).await;
    }

    /// The client for a service with the service's connect timeout (or the default one). A
    /// serving thread ([`crate::workers`]) has clients of its own ([`upstream`]), so its
    /// upstream connections are driven on that thread and never handed to another one;
    /// elsewhere it is the pooled client.
    pub fn client_for(&self, connect_timeout: Option<Duration>) -> Upstream {
        let timeout = connect_timeout.unwrap_or(self.config.connect_timeout);
        if let Some(worker) = crate::workers::current() {
            return WORKER_CLIENTS.with(|c| {
                let mut c = c.borrow_mut();
                if let Some((_, _, client)) = c.iter().find(|(id, t, _)| *id == self.id && *t == timeout) {
                    return client.clone();
                }
                let client = if self.config.http2 {
                    Upstream::Pooled(Box::new(pooled(&self.tls, timeout, true)))
                } else {
                    Upstream::Own { connector: https(&self.tls, timeout, false), routes: self.id, connect_timeout: timeout, worker }
                };
                c.push((self.id, timeout, client.clone()));
                client
            });
        }
        Upstream::Pooled(Box::new(self.pooled_for(timeout)))
    }

    /// The pooled client with connect timeout `timeout` (off the serving threads).
    fn pooled_for(&self, timeout: Duration) -> HttpClient {
        if timeout == self.config.connect_timeout {
            return self.client.clone();
        }
        self.by_connect_timeout
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(timeout)
            .or_insert_with(|| pooled(&self.tls, timeout, self.config.http2))
            .clone()
    }

    /// The current table.
    pub fn registry(&self) -> Arc<Registry> {
        self.registry.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Reads the definitions again (SIGHUP); on errors the old table stays. Registered
    /// instances stay, and every instance still defined keeps its health. The number of
    /// static definitions.
    pub fn reload(&self) -> Result<usize, GatewayError> {
        let statics = read(&self.sources)?;
        let n = statics.len();
        let mut inputs = self.lock_inputs();
        inputs.statics = statics;
        self.rebuild(&mut inputs);
        Ok(n)
    }

    /// Follows the registrations in the caching service from now on (once).
    pub fn follow_registrations(self: &Arc<Self>, client: CacheClient, feed_idle: Duration) {
        if self.registrations.get().is_none() {
            let _ = self.registrations.set(dynamic::follow(self, client, feed_idle));
        }
    }

    /// The state of the registrations view, when followed.
    pub fn registrations_status(&self) -> Option<plexgate_cache_client::ViewStatus> {
        self.registrations.get().map(|v| v.status())
    }

    fn registration_put(&self, key: &str, value: &str) {
        let mut inputs = self.lock_inputs();
        if inputs.registrations.put(key, value) {
            tracing::info!(key, "registration changed: routes rebuilt");
            self.rebuild(&mut inputs);
        }
    }

    fn registration_deleted(&self, key: &str) {
        let mut inputs = self.lock_inputs();
        if inputs.registrations.delete(key) {
            tracing::info!(key, "registration removed: routes rebuilt");
            self.rebuild(&mut inputs);
        }
    }

    fn registrations_reset(&self, entries: Vec<(String, String)>) {
        let mut inputs = self.lock_inputs();
        let n = entries.len();
        if inputs.registrations.reset(entries) {
            tracing::info!(registrations = n, "registrations loaded: routes rebuilt");
            self.rebuild(&mut inputs);
        }
    }

    fn lock_inputs(&self) -> std::sync::MutexGuard<'_, Inputs> {
        self.inputs.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn rebuild(&self, inputs: &mut Inputs) {
        let previous = self.registry();
        let Inputs { statics, registrations, notes } = inputs;
        let fresh = Arc::new(merge::merge(statics, registrations, &previous, notes));
        *self.registry.write().unwrap_or_else(|p| p.into_inner()) = fresh;
    }

    /// Checks every instance with a health check, forever, every `interval`.
    pub fn spawn_health_checks(self: &Arc<Self>) {
        let routes = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let Some(r) = routes.upgrade() else { return };
                let interval = r.config.health_check_interval;
                let registry = r.registry();
                let mut checks = Vec::new();
                for service in registry.all() {
                    let connect = service.def.connect_timeout;
                    for instance in &service.instances {
                        // A registration's own healthCheckUrl first, else the definition's path.
                        let uri = match (&instance.health_url, &service.def.health_check) {
                            (Some(u), _) => Ok(u.clone()),
                            (None, Some(path)) => forward::join(&instance.base, path, "", None),
                            (None, None) => continue,
                        };
                        let (r, instance) = (r.clone(), instance.clone());
                        checks.push(tokio::spawn(async move {
                            let up = match uri {
                                Ok(uri) => r.probe(uri, connect).await,
                                Err(_) => false,
                            };
                            instance.checked(up);
                        }));
                    }
                }
                for c in checks {
                    let _ = c.await;
                }
                drop(r);
                tokio::time::sleep(interval).await;
            }
        });
    }

    async fn probe(&self, uri: http::Uri, connect_timeout: Option<Duration>) -> bool {
        let req = http::Request::get(uri).body(axum::body::Body::new(Empty::<Bytes>::new()));
        let Ok(req) = req else { return false };
        let timeout = connect_timeout.unwrap_or(self.config.connect_timeout) + Duration::from_secs(2);
        matches!(tokio::time::timeout(timeout, self.client_for(connect_timeout).request(req)).await, Ok(Ok(r)) if r.status().is_success())
    }
}

fn connector(connect_timeout: Duration) -> HttpConnector {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(connect_timeout));
    http.set_nodelay(true);
    http
}

/// A pooled client whose connects give up after `connect_timeout`: HTTP/1.1, plus HTTP/2 (by
/// ALPN) when `http2`. HTTP/1.1 is the default, as Zowe's gateway speaks it to services: on this
/// path it cost the gateway about a fifth less CPU per request than HTTP/2 (no HPACK of the
/// token in two headers, no hand-off to one connection task per instance).
fn pooled(tls: &rustls::ClientConfig, connect_timeout: Duration, http2: bool) -> HttpClient {
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        // An instance's answer gets the same header limit as a client's request: an answer
        // whose head is larger is refused (502), not buffered without bound.
        .http1_max_buf_size(crate::server::MAX_HEADER_BYTES)
        .http2_max_header_list_size(crate::server::MAX_HEADER_BYTES as u32)
        .build(https(tls, connect_timeout, http2))
}

/// The connector to instances: plain TCP or TLS by the URI's scheme, HTTP/2 offered by ALPN
/// only when `http2`.
fn https(tls: &rustls::ClientConfig, connect_timeout: Duration, http2: bool) -> hyper_rustls::HttpsConnector<HttpConnector> {
    let builder = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls.clone()).https_or_http().enable_http1();
    if http2 {
        builder.enable_http2().wrap_connector(connector(connect_timeout))
    } else {
        builder.wrap_connector(connector(connect_timeout))
    }
}

fn read(paths: &[PathBuf]) -> Result<Vec<definitions::ServiceDef>, GatewayError> {
    let loaded = definitions::load(paths);
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    if !loaded.errors.is_empty() {
        return Err(GatewayError::Internal(format!("static service definitions: {}", loaded.errors.join("; "))));
    }
    tracing::info!(services = loaded.services.len(), "static service definitions loaded");
    Ok(loaded.services)
}
