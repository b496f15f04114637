//! Listening sockets shared by every server of plexgate: one `SO_REUSEPORT` listener per
//! serving thread (thread-per-core: the kernel spreads new connections over the threads, so
//! a connection lives on one core), and an accept that backs off instead of spinning when
//! the process is out of file descriptors.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// Pending connections the kernel queues per listener: a failover moving every client at
/// once, or a thousand clients starting together, should not see SYNs dropped (128, the
/// usual default, overflowed at 1,000 clients: issue 14).
pub const LISTEN_BACKLOG: u32 = 4096;

/// After a failed `accept` (EMFILE and the like) the loop waits this long before the next.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Serving threads: one per core the process may use.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// `count` listeners on `host:port` (its first address), all with `SO_REUSEPORT` and a
/// [`LISTEN_BACKLOG`]-deep accept queue; port 0 gets one port the kernel picks for all. With
/// `freebind` the address need not be on this host yet (`IP_FREEBIND`: a backup distributor
/// binds the virtual address before keepalived moves it there). Returned as std listeners,
/// so each can be registered with the runtime of the thread that serves it.
pub async fn reuseport_listeners(host: &str, port: u16, count: usize, freebind: bool) -> std::io::Result<Vec<std::net::TcpListener>> {
    let addr = tokio::net::lookup_host((host, port))
        .await?
        .next()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "the host name resolves to no address"))?;
    let socket = || -> std::io::Result<TcpSocket> {
        let s = if addr.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() }?;
        s.set_reuseaddr(true)?;
        if freebind {
            if addr.is_ipv4() {
                rustix::net::sockopt::set_ip_freebind(&s, true)?;
            } else {
                rustix::net::sockopt::set_ipv6_freebind(&s, true)?;
            }
        }
        Ok(s)
    };
    if port != 0 {
        // SO_REUSEPORT would let a second process of the same user share the port silently;
        // a plain bind first fails when anything listens there already.
        socket()?.bind(addr)?;
    }
    let mut bound = addr;
    let mut out = Vec::with_capacity(count.max(1));
    for _ in 0..count.max(1) {
        let s = socket()?;
        s.set_reuseport(true)?;
        s.bind(bound)?;
        let l = s.listen(LISTEN_BACKLOG)?;
        bound = l.local_addr()?;
        out.push(l.into_std()?);
    }
    Ok(out)
}

/// The next connection; a failed accept (out of file descriptors, say) is logged and retried
/// after [`ACCEPT_BACKOFF`] rather than in a tight loop.
pub async fn accept_or_back_off(listener: &TcpListener) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok(a) => return a,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_port_in_use_is_refused_and_port_zero_gives_one_port_to_all() {
        let ls = reuseport_listeners("127.0.0.1", 0, 3, false).await.unwrap();
        let ports: Vec<u16> = ls.iter().map(|l| l.local_addr().unwrap().port()).collect();
        assert!(ports.iter().all(|p| *p == ports[0] && *p != 0), "{ports:?}");
        let again = reuseport_listeners("127.0.0.1", ports[0], 1, false).await;
        assert_eq!(again.unwrap_err().kind(), std::io::ErrorKind::AddrInUse);
    }
}
