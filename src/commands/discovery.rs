//! `plexgate discovery`: the Eureka-compatible endpoint of an instance; runs until SIGTERM or
//! Ctrl-C, then drains and exits 0.

use std::process::ExitCode;

use anyhow::bail;
use plexgate_discovery::Discovery;

use super::{load, runtime, stop_signal};
use crate::cli::InstanceArgs;

/// Runs the discovery endpoint of `--ha-instance` (or of the base configuration).
pub fn run(args: &InstanceArgs) -> anyhow::Result<ExitCode> {
    let config = load(&args.config, args.ha_instance.as_deref())?.config;
    if !config.discovery.enabled {
        bail!(
            "discovery is disabled for {} (components.discovery.enabled: false)",
            config.ha_instance.as_deref().unwrap_or("this configuration")
        );
    }
    if config.caching_service_urls.is_empty() {
        bail!("discovery keeps registrations in the caching service, and no haInstance runs one (components.caching-service.enabled)");
    }
    crate::limits::raise_open_files("discovery");
    runtime()?.block_on(async {
        let server = Discovery::bind(&config).await?;
        server.serve(stop_signal()).await?;
        tracing::info!("discovery stopped");
        Ok(ExitCode::SUCCESS)
    })
}
