//! `storage.mode: replicated`: the embedded store replicated by a Raft group (openraft) of
//! the caching services of every haInstance, each with its log and state machine in redb
//! under its own workspace directory.
//!
//! - A write is answered only once committed on a majority (each having fsynced its log) and
//!   applied on the answering replica; a follower forwards it to the leader over the peers'
//!   mutual-TLS channel, so callers never see "not the leader" (during an election it retries
//!   for [`WRITE_DEADLINE`], then 503).
//! - REST reads are linearizable: the leader confirms its leadership with a quorum first
//!   (openraft's `ensure_linearizable`); a follower asks the leader for that read index and
//!   waits until it has applied it.
//! - The feed reads the local applied state; revisions come from the replicated change log, so
//!   they are identical on every replica, and the epoch is the group's (set once by its first
//!   leader). A replica not in contact with a leader (or, as leader, with a quorum) within
//!   [`CONTACT_BOUND`] answers the feed's freshness check with an error, so it sends no
//!   heartbeats and its gateways' staleness bound runs.
//!
//! Rooms: `types` (the log's entries), `log` (log and vote), `compaction` (by size),
//! `state_machine` (apply and snapshots), `network` and `service` (the peers' channel),
//! `membership` (ids, bootstrap, reconcile), `join` (a new replica joining a running group),
//! `import` (a durable store).

// openraft's trait methods return its `StorageError`/`RPCError`, which are large; boxing
// them is not ours to choose.
#![allow(clippy::result_large_err)]

mod compaction;
mod import;
mod join;
mod log;
mod membership;
mod network;
mod service;
mod state_machine;
mod types;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use openraft::error::{CheckIsLeaderError, ClientWriteError, RaftError};
use openraft::{Raft, ServerState, SnapshotPolicy};
use plexgate_config::{Config, tls};
use tokio::sync::watch;

pub use membership::node_id;
pub use network::RAFT_BASE;

use self::network::{Network, PostError};
use self::service::{ReadAnswer, WriteAnswer};
use self::state_machine::StateMachine;
use self::types::{Proposal, TypeConfig};
use super::embedded::{Embedded, Write};
use super::{Entry, Limits, MapEntries, Merge, Removal, Room, Since, Snapshot, Storage, new_epoch, now_millis};
use crate::error::CacheError;

/// How long a write or a linearizable read waits for a leader (an election) before 503.
pub const WRITE_DEADLINE: Duration = Duration::from_secs(5);
// openraft 0.9 lets a follower that followed a leader stand only after the leader's lease
// (election_timeout_max) plus its own timeout, and one that saw a greater log waits a further
// 2 x election_timeout_max: a lost leader is replaced within 4 x the maximum, and a split vote
// costs one more timeout. A write must outlast that.
const _: () = assert!(WRITE_DEADLINE.as_millis() > 5 * ELECTION_TIMEOUT_MAX_MS as u128);
/// One forwarded attempt: a hung leader must not hold a write for the whole deadline, since a
/// new leader is elected within an election timeout or two.
const FORWARD_ATTEMPT: Duration = Duration::from_millis(1000);
/// A replica that heard nothing from a leader (a leader: from a quorum) this long is out of
/// contact: two election timeouts.
pub const CONTACT_BOUND: Duration = Duration::from_millis(2 * ELECTION_TIMEOUT_MAX_MS);
const HEARTBEAT_MS: u64 = 100;
// Three heartbeats at least; a follower stands after 0.9-1.2 s without a leader (lease +
// timeout, see WRITE_DEADLINE). With 0.5-1 s, a replacement could take 5 s and more (seen: a
// write through a follower answered 503 while the leader hung).
const ELECTION_TIMEOUT_MIN_MS: u64 = 300;
const ELECTION_TIMEOUT_MAX_MS: u64 = 600;

/// One replica: its Raft node and its store.
pub struct Replica {
    raft: Raft<TypeConfig>,
    store: Arc<Embedded>,
    net: Network,
    id: u64,
    cluster: String,
    /// Subject DNs of the replicas' certificates.
    peer_dns: Vec<String>,
    replicas: Vec<(String, u64, String)>,
    leader_contact: Mutex<Option<Instant>>,
    /// Join requests heard as leader (see [`join`]).
    joins: join::Joins,
}

impl Replica {
    fn heard_from_leader(&self) {
        *self.leader_contact.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
    }

