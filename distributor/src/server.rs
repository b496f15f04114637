//! The accept loop on the virtual address: limits, one task per client connection, the
//! health checkers and the admin listener beside it, and the drain on shutdown (stop
//! accepting, let open connections finish up to `drainTimeout`, return).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use plexgate_config::{Config, DistributorConfig, Method};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::Semaphore;

use crate::error::DistributorError;
use crate::health::{HealthCheck, HttpsCheck, spawn_checkers};
use crate::metrics as m;
use crate::select::Selector;
use crate::status::Status;
use crate::target::Target;

/// Pending connections the kernel queues for the accept loop; bursts of new connections
/// (a failover moving every client at once) should not see SYNs dropped.
const LISTEN_BACKLOG: u32 = 4096;

/// What the accept loop, the connection tasks and the admin listener share.
pub struct Shared {
    /// The distributor's configuration.
    pub config: DistributorConfig,
    /// The targets, in configuration order.
    pub targets: Vec<Arc<Target>>,
    /// The method.
    pub selector: Selector,
    /// Longest wait for a target's TCP connect (the health check timeout).
    pub connect_timeout: Duration,
    /// One permit per open client connection (`maxConnections`).
    pub connections: Arc<Semaphore>,
    /// Set once shutdown has begun.
    pub draining: AtomicBool,
    /// The listen address, for status.
    pub address: String,
    /// The Prometheus recorder, if this process installed it.
    pub metrics: Option<PrometheusHandle>,
}

impl Shared {
    /// Client connections open now.
    pub fn active(&self) -> u64 {
        (self.config.max_connections as usize).saturating_sub(self.connections.available_permits()) as u64
    }

    /// The JSON status of the admin listener.
    pub fn status(&self) -> Status {
        Status {
            address: self.address.clone(),
            method: method_name(self.config.method).to_owned(),
            auto_switch_back: self.config.auto_switch_back,
            current: self.selector.current(&self.targets).map(|i| self.targets[i].name().to_owned()),
            active: self.active(),
            draining: self.draining.load(Ordering::Relaxed),
            targets: self.targets.iter().map(|t| t.status()).collect(),
        }
    }
}

/// The method as written in zowe.yaml.
pub fn method_name(method: Method) -> &'static str {
    match method {
        Method::HotStandby => "hotStandby",
        Method::RoundRobin => "roundRobin",
        Method::Weighted => "weighted",
        Method::LeastConnections => "leastConnections",
    }
}

/// A bound, ready distributor.
pub struct Distributor {
    listener: TcpListener,
    admin: Option<TcpListener>,
    shared: Arc<Shared>,
    check: Arc<dyn HealthCheck>,
}

impl Distributor {
    /// Binds the virtual address (and the admin listener), with HTTPS health checks.
    pub async fn bind(config: &Config) -> Result<Distributor, DistributorError> {
        let check = Arc::new(HttpsCheck::from_config(config)?);
        Distributor::bind_with(&config.distributor, check).await
    }

    /// Binds with another health check (tests, or targets that are not gateways).
    pub async fn bind_with(config: &DistributorConfig, check: Arc<dyn HealthCheck>) -> Result<Distributor, DistributorError> {
        if config.targets.is_empty() {
            return Err(DistributorError::Config("no targets".to_owned()));
        }
        // Installed before the targets make their metric handles, so those record.
        let metrics = crate::metrics::install();
        let targets: Vec<Arc<Target>> = config.targets.iter().cloned().map(|t| Arc::new(Target::new(t))).collect();
        crate::resolve::resolve_all(&targets).await;
        // A backup host binds the virtual address before keepalived gives it the address.
        let freebind = config.virtual_address.is_some();
        let listener = listen(&config.address, config.port, freebind).await?;
        let admin = match &config.admin {
            Some(a) => Some(listen(&a.address, a.port, false).await?),
            None => None,
        };
        let address = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
        let shared = Arc::new(Shared {
            selector: Selector::new(config.method, config.auto_switch_back, &targets),
            targets,
            connect_timeout: config.health_check.timeout,
            connections: Arc::new(Semaphore::new(config.max_connections as usize)),
            draining: AtomicBool::new(false),
            address,
            metrics,
            config: config.clone(),
        });
        let names: Vec<String> = shared.targets.iter().map(|t| format!("{}={}:{}", t.name(), t.config.host, t.config.port)).collect();
        tracing::info!(address = %shared.address, method = method_name(config.method), targets = ?names, "distributor listening");
        if let Some(a) = &admin {
            tracing::info!(address = %a.local_addr().map(|a| a.to_string()).unwrap_or_default(), "distributor admin listener (GET /status, GET /metrics)");
        }
        Ok(Distributor { listener, admin, shared, check })
    }

