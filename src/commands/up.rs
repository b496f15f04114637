//! `plexgate up`: the whole HA system from one zowe.yaml, as supervised child processes of
//! this binary (as the Zowe launcher does): the caching service(s), one gateway per
//! haInstance, the sample service instances, and the distributor.
//!
//! Children are restarted with back-off when they crash; their log lines are printed with
//! their name in front; Ctrl-C or SIGTERM stops them in order (distributor first, so no new
//! connection reaches a gateway that is going away) and waits for every one of them.
//!
//! With `--ha-instance ID` only that haInstance's components run (one host of several); on
//! a distributor host sharing a virtual address, keepalived runs beside the distributor,
//! started after it and stopped before it (so it hands the address over first).

use std::path::Path;
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use plexgate_config::Config;
use plexgate_config::users::{User, UsersFile};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;

use super::{load, runtime, stop_signal};
use crate::cli::ConfigArg;

/// The demo user `plexgate up` creates when the users file is empty.
pub const DEMO_USER: &str = "demo";
/// First restart delay of a crashed child; doubled per crash in a row, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// Longest restart delay.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A child that ran this long is considered stable again (its back-off resets).
const STABLE: Duration = Duration::from_secs(60);
/// How long a child may take to stop after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(35);

/// One child to run.
struct Spec {
    name: String,
    /// The program (default: this plexgate binary).
    program: Option<std::path::PathBuf>,
    args: Vec<String>,
    /// For keepalived: what to record when it exits.
    keepalived: Option<Keepalived>,
}

/// keepalived beside a distributor host's distributor.
#[derive(Clone)]
struct Keepalived {
    files: plexgate_distributor::vip::Files,
    instance: String,
    vip: plexgate_config::VirtualAddressConfig,
}

/// Runs everything (or one haInstance's components) until Ctrl-C or SIGTERM.
pub fn run(config_arg: &ConfigArg, instance: Option<&str>) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let config = load(config_arg, instance)?.config;
    if let (None, Some(vip)) = (instance, &config.distributor.virtual_address) {
        let hosts: Vec<&str> = vip.hosts.iter().map(|h| h.instance.as_str()).collect();
        anyhow::bail!(
            "components.distributor.virtualAddress is shared by the distributor hosts {}: run `plexgate up --ha-instance ID` on each host",
            hosts.join(", ")
        );
    }
    crate::certs::ensure(&config, false)?;
    ensure_demo_user(&config)?;
    write_sample_definition(&config)?;
    let mut specs = match instance {
        None => plan(&config, config_arg),
        Some(id) => plan_instance(&config, config_arg, id),
    };
    if let Some(id) = instance
        && let Some(vip) = &config.distributor.virtual_address
        && vip.host(id).is_some()
    {
        // Before anything starts: a missing keepalived is the operator's to fix.
        let program = super::keepalived::find_keepalived()?;
        let files = super::keepalived::prepare(&config, config_arg, id)?;
        specs.push(Spec {
            name: "keepalived".to_owned(),
            program: Some(program),
            args: super::keepalived::keepalived_args(&files),
            keepalived: Some(Keepalived { files, instance: id.to_owned(), vip: vip.clone() }),
        });
    }
    let exe = std::env::current_exe().context("cannot find the plexgate binary")?;
    runtime()?.block_on(async move {
        let mut supervisors = Vec::new();
        for spec in specs {
            let (stop_tx, stop_rx) = watch::channel(false);
            supervisors.push((spec.name.clone(), stop_tx, tokio::spawn(supervise(exe.clone(), spec, stop_rx))));
        }
        print_banner(&config, started);
        stop_signal().await;
        // Stop in reverse start order, each before the next: distributor, gateways, sample
        // service, caching service, so nothing is sent to a process that is already gone.
        for (name, stop_tx, task) in supervisors.into_iter().rev() {
            let _ = stop_tx.send(true);
            if task.await.is_err() {
                eprintln!("[up] supervisor of {name} failed");
            }
        }
        println!("[up] all processes stopped");
        Ok(ExitCode::SUCCESS)
    })
}

