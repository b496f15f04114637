//! Address ranges (`10.0.0.0/8`, `127.0.0.1`, `::1/128`) for lists of trusted peers.

use std::fmt;
use std::net::IpAddr;

/// An IP network: every address whose first `prefix` bits equal `network`'s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressRange {
    /// The network address.
    pub network: IpAddr,
    /// Significant leading bits (32 for one IPv4 address, 128 for one IPv6 address).
    pub prefix: u8,
}

impl AddressRange {
    /// One address.
    pub fn single(ip: IpAddr) -> AddressRange {
        let ip = canonical(ip);
        AddressRange { network: ip, prefix: if ip.is_ipv4() { 32 } else { 128 } }
    }

    /// Reads `ADDRESS` or `ADDRESS/PREFIX`; the message says what is wrong.
    pub fn parse(text: &str) -> Result<AddressRange, String> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let ip: IpAddr = addr.trim().parse().map_err(|_| format!("`{addr}` is not an IP address"))?;
        let ip = canonical(ip);
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.trim().parse::<u8>() {
                Ok(p) if p <= max => p,
                _ => return Err(format!("`/{p}` is not a prefix length from 0 to {max}")),
            },
        };
        Ok(AddressRange { network: ip, prefix })
    }

    /// Whether `ip` is in the range (an IPv4-mapped IPv6 address counts as its IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, canonical(ip)) {
            (IpAddr::V4(n), IpAddr::V4(a)) => masked(u32::from(n).into(), u32::from(a).into(), self.prefix, 32),
            (IpAddr::V6(n), IpAddr::V6(a)) => masked(u128::from(n), u128::from(a), self.prefix, 128),
            _ => false,
        }
    }
}

fn masked(network: u128, addr: u128, prefix: u8, bits: u8) -> bool {
    if prefix == 0 {
        return true;
    }
    let shift = u32::from(bits - prefix);
    network >> shift == addr >> shift
}

/// IPv4-mapped IPv6 addresses as IPv4 (a dual-stack listener reports IPv4 peers so).
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

impl fmt::Display for AddressRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl serde::Serialize for AddressRange {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_contain_what_they_should() {
        let r = AddressRange::parse("10.1.0.0/16").unwrap();
        assert!(r.contains("10.1.200.3".parse().unwrap()));
        assert!(!r.contains("10.2.0.1".parse().unwrap()));
        assert!(r.contains("::ffff:10.1.0.9".parse().unwrap()));
        let one = AddressRange::parse("127.0.0.1").unwrap();
        assert!(one.contains("127.0.0.1".parse().unwrap()) && !one.contains("127.0.0.2".parse().unwrap()));
        assert!(AddressRange::parse("::1").unwrap().contains("::1".parse().unwrap()));
        assert!(AddressRange::parse("0.0.0.0/0").unwrap().contains("192.0.2.1".parse().unwrap()));
        for bad in ["", "host.example", "10.0.0.0/33", "10.0.0.0/x", "::/129"] {
            assert!(AddressRange::parse(bad).is_err(), "{bad}");
        }
    }
}
