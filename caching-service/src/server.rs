//! The HTTPS server: TLS with deferred client-certificate trust, HTTP/1.1 and HTTP/2, one
//! identity per connection, and a graceful stop.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use plexgate_config::{Config, tls};
use rustls::server::WebPkiClientVerifier;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::api::{AppState, router};
use crate::error::CacheError;
use crate::identity::{DeferredTrust, Identities, subject_dn};

/// On SIGTERM, how long open requests (and feed streams) may go on before the process exits.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

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
        let (app, identities) = (self.app, self.identities);
        let per_connection = move |tls: &rustls::ServerConnection| app.clone().layer(Extension(identities.of(tls.peer_certificates())));
        plexgate_serve::serve(self.listener, self.acceptor, per_connection, shutdown, self.drain).await;
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