/// What to start, in start order.
fn plan(config: &Config, arg: &ConfigArg) -> Vec<Spec> {
    let mut base: Vec<String> = Vec::new();
    if let Some(f) = &arg.file {
        base.extend(["-c".to_owned(), f.display().to_string()]);
    }
    let with = |sub: &str, extra: &[String]| {
        let mut a = vec![sub.to_owned()];
        a.extend(base.iter().cloned());
        a.extend(extra.iter().cloned());
        a
    };
    let mut specs = Vec::new();
    for i in config.instances.iter().filter(|i| i.caching_service_port.is_some()) {
        specs.push(Spec::plexgate(
            format!("caching-service-{}", i.id),
            with("caching-service", &["--ha-instance".to_owned(), i.id.clone()]),
        ));
    }
    if config.instances.is_empty() && config.caching_service.enabled {
        specs.push(Spec::plexgate("caching-service".to_owned(), with("caching-service", &[])));
    }
    for (n, port) in config.sample_service_ports.iter().enumerate() {
        specs.push(Spec::plexgate(
            format!("sample-{}", n + 1),
            with("sample-service", &["--port".to_owned(), port.to_string(), "--id".to_owned(), format!("sample-{}", n + 1)]),
        ));
    }
    for i in config.instances.iter().filter(|i| i.gateway_port.is_some()) {
        specs.push(Spec::plexgate(format!("gateway-{}", i.id), with("gateway", &["--ha-instance".to_owned(), i.id.clone()])));
    }
    if config.instances.is_empty() && config.gateway.enabled {
        specs.push(Spec::plexgate("gateway".to_owned(), with("gateway", &[])));
    }
    for i in config.instances.iter().filter(|i| i.discovery_port.is_some()) {
        specs.push(Spec::plexgate(format!("discovery-{}", i.id), with("discovery", &["--ha-instance".to_owned(), i.id.clone()])));
    }
    if config.instances.is_empty() && config.discovery.enabled {
        specs.push(Spec::plexgate("discovery".to_owned(), with("discovery", &[])));
    }
    if config.distributor.enabled {
        specs.push(Spec::plexgate("distributor".to_owned(), with("distributor", &[])));
    }
    specs
}

impl Spec {
    /// A subcommand of this binary.
    fn plexgate(name: String, args: Vec<String>) -> Spec {
        Spec { name, program: None, args, keepalived: None }
    }
}

/// What one haInstance runs, in start order: its caching service, the sample service, its
/// gateway, and its distributor when it is a distributor host.
fn plan_instance(config: &Config, arg: &ConfigArg, id: &str) -> Vec<Spec> {
    let args = |sub: &str| {
        let mut a = vec![sub.to_owned()];
        if let Some(f) = &arg.file {
            a.extend(["-c".to_owned(), f.display().to_string()]);
        }
        a.extend(["--ha-instance".to_owned(), id.to_owned()]);
        a
    };
    let Some(me) = config.instances.iter().find(|i| i.id == id) else { return Vec::new() };
    let mut specs = Vec::new();
    if me.caching_service_port.is_some() {
        specs.push(Spec::plexgate(format!("caching-service-{id}"), args("caching-service")));
    }
    for (n, port) in config.sample_service_ports.iter().enumerate() {
        let mut a = vec!["sample-service".to_owned()];
        if let Some(f) = &arg.file {
            a.extend(["-c".to_owned(), f.display().to_string()]);
        }
        a.extend(["--port".to_owned(), port.to_string(), "--id".to_owned(), format!("sample-{}", n + 1)]);
        specs.push(Spec::plexgate(format!("sample-{}", n + 1), a));
    }
    if me.gateway_port.is_some() {
        specs.push(Spec::plexgate(format!("gateway-{id}"), args("gateway")));
    }
    if me.discovery_port.is_some() {
        specs.push(Spec::plexgate(format!("discovery-{id}"), args("discovery")));
    }
    if me.distributor {
        specs.push(Spec::plexgate(format!("distributor-{id}"), args("distributor")));
    }
    specs
}

/// Runs one child until `stop`, restarting it with back-off when it exits by itself.
async fn supervise(exe: std::path::PathBuf, spec: Spec, mut stop: watch::Receiver<bool>) {
    let mut backoff = FIRST_BACKOFF;
    let program = spec.program.clone().unwrap_or(exe);
    let stopped = |spec: &Spec| {
        if let Some(k) = &spec.keepalived {
            super::keepalived::record_stopped(&k.files, &k.instance, &k.vip);
        }
    };
    loop {
        let mut child = match Command::new(&program)
            .args(&spec.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
        {
            Ok(c) => c,
            Err(e) => {
                eprintln!("[{}] cannot start: {e}", spec.name);
                return;
            }
        };
        pipe_lines(&spec.name, &mut child);
        let began = Instant::now();
        tokio::select! {
            status = child.wait() => {
                stopped(&spec);
                if *stop.borrow() {
                    return;
                }
                if began.elapsed() > STABLE {
                    backoff = FIRST_BACKOFF;
                }
                let status = status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
                eprintln!("[{}] exited ({status}); restarting in {backoff:?}", spec.name);
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.changed() => return,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            _ = stop.changed() => {
                terminate(&spec.name, &mut child).await;
                stopped(&spec);
                return;
            }
        }
    }
}

/// SIGTERM, wait, then SIGKILL if it takes too long.
async fn terminate(name: &str, child: &mut Child) {
    if let Some(pid) = child.id() {
        let _ = std::process::Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
    }
    match tokio::time::timeout(STOP_TIMEOUT, child.wait()).await {
        Ok(_) => println!("[up] {name} stopped"),
        Err(_) => {
            eprintln!("[up] {name} did not stop in {STOP_TIMEOUT:?}; killing it");
            let _ = child.kill().await;
        }
    }
}

/// Prints the child's output lines with its name in front.
fn pipe_lines(name: &str, child: &mut Child) {
    if let Some(out) = child.stdout.take() {
        let name = name.to_owned();
        tokio::spawn(async move {
            let mut lines = BufReader::new(out).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                println!("[{name}] {l}");
            }
        });
    }
    if let Some(err) = child.stderr.take() {
        let name = name.to_owned();
        tokio::spawn(async move {
            let mut lines = BufReader::new(err).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                eprintln!("[{name}] {l}");
            }
        });
    }
}

