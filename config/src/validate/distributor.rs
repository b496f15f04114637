//! `components.distributor`, checked: the listen address, the targets and their roles.

use crate::checked::*;
use crate::model;

use super::Ctx;

/// Distribution methods as written, case-insensitive.
pub const METHODS: &[&str] = &["hotStandby", "roundRobin", "weighted", "leastConnections"];
/// hotStandby roles as written, case-insensitive.
pub const ROLES: &[&str] = &["preferred", "backup"];

pub(crate) fn check(
    ctx: &mut Ctx<'_>,
    d: &model::Distributor,
    instances: &[Instance],
    first_domain: &str,
    external_port: u16,
) -> DistributorConfig {
    const P: &str = "components.distributor";
    let enabled = d.enabled.unwrap_or(instances.iter().any(|i| i.gateway_port.is_some()));
    let address = d.address.clone().unwrap_or_else(|| first_domain.to_owned());
    let port = match d.port {
        Some(p) => ctx.port(&format!("{P}.port"), p),
        None => external_port,
    };
    let method = match ctx.choice(&format!("{P}.method"), &d.method, METHODS) {
        Some(1) => Method::RoundRobin,
        Some(2) => Method::Weighted,
        Some(3) => Method::LeastConnections,
        _ => Method::HotStandby,
    };
    let targets = match &d.targets {
        Some(list) => explicit_targets(ctx, list, instances),
        None => instances
            .iter()
            .filter_map(|i| i.gateway_port.map(|p| (i, p)))
            .enumerate()
            .map(|(n, (i, p))| TargetConfig {
                name: i.id.clone(),
                host: i.hostname.clone(),
                port: p,
                role: if n == 0 { Role::Preferred } else { Role::Backup { rank: n as u32 } },
                weight: 1,
            })
            .collect(),
    };
    if enabled && targets.is_empty() {
        ctx.problem(
            &format!("{P}.targets"),
            "the distributor is enabled but has no targets: list them, or define haInstances with an enabled gateway",
        );
    }
    for (i, t) in targets.iter().enumerate() {
        if t.port == port && same_host(&t.host, &address) {
            ctx.problem(
                &format!("{P}.targets.{i}"),
                format!("target {} is {}:{}, the distributor's own listen address; give that gateway another port", t.name, t.host, t.port),
            );
        }
    }
    if method == Method::Weighted && !targets.is_empty() && targets.iter().all(|t| t.weight == 0) {
        ctx.problem(&format!("{P}.targets"), "method `weighted` needs at least one target with a weight above 0");
    }
    let h = &d.health_check;
    let hp = format!("{P}.healthCheck");
    if h.interval.0.is_zero() {
        ctx.problem(&format!("{hp}.interval"), "found 0, allowed a duration above 0 such as 250ms");
    }
    if h.timeout.0.is_zero() {
        ctx.problem(&format!("{hp}.timeout"), "found 0, allowed a duration above 0 such as 1s");
    }
    if !h.path.starts_with('/') {
        ctx.problem(&format!("{hp}.path"), format!("found `{}`, allowed a path starting with /", h.path));
    }
    let health_check = HealthCheckConfig {
        interval: h.interval.0,
        timeout: h.timeout.0,
        path: h.path.clone(),
        unhealthy_threshold: ctx.at_least(&format!("{hp}.unhealthyThreshold"), h.unhealthy_threshold, 1),
        healthy_threshold: ctx.at_least(&format!("{hp}.healthyThreshold"), h.healthy_threshold, 1),
        close_sessions_when_unreachable: h.close_sessions_when_unreachable,
    };
    let admin =
        d.admin.enabled.then(|| AdminConfig { address: d.admin.address.clone(), port: ctx.port(&format!("{P}.admin.port"), d.admin.port) });
    DistributorConfig {
        enabled,
        address,
        port,
        method,
        auto_switch_back: d.auto_switch_back,
        targets,
        health_check,
        admin,
        max_connections: ctx.at_least(&format!("{P}.maxConnections"), d.max_connections, 1),
        max_connections_per_target: ctx.at_least(&format!("{P}.maxConnectionsPerTarget"), d.max_connections_per_target, 0),
        idle_timeout: d.idle_timeout.0,
        drain_timeout: d.drain_timeout.0,
        proxy_protocol: d.proxy_protocol,
        replay_bytes: replay_bytes(ctx, d.replay_bytes),
        virtual_address: None,
    }
}

