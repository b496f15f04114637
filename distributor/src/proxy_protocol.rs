//! PROXY protocol version 2 headers (haproxy.org's proxy-protocol.txt, section 2.2), written
//! to a gateway before the first byte of a forwarded connection so it learns the client's
//! address although the TCP connection comes from the distributor.
//!
//! Relayed connections get a `PROXY` header with the client's and the virtual address's
//! addresses. Health checks get a `LOCAL` header (no addresses): the specification's way for a
//! proxy to say "this connection is my own, use the real endpoints", so a gateway that
//! requires the header on every connection still answers the checks.

use std::net::{IpAddr, SocketAddr};

/// The 12-byte signature every v2 header starts with.
pub const SIGNATURE: [u8; 12] = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A];

const VERSION_2_LOCAL: u8 = 0x20;
const VERSION_2_PROXY: u8 = 0x21;
const UNSPEC: u8 = 0x00;
const TCP_OVER_IPV4: u8 = 0x11;
const TCP_OVER_IPV6: u8 = 0x21;

/// The header of a relayed connection from `client` that arrived on `local` (the address the
/// client connected to). Mixed families are sent as IPv6 with the IPv4 address mapped.
pub fn proxy_header(client: SocketAddr, local: SocketAddr) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + 36);
    out.extend_from_slice(&SIGNATURE);
    out.push(VERSION_2_PROXY);
    match (client.ip(), local.ip()) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            out.push(TCP_OVER_IPV4);
            out.extend_from_slice(&12u16.to_be_bytes());
            out.extend_from_slice(&src.octets());
            out.extend_from_slice(&dst.octets());
        }
        (src, dst) => {
            let v6 = |ip: IpAddr| match ip {
                IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                IpAddr::V6(v6) => v6,
            };
            out.push(TCP_OVER_IPV6);
            out.extend_from_slice(&36u16.to_be_bytes());
            out.extend_from_slice(&v6(src).octets());
            out.extend_from_slice(&v6(dst).octets());
        }
    }
    out.extend_from_slice(&client.port().to_be_bytes());
    out.extend_from_slice(&local.port().to_be_bytes());
    out
}

/// The header of a connection the distributor makes for itself (a health check).
pub fn local_header() -> Vec<u8> {
    let mut out = Vec::with_capacity(16);
    out.extend_from_slice(&SIGNATURE);
    out.extend_from_slice(&[VERSION_2_LOCAL, UNSPEC, 0, 0]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_header_carries_both_addresses_and_ports() {
        let h = proxy_header("192.0.2.7:51000".parse().unwrap(), "198.51.100.1:7554".parse().unwrap());
        assert_eq!(h.len(), 28);
        assert_eq!(&h[..12], &SIGNATURE);
        assert_eq!(&h[12..16], &[0x21, 0x11, 0, 12]);
        assert_eq!(&h[16..20], &[192, 0, 2, 7]);
        assert_eq!(&h[20..24], &[198, 51, 100, 1]);
        assert_eq!(&h[24..26], &51000u16.to_be_bytes());
        assert_eq!(&h[26..28], &7554u16.to_be_bytes());
    }

    #[test]
    fn ipv6_and_mixed_families_are_sent_as_ipv6() {
        let h = proxy_header("[2001:db8::1]:4000".parse().unwrap(), "[::1]:7554".parse().unwrap());
        assert_eq!(h.len(), 52);
        assert_eq!(&h[12..16], &[0x21, 0x21, 0, 36]);
        assert_eq!(h[16], 0x20);
        assert_eq!(h[47], 1);
        let mixed = proxy_header("192.0.2.7:1".parse().unwrap(), "[::1]:2".parse().unwrap());
        assert_eq!(&mixed[12..16], &[0x21, 0x21, 0, 36]);
        assert_eq!(&mixed[26..32], &[0xff, 0xff, 192, 0, 2, 7], "IPv4-mapped");
    }

    #[test]
    fn local_header_has_no_addresses() {
        assert_eq!(local_header(), [&SIGNATURE[..], &[0x20, 0x00, 0, 0]].concat());
    }
}
