//! `plexgate status`: the distributor's targets as a table, the way `NETSTAT VDPT` shows
//! Sysplex Distributor's targets, read from its admin listener; then every gateway's services
//! and instances with where each came from (a static definition file or a Eureka
//! registration) and its Eureka status, read from the gateways' admin listeners.

use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use plexgate_distributor::status::{Status, TargetStatus};

use super::{document, load, runtime};
use crate::cli::{ConfigArg, StatusArgs};

/// How long to wait for the admin listener.
const TIMEOUT: Duration = Duration::from_secs(5);
/// How long to wait for a gateway's admin listener (a stopped one refuses at once).
const GATEWAY_TIMEOUT: Duration = Duration::from_secs(2);

/// Prints the status of the distributor the configuration describes.
pub fn run(args: &StatusArgs) -> anyhow::Result<ExitCode> {
    let config = load(&args.config, args.ha_instance.as_deref())?.config;
    if !args.json {
        print!("{}", virtual_address(&config, SystemTime::now()));
        if !config.distributor.enabled {
            // A single gateway (or gateways behind another balancer): its services are the status.
            println!("No distributor on this haInstance (components.distributor.enabled: false)");
            print!("{}", gateway_services(&args.config, args.ha_instance.as_deref())?);
            return Ok(ExitCode::SUCCESS);
        }
    }
    let Some(admin) = &config.distributor.admin else {
        bail!("the distributor's admin listener is disabled (components.distributor.admin.enabled: false)");
    };
    // A listener on every address is reached on loopback.
    let host = match admin.address.as_str() {
        "0.0.0.0" => "127.0.0.1",
        "::" | "[::]" => "[::1]",
        h if h.contains(':') && !h.starts_with('[') => return run_at(&format!("[{h}]:{}", admin.port), args),
        h => h,
    };
    run_at(&format!("{host}:{}", admin.port), args)
}

/// Each gateway's services, one row per instance: from the admin listener of every haInstance
/// with a gateway (only `only`'s when given).
fn gateway_services(arg: &ConfigArg, only: Option<&str>) -> anyhow::Result<String> {
    let ids: Vec<Option<String>> = match only {
        Some(id) => vec![Some(id.to_owned())],
        None => {
            let ids = document(arg)?.instance_ids();
            if ids.is_empty() { vec![None] } else { ids.into_iter().map(Some).collect() }
        }
    };
    let client = reqwest::Client::builder().timeout(GATEWAY_TIMEOUT).build().context("HTTP client")?;
    let rt = runtime()?;
    let mut rows = vec![["GATEWAY", "SERVICE", "INSTANCE", "ORIGIN", "FROM", "EUREKA", "STATUS", "REQUESTS"].map(str::to_owned).to_vec()];
    let mut unreachable = String::new();
    for id in ids {
        let config = load(arg, id.as_deref())?.config;
        let (true, Some(admin)) = (config.gateway.enabled, &config.gateway.admin) else { continue };
        let name = id.unwrap_or_else(|| "gateway".to_owned());
        let host = if matches!(admin.address.as_str(), "0.0.0.0" | "::" | "[::]") { "127.0.0.1" } else { admin.address.as_str() };
        let host = if host.contains(':') && !host.starts_with('[') { format!("[{host}]") } else { host.to_owned() };
        let url = format!("http://{host}:{}/application/services", admin.port);
        let list = rt.block_on(async { client.get(&url).send().await?.error_for_status()?.json::<serde_json::Value>().await });
        match list {
            Ok(list) => rows.extend(service_rows(&name, &list)),
            Err(e) => unreachable.push_str(&format!("gateway {name}: no service list from {url} ({e})\n")),
        }
    }
    if rows.len() == 1 && unreachable.is_empty() {
        return Ok(String::new());
    }
    Ok(format!("\nServices\n{}{unreachable}", columns(rows)))
}

/// The rows of one gateway's `/application/services` list.
pub fn service_rows(gateway: &str, list: &serde_json::Value) -> Vec<Vec<String>> {
    let text = |v: &serde_json::Value| v.as_str().map(str::to_owned).unwrap_or_else(|| "-".to_owned());
    let mut rows = Vec::new();
    for s in list.as_array().into_iter().flatten() {
        for i in s["instances"].as_array().into_iter().flatten() {
            let from = if i["definitionFile"].is_string() { &i["definitionFile"] } else { &i["registrationKey"] };
            rows.push(vec![
                gateway.to_owned(),
                text(&s["serviceId"]),
                text(&i["instanceId"]),
                text(&i["origin"]),
                text(from),
                text(&i["eurekaStatus"]),
                text(&i["status"]),
                i["requests"].as_u64().map_or_else(|| "-".to_owned(), |n| n.to_string()),
            ]);
        }
    }
    rows
}

