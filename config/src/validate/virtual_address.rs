//! `components.distributor.virtualAddress`, checked: the VRRP settings keepalived.conf is
//! generated from, and the distributor hosts that share the address.
//!
//! The hosts are the haInstances whose view enables the distributor explicitly
//! (`haInstances.<id>.components.distributor.enabled: true`); their priorities come from
//! `virtualAddress.priority` or from file order. Every host must see the same address, router
//! id, interval, password and autoSwitchBack, since keepalived instances that disagree on
//! them never form one virtual router (the interface may differ per host).

use std::net::IpAddr;
use std::time::Duration;

use crate::checked::*;
use crate::cidr::AddressRange;
use crate::model::{self, VirtualAddress};

use super::Ctx;

const P: &str = "components.distributor.virtualAddress";

/// Checks this view's virtual address; `None` when none is configured.
pub(crate) fn check(ctx: &mut Ctx<'_>, v: &VirtualAddress, instances: &[Instance]) -> Option<VirtualAddressConfig> {
    let text = v.address.as_deref()?;
    let (address, prefix) = address(ctx, text);
    let interface = interface(ctx, v.interface.as_deref());
    let virtual_router_id = match v.virtual_router_id {
        Some(id) if (1..=255).contains(&id) => id as u8,
        Some(id) => {
            ctx.problem(&format!("{P}.virtualRouterId"), format!("found {id}, allowed a whole number from 1 to 255 (VRRP's router id), the same on every host sharing the address and unique on its network"));
            1
        }
        None => {
            ctx.problem(
                &format!("{P}.virtualRouterId"),
                "missing; allowed a whole number from 1 to 255, the same on every host sharing the address and unique on its network",
            );
            1
        }
    };
    let password = password(ctx, &v.authentication);
    let advert_interval = advert_interval(ctx, v.advert_interval.0, password.is_some());
    let unicast_peers = peers(ctx, v.unicast_peers.as_deref().unwrap_or_default(), address, instances);
    let c = &v.check;
    let check = VirtualAddressCheck {
        interval: whole_seconds(ctx, &format!("{P}.check.interval"), c.interval.0),
        timeout: whole_seconds(ctx, &format!("{P}.check.timeout"), c.timeout.0),
        fall: ctx.at_least(&format!("{P}.check.fall"), c.fall, 1),
        rise: ctx.at_least(&format!("{P}.check.rise"), c.rise, 1),
    };
    let hosts = hosts(ctx, v, instances);
    Some(VirtualAddressConfig {
        address,
        prefix,
        interface,
        virtual_router_id,
        advert_interval,
        auto_switch_back: v.auto_switch_back,
        unicast_peers,
        password,
        check,
        hosts,
    })
}

/// `address`: an IP address with its prefix length, as keepalived adds it to the interface.
fn address(ctx: &mut Ctx<'_>, text: &str) -> (IpAddr, u8) {
    let at = format!("{P}.address");
    if !text.contains('/') {
        ctx.problem(&at, format!("found `{text}`, allowed an IP address with its prefix length, such as 10.1.0.100/24"));
        return (IpAddr::from([0, 0, 0, 0]), 32);
    }
    match AddressRange::parse(text) {
        Ok(r) if r.network.is_unspecified() || r.network.is_loopback() || r.network.is_multicast() => {
            ctx.problem(
                &at,
                format!("found `{text}`, allowed a unicast address the clients can reach (not 0.0.0.0, loopback or multicast)"),
            );
            (r.network, r.prefix)
        }
        Ok(r) => (r.network, r.prefix),
        Err(why) => {
            ctx.problem(&at, format!("found `{text}`: {why}; allowed an IP address with its prefix length, such as 10.1.0.100/24"));
            (IpAddr::from([0, 0, 0, 0]), 32)
        }
    }
}

/// `interface`: a Linux interface name (at most 15 bytes, no `/` or white space).
fn interface(ctx: &mut Ctx<'_>, name: Option<&str>) -> String {
    let at = format!("{P}.interface");
    match name.map(str::trim) {
        None | Some("") => {
            ctx.problem(&at, "missing; allowed the name of the network interface the address is added to, such as eth0 (set it per host under haInstances.<id> when they differ)");
            String::new()
        }
        Some(n) if n.len() > 15 || n.contains(['/', ' ', '\t', '"']) || n == "." || n == ".." => {
            ctx.problem(
                &at,
                format!("found `{n}`, allowed a network interface name of at most 15 characters without `/`, quotes or spaces"),
            );
            n.to_owned()
        }
        Some(n) => n.to_owned(),
    }
}

/// `authentication`: `PASS` with a password of 1 to 8 printable characters.
fn password(ctx: &mut Ctx<'_>, a: &model::Authentication) -> Option<model::Secret> {
    let at = format!("{P}.authentication");
    if let Some(kind) = &a.kind {
        ctx.choice(&format!("{at}.type"), kind, model::AUTH_TYPES);
    }
    let Some(password) = &a.password else {
        if a.kind.is_some() {
            ctx.problem(
                &format!("{at}.password"),
                format!("missing; authentication needs a password of 1 to {} characters", model::MAX_PASSWORD_LEN),
            );
        }
        return None;
    };
    let p = password.expose();
    // The message never repeats the password: it is a secret even when wrong.
    if p.is_empty() || p.len() > model::MAX_PASSWORD_LEN {
        ctx.problem(
            &format!("{at}.password"),
            format!("found {} characters, allowed 1 to {} (VRRP carries 8 bytes of password)", p.chars().count(), model::MAX_PASSWORD_LEN),
        );
    } else if !p.chars().all(|c| c.is_ascii_graphic() && c != '"' && c != '\\') {
        ctx.problem(&format!("{at}.password"), "allowed printable ASCII characters without spaces, quotes or backslashes");
    }
    Some(password.clone())
}