    /// Whether this replica's state is known to be current within [`CONTACT_BOUND`].
    fn in_contact(&self) -> bool {
        let m = self.raft.metrics().borrow().clone();
        if m.state == ServerState::Leader {
            // A group of one has no quorum to wait for.
            return self.replicas.len() == 1 || m.millis_since_quorum_ack.is_some_and(|ms| ms <= CONTACT_BOUND.as_millis() as u64);
        }
        m.current_leader.is_some()
            && self.leader_contact.lock().unwrap_or_else(|p| p.into_inner()).is_some_and(|t| t.elapsed() <= CONTACT_BOUND)
    }

    fn status(&self) -> serde_json::Value {
        service::status(self)
    }
}

/// The storage of a replica.
pub struct Replicated {
    r: Arc<Replica>,
}

/// Starts this instance's replica; returns the storage and the peer routes to serve.
pub async fn start(config: &Config, limits: Limits) -> Result<(Arc<dyn Storage>, axum::Router), CacheError> {
    let cs = &config.caching_service;
    let me = config
        .ha_instance
        .clone()
        .ok_or_else(|| CacheError::Startup("storage mode `replicated` needs --ha-instance: each replica is one haInstance".to_owned()))?;
    let replicas = membership::replicas(config);
    let id = node_id(&me);
    if !replicas.iter().any(|r| r.1 == id) {
        return Err(CacheError::Startup(format!("haInstance {me} has no enabled caching service, so it is no replica")));
    }
    let dir = &cs.storage.replicated_dir;
    let store = Arc::new(Embedded::file(&dir.join("state.redb"), limits).await?);
    let log = log::LogStore::open(&dir.join("log.redb"))?;
    // Replicas present their caching-service certificate to each other.
    let mut own = cs.certificates.clone();
    own.client_certificate = own.certificate.clone();
    own.client_key = own.key.clone();
    let mut client_tls =
        tls::client_config(&own, config.tls, config.verify_certificates).map_err(|e| CacheError::Startup(e.to_string()))?;
    client_tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let http = reqwest::Client::builder()
        .tls_backend_preconfigured(client_tls)
        .connect_timeout(Duration::from_millis(300))
        .pool_idle_timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| CacheError::Startup(format!("replica client: {e}")))?;
    let cluster = cs.storage.cluster_name.clone();
    let net = Network { http, cluster: cluster.clone() };
    let peer_dns: Vec<String> = tls::load_certs(&cs.certificates.certificate)
        .map_err(|e| CacheError::Startup(e.to_string()))?
        .first()
        .and_then(tls::subject_dn)
        .into_iter()
        .collect();
    let raft_config = openraft::Config {
        cluster_name: cluster.clone(),
        heartbeat_interval: HEARTBEAT_MS,
        election_timeout_min: ELECTION_TIMEOUT_MIN_MS,
        election_timeout_max: ELECTION_TIMEOUT_MAX_MS,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(10_000),
        max_in_snapshot_log_to_keep: 1_000,
        // A chunk travels as JSON over HTTPS and is written by the receiver: the default 200 ms
        // is too short for a busy replica (debug builds, a 2-core host).
        snapshot_max_chunk_size: 512 * 1024,
        install_snapshot_timeout: 10_000,
        ..Default::default()
    }
    .validate()
    .map_err(|e| CacheError::Startup(format!("raft settings: {e}")))?;
    let raft = Raft::new(id, Arc::new(raft_config), net.clone(), log.clone(), StateMachine::new(store.clone()))
        .await
        .map_err(|e| CacheError::Startup(format!("raft: {e}")))?;
    tracing::info!(instance = %me, id, %cluster, replicas = replicas.len(), "replicated store: replica started");
    let r = Arc::new(Replica {
        raft: raft.clone(),
        store,
        net,
        id,
        cluster,
        peer_dns,
        replicas: replicas.clone(),
        leader_contact: Mutex::new(None),
        joins: join::Joins::default(),
    });
    tokio::spawn(membership::bootstrap(raft.clone(), id, replicas.clone()));
    tokio::spawn(compaction::by_size(raft.clone(), log));
    let address = replicas.iter().find(|r| r.1 == id).map(|r| r.2.clone()).unwrap_or_default();
    let me_req = join::JoinRequest { instance: me.clone(), id, address };
    tokio::spawn(join::ask(raft.clone(), r.net.clone(), me_req, replicas.clone()));
    tokio::spawn(membership::reconcile(raft, id, replicas, r.joins.clone()));
    tokio::spawn(set_group_epoch(Arc::downgrade(&r)));
    tokio::spawn(import::durable(Arc::downgrade(&r), cs.storage.durable_file.clone()));
    let routes = service::router(r.clone());
    Ok((Arc::new(Replicated { r }), routes))
}

