//! `plexgate gateway`: runs until SIGTERM or Ctrl-C, drains, and exits 0.

use std::process::ExitCode;

use anyhow::bail;
use plexgate_gateway::GatewayServer;

use super::{load, runtime, stop_signal};
use crate::cli::InstanceArgs;

/// Runs the gateway of `--ha-instance` (or of the base configuration).
pub fn run(args: &InstanceArgs) -> anyhow::Result<ExitCode> {
    let config = load(&args.config, args.ha_instance.as_deref())?.config;
    if !config.gateway.enabled {
        bail!(
            "the gateway is disabled for {} (components.gateway.enabled: false)",
            config.ha_instance.as_deref().unwrap_or("this configuration")
        );
    }
    crate::limits::raise_open_files("gateway");
    plexgate_gateway::access_log::set_sink(crate::logging::access);
    runtime()?.block_on(async {
        let server = GatewayServer::bind(&config).await?;
        server.serve(stop_signal()).await?;
        tracing::info!("gateway stopped");
        Ok(ExitCode::SUCCESS)
    })
}
