//! `plexgate config validate` and `plexgate config show`.

use std::process::ExitCode;

use plexgate_config::{Config, Method, Role, StorageMode};

use super::{base_dir, document, load};
use crate::cli::ConfigArg;

/// Validates the base view and every haInstance; prints a one-line summary.
pub fn validate(arg: &ConfigArg) -> anyhow::Result<ExitCode> {
    let doc = document(arg)?;
    let all = plexgate_config::load_all(&doc, &base_dir()?)?;
    for w in all.iter().flat_map(|l| &l.warnings) {
        eprintln!("warning: {w}");
    }
    // The static service definitions every gateway will read.
    let mut dirs: Vec<std::path::PathBuf> = all.iter().flat_map(|l| l.config.gateway.static_definitions.clone()).collect();
    dirs.sort();
    dirs.dedup();
    let defs = plexgate_gateway::routing::definitions::load(&dirs);
    for w in &defs.warnings {
        eprintln!("warning: {w}");
    }
    if !defs.errors.is_empty() {
        eprintln!("error: static service definitions: {} problem(s):", defs.errors.len());
        for e in &defs.errors {
            eprintln!("  - {e}");
        }
        return Ok(ExitCode::from(crate::EXIT_INVALID_CONFIG));
    }
    if let Some(base) = all.first() {
        println!("{}: valid; {}; {} API service(s)", doc.name(), summary(&base.config), defs.services.len());
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints the checked view as YAML.
pub fn show(arg: &ConfigArg, instance: Option<&str>) -> anyhow::Result<ExitCode> {
    let loaded = load(arg, instance)?;
    print!("{}", serde_saphyr::to_string(&loaded.config)?);
    Ok(ExitCode::SUCCESS)
}

fn summary(c: &Config) -> String {
    let instances = if c.instances.is_empty() {
        "no haInstances".to_owned()
    } else {
        format!("{} haInstance(s) ({})", c.instances.len(), c.instances.iter().map(|i| i.id.as_str()).collect::<Vec<_>>().join(", "))
    };
    let distributor = if c.distributor.enabled {
        let method = match c.distributor.method {
            Method::HotStandby => "hotStandby",
            Method::RoundRobin => "roundRobin",
            Method::Weighted => "weighted",
            Method::LeastConnections => "leastConnections",
        };
        let targets: Vec<String> = c
            .distributor
            .targets
            .iter()
            .map(|t| match (c.distributor.method, t.role) {
                (Method::HotStandby, Role::Preferred) => format!("{} (preferred)", t.name),
                (Method::HotStandby, Role::Backup { rank }) => format!("{} (backup {rank})", t.name),
                _ => t.name.clone(),
            })
            .collect();
        format!("distributor {method} on {}:{} -> {}", c.distributor.address, c.distributor.port, targets.join(", "))
    } else {
        "no distributor".to_owned()
    };
    let storage = match c.caching_service.storage.mode {
        StorageMode::InMemory => "inMemory",
        StorageMode::Durable => "durable",
        StorageMode::Redis => "redis",
        StorageMode::Infinispan => "infinispan",
        StorageMode::Replicated => "replicated",
    };
    format!("{instances}; {distributor}; caching service storage {storage}")
}
