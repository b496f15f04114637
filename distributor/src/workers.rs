//! Thread-per-core forwarding (issue 14): one OS thread per core, each a `current_thread`
//! tokio runtime with its own `SO_REUSEPORT` listener on the virtual address, so both sockets
//! of a forwarded connection are served by one thread: a byte read from the client wakes no
//! other core before it is written to the target. The health checkers, resolvers and the
//! admin listener stay on the process's main runtime; the limits (`maxConnections`, per
//! target) are shared counters, so they hold across the threads.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::metrics as m;
use crate::server::Shared;

/// Where the threads are in the drain; only ever moves forward.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub(crate) enum Phase {
    Serving,
    /// Listeners closed; open connections finish.
    StopAccepting,
    /// The drain is over: the runtimes end, and the connections still open with them.
    Exit,
}

/// Starts thread `n` on `listener`. It accepts until the phase leaves `Serving`, sends on
/// `stopped` once its listener is closed, and returns at `Exit`.
pub(crate) fn spawn(
    n: usize,
    listener: std::net::TcpListener,
    shared: Arc<Shared>,
    mut phase: watch::Receiver<Phase>,
    stopped: tokio::sync::oneshot::Sender<()>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    std::thread::Builder::new().name(format!("distributor-{n}")).spawn(move || {
        rt.block_on(async move {
            match TcpListener::from_std(listener) {
                Ok(listener) => accept(&listener, &shared, &mut phase).await,
                Err(e) => tracing::error!(thread = n, error = %e, "cannot register the listener; this thread forwards nothing"),
            }
            let _ = stopped.send(());
            let _ = phase.wait_for(|p| *p == Phase::Exit).await;
        });
    })
}

/// Accepts until the phase leaves `Serving`; each connection is forwarded on this thread.
async fn accept(listener: &TcpListener, shared: &Arc<Shared>, phase: &mut watch::Receiver<Phase>) {
    // Asked of each connection only when the PROXY header needs it: a listener bound to one
    // address (the virtual address) knows its local address already.
    let bound = listener.local_addr().ok();
    let ask_local = shared.config.proxy_protocol || bound.is_none_or(|a| a.ip().is_unspecified());
    loop {
        let (tcp, peer) = tokio::select! {
            a = plexgate_serve::accept_or_back_off(listener) => a,
            _ = phase.wait_for(|p| *p != Phase::Serving) => return,
        };
        // At the limit the client waits in the accept queue instead of being closed or failing
        // for want of a descriptor.
        let paused = || {
            metrics::counter!(m::ACCEPT_PAUSED_TOTAL).increment(1);
            tracing::debug!(%peer, max = shared.max_connections, "connection limit reached; this client waits for a connection to close");
        };
        let Some(permit) = plexgate_serve::limits::slot(&shared.connections, paused, phase.wait_for(|p| *p != Phase::Serving)).await else {
            return;
        };
        let _ = tcp.set_nodelay(true);
        let local: SocketAddr = match (ask_local, bound) {
            (false, Some(a)) => a,
            _ => match tcp.local_addr() {
                Ok(a) => a,
                Err(_) => continue,
            },
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            crate::forward::handle(shared, tcp, peer, local).await;
            drop(permit);
        });
    }
}
