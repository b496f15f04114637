//! `plexgate distributor`: runs until SIGTERM or Ctrl-C, drains, and exits 0.

use std::process::ExitCode;

use anyhow::bail;
use plexgate_distributor::Distributor;

use super::{load, runtime, stop_signal};
use crate::cli::InstanceArgs;

/// Runs the distributor of the base configuration, or of one distributor host.
pub fn run(args: &InstanceArgs) -> anyhow::Result<ExitCode> {
    let config = load(&args.config, args.ha_instance.as_deref())?.config;
    if !config.distributor.enabled {
        bail!("the distributor is disabled (components.distributor.enabled: false)");
    }
    crate::limits::raise_open_files("distributor");
    runtime()?.block_on(async {
        let distributor = Distributor::bind(&config).await?;
        distributor.serve(stop_signal()).await?;
        tracing::info!("distributor stopped");
        Ok(ExitCode::SUCCESS)
    })
}
