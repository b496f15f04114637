//! `plexgate status`: the distributor's targets as a table, the way `NETSTAT VDPT` shows
//! Sysplex Distributor's targets, read from its admin listener.

use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use plexgate_distributor::status::{Status, TargetStatus};

use super::{load, runtime};
use crate::cli::StatusArgs;

/// How long to wait for the admin listener.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Prints the status of the distributor the configuration describes.
pub fn run(args: &StatusArgs) -> anyhow::Result<ExitCode> {
    let config = load(&args.config, args.ha_instance.as_deref())?.config;
    if !args.json {
        print!("{}", virtual_address(&config, SystemTime::now()));
    }
    let Some(admin) = &config.distributor.admin else {
        bail!("the distributor's admin listener is disabled (components.distributor.admin.enabled: false)");
    };
    // A listener on every address is reached on loopback.
    let host = match admin.address.as_str() {
        "0.0.0.0" => "127.0.0.1",
        "::" | "[::]" => "[::1]",
        h if h.contains(':') && !h.starts_with('[') => return run_at(&format!("[{h}]:{}", admin.port), args.json),
        h => h,
    };
    run_at(&format!("{host}:{}", admin.port), args.json)
}

fn run_at(address: &str, json: bool) -> anyhow::Result<ExitCode> {
    let status = runtime()?.block_on(plexgate_distributor::admin::fetch_status(address, TIMEOUT))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&status).context("status as JSON")?);
    } else {
        print!("{}", table(&status, SystemTime::now()));
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
    let widths: Vec<usize> = (0..header.len()).map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
    for r in rows {
        let cells: Vec<String> = r.iter().zip(&widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
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
