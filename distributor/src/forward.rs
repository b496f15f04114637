//! One client connection: try the selector's candidates in order until one takes it, then
//! copy bytes both ways until either side closes or nothing moves for the idle timeout.
//! Bytes are counted on the client side of the copy.
//!
//! A candidate has taken the connection once it has sent its first byte. Before that:
//! - a failed connect marks that target suspect and falls through to the next candidate;
//! - a target that accepts and then closes or resets the connection before its first byte
//!   (a gateway SIGKILLed with the connection in its accept queue, or just accepted) has
//!   processed nothing, because in TLS the server speaks first (its ServerHello): the client
//!   bytes forwarded so far (kept up to `replayBytes`, 16 KiB by default, which holds a
//!   ClientHello) are replayed on the next candidate, and the client never notices. Such a
//!   target is not marked suspect: a client can make a healthy gateway close early (garbage,
//!   or silence until its handshake timeout), and must not be able to take targets out of the
//!   rotation; the connects that follow, or the next health check, find a dead one. When
//!   the client sent more than `replayBytes` before the first answer, nothing is replayed and
//!   the connection is closed, as it would have been without the distributor;
//! - a close of the target's sessions (unreachable) is treated as such a close.
//!
//! The rule assumes targets that speak first, as TLS servers do. A protocol where the client
//! speaks and the server acts before answering (plain HTTP) must run with `replayBytes: 0`.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::copy;
use crate::metrics as m;
use crate::server::Shared;
use crate::target::{ActiveGuard, Target};

/// Forwards one accepted client connection; returns when it is closed.
pub async fn handle(shared: Arc<Shared>, client: TcpStream, peer: SocketAddr, local: SocketAddr) {
    let mut client = client;
    let Taken { mut guard, upstream, index, first } = match take(&shared, &mut client, peer, local).await {
        Ok(taken) => taken,
        Err(Untaken::NoTarget) => {
            metrics::counter!(m::CONNECTIONS_REFUSED_TOTAL, "reason" => "no_target").increment(1);
            tracing::warn!(%peer, "no target accepted the connection; closing it");
            return;
        }
        Err(Untaken::Ended(why)) => {
            tracing::debug!(%peer, %why, "connection ended before a target answered");
            return;
        }
    };
    shared.selector.connected(index);
    let target = guard.target().clone();
    let idle = shared.config.idle_timeout;
    let activity = Arc::new(Activity::new());
    // Bytes are counted on the client side: read from it (in) or written to it (out).
    let (t, a) = (&target, &activity);
    let copy = async {
        copy::write_all(&client, &first).await?;
        t.add_bytes_out(first.len() as u64);
        a.touch();
        drop(first);
        copy::both_ways(
            &client,
            &upstream,
            |n| {
                t.add_bytes_in(n as u64);
                a.touch();
            },
            |n| {
                t.add_bytes_out(n as u64);
                a.touch();
            },
        )
        .await
    };
    tokio::select! {
        result = copy => if let Err(e) = result {
            tracing::debug!(%peer, target_name = %target.name(), error = %e, "connection ended with an error");
        },
        _ = activity.idle_for(idle) => {
            metrics::counter!(m::IDLE_CLOSED_TOTAL).increment(1);
            tracing::debug!(%peer, target_name = %target.name(), ?idle, "idle timeout; closing the connection");
        }
        () = guard.closing() => {
            tracing::debug!(%peer, target_name = %target.name(), "target unreachable; closing the connection");
        }
    }
    drop(guard);
}

/// A connection a target has taken: its slot, the stream and the target's first bytes (not
/// yet written to the client).
struct Taken {
    guard: ActiveGuard,
    upstream: TcpStream,
    index: usize,
    first: Vec<u8>,
}

/// Why no target took a connection.
enum Untaken {
    /// Every candidate refused, or closed before its first byte.
    NoTarget,
    /// The client went away, idled out, or a target closed early when nothing could be
    /// replayed: nothing more to do.
    Ended(String),
}

/// The client bytes forwarded before a target's first byte, kept for a replay.
struct Sent {
    bytes: Vec<u8>,
    limit: usize,
    /// More than `limit` was sent (or replay is off and something was): no replay possible.
    overflowed: bool,
    /// The client has half-closed its side.
    eof: bool,
}

impl Sent {
    fn record(&mut self, data: &[u8]) {
        if self.overflowed {
            return;
        }
        if self.bytes.len() + data.len() > self.limit {
            self.overflowed = true;
            self.bytes = Vec::new();
        } else {
            self.bytes.extend_from_slice(data);
        }
    }
}

/// How the wait for a target's first byte ended.
enum First {
    /// It spoke: these are its first bytes.
    Spoke(Vec<u8>),
    /// It closed, reset or was closed before speaking.
    Gone(String),
    /// The client went away or idled out meanwhile.
    Ended(String),
}

