//! The HTTPS server of the discovery endpoint: TLS asking for the service's client
//! certificate (verified against the truststore; none at all is let through the handshake so
//! that `/application/health` answers and `/eureka` can refuse with a body), HTTP/1.1 and
//! HTTP/2, a lease sweeper beside it, and a graceful stop.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use plexgate_cache_client::{CacheClient, ClientOptions};
use plexgate_config::{Config, tls};
use rustls::server::WebPkiClientVerifier;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::api::{ClientCertificate, router};
use crate::error::DiscoveryError;
use crate::store::Registrations;

/// A TLS handshake that takes longer than this is dropped (slow-loris protection).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// On SIGTERM, how long open calls may finish.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the start waits for the registrations before serving anyway (health says DOWN
/// and heartbeats get 404 until they load, which makes clients register again: no harm).
const LOAD_TIMEOUT: Duration = Duration::from_secs(10);

/// A bound discovery endpoint.
pub struct Discovery {
    listener: TcpListener,
    acceptor: TlsAcceptor,
    registrations: Arc<Registrations>,
}

impl Discovery {
    /// Loads TLS material, starts following the registrations and binds the port of `config`.
    pub async fn bind(config: &Config) -> Result<Discovery, DiscoveryError> {
        let d = &config.discovery;
        let startup = |e: tls::TlsError| DiscoveryError::Startup(e.to_string());
        let roots = tls::load_roots(&d.certificates).map_err(startup)?;
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), tls::provider())
            .allow_unauthenticated()
            .build()
            .map_err(|e| DiscoveryError::Startup(format!("client certificate verifier: {e}")))?;
        let server_config = tls::server_config(&d.certificates, config.tls, verifier, &[b"h2", b"http/1.1"]).map_err(startup)?;
        // The gateways' certificate: registrations are the gateways' own state.
        let client = CacheClient::from_config(config, ClientOptions::default()).map_err(|e| DiscoveryError::Startup(e.to_string()))?;
        let registrations = Arc::new(Registrations::start(client, d.max_instances));
        if !registrations.wait_loaded(LOAD_TIMEOUT).await {
            tracing::warn!(urls = ?config.caching_service_urls, "registrations not loaded yet from the caching service; serving anyway");
        }
        let listener = TcpListener::bind((d.host.as_str(), d.port))
            .await
            .map_err(|e| DiscoveryError::Startup(format!("cannot listen on {}:{}: {e}", d.host, d.port)))?;
        tracing::info!(address = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), "discovery (Eureka) listening");
        Ok(Discovery { listener, acceptor: TlsAcceptor::from(Arc::new(server_config)), registrations })
    }

    /// The bound address.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Serves until `shutdown` completes, then lets open calls finish (up to the drain timeout).
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> Result<(), DiscoveryError> {
        let sweeper = tokio::spawn(crate::expiry::sweep(self.registrations.clone()));
        let app = router(self.registrations.clone());
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        tokio::pin!(shutdown);
        loop {
            let (tcp, peer) = tokio::select! {
                accepted = self.listener.accept() => match accepted {
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
            let _ = tcp.set_nodelay(true);
            let (acceptor, app, watcher) = (self.acceptor.clone(), app.clone(), graceful.watcher());
            tokio::spawn(async move {
                let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "TLS handshake timed out");
                        return;
                    }
                };
                let cert = ClientCertificate(tls.get_ref().1.peer_certificates().is_some_and(|c| !c.is_empty()));
                let service = TowerToHyperService::new(
                    app.layer(Extension(cert)).map_request(|r: hyper::Request<hyper::body::Incoming>| r.map(axum::body::Body::new)),
                );
                let builder = auto::Builder::new(TokioExecutor::new());
                let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
                if let Err(e) = watcher.watch(conn.into_owned()).await {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
            });
        }
        sweeper.abort();
        tracing::info!("discovery stopping: no new connections; letting open calls finish");
        tokio::select! {
            _ = graceful.shutdown() => {}
            _ = tokio::time::sleep(DRAIN_TIMEOUT) => tracing::warn!("drain timeout reached with connections still open"),
        }
        Ok(())
    }
}
