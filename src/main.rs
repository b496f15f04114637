//! `plexgate`: the one binary of the plexgate HA API gateway.
//!
//! Every process of the topology is a subcommand of this binary, so one install and one
//! zowe.yaml run the whole system. anyhow lives here only; the crates return typed errors.

// The caching service's future nests openraft's deeply; clippy's layout query needs more room.
#![recursion_limit = "256"]

mod certs;
mod cli;
mod commands;
mod limits;
mod logging;

use std::process::ExitCode;

use clap::Parser;

/// jemalloc: per-thread caches instead of glibc's arena locks, which the gateway's worker
/// threads contended on under load (perf: lock waits inside malloc/free). Measured with wrk
/// through a gateway, 3 alternating rounds: 7-18% more requests/s than glibc; idle RSS 20 MB
/// (glibc 18 MB). mimalloc was as fast but kept 20 MB more resident at idle.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Exit code for a configuration that does not validate (as `config validate` documents).
pub const EXIT_INVALID_CONFIG: u8 = 2;

fn main() -> ExitCode {
    // One crypto provider for every crate; mixing ring and aws-lc panics at first handshake.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cli = cli::Cli::parse();
    init_logging();
    let result = commands::run(cli);
    logging::flush();
    match result {
        Ok(code) => code,
        Err(e) => {
            // Configuration problems are the operator's to fix: print them plainly, exit 2.
            if let Some(config_error) = e.downcast_ref::<plexgate_config::ConfigError>() {
                eprintln!("error: {config_error}");
                return ExitCode::from(EXIT_INVALID_CONFIG);
            }
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to standard error; `PLEXGATE_LOG` (or `RUST_LOG`) sets the filter, default `info`.
fn init_logging() {
    let mut filter = std::env::var("PLEXGATE_LOG").or_else(|_| std::env::var("RUST_LOG")).unwrap_or_else(|_| "info".to_owned());
    // rustls warns once per handshake of a client that sends an IP address as SNI (wrk, some
    // libraries): 11,830 lines in one 10,000-client benchmark. Quiet unless asked for by name.
    if !filter.contains("rustls") {
        filter.push_str(",rustls::msgs::handshake=error");
    }
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(logging::output())
        .init();
}