/// Tries the candidates in order until one takes the connection (see the module doc).
async fn take(shared: &Shared, client: &mut TcpStream, peer: SocketAddr, local: SocketAddr) -> Result<Taken, Untaken> {
    let limit = shared.config.replay_bytes as usize;
    let mut sent = Sent { bytes: Vec::new(), limit, overflowed: false, eof: false };
    let per_target = shared.config.max_connections_per_target;
    for index in shared.selector.select(&shared.targets) {
        let target: &Arc<Target> = &shared.targets[index];
        let Some(mut guard) = target.try_acquire(per_target) else { continue };
        let Some(mut upstream) = connect(shared, &mut guard, peer).await else { continue };
        match first_byte(shared, client, &mut upstream, &mut guard, &mut sent, peer, local).await {
            First::Spoke(first) => return Ok(Taken { guard, upstream, index, first }),
            First::Ended(why) => return Err(Untaken::Ended(why)),
            First::Gone(detail) if sent.overflowed || limit == 0 => {
                metrics::counter!(m::NOT_REPLAYED_TOTAL, "target" => target.name().to_owned()).increment(1);
                tracing::warn!(%peer, target_name = %target.name(), %detail, replay_bytes = limit,
                    "target closed the connection before its first byte, after the client sent more than can be replayed; closing it");
                return Err(Untaken::Ended(detail));
            }
            First::Gone(detail) if sent.eof => return Err(Untaken::Ended(format!("{detail} after the client closed its side"))),
            First::Gone(detail) => {
                metrics::counter!(m::REPLAYED_TOTAL, "target" => target.name().to_owned()).increment(1);
                tracing::info!(%peer, target_name = %target.name(), %detail, replayed = sent.bytes.len(),
                    "target closed the connection before its first byte; replaying the client's bytes on the next candidate");
            }
        }
    }
    Err(Untaken::NoTarget)
}

/// A TCP connection to the guard's target, or `None` after marking it suspect (or when its
/// sessions were closed meanwhile).
async fn connect(shared: &Shared, guard: &mut ActiveGuard, peer: SocketAddr) -> Option<TcpStream> {
    let target = guard.target().clone();
    let timeout = shared.connect_timeout;
    // The addresses resolved in the background: no lookup on the data path.
    let addresses = target.addresses();
    if addresses.is_empty() {
        let detail = format!("host name {} not resolved (yet)", target.config.host);
        tracing::debug!(%peer, target_name = %target.name(), %detail, "connect impossible; trying the next candidate");
        target.connect_failed(&detail);
        return None;
    }
    let attempt = tokio::time::timeout(timeout, TcpStream::connect(&addresses[..]));
    let detail = tokio::select! {
        result = attempt => match result {
            Ok(Ok(upstream)) => {
                let _ = upstream.set_nodelay(true);
                guard.connected();
                return Some(upstream);
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no connection within {} ms", timeout.as_millis()),
        },
        () = guard.closing() => {
            tracing::debug!(%peer, target_name = %target.name(), "target unreachable while connecting; trying the next candidate");
            return None;
        }
    };
    tracing::debug!(%peer, target_name = %target.name(), %detail, "connect failed; trying the next candidate");
    target.connect_failed(&detail);
    None
}

/// Sends the PROXY header and the client's bytes so far, then forwards the client's bytes
/// (keeping them in `sent`) until the target's first byte.
async fn first_byte(
    shared: &Shared,
    client: &mut TcpStream,
    upstream: &mut TcpStream,
    guard: &mut ActiveGuard,
    sent: &mut Sent,
    peer: SocketAddr,
    local: SocketAddr,
) -> First {
    let target = guard.target().clone();
    // Header and replay in one write: one segment for the gateway to read.
    let mut head = if shared.config.proxy_protocol { crate::proxy_protocol::proxy_header(peer, local) } else { Vec::new() };
    head.extend_from_slice(&sent.bytes);
    let opening = async {
        if !head.is_empty() {
            upstream.write_all(&head).await?;
        }
        if sent.eof {
            upstream.shutdown().await?;
        }
        io::Result::Ok(())
    };
    tokio::select! {
        result = opening => if let Err(e) = result {
            return First::Gone(format!("cannot send the first bytes: {e}"));
        },
        () = guard.closing() => return First::Gone("its sessions were closed (unreachable)".to_owned()),
    }
    if !sent.bytes.is_empty() {
        target.add_bytes_in(sent.bytes.len() as u64);
    }
    // Buffers from the copy's free list (not zeroed: reads fill their spare capacity), back to
    // it when the target has spoken, so a new connection allocates nothing here.
    let (mut from_client, mut from_target) = (copy::take(), copy::take());
    let first = wait_first(shared, client, upstream, guard, sent, &mut from_client, &mut from_target).await;
    copy::give(from_client);
    copy::give(from_target);
    first
}

/// [`first_byte`]'s wait, reading with its two buffers.
async fn wait_first(
    shared: &Shared,
    client: &mut TcpStream,
    upstream: &mut TcpStream,
    guard: &mut ActiveGuard,
    sent: &mut Sent,
    from_client: &mut Vec<u8>,
    from_target: &mut Vec<u8>,
) -> First {
    let target = guard.target().clone();
    let idle = shared.config.idle_timeout;
    let deadline = tokio::time::sleep(idle);
    tokio::pin!(deadline);
    loop {
        from_client.clear();
        tokio::select! {
            read = upstream.read_buf(from_target) => return match read {
                Ok(0) => First::Gone("closed before its first byte".to_owned()),
                // A copy of just what came: the buffer is not kept for the connection's life.
                Ok(n) => First::Spoke(from_target[..n].to_vec()),
                Err(e) => First::Gone(format!("{e} before its first byte")),
            },
            read = client.read_buf(from_client), if !sent.eof => match read {
                Ok(0) => {
                    sent.eof = true;
                    let _ = upstream.shutdown().await;
                }
                Ok(n) => {
                    target.add_bytes_in(n as u64);
                    sent.record(&from_client[..n]);
                    if let Err(e) = upstream.write_all(&from_client[..n]).await {
                        return First::Gone(format!("write: {e}"));
                    }
                    deadline.as_mut().reset(Instant::now() + idle);
                }
                Err(e) => return First::Ended(format!("client: {e}")),
            },
            () = guard.closing() => return First::Gone("its sessions were closed (unreachable)".to_owned()),
            () = &mut deadline => {
                metrics::counter!(m::IDLE_CLOSED_TOTAL).increment(1);
                return First::Ended(format!("idle for {idle:?} before the target's first byte"));
            }
        }
    }
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
