//! The distributor on the virtual address: the forwarding threads of [`crate::workers`]
//! (limits, one task per client connection), the health checkers and the admin listener
//! beside them, and the drain on shutdown (stop accepting, let open connections finish up to
//! `drainTimeout`, return).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use plexgate_config::{Config, DistributorConfig, Method};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::error::DistributorError;
use crate::health::{HealthCheck, HttpsCheck, spawn_checkers};
use crate::select::Selector;
use crate::status::Status;
use crate::target::Target;
use crate::workers::Phase;

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
    /// One permit per open client connection: `maxConnections`, or fewer when the open-files
    /// limit allows fewer ([`Shared::max_connections`]).
    pub connections: Arc<Semaphore>,
    /// The permits `connections` started with.
    pub max_connections: u32,
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
        (self.max_connections as usize).saturating_sub(self.connections.available_permits()) as u64
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
    /// One per forwarding thread, all on the same address (`SO_REUSEPORT`).
    listeners: Vec<std::net::TcpListener>,
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
        let listen_err = |address: String| move |source| DistributorError::Listen { address, source };
        let listeners = plexgate_serve::reuseport_listeners(&config.address, config.port, plexgate_serve::cores(), freebind)
            .await
            .map_err(listen_err(format!("{}:{}", config.address, config.port)))?;
        let admin = match &config.admin {
            Some(a) => {
                Some(TcpListener::bind((a.address.as_str(), a.port)).await.map_err(listen_err(format!("{}:{}", a.address, a.port)))?)
            }
            None => None,
        };
        let address = listeners.first().and_then(|l| l.local_addr().ok()).map(|a| a.to_string()).unwrap_or_default();
        // Two descriptors a connection: the client's and the target's.
        let open_files = plexgate_serve::limits::open_files();
        let max_connections = plexgate_serve::limits::connections_within(config.max_connections, open_files, 2);
        if max_connections < config.max_connections {
            tracing::warn!(
                configured = config.max_connections,
                max_connections,
                open_files,
                wanted = u64::from(config.max_connections) * 2 + plexgate_serve::limits::RESERVED_FILES,
                "the open-files limit holds fewer connections than maxConnections: past `max_connections` new clients wait in the accept queue; raise the hard limit to `wanted` (LimitNOFILE= in the systemd unit, nofile in /etc/security/limits.conf)"
            );
        }
        let shared = Arc::new(Shared {
            selector: Selector::new(config.method, config.auto_switch_back, &targets),
            targets,
            connect_timeout: config.health_check.timeout,
            connections: Arc::new(Semaphore::new(max_connections as usize)),
            max_connections,
            draining: AtomicBool::new(false),
            address,
            metrics,
            config: config.clone(),
        });
        let names: Vec<String> = shared.targets.iter().map(|t| format!("{}={}:{}", t.name(), t.config.host, t.config.port)).collect();
        tracing::info!(address = %shared.address, threads = listeners.len(), method = method_name(config.method), targets = ?names, "distributor listening");
        if let Some(a) = &admin {
            tracing::info!(address = %a.local_addr().map(|a| a.to_string()).unwrap_or_default(), "distributor admin listener (GET /status, GET /metrics)");
        }
        Ok(Distributor { listeners, admin, shared, check })
    }

    /// The bound virtual address.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listeners.first()?.local_addr().ok()
    }

    /// The bound admin address, if the admin listener is enabled.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|a| a.local_addr().ok())
    }

    /// Serves until `shutdown` completes, then drains (see the module doc).
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> Result<(), DistributorError> {
        let Distributor { listeners, admin, shared, check } = self;
        let mut checkers = spawn_checkers(&shared.targets, check, &shared.config.health_check);
        checkers.extend(crate::resolve::spawn_resolvers(&shared.targets));
        let admin = admin.map(|l| tokio::spawn(crate::admin::serve(l, shared.clone())));
        let (phase, _) = tokio::sync::watch::channel(Phase::Serving);
        let (mut threads, mut stopped) = (Vec::new(), Vec::new());
        for (n, listener) in listeners.into_iter().enumerate() {
            let (tx, rx) = tokio::sync::oneshot::channel();
            match crate::workers::spawn(n, listener, shared.clone(), phase.subscribe(), tx) {
                Ok(t) => threads.push(t),
                Err(e) => {
                    phase.send_replace(Phase::Exit);
                    return Err(DistributorError::Thread(e));
                }
            }
            stopped.push(rx);
        }
        shutdown.await;
        phase.send_replace(Phase::StopAccepting);
        for s in stopped {
            let _ = s.await;
        }
        shared.draining.store(true, Ordering::Relaxed);
        let drain = shared.config.drain_timeout;
        tracing::info!(open = shared.active(), ?drain, "distributor stopping: no new connections; letting open ones finish");
        let all = shared.connections.clone().acquire_many_owned(shared.max_connections);
        match tokio::time::timeout(drain, all).await {
            Ok(_) => tracing::info!("every connection closed"),
            Err(_) => tracing::warn!(open = shared.active(), "drain timeout reached; closing the connections still open"),
        }
        phase.send_replace(Phase::Exit);
        // The threads end at once now (their runtimes drop the connections still open).
        let _ = tokio::task::spawn_blocking(move || threads.into_iter().for_each(|t| drop(t.join()))).await;
        for c in checkers {
            c.abort();
        }
        if let Some(a) = admin {
            a.abort();
        }
        Ok(())
    }
}
