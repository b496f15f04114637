//! The gateway's HTTPS server: TLS 1.2/1.3 (rustls), HTTP/1.1 and HTTP/2 by ALPN, the
//! client's address on every request, and the drain on SIGTERM: report DRAINING for the grace
//! period (still accepting, so nothing is refused while the distributor moves away), then stop
//! accepting, let open requests finish up to the timeout, and return. Connections are served
//! thread-per-core by [`crate::workers`]; this runtime keeps the background work and the drain.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hyper_util::rt::TokioExecutor;
use hyper_util::server::conn::auto;
use plexgate_cache_client::{CacheClient, ClientOptions};
use plexgate_config::{AuthProvider as ProviderKind, Config, tls};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::auth::{AuthProvider, LoginLimiter, UsersFileProvider, ZosmfProvider};
use crate::error::GatewayError;
use crate::revocation::Revocations;
use crate::state::{ClientCert, Gateway};
use crate::tokens::{Keys, TokenService, VerifiedCache};
use crate::workers::{Conns, Phase};

/// Accept-queue depth of the gateway's listeners (and the sample service's).
pub use plexgate_serve::LISTEN_BACKLOG;

/// A TLS handshake slower than this is dropped.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Request headers must arrive within this (a client sending a byte a second is cut off).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request head (request line and headers); larger is answered 431.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// Most request headers.
pub const MAX_HEADERS: usize = 100;

/// Client certificates are asked for but optional (for `x509` routes); one that is offered
/// must chain to the truststore, or the handshake fails.
fn client_verifier(c: &plexgate_config::Certificates) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, GatewayError> {
    let roots = tls::load_roots(c).map_err(|e| GatewayError::Internal(e.to_string()))?;
    rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), tls::provider())
        .allow_unauthenticated()
        .build()
        .map_err(|e| GatewayError::Internal(format!("client certificate verifier: {e}")))
}

/// The verified client certificate of a connection, if it presented one.
pub(crate) fn client_cert(tls: &tokio_rustls::server::TlsStream<tokio::net::TcpStream>) -> Option<ClientCert> {
    use base64::Engine;
    let cert = tls.get_ref().1.peer_certificates()?.first()?;
    Some(ClientCert {
        dn: tls::subject_dn(cert)?,
        cn: tls::common_name(cert).unwrap_or_default(),
        der_base64: base64::engine::general_purpose::STANDARD.encode(cert.as_ref()),
    })
}

/// HTTP/1.1 and HTTP/2 with the limits above.
pub(crate) fn http_builder() -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_HEADER_BYTES)
        .max_headers(MAX_HEADERS);
    b.http2().timer(hyper_util::rt::TokioTimer::new()).max_header_list_size(MAX_HEADER_BYTES as u32);
    b
}

/// A bound, ready gateway.
pub struct GatewayServer {
    /// One per serving thread, all on the same port (`SO_REUSEPORT`).
    listeners: Vec<std::net::TcpListener>,
    acceptor: TlsAcceptor,
    app: axum::Router,
    state: Arc<Gateway>,
    grace: Duration,
    timeout: Duration,
    proxy_protocol: bool,
    proxy_sources: Arc<[plexgate_config::cidr::AddressRange]>,
    admin: Option<TcpListener>,
}