/// `replayBytes`: 0 (off) up to [`model::MAX_REPLAY_BYTES`], since every connecting client may hold that much.
fn replay_bytes(ctx: &mut Ctx<'_>, v: i64) -> u32 {
    if !(0..=model::MAX_REPLAY_BYTES).contains(&v) {
        ctx.problem(
            "components.distributor.replayBytes",
            format!(
                "found {v}, allowed 0 (no replay) to {} bytes; the default {} holds a TLS ClientHello",
                model::MAX_REPLAY_BYTES,
                model::DEFAULT_REPLAY_BYTES
            ),
        );
        return model::DEFAULT_REPLAY_BYTES as u32;
    }
    v as u32
}

fn explicit_targets(ctx: &mut Ctx<'_>, list: &[model::Target], instances: &[Instance]) -> Vec<TargetConfig> {
    const P: &str = "components.distributor.targets";
    let mut out = Vec::new();
    let explicit_preferred = list.iter().filter(|t| t.role.as_deref().is_some_and(|r| r.eq_ignore_ascii_case("preferred"))).count();
    if explicit_preferred > 1 {
        ctx.problem(P, format!("found {explicit_preferred} targets with role `preferred`, allowed at most one (the others are `backup`, ranked in list order)"));
    }
    let mut have_preferred = explicit_preferred > 0;
    let mut rank = 0;
    for (i, t) in list.iter().enumerate() {
        let at = format!("{P}.{i}");
        let endpoint = match (&t.instance, &t.address) {
            (Some(id), None) => match instances.iter().find(|x| &x.id == id) {
                None => {
                    let defined: Vec<&str> = instances.iter().map(|x| x.id.as_str()).collect();
                    let defined = if defined.is_empty() { "none".to_owned() } else { defined.join(", ") };
                    ctx.problem(&format!("{at}.instance"), format!("names haInstance `{id}`, which is not defined; defined: {defined}"));
                    None
                }
                Some(x) => {
                    match x.gateway_port {
                        Some(p) => Some((x.id.clone(), x.hostname.clone(), p)),
                        None => {
                            ctx.problem(&format!("{at}.instance"), format!("haInstance `{id}` has its gateway disabled (components.gateway.enabled: false), so it cannot be a target"));
                            None
                        }
                    }
                }
            },
            (None, Some(addr)) => {
                match addr.rsplit_once(':').and_then(|(h, p)| Some((h.trim_matches(['[', ']']).to_owned(), p.parse::<i64>().ok()?))) {
                    Some((h, p)) if !h.is_empty() => {
                        let port = ctx.port(&format!("{at}.address"), p);
                        Some((addr.clone(), h, port))
                    }
                    _ => {
                        ctx.problem(&format!("{at}.address"), format!("found `{addr}`, allowed host:port"));
                        None
                    }
                }
            }
            (Some(_), Some(_)) => {
                ctx.problem(&at, "has both `instance` and `address`; allowed one of them");
                None
            }
            (None, None) => {
                ctx.problem(&at, "has neither `instance` nor `address`; allowed one of them");
                None
            }
        };
        let role = match t.role.as_deref().map(|r| ctx.choice(&format!("{at}.role"), r, ROLES)) {
            Some(Some(0)) => Role::Preferred,
            Some(_) => {
                rank += 1;
                Role::Backup { rank }
            }
            None if !have_preferred => {
                have_preferred = true;
                Role::Preferred
            }
            None => {
                rank += 1;
                Role::Backup { rank }
            }
        };
        let weight = ctx.at_least(&format!("{at}.weight"), t.weight, 0);
        if let Some((name, host, port)) = endpoint {
            out.push(TargetConfig { name, host, port, role, weight });
        }
    }
    out
}

/// Whether two host names are the same host for the purpose of a port clash.
fn same_host(a: &str, b: &str) -> bool {
    let norm = |h: &str| {
        let h = h.trim_matches(['[', ']']).to_ascii_lowercase();
        if h == "localhost" || h == "::1" || h.starts_with("127.") { "loopback".to_owned() } else { h }
    };
    norm(a) == norm(b) || norm(b) == "0.0.0.0" || norm(b) == "::"
}
