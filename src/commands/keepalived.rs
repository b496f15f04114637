//! The keepalived side of the virtual address: `plexgate distributor keepalived-config`
//! (a host's keepalived.conf), `check` (keepalived's check of the local distributor),
//! `keepalived-notify` (the state file), and what `plexgate up` needs to run keepalived.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use plexgate_config::{Config, VirtualAddressConfig};
use plexgate_distributor::vip::{self, Files, conf, state::VipState};

use super::load;
use crate::cli::{CheckArgs, ConfigArg, KeepalivedConfigArgs, NotifyArgs};

/// Names keepalived's binary instead of looking for it (tests; unusual installs).
pub const KEEPALIVED_ENV: &str = "PLEXGATE_KEEPALIVED";
/// Where keepalived is looked for besides `PATH` (Debian installs it in /usr/sbin, which a
/// non-root `PATH` often lacks).
const SBIN: &[&str] = &["/usr/sbin", "/sbin", "/usr/local/sbin"];

/// `plexgate distributor keepalived-config`.
pub fn config(args: &KeepalivedConfigArgs) -> anyhow::Result<ExitCode> {
    let config = load(&args.config, Some(&args.ha_instance))?.config;
    let text = generate(&config, &args.config, &args.ha_instance)?;
    match &args.output {
        Some(path) => {
            write_private(path, &text)?;
            eprintln!("wrote {}", path.display());
        }
        None => print!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// The keepalived.conf of distributor host `instance`.
pub fn generate(config: &Config, arg: &ConfigArg, instance: &str) -> anyhow::Result<String> {
    let vip = virtual_address(config)?;
    let plexgate = std::env::current_exe().context("cannot find the plexgate binary")?;
    let plexgate = plexgate.canonicalize().unwrap_or(plexgate);
    let source = match &arg.file {
        Some(f) => f.canonicalize().unwrap_or_else(|_| f.clone()).display().to_string(),
        None => super::EMBEDDED_NAME.to_owned(),
    };
    let inputs = conf::Inputs {
        instance: instance.to_owned(),
        source,
        script_security: vip::script_path_is_secure(&plexgate),
        plexgate,
        admin: admin_address(config)?,
        state_file: Files::new(&config.workspace_directory, instance).state(),
    };
    Ok(conf::generate(vip, &inputs)?)
}

/// The checked virtual address, or an error saying how to configure one.
pub fn virtual_address(config: &Config) -> anyhow::Result<&VirtualAddressConfig> {
    config.distributor.virtual_address.as_ref().context(
        "no virtual address is configured: set components.distributor.virtualAddress.{address, interface, virtualRouterId} (see README, Operations)",
    )
}

/// The distributor's admin listener as a client reaches it on this host.
fn admin_address(config: &Config) -> anyhow::Result<String> {
    let Some(admin) = &config.distributor.admin else {
        bail!("the distributor's admin listener is disabled (components.distributor.admin.enabled: false)");
    };
    Ok(match admin.address.as_str() {
        "0.0.0.0" => format!("127.0.0.1:{}", admin.port),
        "::" | "[::]" => format!("[::1]:{}", admin.port),
        h if h.contains(':') && !h.starts_with('[') => format!("[{h}]:{}", admin.port),
        h => format!("{h}:{}", admin.port),
    })
}

/// `plexgate distributor check`: exit 0 when the local distributor is UP, 1 otherwise.
pub fn check(args: &CheckArgs) -> anyhow::Result<ExitCode> {
    let address = match &args.admin {
        Some(a) => a.clone(),
        None => admin_address(&load(&args.config, args.ha_instance.as_deref())?.config)?,
    };
    // Run every second by keepalived: a small runtime, and the answer on one line.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start the async runtime")?;
    match rt.block_on(plexgate_distributor::admin::fetch_health(&address, args.timeout)) {
        Ok(body) => {
            println!("{}", body.trim());
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            println!("{e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// `plexgate distributor keepalived-notify`: records keepalived's state change.
pub fn notify(args: &NotifyArgs) -> anyhow::Result<ExitCode> {
    let [_kind, name, state, rest @ ..] = args.keepalived.as_slice() else {
        bail!("expected the type, name, state (and priority) keepalived appends; got {:?}", args.keepalived);
    };
    let s = VipState {
        ha_instance: args.ha_instance.clone(),
        vrrp_instance: name.clone(),
        state: state.clone(),
        priority: rest.first().and_then(|p| p.parse().ok()),
        since: vip::state::now_ms(),
    };
    vip::state::write(&args.state_file, &s).with_context(|| format!("cannot write {}", args.state_file.display()))?;
    Ok(ExitCode::SUCCESS)
}

/// keepalived's binary: `$PLEXGATE_KEEPALIVED`, else `keepalived` on `PATH` or in the sbin
/// directories; an error naming the Debian package when there is none.
pub fn find_keepalived() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os(KEEPALIVED_ENV) {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Ok(p);
        }
        bail!(
            "{KEEPALIVED_ENV}={} is no file; keepalived is needed for components.distributor.virtualAddress: install the Debian package `keepalived` (apt-get install keepalived)",
            p.display()
        );
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path).chain(SBIN.iter().map(PathBuf::from));
    for dir in dirs {
        let candidate = dir.join("keepalived");
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    bail!(
        "keepalived is not installed, and components.distributor.virtualAddress needs it to move the address between hosts: install the Debian package `keepalived` (apt-get install keepalived)"
    )
}

/// Writes this host's keepalived.conf for `plexgate up`; returns its files.
pub fn prepare(config: &Config, arg: &ConfigArg, instance: &str) -> anyhow::Result<Files> {
    let files = Files::new(&config.workspace_directory, instance);
    super::create_dir(&files.dir)?;
    write_private(&files.conf(), &generate(config, arg, instance)?)?;
    Ok(files)
}

/// keepalived's command line: in the foreground, logging to standard error (where `plexgate
/// up` prefixes its lines), VRRP only, with its pid files beside the configuration.
pub fn keepalived_args(files: &Files) -> Vec<String> {
    let p = |p: PathBuf| p.display().to_string();
    vec![
        "--dont-fork".to_owned(),
        "--log-console".to_owned(),
        "--no-syslog".to_owned(),
        "--vrrp".to_owned(),
        "--use-file".to_owned(),
        p(files.conf()),
        "--pid".to_owned(),
        p(files.pid()),
        "--vrrp_pid".to_owned(),
        p(files.vrrp_pid()),
    ]
}

/// After keepalived exited: its state file says so, so `status` does not show a stale MASTER.
pub fn record_stopped(files: &Files, instance: &str, vip: &VirtualAddressConfig) {
    let s = VipState {
        ha_instance: instance.to_owned(),
        vrrp_instance: conf::vrrp_instance_name(vip),
        state: "STOPPED".to_owned(),
        priority: None,
        since: vip::state::now_ms(),
    };
    if let Err(e) = vip::state::write(&files.state(), &s) {
        tracing::warn!(error = %e, "cannot record that keepalived stopped");
    }
}

/// Writes `text` to `path` readable by its owner only (it may hold the VRRP password).
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    // An existing file keeps its mode on open: narrow it too.
    f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .with_context(|| format!("cannot restrict {}", path.display()))?;
    f.write_all(text.as_bytes()).with_context(|| format!("cannot write {}", path.display()))
}
