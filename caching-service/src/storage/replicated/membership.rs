//! Who is in the group: every haInstance whose caching service is enabled, no peer list by
//! hand. Node ids are derived from the haInstance id (not its position in the file, which an
//! operator may reorder); the first such haInstance in file order initializes the group, once,
//! when it sees a majority of the configured replicas reachable.

use std::collections::BTreeMap;
use std::time::Duration;

use openraft::{BasicNode, Raft};
use plexgate_config::Config;
use sha2::{Digest, Sha256};

use super::types::TypeConfig;

/// The stable node id of haInstance `id`.
pub fn node_id(id: &str) -> u64 {
    let digest = Sha256::digest(id.as_bytes());
    u64::from_be_bytes(digest[..8].try_into().unwrap_or([0; 8]))
}

/// The configured replicas: (haInstance id, node id, `host:port`), in file order.
pub fn replicas(config: &Config) -> Vec<(String, u64, String)> {
    config
        .instances
        .iter()
        .filter_map(|i| i.caching_service_port.map(|p| (i.id.clone(), node_id(&i.id), format!("{}:{p}", i.hostname))))
        .collect()
}

/// The members map openraft takes.
pub fn members(replicas: &[(String, u64, String)]) -> BTreeMap<u64, BasicNode> {
    replicas.iter().map(|(_, id, addr)| (*id, BasicNode::new(addr))).collect()
}

/// On the first replica: initialize the group once a majority is reachable; elsewhere, and
/// once initialized (also after any restart), nothing.
pub async fn bootstrap(raft: Raft<TypeConfig>, me: u64, replicas: Vec<(String, u64, String)>) {
    if replicas.first().map(|r| r.1) != Some(me) {
        return;
    }
    let majority = replicas.len() / 2 + 1;
    loop {
        match raft.is_initialized().await {
            Ok(true) | Err(_) => return,
            Ok(false) => {}
        }
        let mut reachable = 1;
        for (_, id, addr) in &replicas {
            if *id != me
                && tokio::time::timeout(Duration::from_millis(500), tokio::net::TcpStream::connect(addr)).await.is_ok_and(|c| c.is_ok())
            {
                reachable += 1;
            }
        }
        if reachable >= majority {
            match raft.initialize(members(&replicas)).await {
                Ok(()) => tracing::info!(replicas = replicas.len(), "replicated store: group initialized"),
                Err(e) => tracing::info!(error = %e, "replicated store: group not initialized here"),
            }
            return;
        }
        tracing::info!(reachable, majority, "replicated store: waiting for a majority of the replicas before forming the group");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
