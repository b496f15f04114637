//! `components.gateway`, the parts with rules of their own: whom PROXY protocol headers are
//! believed from, and the admin listener.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::checked::AdminConfig;
use crate::cidr::AddressRange;
use crate::model;

use super::Ctx;

const P: &str = "components.gateway";

/// `proxyProtocolTrustedSources`, or by default where the distributor connects from as far
/// as the configuration tells: its listen address when that is an IP literal, and loopback
/// (127.0.0.1, ::1) when it listens on loopback (it runs on the gateway's host, as in
/// `plexgate up`, and connects from there). A distributor on another host connects from that
/// host's address, which the file does not name: list it. With `proxyProtocol` on and nothing
/// to trust, the configuration is refused rather than believing everyone.
pub(crate) fn proxy_sources(ctx: &mut Ctx<'_>, g: &model::Gateway, distributor_address: &str) -> Vec<AddressRange> {
    let ranges = match &g.proxy_protocol_trusted_sources {
        Some(list) => {
            let mut out = Vec::new();
            let mut bad = false;
            for (i, text) in list.iter().enumerate() {
                match AddressRange::parse(text) {
                    Ok(r) => out.push(r),
                    Err(e) => {
                        bad = true;
                        ctx.problem(
                            &format!("{P}.proxyProtocolTrustedSources.{i}"),
                            format!("{e}; allowed an IP address or a network such as 10.1.0.0/16"),
                        );
                    }
                }
            }
            if bad {
                return out;
            }
            out
        }
        None => default_sources(distributor_address),
    };
    if g.proxy_protocol && ranges.is_empty() {
        ctx.problem(
            &format!("{P}.proxyProtocolTrustedSources"),
            format!(
                "proxyProtocol is on but no source is trusted to send PROXY headers (the distributor's address `{distributor_address}` is no IP address): list the distributors' addresses"
            ),
        );
    }
    ranges
}

fn default_sources(distributor_address: &str) -> Vec<AddressRange> {
    let loopback = [IpAddr::V4(Ipv4Addr::LOCALHOST), IpAddr::V6(Ipv6Addr::LOCALHOST)];
    let ip = match distributor_address.trim_matches(['[', ']']).parse::<IpAddr>() {
        Ok(ip) => ip,
        Err(_) if distributor_address.eq_ignore_ascii_case("localhost") => IpAddr::V4(Ipv4Addr::LOCALHOST),
        Err(_) => return Vec::new(),
    };
    if ip.is_unspecified() {
        return Vec::new();
    }
    let mut out = vec![AddressRange::single(ip)];
    if ip.is_loopback() {
        out.extend(loopback.into_iter().map(AddressRange::single).filter(|r| r.network != ip));
    }
    out
}

/// `admin`: on by default, on loopback, at the gateway's port + 6 unless given.
pub(crate) fn admin(ctx: &mut Ctx<'_>, g: &model::Gateway, gateway_port: u16) -> Option<AdminConfig> {
    if !g.admin.enabled {
        return None;
    }
    let port = match g.admin.port {
        Some(p) => ctx.port(&format!("{P}.admin.port"), p),
        None => match u16::try_from(i64::from(gateway_port) + model::DEFAULT_GATEWAY_ADMIN_PORT_OFFSET) {
            Ok(p) => p,
            Err(_) => {
                ctx.problem(&format!("{P}.admin.port"), format!("the default (gateway port {gateway_port} + 6) is no port: set one"));
                0
            }
        },
    };
    if port == gateway_port {
        ctx.problem(&format!("{P}.admin.port"), format!("found {port}, the gateway's own port; give the admin listener another"));
    }
    Some(AdminConfig { address: g.admin.address.clone(), port })
}
