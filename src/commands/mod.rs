//! What each subcommand does.

mod caching_service;
mod config;
mod discovery;
mod distributor;
mod gateway;
mod keepalived;
mod sample_service;
mod status;
mod up;
mod users;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use plexgate_config::{ConfigSource, Document, Loaded};

use crate::cli::{Cli, Command, ConfigArg, ConfigCommand, DistributorAction, InitCommand, UsersCommand};

/// The embedded default configuration, used when no file is named.
pub const EMBEDDED_CONFIG: &str = include_str!("../../examples/zowe.yaml");
/// How the embedded default is named in messages.
pub const EMBEDDED_NAME: &str = "<embedded examples/zowe.yaml>";

/// Runs one parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Config(ConfigCommand::Validate { config }) => config::validate(&config),
        Command::Config(ConfigCommand::Show { config, ha_instance }) => config::show(&config, ha_instance.as_deref()),
        Command::Init(InitCommand::Certificate { config, force }) => {
            let loaded = load(&config, None)?;
            crate::certs::ensure(&loaded.config, force)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Users(UsersCommand::Add { config, name, admin }) => users::add(&config, &name, admin),
        Command::CachingService(args) => match &args.action {
            Some(crate::cli::CachingServiceAction::Members(m)) => caching_service::members(m),
            None => caching_service::run(&args.run),
        },
        Command::Gateway(args) => gateway::run(&args),
        Command::Discovery(args) => discovery::run(&args),
        Command::Distributor(args) => match &args.action {
            Some(DistributorAction::KeepalivedConfig(a)) => keepalived::config(a),
            Some(DistributorAction::Check(a)) => keepalived::check(a),
            Some(DistributorAction::KeepalivedNotify(a)) => keepalived::notify(a),
            None => distributor::run(&args.run),
        },
        Command::Status(args) => status::run(&args),
        Command::SampleService(args) => sample_service::run(&args),
        Command::Up { config, ha_instance } => up::run(&config, ha_instance.as_deref()),
    }
}

/// Parses the configuration named on the command line (or the embedded one).
pub fn document(arg: &ConfigArg) -> anyhow::Result<Document> {
    let env: Vec<(String, String)> = std::env::vars().collect();
    let source = match &arg.file {
        Some(path) => ConfigSource::File(path),
        None => ConfigSource::Text { name: EMBEDDED_NAME, text: EMBEDDED_CONFIG },
    };
    Ok(source.document(&env)?)
}

/// Loads and checks the view of `instance`, logging warnings.
pub fn load(arg: &ConfigArg, instance: Option<&str>) -> anyhow::Result<Loaded> {
    let doc = document(arg)?;
    let loaded = plexgate_config::load(&doc, instance, &base_dir()?)?;
    for w in &loaded.warnings {
        tracing::warn!("{}: {w}", doc.name());
    }
    Ok(loaded)
}

/// Relative paths in the configuration are relative to the current directory.
pub fn base_dir() -> anyhow::Result<PathBuf> {
    std::env::current_dir().context("cannot read the current directory")
}

/// A multi-threaded runtime for the long-running subcommands.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the async runtime")
}

/// Completes on the first SIGTERM or SIGINT (Ctrl-C).
pub async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        // Without signal handlers the process still stops on the default action.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
}

/// Creates `dir` and its parents.
pub fn create_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create directory {}", dir.display()))
}