    /// The bound virtual address.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// The bound admin address, if the admin listener is enabled.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|a| a.local_addr().ok())
    }

    /// Serves until `shutdown` completes, then drains (see the module doc).
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> Result<(), DistributorError> {
        let Distributor { listener, admin, shared, check } = self;
        let mut checkers = spawn_checkers(&shared.targets, check, &shared.config.health_check);
        checkers.extend(crate::resolve::spawn_resolvers(&shared.targets));
        let admin = admin.map(|l| tokio::spawn(crate::admin::serve(l, shared.clone())));
        tokio::pin!(shutdown);
        loop {
            let (tcp, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = &mut shutdown => break,
            };
            let Ok(permit) = shared.connections.clone().try_acquire_owned() else {
                metrics::counter!(m::CONNECTIONS_REFUSED_TOTAL, "reason" => "max_connections").increment(1);
                tracing::debug!(%peer, max = shared.config.max_connections, "maxConnections reached; closing the new connection");
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let Ok(local) = tcp.local_addr() else { continue };
            let shared = shared.clone();
            tokio::spawn(async move {
                crate::forward::handle(shared, tcp, peer, local).await;
                drop(permit);
            });
        }
        drop(listener);
        shared.draining.store(true, Ordering::Relaxed);
        let drain = shared.config.drain_timeout;
        tracing::info!(open = shared.active(), ?drain, "distributor stopping: no new connections; letting open ones finish");
        let all = shared.connections.clone().acquire_many_owned(shared.config.max_connections);
        match tokio::time::timeout(drain, all).await {
            Ok(_) => tracing::info!("every connection closed"),
            Err(_) => tracing::warn!(open = shared.active(), "drain timeout reached; closing the connections still open"),
        }
        for c in checkers {
            c.abort();
        }
        if let Some(a) = admin {
            a.abort();
        }
        Ok(())
    }
}

/// A listener on `host:port` with a deep accept queue; with `freebind` the address need not
/// be on this host yet (`IP_FREEBIND`): connections arrive once keepalived adds it.
async fn listen(host: &str, port: u16, freebind: bool) -> Result<TcpListener, DistributorError> {
    let address = format!("{host}:{port}");
    let err = |source| DistributorError::Listen { address: address.clone(), source };
    let addr = tokio::net::lookup_host((host, port))
        .await
        .map_err(err)?
        .next()
        .ok_or_else(|| err(std::io::Error::new(std::io::ErrorKind::NotFound, "the host name resolves to no address")))?;
    let socket = if addr.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() }.map_err(err)?;
    socket.set_reuseaddr(true).map_err(err)?;
    if freebind {
        let set = if addr.is_ipv4() {
            rustix::net::sockopt::set_ip_freebind(&socket, true)
        } else {
            rustix::net::sockopt::set_ipv6_freebind(&socket, true)
        };
        set.map_err(|e| err(e.into()))?;
    }
    socket.bind(addr).map_err(err)?;
    socket.listen(LISTEN_BACKLOG).map_err(err)
}
