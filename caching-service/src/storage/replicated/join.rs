//! Joining a running group without restarting it: a replica that is not a voter asks the
//! replicas its configuration names to admit it (`POST /join`, over the peers' mutual-TLS
//! channel, so only a replica's certificate of this cluster is heard). The leader records the
//! request and its reconcile loop adds the replica as a learner, then as a voter, one change
//! at a time (see [`super::membership::reconcile`]). The joiner asks again every second until
//! it is a voter, so a request lost with a leader is made again to the next one.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::{BasicNode, Raft, ServerState};
use serde::{Deserialize, Serialize};

use super::membership::node_id;
use super::network::Network;
use super::types::TypeConfig;

/// Join requests the leader has heard and not yet acted on: node id -> its node.
pub type Joins = Arc<Mutex<BTreeMap<u64, BasicNode>>>;

/// How often a replica that is not a voter asks to join.
const ASK_EVERY: Duration = Duration::from_secs(1);

/// A replica's request to join.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinRequest {
    /// Its haInstance id (its node id is derived from it).
    pub instance: String,
    /// Its node id.
    pub id: u64,
    /// Where the others reach it: `host:port`.
    pub address: String,
}

/// The answer to a [`JoinRequest`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum JoinAnswer {
    /// Already a voter.
    Member,
    /// Recorded: it becomes a learner, then a voter, once reachable and caught up.
    Pending,
    /// Not the leader; the leader's address when known.
    NotLeader(Option<String>),
}

impl JoinRequest {
    /// Why the request cannot be acted on, if it cannot: the id must be the instance's, the
    /// address a `host:port`.
    pub fn invalid(&self) -> Option<String> {
        if self.instance.is_empty() || self.instance.len() > 256 {
            return Some("the instance id must be 1 to 256 characters".to_owned());
        }
        if self.id != node_id(&self.instance) {
            return Some(format!("node id {} is not the id of haInstance `{}`", self.id, self.instance));
        }
        let port_ok = self.address.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && host.len() <= 255 && port.parse::<u16>().is_ok_and(|p| p > 0) && !host.contains(['/', '?', '#', '@', ' '])
        });
        if !port_ok {
            return Some(format!("address `{}` is not host:port", self.address));
        }
        None
    }
}

/// On the leader: what to answer `req` (already checked by [`JoinRequest::invalid`]).
pub fn answer(raft: &Raft<TypeConfig>, joins: &Joins, req: JoinRequest) -> JoinAnswer {
    let m = raft.metrics().borrow().clone();
    let membership = m.membership_config.membership();
    if m.state != ServerState::Leader {
        let leader = m.current_leader.and_then(|l| membership.get_node(&l)).map(|n| n.addr.clone());
        return JoinAnswer::NotLeader(leader);
    }
    if membership.voter_ids().any(|v| v == req.id) {
        return JoinAnswer::Member;
    }
    let mut joins = joins.lock().unwrap_or_else(|p| p.into_inner());
    if joins.insert(req.id, BasicNode::new(&req.address)).is_none() {
        tracing::info!(instance = %req.instance, id = req.id, address = %req.address, "replicated store: a replica asks to join");
    }
    JoinAnswer::Pending
}

/// On every replica: while this one is not a voter of the group it knows, ask the configured
/// replicas (and the leader they name) to admit it. Before the group exists this asks in
/// vain and harmlessly: the first replica forms it with every configured one.
pub async fn ask(raft: Raft<TypeConfig>, net: Network, me: JoinRequest, replicas: Vec<(String, u64, String)>) {
    loop {
        tokio::time::sleep(ASK_EVERY).await;
        let voter = raft.metrics().borrow().membership_config.membership().voter_ids().any(|v| v == me.id);
        if voter {
            continue;
        }
        let mut targets: Vec<String> = replicas.iter().filter(|r| r.1 != me.id).map(|r| r.2.clone()).collect();
        let mut i = 0;
        while i < targets.len() && i < 8 {
            let target = targets[i].clone();
            match net.post::<JoinRequest, JoinAnswer>(&target, "/join", &me, Duration::from_secs(1)).await {
                Ok(JoinAnswer::Member | JoinAnswer::Pending) => break,
                // The leader may be a replica this configuration does not name (it joined too).
                Ok(JoinAnswer::NotLeader(Some(leader))) if !targets.contains(&leader) => targets.insert(i + 1, leader),
                Ok(JoinAnswer::NotLeader(_)) => {}
                Err(e) => tracing::debug!(peer = %target, error = %e, "replicated store: a join request unanswered"),
            }
            i += 1;
        }
    }
}
