//! The accept loop the caching service and the discovery endpoint share: TLS with a bound on
//! the handshake (slow-loris protection), HTTP/1.1 and HTTP/2 (hyper-util's auto builder), the
//! router of each connection made from its TLS state (who the client certificate says the
//! caller is), and on shutdown no new connections while open requests finish, up to a drain
//! bound. The gateway and the distributor have loops of their own (PROXY protocol, limits,
//! connection counts, upgrades through the distributor) on the listeners of [`listen`].

pub mod limits;
mod listen;

pub use listen::{ACCEPT_BACKOFF, LISTEN_BACKLOG, accept_or_back_off, cores, reuseport_listeners};

use std::future::Future;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

/// A TLS handshake that takes longer than this is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `listener` until `shutdown` completes, then lets open requests finish for at most
/// `drain`. `app` makes each connection's router from its TLS state, once per connection.
pub async fn serve<F>(listener: TcpListener, acceptor: TlsAcceptor, app: F, shutdown: impl Future<Output = ()>, drain: Duration)
where
    F: Fn(&rustls::ServerConnection) -> Router + Clone + Send + 'static,
{
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            a = accept_or_back_off(&listener) => a,
            _ = &mut shutdown => break,
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, app, watcher) = (acceptor.clone(), app.clone(), graceful.watcher());
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
            let router = app(tls.get_ref().1);
            let service =
                TowerToHyperService::new(router.map_request(|r: hyper::Request<hyper::body::Incoming>| r.map(axum::body::Body::new)));
            let builder = auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
            if let Err(e) = watcher.watch(conn.into_owned()).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    tracing::info!("stopping: no new connections; letting open requests finish");
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(drain) => tracing::warn!("drain timeout reached with connections still open"),
    }
}