/// `advertInterval`: whole seconds 1-255 with VRRPv2 (needed for a password), else
/// centiseconds from 10 ms to 40.95 s (VRRPv3).
fn advert_interval(ctx: &mut Ctx<'_>, d: Duration, v2: bool) -> Duration {
    let at = format!("{P}.advertInterval");
    let ms = d.as_millis();
    if v2 && (!ms.is_multiple_of(1000) || !(1_000..=255_000).contains(&ms)) {
        ctx.problem(
            &at,
            format!(
                "found {}, allowed whole seconds from 1s to 255s with authentication (VRRPv2, the version that has a password)",
                humantime::format_duration(d)
            ),
        );
        return Duration::from_secs(1);
    }
    if !v2 && (!ms.is_multiple_of(10) || !(10..=40_950).contains(&ms)) {
        ctx.problem(&at, format!("found {}, allowed 10ms to 40950ms in steps of 10ms (VRRPv3)", humantime::format_duration(d)));
        return Duration::from_secs(1);
    }
    d
}

/// A keepalived script setting: whole seconds, at least 1.
fn whole_seconds(ctx: &mut Ctx<'_>, at: &str, d: Duration) -> Duration {
    if d.subsec_nanos() != 0 || d.is_zero() {
        ctx.problem(at, format!("found {}, allowed whole seconds from 1s (keepalived's unit for scripts)", humantime::format_duration(d)));
        return Duration::from_secs(1);
    }
    d
}

/// `unicastPeers`: IP addresses of the address's family; this host's own is left out, so
/// one list may be shared by every host.
fn peers(ctx: &mut Ctx<'_>, list: &[String], vip: IpAddr, instances: &[Instance]) -> Vec<IpAddr> {
    let own: Option<IpAddr> =
        ctx.instance.and_then(|id| instances.iter().find(|i| i.id == id)).and_then(|i| i.hostname.trim_matches(['[', ']']).parse().ok());
    let mut out = Vec::new();
    for (i, p) in list.iter().enumerate() {
        match p.trim().parse::<IpAddr>() {
            Ok(ip) if ip.is_ipv4() != vip.is_ipv4() => {
                ctx.problem(
                    &format!("{P}.unicastPeers.{i}"),
                    format!("found `{p}`, allowed an address of the virtual address's family (IPv{})", if vip.is_ipv4() { 4 } else { 6 }),
                );
            }
            Ok(ip) if Some(ip) == own => {}
            Ok(ip) => out.push(ip),
            Err(_) => {
                ctx.problem(&format!("{P}.unicastPeers.{i}"), format!("found `{p}`, allowed an IP address of another distributor host"))
            }
        }
    }
    out
}

/// The distributor hosts and their priorities, and the settings every one must share.
fn hosts(ctx: &mut Ctx<'_>, this: &VirtualAddress, instances: &[Instance]) -> Vec<VirtualAddressHost> {
    let mut hosts = Vec::new();
    for (n, inst) in instances.iter().filter(|i| i.distributor).enumerate() {
        let Ok(y) = ctx.doc.typed(Some(&inst.id)) else { continue };
        // Paths of that host's view: located where it overrides them, else where they are shared.
        let own = |key: &str| {
            let p = format!("haInstances.{}.{P}{key}", inst.id);
            if ctx.doc.source.position(&p).is_some() { p } else { format!("{P}{key}") }
        };
        let (at_shared, at_priority) = (own(""), own(".priority"));
        let v = &y.components.distributor.virtual_address;
        let shared = |v: &VirtualAddress| {
            (
                v.address.clone(),
                v.virtual_router_id,
                v.advert_interval,
                v.auto_switch_back,
                v.authentication.password.clone(),
                v.authentication.kind.clone(),
            )
        };
        if shared(v) != shared(this) {
            ctx.problem(
                &at_shared,
                format!("haInstance {} sees another address, virtualRouterId, advertInterval, autoSwitchBack or authentication than the other distributor hosts; set them once under components.distributor.virtualAddress (only interface and priority may differ per host)", inst.id),
            );
        }
        let default = (model::DEFAULT_FIRST_PRIORITY - model::DEFAULT_PRIORITY_STEP * n as i64).max(1);
        let priority = match v.priority {
            Some(p) if (1..=254).contains(&p) => p as u8,
            Some(p) => {
                ctx.problem(&at_priority, format!("found {p}, allowed 1 to 254 (255 is VRRP's address owner)"));
                1
            }
            None => default as u8,
        };
        if let Some(other) = hosts.iter().find(|h: &&VirtualAddressHost| h.priority == priority) {
            ctx.problem(
                &at_priority,
                format!(
                    "haInstances {} and {} both have priority {priority}; give every distributor host its own",
                    other.instance, inst.id
                ),
            );
        }
        hosts.push(VirtualAddressHost { instance: inst.id.clone(), priority });
    }
    if hosts.is_empty() {
        ctx.problem(
            &format!("{P}.address"),
            "a virtual address needs distributor hosts to share it: set haInstances.<id>.components.distributor.enabled: true on each (two or more)",
        );
    }
    hosts
}
