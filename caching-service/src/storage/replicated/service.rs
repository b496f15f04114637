//! The peer endpoints: openraft's RPCs, writes and read indexes forwarded by followers, and
//! the group's status. Only the replicas' own certificates may call them, and only with this
//! group's cluster id (a peer of another cluster is refused and both ids are logged), so two
//! groups can never merge by accident.

// openraft's trait methods return its `StorageError`/`RPCError`, which are large; boxing
// them is not ours to choose.
#![allow(clippy::result_large_err)]

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use openraft::error::{CheckIsLeaderError, ClientWriteError, RaftError};
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::Replica;
use super::join::JoinRequest;
use super::network::{CLUSTER_HEADER, RAFT_BASE};
use super::types::{Outcome, Proposal, TypeConfig};
use crate::identity::PeerIdentity;

/// A forwarded write's answer.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum WriteAnswer {
    /// Committed and applied on the leader, at this log index.
    Applied(Outcome, u64),
    /// This replica is not the leader (any more).
    NotLeader,
}

/// A read index request's answer.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ReadAnswer {
    /// Reads are linearizable on a replica that applied this index.
    Index(u64),
    /// This replica is not the leader.
    NotLeader,
}

type St = State<Arc<Replica>>;

/// Largest peer request body; only the replicas' own certificates reach it.
const PEER_BODY_LIMIT: usize = 64 * 1024 * 1024;

/// The routes, under [`RAFT_BASE`].
pub fn router(replica: Arc<Replica>) -> Router {
    // Checked before the body is read: a stranger learns nothing from a parse error.
    let peers_only = Router::new()
        .route("/append", post(append))
        .route("/vote", post(vote))
        .route("/snapshot", post(snapshot))
        .route("/write", post(write))
        .route("/read-index", post(read_index))
        .route("/join", post(join))
        .route_layer(axum::middleware::from_fn_with_state(replica.clone(), only_replicas))
        // Log batches and snapshot chunks (bytes as JSON numbers) outgrow axum's 2 MB default.
        .layer(axum::extract::DefaultBodyLimit::max(PEER_BODY_LIMIT));
    let api = peers_only.route("/members", get(members));
    Router::new().nest(RAFT_BASE, api).with_state(replica)
}

async fn only_replicas(State(r): St, req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let peer = req.extensions().get::<PeerIdentity>().cloned().unwrap_or(PeerIdentity::Anonymous);
    if let Err(resp) = guard(&r, &peer, req.headers()) {
        return resp;
    }
    next.run(req).await
}

/// `Err` (403) unless the caller is a replica of this cluster.
fn guard(r: &Replica, peer: &PeerIdentity, headers: &HeaderMap) -> Result<(), Response> {
    let dn_ok = matches!(peer, PeerIdentity::Trusted { dn, .. } if r.peer_dns.iter().any(|p| p == dn));
    if !dn_ok {
        tracing::warn!(?peer, "replicated store: a peer request without a replica's certificate refused");
        return Err(
            (StatusCode::FORBIDDEN, "only the caching-service replicas' certificates may call the replica endpoints").into_response()
        );
    }
    let theirs = headers.get(CLUSTER_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
    if theirs != r.cluster {
        tracing::warn!(ours = %r.cluster, theirs, "replicated store: a peer of another cluster refused");
        return Err((StatusCode::FORBIDDEN, format!("this replica belongs to cluster `{}`, not `{theirs}`", r.cluster)).into_response());
    }
    Ok(())
}

async fn append(State(r): St, Json(req): Json<AppendEntriesRequest<TypeConfig>>) -> Response {
    r.heard_from_leader();
    Json(r.raft.append_entries(req).await).into_response()
}

async fn vote(State(r): St, Json(req): Json<VoteRequest<u64>>) -> Response {
    Json(r.raft.vote(req).await).into_response()
}

async fn snapshot(State(r): St, Json(req): Json<InstallSnapshotRequest<TypeConfig>>) -> Response {
    r.heard_from_leader();
    Json(r.raft.install_snapshot(req).await).into_response()
}

async fn write(State(r): St, Json(w): Json<Proposal>) -> Response {
    let Ok(written) = tokio::time::timeout(super::WRITE_DEADLINE, r.raft.client_write(w)).await else {
        return (StatusCode::SERVICE_UNAVAILABLE, "not committed by a majority in time").into_response();
    };
    match written {
        Ok(resp) => Json(WriteAnswer::Applied(resp.data, resp.log_id.index)).into_response(),
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => Json(WriteAnswer::NotLeader).into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
}

async fn join(State(r): St, Json(req): Json<JoinRequest>) -> Response {
    if let Some(why) = req.invalid() {
        tracing::warn!(instance = %req.instance, %why, "replicated store: a join request refused");
        return (StatusCode::BAD_REQUEST, why).into_response();
    }
    Json(super::join::answer(&r.raft, &r.joins, req)).into_response()
}

async fn read_index(State(r): St) -> Response {
    match r.raft.ensure_linearizable().await {
        Ok(at) => Json(ReadAnswer::Index(at.map_or(0, |l| l.index))).into_response(),
        Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(_))) => Json(ReadAnswer::NotLeader).into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
}

/// The group as this replica sees it (also for `plexgate caching-service members`; any
/// trusted certificate may read it).
async fn members(State(r): St, Extension(peer): Extension<PeerIdentity>) -> Response {
    if !matches!(peer, PeerIdentity::Trusted { .. }) {
        return (StatusCode::FORBIDDEN, "a trusted client certificate is required").into_response();
    }
    Json(r.status()).into_response()
}

/// The replica's status as JSON (health details and `members`).
pub fn status(r: &Replica) -> serde_json::Value {
    let m = r.raft.metrics().borrow().clone();
    let replication = m.replication.as_ref().map(|rep| {
        rep.iter()
            .map(|(id, matched)| {
                let lag = m.last_log_index.unwrap_or(0).saturating_sub(matched.map_or(0, |l| l.index));
                (id.to_string(), json!({"matched": matched.map(|l| l.index), "lag": lag}))
            })
            .collect::<serde_json::Map<_, _>>()
    });
    let membership = m.membership_config.membership();
    let voter = |id: u64| membership.voter_ids().any(|v| v == id);
    let mut nodes: Vec<serde_json::Value> = r
        .replicas
        .iter()
        .map(|(name, id, addr)| json!({"instance": name, "id": id.to_string(), "address": addr, "voter": voter(*id)}))
        .collect();
    // Members this replica's file does not name (they joined, or its file is older).
    for (id, node) in membership.nodes().filter(|(id, _)| !r.replicas.iter().any(|c| c.1 == **id)) {
        nodes.push(json!({"instance": null, "id": id.to_string(), "address": node.addr, "voter": voter(*id)}));
    }
    json!({
        "cluster": r.cluster,
        "id": r.id.to_string(),
        "role": format!("{:?}", m.state),
        "term": m.current_term,
        "leader": m.current_leader.map(|l| l.to_string()),
        "lastLogIndex": m.last_log_index,
        "committedOrApplied": m.last_applied.map(|l| l.index),
        "snapshot": m.snapshot.map(|l| l.index),
        "purged": m.purged.map(|l| l.index),
        "inContact": r.in_contact(),
        "replicas": nodes,
        "voters": m.membership_config.membership().voter_ids().map(|v| v.to_string()).collect::<Vec<_>>(),
        "replication": replication,
    })
}
