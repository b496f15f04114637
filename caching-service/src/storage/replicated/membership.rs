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

/// How often the leader compares the group with its configuration.
const RECONCILE_EVERY: Duration = Duration::from_secs(1);

/// On the leader: makes the group's voters the configured replicas, one change at a time. A
/// configured replica the group lacks joins once reachable, as a learner first (it catches up
/// from the log or a snapshot), then as a voter; a voter the configuration no longer names is
/// removed. A leader acts on its own configuration: during a rolling restart onto a new
/// zowe.yaml the group follows whichever configuration its leader has.
pub async fn reconcile(raft: Raft<TypeConfig>, me: u64, replicas: Vec<(String, u64, String)>) {
    let configured = members(&replicas);
    loop {
        tokio::time::sleep(RECONCILE_EVERY).await;
        let m = raft.metrics().borrow().clone();
        if m.state != openraft::ServerState::Leader || m.current_leader != Some(me) {
            continue;
        }
        let membership = m.membership_config.membership().clone();
        // A joint configuration is still being committed: one change at a time.
        if membership.get_joint_config().len() > 1 {
            continue;
        }
        let voters: std::collections::BTreeSet<u64> = membership.voter_ids().collect();
        let missing = configured.iter().find(|(id, _)| !voters.contains(id));
        if let Some((id, node)) = missing {
            let reachable =
                tokio::time::timeout(Duration::from_millis(500), tokio::net::TcpStream::connect(&node.addr)).await.is_ok_and(|c| c.is_ok());
            if !reachable {
                continue;
            }
            tracing::info!(id, address = %node.addr, "replicated store: a configured replica joins, as a learner first");
            if let Err(e) = raft.add_learner(*id, node.clone(), true).await {
                tracing::warn!(id, error = %e, "replicated store: adding a learner failed; tried again");
                continue;
            }
            let mut next = voters.clone();
            next.insert(*id);
            match raft.change_membership(next, false).await {
                Ok(_) => tracing::info!(id, "replicated store: the new replica is a voter"),
                Err(e) => tracing::warn!(id, error = %e, "replicated store: promoting the learner failed; tried again"),
            }
            continue;
        }
        let extra: Vec<u64> = voters.iter().copied().filter(|v| !configured.contains_key(v)).collect();
        if let Some(gone) = extra.first().filter(|_| voters.len() > 1) {
            let next: std::collections::BTreeSet<u64> = voters.iter().copied().filter(|v| v != gone).collect();
            tracing::info!(id = gone, "replicated store: a replica the configuration no longer names is removed");
            if let Err(e) = raft.change_membership(next, false).await {
                tracing::warn!(id = gone, error = %e, "replicated store: removing the replica failed; tried again");
            }
        }
    }
}