/// With an empty users file (and the users-file provider), creates `demo` with a random
/// password, printed once; only its hash is stored.
fn ensure_demo_user(config: &Config) -> anyhow::Result<()> {
    if config.gateway.auth_provider != plexgate_config::AuthProvider::UsersFile {
        return Ok(());
    }
    let path = &config.gateway.users_file;
    let mut file = UsersFile::read(path)?;
    if !file.users.is_empty() {
        return Ok(());
    }
    let password = uuid_like();
    file.upsert(User { name: DEMO_USER.to_owned(), hash: super::users::hash_password(&password)?, admin: true });
    file.write(path)?;
    println!("[up] created user `{DEMO_USER}` (admin) with password: {password}");
    println!("[up] (shown once; only its hash is stored in {})", path.display());
    Ok(())
}

/// A random password from the OS generator (via Argon2's salt source).
fn uuid_like() -> String {
    use argon2::password_hash::SaltString;
    use argon2::password_hash::rand_core::OsRng;
    SaltString::generate(&mut OsRng).as_str().chars().filter(|c| c.is_ascii_alphanumeric()).take(16).collect()
}

/// The static definition routing `/sample/api/v1/**` to the sample service instances.
fn write_sample_definition(config: &Config) -> anyhow::Result<()> {
    if config.sample_service_ports.is_empty() {
        return Ok(());
    }
    let Some(dir) = config.gateway.static_definitions.first() else { return Ok(()) };
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let urls: Vec<String> = config.sample_service_ports.iter().map(|p| format!("https://127.0.0.1:{p}/")).collect();
    let text = format!(
        "# Written by `plexgate up` for the built-in sample service (components.sample-service).\nservices:\n  - serviceId: sample\n    title: plexgate sample service\n    description: Answers who it is and who you are.\n    instanceBaseUrls: [{}]\n    healthCheckRelativeUrl: /application/health\n    routes:\n      - gatewayUrl: api/v1\n        serviceRelativeUrl: /sample/api/v1\n    authentication:\n      scheme: zoweJwt\n",
        urls.join(", ")
    );
    let path: &Path = &dir.join("plexgate-sample.yml");
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// `https://host:port/eureka/` of every discovery endpoint `up` runs.
fn discovery_urls(config: &Config) -> Vec<String> {
    let mut urls: Vec<String> =
        config.instances.iter().filter_map(|i| i.discovery_port.map(|p| format!("https://{}:{p}/eureka/", i.hostname))).collect();
    if config.instances.is_empty() && config.discovery.enabled {
        urls.push(format!("https://{}:{}/eureka/", config.discovery.host, config.discovery.port));
    }
    urls
}

fn print_banner(config: &Config, started: Instant) {
    let (host, port) = if config.distributor.enabled {
        (config.distributor.address.clone(), config.distributor.port)
    } else {
        (config.gateway.host.clone(), config.gateway.port)
    };
    let url = format!("https://{host}:{port}");
    let ca = config.certificates.certificate_authorities.first().map(|p| p.display().to_string()).unwrap_or_default();
    println!();
    println!("[up] plexgate is starting ({} ms); northbound URL: {url}", started.elapsed().as_millis());
    println!("[up] workspace: {}", config.workspace_directory.display());
    println!("[up] log in with curl:");
    println!("       curl --cacert {ca} -i -X POST -u {DEMO_USER}:PASSWORD {url}/gateway/api/v1/auth/login");
    println!("[up] call the sample service with the token from the cookie:");
    println!("       curl --cacert {ca} -H 'Authorization: Bearer TOKEN' {url}/sample/api/v1/hello");
    println!("[up] or with Zowe CLI:");
    println!(
        "       zowe auth login apiml --host {host} --port {port} --user {DEMO_USER} --password PASSWORD --reject-unauthorized false --show-token"
    );
    for url in discovery_urls(config) {
        println!("[up] onboard services with Zowe's enablers at discovery (Eureka): {url}");
    }
    println!("[up] Ctrl-C stops everything.");
}
