//! `plexgate caching-service`: runs until SIGTERM or Ctrl-C, then drains and exits 0; and
//! `plexgate caching-service members`, the replicated group as its replicas report it.

use std::process::ExitCode;

use anyhow::bail;
use plexgate_caching_service::CachingService;

use super::{load, runtime, stop_signal};
use crate::cli::{ConfigArgs, InstanceArgs};

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
    crate::limits::raise_open_files("caching-service");
    runtime()?.block_on(async {
        let service = CachingService::bind(&config).await?;
        service.serve(stop_signal()).await?;
        tracing::info!("caching service stopped");
        Ok(ExitCode::SUCCESS)
    })
}

/// Asks every replica of `-c FILE` for its view of the group and prints one line per replica.
pub fn members(args: &ConfigArgs) -> anyhow::Result<ExitCode> {
    let config = load(&args.config, None)?.config;
    if config.caching_service.storage.mode != plexgate_config::StorageMode::Replicated {
        bail!("storage mode is not `replicated` (components.caching-service.storage.mode): there is no group to show");
    }
    let mut tls = plexgate_config::tls::client_config(&config.gateway.certificates, config.tls, config.verify_certificates)?;
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let http = reqwest::Client::builder().tls_backend_preconfigured(tls).timeout(std::time::Duration::from_secs(3)).build()?;
    let views: Vec<(String, Option<serde_json::Value>)> = runtime()?.block_on(async {
        let mut out = Vec::new();
        for url in &config.caching_service_urls {
            let v = match http.get(format!("{url}/cachingservice/raft/v1/members")).send().await {
                Ok(r) if r.status().is_success() => r.json().await.ok(),
                _ => None,
            };
            out.push((url.clone(), v));
        }
        out
    });
    let lag: serde_json::Value =
        views.iter().filter_map(|(_, v)| v.as_ref()).find(|v| v["role"] == "Leader").map(|v| v["replication"].clone()).unwrap_or_default();
    println!(
        "{:<10} {:<22} {:<20} {:<10} {:>5} {:>9} {:>9} {:>8} {:>5}",
        "INSTANCE", "ADDRESS", "ID", "ROLE", "TERM", "LAST LOG", "APPLIED", "CONTACT", "LAG"
    );
    let names: Vec<(String, String)> = views
        .iter()
        .filter_map(|(_, v)| v.as_ref())
        .flat_map(|v| v["replicas"].as_array().cloned().unwrap_or_default())
        .filter_map(|r| Some((r["id"].as_str()?.to_owned(), r["instance"].as_str()?.to_owned())))
        .collect();
    let mut down = 0;
    for (url, view) in &views {
        let address = url.trim_start_matches("https://");
        match view {
            Some(v) => {
                let id = v["id"].as_str().unwrap_or("?");
                let instance = names.iter().find(|(i, _)| i == id).map_or("?", |(_, n)| n.as_str());
                let show = |x: &serde_json::Value| if x.is_null() { "-".to_owned() } else { x.to_string() };
                println!(
                    "{:<10} {:<22} {:<20} {:<10} {:>5} {:>9} {:>9} {:>8} {:>5}",
                    instance,
                    address,
                    id,
                    v["role"].as_str().unwrap_or("?"),
                    show(&v["term"]),
                    show(&v["lastLogIndex"]),
                    show(&v["committedOrApplied"]),
                    if v["inContact"] == true { "yes" } else { "no" },
                    show(&lag[id]["lag"]),
                );
            }
            None => {
                down += 1;
                println!("{:<10} {:<22} {:<20} {:<10}", "?", address, "-", "DOWN");
            }
        }
    }
    let majority = views.len() / 2 + 1;
    println!("{} of {} replicas answer; a majority is {majority}", views.len() - down, views.len());
    Ok(ExitCode::SUCCESS)
}
