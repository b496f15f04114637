//! One client connection: try the selector's candidates in order until a connect succeeds
//! (a failed connect marks that target suspect and falls through to the next, on the same
//! client connection), then copy bytes both ways until either side closes or nothing moves
//! for the idle timeout. Bytes are counted on the client side of the copy.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::metrics as m;
use crate::server::Shared;
use crate::target::{ActiveGuard, Target};

/// Buffer per direction. A TLS record is at most 16 KiB plus overhead; bigger buffers
/// measured no faster on loopback and cost memory on every idle connection.
const BUFFER_BYTES: usize = 16 * 1024;

/// Forwards one accepted client connection; returns when it is closed.
pub async fn handle(shared: Arc<Shared>, client: TcpStream, peer: SocketAddr, local: SocketAddr) {
    let Some((guard, upstream, index)) = connect(&shared, peer).await else {
        metrics::counter!(m::CONNECTIONS_REFUSED_TOTAL, "reason" => "no_target").increment(1);
        tracing::warn!(%peer, "no target accepted the connection; closing it");
        return;
    };
    shared.selector.connected(index);
    let target = guard.target().clone();
    let mut upstream = upstream;
    if shared.config.proxy_protocol
        && let Err(e) = upstream.write_all(&crate::proxy_protocol::proxy_header(peer, local)).await
    {
        tracing::debug!(%peer, target_name = %target.name(), error = %e, "cannot send the PROXY header");
        return;
    }
    let idle = shared.config.idle_timeout;
    let activity = Arc::new(Activity::new());
    let mut client = Metered { inner: client, target: target.clone(), activity: activity.clone() };
    let copy = tokio::io::copy_bidirectional_with_sizes(&mut client, &mut upstream, BUFFER_BYTES, BUFFER_BYTES);
    tokio::select! {
        result = copy => if let Err(e) = result {
            tracing::debug!(%peer, target_name = %target.name(), error = %e, "connection ended with an error");
        },
        _ = activity.idle_for(idle) => {
            metrics::counter!(m::IDLE_CLOSED_TOTAL).increment(1);
            tracing::debug!(%peer, target_name = %target.name(), ?idle, "idle timeout; closing the connection");
        }
        () = target.closing() => {
            tracing::debug!(%peer, target_name = %target.name(), "target unreachable; closing the connection");
        }
    }
    drop(guard);
}

/// The first candidate that accepts a TCP connection, with its reserved slot.
async fn connect(shared: &Shared, peer: SocketAddr) -> Option<(ActiveGuard, TcpStream, usize)> {
    let timeout = shared.connect_timeout;
    let per_target = shared.config.max_connections_per_target;
    for index in shared.selector.select(&shared.targets) {
        let target: &Arc<Target> = &shared.targets[index];
        let Some(mut guard) = target.try_acquire(per_target) else { continue };
        let (host, port) = (target.config.host.as_str(), target.config.port);
        let detail = match tokio::time::timeout(timeout, TcpStream::connect((host, port))).await {
            Ok(Ok(upstream)) => {
                let _ = upstream.set_nodelay(true);
                guard.connected();
                return Some((guard, upstream, index));
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no connection within {} ms", timeout.as_millis()),
        };
        tracing::debug!(%peer, target_name = %target.name(), %detail, "connect failed; trying the next candidate");
        target.connect_failed(&detail);
    }
    None
}

/// When a byte last moved, as milliseconds since the connection started.
struct Activity {
    start: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Activity {
        Activity { start: Instant::now(), last_ms: AtomicU64::new(0) }
    }

    fn touch(&self) {
        self.last_ms.store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// Completes once nothing has moved for `idle`.
    async fn idle_for(&self, idle: Duration) {
        loop {
            let deadline = self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed)) + idle;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

/// The client's stream, counting bytes for the target and noting activity. Every byte of
/// the connection crosses it once (read from the client, or written to the client).
struct Metered {
    inner: TcpStream,
    target: Arc<Target>,
    activity: Arc<Activity>,
}

impl AsyncRead for Metered {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            self.target.add_bytes_in(n as u64);
            self.activity.touch();
        }
        poll
    }
}

impl AsyncWrite for Metered {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = poll
            && n > 0
        {
            self.target.add_bytes_out(n as u64);
            self.activity.touch();
        }
        poll
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