/// Once a leader exists and the group has no epoch yet, the leader proposes one (the first
/// applied wins, see the state machine).
async fn set_group_epoch(r: std::sync::Weak<Replica>) {
    let Some(metrics) = r.upgrade().map(|r| r.raft.metrics()) else { return };
    let mut metrics = metrics;
    loop {
        let Some(replica) = r.upgrade() else { return };
        let leader = metrics.borrow().state == ServerState::Leader;
        if leader {
            let has = replica.store.blocking(|db, _| group_epoch(db)).await.unwrap_or(None).is_some();
            if has {
                return;
            }
            match (Replicated { r: replica.clone() }).propose(Write::SetEpoch { epoch: new_epoch() }).await {
                Ok(_) => tracing::info!("replicated store: the group's epoch is set"),
                Err(e) => tracing::warn!(error = %e, "replicated store: the group's epoch not set yet"),
            }
        }
        drop(replica);
        if tokio::time::timeout(Duration::from_secs(1), metrics.changed()).await.is_ok_and(|c| c.is_err()) {
            return;
        }
    }
}

pub(crate) fn group_epoch(db: &redb::Database) -> Result<Option<String>, CacheError> {
    let txn = redb::ReadableDatabase::begin_read(db)?;
    Ok(txn.open_table(super::embedded::IDENT)?.get("group")?.map(|v| v.value().to_owned()))
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> CacheError {
    CacheError::Unavailable(format!("replicated store: {what}: {e}"))
}

impl Replicated {
    /// Commits `w` through the group (forwarded to the leader when this replica is not it).
    /// Every attempt carries the same request id, so an attempt whose answer was lost (a
    /// forwarded write that timed out, a leader that stepped down after appending it) is
    /// proposed again without being applied twice.
    pub(crate) async fn propose(&self, w: Write) -> Result<u64, CacheError> {
        let p = Proposal::new(w);
        let deadline = Instant::now() + WRITE_DEADLINE;
        let mut last_error = String::from("no leader");
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            // A leader cut off from its followers still believes it leads: bound its wait.
            let Ok(written) = tokio::time::timeout(left, self.r.raft.client_write(p.clone())).await else {
                return Err(unavailable("write", format!("not committed by a majority within {WRITE_DEADLINE:?}")));
            };
            match written {
                Ok(resp) => return resp.data.into_result(),
                Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                    if let Some(node) = f.leader_node.filter(|_| f.leader_id != Some(self.r.id)) {
                        let attempt = left.clamp(Duration::from_millis(100), FORWARD_ATTEMPT);
                        match self.r.net.post::<Proposal, WriteAnswer>(&node.addr, "/write", &p, attempt).await {
                            Ok(WriteAnswer::Applied(o, index)) => {
                                // Read-your-writes here too: answer once this replica applied it.
                                let wait = self.r.raft.wait(Some(left.max(Duration::from_millis(100))));
                                if let Err(e) = wait.applied_index_at_least(Some(index), "forwarded write").await {
                                    tracing::debug!(error = %e, "replicated store: a forwarded write not yet applied here");
                                }
                                return o.into_result();
                            }
                            Ok(WriteAnswer::NotLeader) => last_error = "the leader stepped down".to_owned(),
                            // Perhaps committed, perhaps not: the same request again decides.
                            Err(e) => {
                                tracing::debug!(error = %e, "replicated store: a forwarded write unanswered; proposed again");
                                last_error = e.to_string();
                            }
                        }
                    }
                }
                Err(e) => return Err(unavailable("write", e)),
            }
            if Instant::now() >= deadline {
                return Err(unavailable("write", format!("not committed within {WRITE_DEADLINE:?} ({last_error})")));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Returns once a read here sees every write committed before the call.
    async fn read_barrier(&self) -> Result<(), CacheError> {
        let deadline = Instant::now() + WRITE_DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.r.raft.ensure_linearizable().await {
                Ok(_) => return Ok(()),
                Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => {
                    if let Some(node) = f.leader_node.filter(|_| f.leader_id != Some(self.r.id)) {
                        match self
                            .r
                            .net
                            .post::<(), ReadAnswer>(&node.addr, "/read-index", &(), left.clamp(Duration::from_millis(100), FORWARD_ATTEMPT))
                            .await
                        {
                            Ok(ReadAnswer::Index(i)) => {
                                self.r
                                    .raft
                                    .wait(Some(left.max(Duration::from_millis(100))))
                                    .applied_index_at_least(Some(i), "linearizable read")
                                    .await
                                    .map_err(|e| unavailable("catching up for a read", e))?;
                                return Ok(());
                            }
                            Ok(ReadAnswer::NotLeader) | Err(PostError::Unreachable(_)) => {}
                            Err(e) => return Err(unavailable("read index", e)),
                        }
                    }
                }
                Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(_))) => {}
                Err(e) => return Err(unavailable("read", e)),
            }
            if Instant::now() >= deadline {
                return Err(unavailable("read", format!("no leader confirmed within {WRITE_DEADLINE:?}")));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[async_trait]
impl Storage for Replicated {
    async fn create(&self, ns: &str, room: Room, key: &str, value: &str) -> Result<(), CacheError> {
        self.propose(Write::Create { ns: ns.to_owned(), room, key: key.to_owned(), value: value.to_owned(), created: now_millis() })
            .await
            .map(drop)
    }
    async fn get(&self, ns: &str, key: &str) -> Result<Entry, CacheError> {
        self.read_barrier().await?;
        self.r.store.get(ns, key).await
    }
    async fn list(&self, ns: &str) -> Result<Vec<Entry>, CacheError> {
        self.read_barrier().await?;
        self.r.store.list(ns).await
    }
    async fn update(&self, ns: &str, key: &str, value: &str) -> Result<(), CacheError> {
        self.propose(Write::Update { ns: ns.to_owned(), key: key.to_owned(), value: value.to_owned() }).await.map(drop)
    }
    async fn delete(&self, ns: &str, key: &str) -> Result<(), CacheError> {
        self.propose(Write::Delete { ns: ns.to_owned(), key: key.to_owned() }).await.map(drop)
    }
    async fn clear(&self, ns: &str) -> Result<(), CacheError> {
        self.propose(Write::Clear { ns: ns.to_owned() }).await.map(drop)
    }
    async fn map_put(&self, ns: &str, room: Room, map: &str, key: &str, value: &str, merge: Merge) -> Result<(), CacheError> {
        let w = Write::MapPut { ns: ns.to_owned(), room, map: map.to_owned(), key: key.to_owned(), value: value.to_owned(), merge };
        self.propose(w).await.map(drop)
    }
    async fn map_get(&self, ns: &str, map: &str) -> Result<Option<MapEntries>, CacheError> {
        self.read_barrier().await?;
        self.r.store.map_get(ns, map).await
    }
    async fn maps(&self, ns: &str) -> Result<BTreeMap<String, MapEntries>, CacheError> {
        self.read_barrier().await?;
        self.r.store.maps(ns).await
    }
    async fn map_remove(&self, ns: &str, room: Room, map: &str, keys: &[String]) -> Result<usize, CacheError> {
        if keys.is_empty() {
            return Ok(0);
        }
        self.propose(Write::MapRemove { ns: ns.to_owned(), room, map: map.to_owned(), keys: keys.to_vec() }).await.map(|n| n as usize)
    }
    async fn map_remove_if(&self, ns: &str, room: Room, map: &str, key: &str, expected: &str) -> Result<Removal, CacheError> {
        let w = Write::MapRemoveIf { ns: ns.to_owned(), room, map: map.to_owned(), key: key.to_owned(), expected: expected.to_owned() };
        self.propose(w).await.map(Removal::from_count)
    }
    async fn snapshot(&self, ns: &str, maps: &[String]) -> Result<Snapshot, CacheError> {
        if !self.r.in_contact() {
            return Err(CacheError::Unavailable("replicated store: this replica is not in contact with a majority".to_owned()));
        }
        self.r.store.snapshot(ns, maps).await
    }
    async fn since(&self, epoch: &str, revision: u64, limit: usize) -> Result<Since, CacheError> {
        // The feed's proof of freshness: only while this replica follows a live leader.
        if !self.r.in_contact() {
            return Err(CacheError::Unavailable("replicated store: this replica is not in contact with a majority".to_owned()));
        }
        self.r.store.since(epoch, revision, limit).await
    }
    async fn caught_up(&self) -> Result<(), CacheError> {
        // A linearizable read's barrier: applied here up to the leader's commit index, which
        // covers every revision any replica has shown a subscriber.
        self.read_barrier().await
    }
    fn revisions(&self) -> watch::Receiver<u64> {
        self.r.store.revisions()
    }
    async fn len(&self) -> Result<u64, CacheError> {
        self.r.store.len().await
    }
    async fn health(&self) -> Result<(), CacheError> {
        self.r.store.health().await?;
        if self.r.in_contact() { Ok(()) } else { Err(CacheError::Unavailable("not in contact with a majority of the replicas".to_owned())) }
    }
    fn details(&self) -> serde_json::Value {
        self.r.status()
    }
    fn mode(&self) -> &'static str {
        "replicated"
    }
}
