//! `plexgate caching-service`: runs until SIGTERM or Ctrl-C, then drains and exits 0.

use std::process::ExitCode;

use anyhow::bail;
use plexgate_caching_service::CachingService;

use super::{load, runtime, stop_signal};
use crate::cli::InstanceArgs;

/// Runs the caching service of `--ha-instance` (or of the base configuration).
pub fn run(args: &InstanceArgs) -> anyhow::Result<ExitCode> {
    let loaded = load(&args.config, args.ha_instance.as_deref())?;
    let config = loaded.config;
    if !config.caching_service.enabled {
        bail!(
            "the caching service is disabled for {} (components.caching-service.enabled: false)",
            config.ha_instance.as_deref().unwrap_or("this configuration")
        );
    }
    runtime()?.block_on(async {
        let service = CachingService::bind(&config).await?;
        service.serve(stop_signal()).await?;
        tracing::info!("caching service stopped");
        Ok(ExitCode::SUCCESS)
    })
}
