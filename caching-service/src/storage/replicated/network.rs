//! Replica-to-replica traffic: openraft's RPCs as JSON over HTTPS with mutual TLS (each
//! replica presents its caching-service certificate), on the caching service's own port under
//! `/cachingservice/raft/v1/`. Every request names the cluster, and a replica refuses peers of
//! another one (see [`super::service`]).

// openraft's trait methods return its `StorageError`/`RPCError`, which are large; boxing
// them is not ours to choose.
#![allow(clippy::result_large_err)]

use std::time::Duration;

use openraft::BasicNode;
use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest, VoteResponse,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::types::TypeConfig;

/// Base path of the peer endpoints.
pub const RAFT_BASE: &str = "/cachingservice/raft/v1";
/// The most entry bytes (as JSON) one append carries, beyond its first entry.
const APPEND_BYTES: usize = 1024 * 1024;

/// How many of `entries` fit in `limit` bytes of JSON (never fewer than one).
fn prefix_within(entries: &[openraft::Entry<TypeConfig>], limit: usize) -> usize {
    let mut total = 0usize;
    for (i, e) in entries.iter().enumerate() {
        let mut count = Counter(0);
        // Serialising into a counter allocates nothing; an entry that cannot serialise fails
        // the real request the same way.
        let _ = serde_json::to_writer(&mut count, e);
        total += count.0;
        if total > limit {
            return i.max(1);
        }
    }
    entries.len()
}

/// A writer that only counts.
struct Counter(usize);

impl std::io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
/// Header naming the sender's cluster.
pub const CLUSTER_HEADER: &str = "x-plexgate-cluster";

/// Makes a [`Peer`] per target; shares one connection pool.
#[derive(Clone)]
pub struct Network {
    /// HTTPS client presenting this replica's certificate.
    pub http: reqwest::Client,
    /// This group's cluster id.
    pub cluster: String,
}

/// One target replica.
pub struct Peer {
    net: Network,
    target: u64,
    base: String,
}

impl Network {
    /// POSTs `body` to `path` of the replica at `addr` (`host:port`), within `timeout`.
    pub async fn post<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        addr: &str,
        path: &str,
        body: &Req,
        timeout: Duration,
    ) -> Result<Resp, PostError> {
        let resp = self
            .http
            .post(format!("https://{addr}{RAFT_BASE}{path}"))
            .header(CLUSTER_HEADER, &self.cluster)
            .timeout(timeout)
            .json(body)
            .send()
            .await
            .map_err(|e| if e.is_connect() || e.is_timeout() { PostError::Unreachable(e) } else { PostError::Network(e) })?;
        if !resp.status().is_success() {
            let status = resp.status();
            let text = resp.text().await.unwrap_or_default();
            return Err(PostError::Refused(format!("{status}: {text}")));
        }
        resp.json().await.map_err(PostError::Network)
    }
}

/// Why a POST to a peer failed.
#[derive(Debug, thiserror::Error)]
pub enum PostError {
    /// No connection (down, hung, cut off).
    #[error("unreachable: {0}")]
    Unreachable(reqwest::Error),
    /// The connection broke or the answer is unreadable.
    #[error("network: {0}")]
    Network(reqwest::Error),
    /// The peer refused (another cluster, not a replica's certificate).
    #[error("refused: {0}")]
    Refused(String),
}

impl PostError {
    fn rpc<E: std::error::Error>(self) -> RPCError<u64, BasicNode, E> {
        match self {
            PostError::Unreachable(e) => RPCError::Unreachable(Unreachable::new(&e)),
            PostError::Network(e) => RPCError::Network(NetworkError::new(&e)),
            PostError::Refused(m) => RPCError::Network(NetworkError::new(&std::io::Error::other(m))),
        }
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> Peer {
        Peer { net: self.clone(), target, base: node.addr.clone() }
    }
}

impl Peer {
    async fn call<Req: Serialize, Resp: DeserializeOwned, E: std::error::Error + DeserializeOwned>(
        &self,
        path: &str,
        body: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<u64, BasicNode, RaftError<u64, E>>> {
        let answer: Result<Resp, RaftError<u64, E>> =
            self.net.post(&self.base, path, body, option.hard_ttl()).await.map_err(PostError::rpc)?;
        answer.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        // openraft gives every append one heartbeat interval (100 ms) and batches by count
        // (300 entries): a follower behind by large values would time out on every attempt and
        // never catch up. Send the longest prefix within APPEND_BYTES (at least one entry) and
        // report how far it got; openraft sends the rest next.
        let mut rpc = rpc;
        let keep = prefix_within(&rpc.entries, APPEND_BYTES);
        if keep == rpc.entries.len() {
            return self.call("/append", &rpc, &option).await;
        }
        rpc.entries.truncate(keep);
        let last = rpc.entries.last().map(|e| e.log_id);
        match self.call("/append", &rpc, &option).await? {
            AppendEntriesResponse::Success => Ok(AppendEntriesResponse::PartialSuccess(last)),
            other => Ok(other),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<u64>, RPCError<u64, BasicNode, RaftError<u64, InstallSnapshotError>>> {
        self.call("/snapshot", &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        self.call("/vote", &rpc, &option).await
    }
}
