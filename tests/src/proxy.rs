//! Raw PROXY protocol v2 clients: a TCP connection from a chosen loopback source address that
//! starts with a hand-made header, then TLS and one HTTP/1.1 request, as a distributor (or
//! someone pretending to be one) would send them.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// The 12-byte signature of a v2 header.
const SIGNATURE: [u8; 12] = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A];

/// A v2 `PROXY` header (TCP over IPv4) claiming the connection came from `client`.
pub fn header_v4(client: SocketAddr, server: SocketAddr) -> Vec<u8> {
    let (IpAddr::V4(c), IpAddr::V4(s)) = (client.ip(), server.ip()) else { panic!("IPv4 addresses only") };
    let mut v = SIGNATURE.to_vec();
    v.extend_from_slice(&[0x21, 0x11, 0, 12]);
    v.extend_from_slice(&c.octets());
    v.extend_from_slice(&s.octets());
    v.extend_from_slice(&client.port().to_be_bytes());
    v.extend_from_slice(&server.port().to_be_bytes());
    v
}

/// A TCP connection to `to` from `from` (port chosen by the OS), as a blocking std stream.
pub fn connect_from(from: IpAddr, to: SocketAddr) -> std::io::Result<std::net::TcpStream> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let stream = rt.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind(SocketAddr::new(from, 0))?;
        tokio::time::timeout(Duration::from_secs(5), socket.connect(to)).await.map_err(|_| std::io::ErrorKind::TimedOut)?
    })?;
    let std = stream.into_std()?;
    std.set_nonblocking(false)?;
    std.set_read_timeout(Some(Duration::from_secs(10)))?;
    Ok(std)
}

/// Connects from `from` to `to`, sends `prefix` (a PROXY header, or nothing), then over TLS
/// (trusting `ca`) one HTTP/1.1 `GET path` with `Connection: close`; the whole answer as text,
/// or the error that ended the exchange (a refused connection reads as an error).
pub fn get_with_prefix(from: IpAddr, to: SocketAddr, prefix: &[u8], ca: &Path, path: &str) -> std::io::Result<String> {
    let mut tcp = connect_from(from, to)?;
    tcp.write_all(prefix)?;
    let mut config = crate::https::tls_config(ca, None);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").expect("server name");
    let conn = rustls::ClientConnection::new(Arc::new(config), name).map_err(std::io::Error::other)?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").as_bytes())?;
    let mut out = Vec::new();
    match tls.read_to_end(&mut out) {
        Ok(_) => {}
        // Some servers end TLS without close_notify after Connection: close.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !out.is_empty() => {}
        Err(e) => return Err(e),
    }
    if out.is_empty() {
        return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "closed without an answer"));
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}