impl GatewayServer {
    /// Loads keys and TLS material, starts the revocation view and binds the port.
    pub async fn bind(config: &Config) -> Result<GatewayServer, GatewayError> {
        let g = &config.gateway;
        let setup = |what: &str, e: String| GatewayError::Internal(format!("{what}: {e}"));
        let keys = Keys::load(&g.jwt)?;
        let tokens = TokenService::new(keys, g.jwt.lifetime, g.jwt.leeway, g.jwt.domain.clone());
        let provider: Arc<dyn AuthProvider> = match g.auth_provider {
            ProviderKind::UsersFile => Arc::new(UsersFileProvider::open(g.users_file.clone()).map_err(|e| setup("users file", e))?),
            ProviderKind::Zosmf => {
                let z = config.zosmf.as_ref().ok_or_else(|| setup("zosmf provider", "zOSMF.host is not configured".to_owned()))?;
                Arc::new(ZosmfProvider::new(config, z).map_err(|e| setup("zosmf provider", e))?)
            }
        };
        let client =
            CacheClient::from_config(config, ClientOptions::default()).map_err(|e| setup("caching-service client", e.to_string()))?;
        let routes = crate::routing::Routes::load(config)?;
        routes.spawn_health_checks();
        let cache = Arc::new(VerifiedCache::new(g.token_cache_size));
        // Four heartbeats missed: the caching service is hung or cut off; follow the next one.
        let feed_idle = (config.caching_service.feed_heartbeat * 4).max(Duration::from_millis(400));
        routes.follow_registrations(client.clone(), feed_idle);
        let sticky =
            crate::routing::sticky::StickyRoutes::start(client.clone(), g.routing.sticky_idle_timeout, g.evict_interval, feed_idle);
        let revocations = Revocations::start(client, g.staleness_bound, g.evict_interval, feed_idle, cache.clone());
        let state = Arc::new(Gateway {
            instance: config.ha_instance.clone().unwrap_or_else(|| "default".to_owned()),
            tokens,
            cache,
            revocations: revocations.clone(),
            provider,
            limiter: LoginLimiter::new(g.login_rate_limit.clone()),
            admins: g.admin_users.iter().map(|u| u.to_lowercase()).collect(),
            draining: Default::default(),
            metrics: crate::metrics::install(),
            routes,
            sticky,
        });
        // SIGHUP: read the static service definitions again; open connections are untouched.
        if let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            let routes = state.routes.clone();
            tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    match routes.reload() {
                        Ok(n) => tracing::info!(services = n, "SIGHUP: static service definitions reloaded"),
                        Err(e) => tracing::error!(error = %e, "SIGHUP: definitions not reloaded; the previous ones stay"),
                    }
                }
            });
        }
        // Fetch the shared salt in the background until the caching service answers.
        tokio::spawn(async move {
            let mut wait = Duration::from_millis(50);
            while let Err(e) = revocations.salt().await {
                tracing::warn!(error = %e, "revocation salt not available yet");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(2));
            }
        });
        let server_config = tls::server_config(&g.certificates, config.tls, client_verifier(&g.certificates)?, &[b"h2", b"http/1.1"])
            .map_err(|e| setup("TLS", e.to_string()))?;
        let listeners = plexgate_serve::reuseport_listeners(&g.host, g.port, plexgate_serve::cores(), false)
            .await
            .map_err(|e| setup("listen", format!("cannot listen on {}:{}: {e}", g.host, g.port)))?;
        let address = listeners.first().and_then(|l| l.local_addr().ok()).map(|a| a.to_string()).unwrap_or_default();
        tracing::info!(%address, threads = listeners.len(), provider = state.provider.name(), "gateway listening");
        let admin = match &g.admin {
            Some(a) => {
                let l = TcpListener::bind((a.address.as_str(), a.port))
                    .await
                    .map_err(|e| setup("admin listener", format!("cannot listen on {}:{}: {e}", a.address, a.port)))?;
                tracing::info!(address = %format!("{}:{}", a.address, a.port), "gateway admin listener (health details, metrics)");
                Some(l)
            }
            None => None,
        };
        Ok(GatewayServer {
            listeners,
            acceptor: TlsAcceptor::from(Arc::new(server_config)),
            app: crate::api::router(state.clone()),
            state,
            grace: g.shutdown_grace,
            timeout: g.shutdown_timeout,
            proxy_protocol: g.proxy_protocol,
            proxy_sources: g.proxy_protocol_trusted_sources.clone().into(),
            admin,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listeners.first()?.local_addr().ok()
    }

    /// Serves until `shutdown` completes, then drains (see the module doc).
    pub async fn serve(mut self, shutdown: impl Future<Output = ()>) -> Result<(), GatewayError> {
        // The admin listener lives as long as the process: health details during the drain too.
        if let Some(admin) = self.admin.take() {
            let app = crate::api::health::admin_router(self.state.clone());
            tokio::spawn(async move {
                if let Err(e) = axum::serve(admin, app).await {
                    tracing::error!(error = %e, "admin listener stopped");
                }
            });
        }
        // Two descriptors a routed connection (the client's, the upstream one): accepting past
        // what the limit holds would fail requests half-way with EMFILE.
        let open_files = plexgate_serve::limits::open_files();
        let max_connections = plexgate_serve::limits::connections_within(u32::MAX, open_files, 2);
        tracing::info!(
            max_connections,
            ?open_files,
            "client connections the open-files limit holds; past it new ones wait in the accept queue"
        );
        let conns = Arc::new(Conns {
            slots: Arc::new(tokio::sync::Semaphore::new(max_connections as usize)),
            acceptor: self.acceptor.clone(),
            app: self.app.clone(),
            state: self.state.clone(),
            proxy_protocol: self.proxy_protocol,
            proxy_sources: self.proxy_sources.clone(),
        });
        let (phase, _) = tokio::sync::watch::channel(Phase::Serving);
        let mut workers = Vec::new();
        let mut closed = Vec::new();
        for (n, listener) in std::mem::take(&mut self.listeners).into_iter().enumerate() {
            let (tx, rx) = tokio::sync::oneshot::channel();
            let worker = crate::workers::spawn(n, listener, conns.clone(), phase.subscribe(), tx)
                .map_err(|e| GatewayError::Internal(format!("cannot start serving thread {n}: {e}")))?;
            workers.push(worker);
            closed.push(rx);
        }
        drop(conns);
        shutdown.await;
        self.state.draining.store(true, Ordering::Relaxed);
        tracing::info!(grace = ?self.grace, "draining: health reports DRAINING; still accepting for the grace period");
        tokio::time::sleep(self.grace).await;
        phase.send_replace(Phase::StopAccepting);
        tracing::info!(timeout = ?self.timeout, "no longer accepting; letting open requests finish");
        let routes = self.state.routes.clone();
        let all_closed = async {
            for c in closed {
                let _ = c.await;
            }
            let open = routes.tunnels_open();
            if open > 0 {
                tracing::info!(open, "HTTP connections closed; waiting for the upgraded ones (WebSockets)");
            }
            routes.tunnels_closed().await;
        };
        tokio::select! {
            _ = all_closed => tracing::info!("all connections closed"),
            _ = tokio::time::sleep(self.timeout) => tracing::warn!("shutdown timeout reached with connections still open"),
        }
        phase.send_replace(Phase::Exit);
        // The threads end at once now (their runtimes drop what is left).
        let _ = tokio::task::spawn_blocking(move || {
            for w in workers {
                let _ = w.join();
            }
        })
        .await;
        Ok(())
    }
}
