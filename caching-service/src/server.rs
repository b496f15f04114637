//! The HTTPS server: TLS with deferred client-certificate trust, HTTP/1.1 and HTTP/2, one
//! identity per connection, and a graceful stop.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use plexgate_config::{Config, tls};
use rustls::server::WebPkiClientVerifier;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::api::{AppState, router};
use crate::error::CacheError;
use crate::identity::{DeferredTrust, Identities, subject_dn};

/// On SIGTERM, how long open requests (and feed streams) may go on before the process exits.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// A TLS handshake that takes longer than this is dropped (slow-loris protection).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A bound, ready caching service.
pub struct CachingService {
    listener: TcpListener,
    acceptor: TlsAcceptor,
    identities: Arc<Identities>,
    app: axum::Router,
    drain: Duration,
}

impl CachingService {
    /// Opens the storage, loads TLS material and binds the port of `config`.
    pub async fn bind(config: &Config) -> Result<CachingService, CacheError> {
        let cs = &config.caching_service;
        let certs = &cs.certificates;
        let startup = |e: tls::TlsError| CacheError::Startup(e.to_string());
        let roots = tls::load_roots(certs).map_err(startup)?;
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), tls::provider())
            .allow_unauthenticated()
            .build()
            .map_err(|e| CacheError::Startup(format!("client certificate verifier: {e}")))?;
        let server_config = tls::server_config(certs, config.tls, Arc::new(DeferredTrust::new(verifier.clone())), &[b"h2", b"http/1.1"])
            .map_err(startup)?;
        let gateways = if cs.trusted_gateways.is_empty() { default_gateways(config)? } else { cs.trusted_gateways.clone() };
        tracing::info!(?gateways, "certificates trusted to pass caller identities");
        let identities = Arc::new(Identities::new(verifier, gateways));

        let (storage, peers) = match cs.storage.mode {
            plexgate_config::StorageMode::Replicated => {
                let (s, routes) = crate::storage::replicated::start(config, crate::storage::limits(cs)).await?;
                (s, Some(routes))
            }
            _ => (crate::storage::open(cs).await?, None),
        };
        let state = Arc::new(AppState {
            storage: storage.clone(),
            max_body: cs.max_request_size,
            heartbeat: cs.feed_heartbeat,
            leeway: config.gateway.jwt.leeway,
            metrics: crate::metrics::install(),
        });
        let listener = TcpListener::bind((cs.host.as_str(), cs.port))
            .await
            .map_err(|e| CacheError::Startup(format!("cannot listen on {}:{}: {e}", cs.host, cs.port)))?;
        tracing::info!(address = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), storage = storage.mode(), "caching service listening");
        Ok(CachingService {
            listener,
            acceptor: TlsAcceptor::from(Arc::new(server_config)),
            identities,
            app: match peers {
                Some(p) => router(state).merge(p),
                None => router(state),
            },
            drain: DRAIN_TIMEOUT,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Serves until `shutdown` completes, then lets open requests finish (up to the drain timeout).
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> Result<(), CacheError> {
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
            let acceptor = self.acceptor.clone();
            let identities = self.identities.clone();
            let app = self.app.clone();
            let watcher = graceful.watcher();
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
                let identity = identities.of(tls.get_ref().1.peer_certificates());
                let service = TowerToHyperService::new(
                    app.layer(Extension(identity)).map_request(|r: hyper::Request<hyper::body::Incoming>| r.map(axum::body::Body::new)),
                );
                let builder = auto::Builder::new(TokioExecutor::new());
                let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
                if let Err(e) = watcher.watch(conn.into_owned()).await {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
            });
        }
        tracing::info!("caching service stopping: no new connections; letting open requests finish");
        tokio::select! {
            _ = graceful.shutdown() => {}
            _ = tokio::time::sleep(self.drain) => tracing::warn!("drain timeout reached with connections still open"),
        }
        Ok(())
    }
}

/// By default, the certificates this installation's gateways present may pass identities.
fn default_gateways(config: &Config) -> Result<Vec<String>, CacheError> {
    let mut out = Vec::new();
    for path in [&config.gateway.certificates.client_certificate, &config.gateway.certificates.certificate] {
        let certs = tls::load_certs(path).map_err(|e| CacheError::Startup(e.to_string()))?;
        if let Some(dn) = certs.first().and_then(subject_dn)
            && !out.contains(&dn)
        {
            out.push(dn);
        }
    }
    Ok(out)
}
