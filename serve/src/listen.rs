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
    if port != 0 {
        refuse_shared(bound, &out)?;
    }
    Ok(out)
}

/// Fails with `AddrInUse` when a listening socket not in `ours` is bound to `addr` too. The
/// plain bind above leaves a window: two processes starting together both pass it, then both
/// join one `SO_REUSEPORT` group and split the connections between them, each process
/// answering some of the other's clients. Whichever of the two looks last
/// sees the other's sockets (the kernel's table, `/proc/net/tcp`), so at least one refuses.
fn refuse_shared(addr: SocketAddr, ours: &[std::net::TcpListener]) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let inode = |l: &std::net::TcpListener| {
        let link = std::fs::read_link(format!("/proc/self/fd/{}", l.as_raw_fd())).ok()?;
        link.to_str()?.strip_prefix("socket:[")?.strip_suffix(']').map(str::to_owned)
    };
    let ours: Vec<String> = ours.iter().filter_map(inode).collect();
    let table = if addr.is_ipv4() { "/proc/net/tcp" } else { "/proc/net/tcp6" };
    // Without procfs (or our own inodes) there is nothing to compare: the plain bind stands.
    let (Ok(text), false) = (std::fs::read_to_string(table), ours.is_empty()) else { return Ok(()) };
    let foreign = listeners_on(&text, addr).filter(|i| !ours.iter().any(|o| o == i)).count();
    if foreign > 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            format!("another process listens on {addr} too ({foreign} socket(s) with SO_REUSEPORT): one port, one server"),
        ));
    }
    Ok(())
}

/// The inodes of the sockets listening on exactly `addr` in a `/proc/net/tcp{,6}` table,
/// where addresses are hex of 32-bit words in host order and the port is big-endian hex.
fn listeners_on(table: &str, addr: SocketAddr) -> impl Iterator<Item = String> + '_ {
    let words: Vec<[u8; 4]> = match addr {
        SocketAddr::V4(a) => vec![a.ip().octets()],
        SocketAddr::V6(a) => a.ip().octets().chunks(4).map(|c| [c[0], c[1], c[2], c[3]]).collect(),
    };
    let local = format!("{}:{:04X}", words.iter().map(|w| format!("{:08X}", u32::from_ne_bytes(*w))).collect::<String>(), addr.port());
    table.lines().skip(1).filter_map(move |line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        // sl local rem st tx:rx tr:when retrnsmt uid timeout inode; 0A = LISTEN.
        (f.len() > 9 && f[1].eq_ignore_ascii_case(&local) && f[3] == "0A").then(|| f[9].to_owned())
    })
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

    /// Another process that slipped through the window between the plain bind and the
    /// `SO_REUSEPORT` group (stood in for by a socket these listeners did not make) is seen.
    #[tokio::test]
    async fn a_second_server_in_the_same_reuseport_group_is_refused() {
        let ours = reuseport_listeners("127.0.0.1", 0, 2, false).await.unwrap();
        let addr = ours[0].local_addr().unwrap();
        refuse_shared(addr, &ours).expect("only our own sockets");
        let intruder = TcpSocket::new_v4().unwrap();
        intruder.set_reuseport(true).unwrap();
        intruder.bind(addr).unwrap();
        let _intruder = intruder.listen(16).unwrap();
        let e = refuse_shared(addr, &ours).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse);
        assert!(e.to_string().contains(&addr.to_string()), "{e}");
        // The same port on another address is another listener, not a shared one.
        let other = reuseport_listeners("127.0.0.2", addr.port(), 1, false).await;
        assert!(other.is_ok(), "{other:?}");
    }

    #[test]
    fn the_kernel_table_is_read_for_the_exact_address_and_listening_sockets_only() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 0100007F:2742 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 111 1 0 100 0 0 10 0\n\
   1: 0100007F:2742 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 222 1 0 20 4 30 10 -1\n\
   2: 0200007F:2742 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 333 1 0 100 0 0 10 0\n";
        let found: Vec<String> = listeners_on(table, "127.0.0.1:10050".parse().unwrap()).collect();
        assert_eq!(found, ["111"]);
    }
}