/// Rows as left-aligned columns.
fn columns(rows: Vec<Vec<String>>) -> String {
    let n = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..n).map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for r in rows {
        let cells: Vec<String> = r.iter().zip(&widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

fn run_at(address: &str, args: &StatusArgs) -> anyhow::Result<ExitCode> {
    let status = runtime()?.block_on(plexgate_distributor::admin::fetch_status(address, TIMEOUT))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status).context("status as JSON")?);
    } else {
        print!("{}", table(&status, SystemTime::now()));
        print!("{}", gateway_services(&args.config, args.ha_instance.as_deref())?);
    }
    Ok(ExitCode::SUCCESS)
}

/// Which host holds the virtual address, from the state files keepalived's notify command
/// wrote (every host's, when the workspace is shared): empty without a virtual address.
pub fn virtual_address(config: &plexgate_config::Config, now: SystemTime) -> String {
    let Some(vip) = &config.distributor.virtual_address else { return String::new() };
    let now_ms = now.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
    let preferred = vip.preferred().map(|h| h.instance.clone());
    let mut holders = Vec::new();
    let mut out = format!(
        "Virtual address {}/{}  router {}  autoSwitchBack {}\n",
        vip.address, vip.prefix, vip.virtual_router_id, vip.auto_switch_back
    );
    out.push_str("HOST  PRIORITY  ROLE       VRRP STATE\n");
    for h in &vip.hosts {
        let role = if Some(&h.instance) == preferred.as_ref() { "preferred" } else { "backup" };
        let file = plexgate_distributor::vip::Files::new(&config.workspace_directory, &h.instance).state();
        let state = match plexgate_distributor::vip::state::read(&file) {
            Ok(s) => {
                if s.state == "MASTER" {
                    holders.push(h.instance.clone());
                }
                format!("{} since {} ago", s.state, ago(now_ms, s.since))
            }
            Err(_) => format!("(no state in {})", file.display()),
        };
        out.push_str(&format!("{:<4}  {:<8}  {role:<9}  {state}\n", h.instance, h.priority));
    }
    let holder = if holders.is_empty() { "none known".to_owned() } else { holders.join(", ") };
    out.push_str(&format!("holder: {holder}\n\n"));
    out
}

/// The status as text: a header line, then one row per target.
pub fn table(s: &Status, now: SystemTime) -> String {
    let now_ms = now.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
    let mut out = format!("Distributor {}  method {}", s.address, s.method);
    if s.method == "hotStandby" {
        out.push_str(&format!("  autoSwitchBack {}  current {}", s.auto_switch_back, s.current.as_deref().unwrap_or("(none)")));
    }
    out.push_str(&format!("  active {}{}\n", s.active, if s.draining { "  DRAINING" } else { "" }));
    let header = ["TARGET", "ADDRESS", "ROLE", "W", "STATE", "SINCE", "ACTIVE", "TOTAL", "BYTES IN", "BYTES OUT", "LAST CHECK"];
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|h| (*h).to_owned()).collect()];
    rows.extend(s.targets.iter().map(|t| row(t, now_ms)));
    out.push_str(&columns(rows));
    out
}

fn row(t: &TargetStatus, now_ms: u64) -> Vec<String> {
    let role = match t.rank {
        Some(rank) => format!("{} {rank}", t.role),
        None => t.role.clone(),
    };
    let last = match &t.last_check {
        Some(c) => format!("{} {} ({} ago)", if c.ok { "ok" } else { "FAILED" }, c.detail, ago(now_ms, c.at)),
        None => "(none yet)".to_owned(),
    };
    vec![
        t.name.clone(),
        format!("{}:{}", t.host, t.port),
        role,
        t.weight.to_string(),
        format!("{:?}", t.state).to_uppercase(),
        format!("{} ago", ago(now_ms, t.since)),
        t.active.to_string(),
        t.total.to_string(),
        t.bytes_in.to_string(),
        t.bytes_out.to_string(),
        last,
    ]
}

/// `1h02m`, `3m07s`, `12s`, `250ms`.
fn ago(now_ms: u64, then_ms: u64) -> String {
    let ms = now_ms.saturating_sub(then_ms);
    let s = ms / 1000;
    match s {
        0 => format!("{ms}ms"),
        1..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_rows_name_each_instances_origin_and_eureka_status() {
        let list = serde_json::json!([{"serviceId": "hw", "instances": [
            {"instanceId": "h:hw:1", "origin": "static", "definitionFile": "defs/hw.yml", "eurekaStatus": null, "status": "UP", "requests": 3},
            {"instanceId": "h:hw:2", "origin": "eureka", "registrationKey": "HW/h:hw:2", "eurekaStatus": "OUT_OF_SERVICE", "status": "DOWN", "requests": 0},
        ]}]);
        let rows = service_rows("lpar1", &list);
        assert_eq!(rows[0], ["lpar1", "hw", "h:hw:1", "static", "defs/hw.yml", "-", "UP", "3"]);
        assert_eq!(rows[1], ["lpar1", "hw", "h:hw:2", "eureka", "HW/h:hw:2", "OUT_OF_SERVICE", "DOWN", "0"]);
        let text = columns(rows);
        assert!(text.lines().nth(1).unwrap().contains("eureka  HW/h:hw:2    OUT_OF_SERVICE"), "{text}");
    }
}
