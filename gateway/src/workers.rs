//! Thread-per-core serving (issue 14): one OS thread per core, each running a `current_thread`
//! tokio runtime with its own `SO_REUSEPORT` listener on the gateway's port (the kernel spreads
//! new connections over them) and its own connections to the API services (see
//! [`crate::routing::upstream`]), so a request never crosses threads: no wake-up of
//! another core, no cross-CPU reschedule. On this 2-core machine it measured faster than the
//! multi-thread runtime (numbers in ARCHITECTURE.md). Shared state (tokens, registry,
//! revocation view) stays behind `Arc`s; background work (feeds, health checks, the admin
//! listener, the drain's timers) stays on the process's main runtime.

use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::Arc;

use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::server::{HANDSHAKE_TIMEOUT, client_cert, http_builder};
use crate::state::{ClientAddr, Gateway};

thread_local! {
    /// This thread's worker number, or `None` off the serving threads.
    static WORKER: Cell<Option<usize>> = const { Cell::new(None) };
}

/// The serving thread's number, `None` elsewhere (the main runtime, tests).
pub fn current() -> Option<usize> {
    WORKER.with(Cell::get)
}

/// Where the workers are in the drain; only ever moves forward.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub(crate) enum Phase {
    Serving,
    /// Listeners closed; open connections finish.
    StopAccepting,
    /// The drain is over: the runtimes end, and whatever is still open with them.
    Exit,
}

/// What every connection needs, shared by the workers.
pub(crate) struct Conns {
    /// One permit per open client connection, as many as the open-files limit holds.
    pub slots: Arc<tokio::sync::Semaphore>,
    pub acceptor: TlsAcceptor,
    pub app: axum::Router,
    pub state: Arc<Gateway>,
    pub proxy_protocol: bool,
    pub proxy_sources: Arc<[plexgate_config::cidr::AddressRange]>,
}

/// Starts worker `n` on `listener`. It accepts until the phase leaves `Serving`, sends on
/// `closed` once its HTTP connections are all closed, and returns at `Exit`.
pub(crate) fn spawn(
    n: usize,
    listener: std::net::TcpListener,
    conns: Arc<Conns>,
    mut phase: watch::Receiver<Phase>,
    closed: tokio::sync::oneshot::Sender<()>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    std::thread::Builder::new().name(format!("gateway-{n}")).spawn(move || {
        WORKER.with(|w| w.set(Some(n)));
        rt.block_on(async move {
            let listener = match TcpListener::from_std(listener) {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!(worker = n, error = %e, "cannot register the listener; this worker serves nothing");
                    let _ = closed.send(());
                    let _ = phase.wait_for(|p| *p == Phase::Exit).await;
                    return;
                }
            };
            let graceful = hyper_util::server::graceful::GracefulShutdown::new();
            // This thread's idle upstream connections are closed when unused for a while.
            tokio::spawn(async {
                loop {
                    tokio::time::sleep(crate::routing::upstream::SWEEP_INTERVAL).await;
                    crate::routing::upstream::sweep();
                }
            });
            loop {
                let (tcp, peer) = tokio::select! {
                    a = plexgate_serve::accept_or_back_off(&listener) => a,
                    _ = phase.wait_for(|p| *p != Phase::Serving) => break,
                };
                // At the limit the client waits in the accept queue (see `limits::slot`).
                let paused = || {
                    metrics::counter!(crate::metrics::ACCEPT_PAUSED_TOTAL).increment(1);
                    tracing::debug!(worker = n, %peer, "open-files limit reached; this client waits for a connection to close");
                };
                let Some(slot) = plexgate_serve::limits::slot(&conns.slots, paused, phase.wait_for(|p| *p != Phase::Serving)).await else {
                    break;
                };
                let c = conns.clone();
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    connection(c, tcp, peer, watcher).await;
                    drop(slot);
                });
            }
            drop(listener);
            tokio::select! {
                () = graceful.shutdown() => {
                    let _ = closed.send(());
                }
                _ = phase.wait_for(|p| *p == Phase::Exit) => return,
            }
            // Upgraded connections (WebSockets) live on this runtime: it stays until the end.
            let _ = phase.wait_for(|p| *p == Phase::Exit).await;
        });
    })
}

/// One client connection: the PROXY header if configured, TLS, then HTTP/1.1 or HTTP/2.
async fn connection(c: Arc<Conns>, mut tcp: tokio::net::TcpStream, peer: SocketAddr, watcher: hyper_util::server::graceful::Watcher) {
    if c.proxy_protocol && !c.proxy_sources.iter().any(|r| r.contains(peer.ip())) {
        // Its PROXY header could name any client: closed before a byte is read.
        metrics::counter!(crate::metrics::PROXY_UNTRUSTED_CONNECTIONS_TOTAL).increment(1);
        tracing::warn!(%peer, "connection closed: the peer is not a trusted source of PROXY headers (components.gateway.proxyProtocolTrustedSources)");
        return;
    }
    let _ = tcp.set_nodelay(true);
    let client = if c.proxy_protocol {
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, crate::proxy_protocol::read_header(&mut tcp, peer)).await {
            Ok(Ok(addr)) => addr,
            Ok(Err(e)) => {
                tracing::warn!(%peer, error = %e, "connection without a valid PROXY header closed");
                return;
            }
            Err(_) => return,
        }
    } else {
        peer
    };
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, c.acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => return,
    };
    let (addr, cert) = (ClientAddr(client.ip()), client_cert(&tls));
    let state = c.state.clone();
    let app = c.app.clone();
    // Routed requests skip the router (the hot path); the gateway's own endpoints use it. The
    // client's address and certificate go in each request's extensions, where the handlers'
    // `Extension` extractors find them (not a router layered per connection: that copied
    // every route for every connection).
    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let mut req = req.map(axum::body::Body::new);
        req.extensions_mut().insert(cert.clone());
        let own = crate::api::is_own(req.uri().path()).then(|| app.clone());
        let state = state.clone();
        async move {
            match own {
                Some(own) => {
                    req.extensions_mut().insert(addr);
                    own.oneshot(req).await
                }
                None => Ok(crate::api::routed(state, addr, req).await),
            }
        }
    });
    let builder = http_builder();
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
    if let Err(e) = watcher.watch(conn.into_owned()).await {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}
