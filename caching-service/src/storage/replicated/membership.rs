//! Who is in the group: every haInstance whose caching service is enabled, no peer list by
//! hand. Node ids are derived from the haInstance id (not its position in the file, which an
//! operator may reorder); the first such haInstance in file order initializes the group, once,
//! when it sees a majority of the configured replicas reachable.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use openraft::{BasicNode, Raft};
use plexgate_config::Config;
use sha2::{Digest, Sha256};

use super::join::Joins;
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
/// How long a voter the leader's configuration does not name must be unreachable before it is
/// removed: a joined replica restarting is not removed, a stopped one is.
pub const REMOVE_AFTER: Duration = Duration::from_secs(10);

async fn reachable(addr: &str) -> bool {
    tokio::time::timeout(Duration::from_millis(500), tokio::net::TcpStream::connect(addr)).await.is_ok_and(|c| c.is_ok())
}

/// On the leader: makes the group's voters the configured replicas and those that asked to
/// join, one change at a time. Such a replica joins once reachable, as a learner first (it
/// catches up from the log or a snapshot), then as a voter. A voter the leader's
/// configuration does not name stays while it is reachable (it may have joined, or the
/// leader's file may be older), and is removed once unreachable for [`REMOVE_AFTER`]: to
/// remove a replica, take it out of the file, restart the others onto it, stop it.
pub async fn reconcile(raft: Raft<TypeConfig>, me: u64, replicas: Vec<(String, u64, String)>, joins: Joins) {
    let configured = members(&replicas);
    let mut unreachable_since: BTreeMap<u64, Instant> = BTreeMap::new();
    loop {
        tokio::time::sleep(RECONCILE_EVERY).await;
        let m = raft.metrics().borrow().clone();
        if m.state != openraft::ServerState::Leader || m.current_leader != Some(me) {
            unreachable_since.clear();
            continue;
        }
        let membership = m.membership_config.membership().clone();
        // A joint configuration is still being committed: one change at a time.
        if membership.get_joint_config().len() > 1 {
            continue;
        }
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        let mut wanted = configured.clone();
        {
            let mut joins = joins.lock().unwrap_or_else(|p| p.into_inner());
            joins.retain(|id, _| !voters.contains(id));
            wanted.extend(joins.iter().map(|(id, n)| (*id, n.clone())));
        }
        let missing = wanted.iter().find(|(id, _)| !voters.contains(id));
        if let Some((id, node)) = missing {
            if !reachable(&node.addr).await {
                continue;
            }
            tracing::info!(id, address = %node.addr, "replicated store: a replica joins, as a learner first");
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
        let extra: Vec<u64> = voters.iter().copied().filter(|v| !wanted.contains_key(v)).collect();
        unreachable_since.retain(|id, _| extra.contains(id));
        for gone in extra {
            let addr = membership.get_node(&gone).map(|n| n.addr.clone()).unwrap_or_default();
            if reachable(&addr).await {
                unreachable_since.remove(&gone);
                continue;
            }
            let since = *unreachable_since.entry(gone).or_insert_with(Instant::now);
            if since.elapsed() < REMOVE_AFTER || voters.len() <= 1 {
                continue;
            }
            let next: BTreeSet<u64> = voters.iter().copied().filter(|v| *v != gone).collect();
            tracing::info!(id = gone, address = %addr, "replicated store: a replica the configuration no longer names, unreachable, is removed");
            match raft.change_membership(next, false).await {
                Ok(_) => {
                    unreachable_since.remove(&gone);
                }
                Err(e) => tracing::warn!(id = gone, error = %e, "replicated store: removing the replica failed; tried again"),
            }
            break;
        }
    }
}
