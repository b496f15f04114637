//! Reading PROXY protocol v2 headers (haproxy.org's proxy-protocol.txt, 2.2) that the
//! distributor sends when `components.distributor.proxyProtocol` is on, so the access log and
//! `X-Forwarded-For` show the real client although the TCP peer is the distributor.
//!
//! With `components.gateway.proxyProtocol: true` every connection must start with a header;
//! one that does not is closed (a client could otherwise claim any address), and so is every
//! connection from a peer outside `components.gateway.proxyProtocolTrustedSources`, before a
//! byte of it is read (see `server.rs`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use tokio::io::{AsyncRead, AsyncReadExt};

/// The 12-byte signature of a v2 header.
const SIGNATURE: [u8; 12] = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A];
/// Longest address block accepted (TLVs included).
const MAX_LEN: usize = 512;

/// Reads the header from the start of `stream`; the client's address, or `peer` for a
/// `LOCAL` header (the distributor's own health checks). `Err` when there is no valid header.
pub async fn read_header<S: AsyncRead + Unpin>(stream: &mut S, peer: SocketAddr) -> Result<SocketAddr, String> {
    let mut head = [0u8; 16];
    stream.read_exact(&mut head).await.map_err(|e| format!("no PROXY header: {e}"))?;
    if head[..12] != SIGNATURE {
        return Err("the connection does not start with a PROXY v2 header".to_owned());
    }
    let (version_command, family) = (head[12], head[13]);
    let len = u16::from_be_bytes([head[14], head[15]]) as usize;
    if version_command >> 4 != 2 || len > MAX_LEN {
        return Err("unsupported PROXY header version or length".to_owned());
    }
    let mut rest = vec![0u8; len];
    stream.read_exact(&mut rest).await.map_err(|e| format!("truncated PROXY header: {e}"))?;
    match (version_command & 0x0F, family) {
        (0x0, _) => Ok(peer),
        (0x1, 0x11) if len >= 12 => {
            let ip = Ipv4Addr::new(rest[0], rest[1], rest[2], rest[3]);
            Ok(SocketAddr::new(IpAddr::V4(ip), u16::from_be_bytes([rest[8], rest[9]])))
        }
        (0x1, 0x21) if len >= 36 => {
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&rest[..16]);
            let ip = Ipv6Addr::from(octets);
            let ip = ip.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(ip));
            Ok(SocketAddr::new(ip, u16::from_be_bytes([rest[32], rest[33]])))
        }
        // Other families (UNIX, UDP, unspecified): nothing useful; keep the TCP peer.
        (0x1, _) => Ok(peer),
        _ => Err("unknown PROXY command".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(command: u8, family: u8, body: &[u8]) -> Vec<u8> {
        let mut v = SIGNATURE.to_vec();
        v.push(0x20 | command);
        v.push(family);
        v.extend_from_slice(&(body.len() as u16).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    #[tokio::test]
    async fn reads_ipv4_ipv6_and_local_headers() {
        let peer: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let v4 = header(1, 0x11, &[10, 1, 2, 3, 127, 0, 0, 1, 0x1F, 0x90, 0x1D, 0x8A]);
        assert_eq!(read_header(&mut v4.as_slice(), peer).await.unwrap(), "10.1.2.3:8080".parse().unwrap());
        let mut body = Ipv6Addr::LOCALHOST.octets().to_vec();
        body.extend_from_slice(&Ipv4Addr::new(192, 0, 2, 7).to_ipv6_mapped().octets());
        let mut v6 = header(
            1,
            0x21,
            &[&Ipv4Addr::new(192, 0, 2, 7).to_ipv6_mapped().octets()[..], &Ipv6Addr::LOCALHOST.octets()[..], &[0, 80, 0, 81]].concat(),
        );
        assert_eq!(read_header(&mut v6.as_slice(), peer).await.unwrap(), "192.0.2.7:80".parse().unwrap());
        v6.clear();
        assert_eq!(read_header(&mut header(0, 0, &[]).as_slice(), peer).await.unwrap(), peer);
    }

    #[tokio::test]
    async fn refuses_anything_else() {
        let peer: SocketAddr = "127.0.0.1:9".parse().unwrap();
        assert!(read_header(&mut &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..], peer).await.is_err());
        assert!(read_header(&mut &header(1, 0x11, &[1, 2])[..10], peer).await.is_err());
        assert!(read_header(&mut header(7, 0x11, &[0; 12]).as_slice(), peer).await.is_err());
    }
}
