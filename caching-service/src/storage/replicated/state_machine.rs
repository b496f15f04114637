//! The state machine: the embedded store itself. A batch of committed entries is applied in
//! one redb transaction together with `last_applied` and the membership, so a crash can
//! neither apply an entry twice nor skip one; the feed's change log is part of the state, so
//! revisions are the same on every replica.
//!
//! Snapshots are a dump of every table from one read transaction (JSON), installed by
//! replacing every table in one write transaction; the change log travels with them, so a
//! gateway resumes its feed on the installing replica as on any other.

// openraft's trait methods return its `StorageError`/`RPCError`, which are large; boxing
// them is not ours to choose.
#![allow(clippy::result_large_err)]

use std::io::Cursor;
use std::sync::{Arc, Mutex};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{EntryPayload, LogId, RaftSnapshotBuilder, SnapshotMeta, StorageError, StorageIOError, StoredMembership};
use redb::{ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};

use super::types::{Outcome, Proposal, TypeConfig};
use crate::error::CacheError;
use crate::storage::embedded::{AGE, Embedded, FEED, IDENT, KV, MAPS, META, NS_COUNT, Write, apply};

type Entry = openraft::Entry<TypeConfig>;
type Membership = StoredMembership<u64, openraft::BasicNode>;

/// `applied` (JSON `Option<LogId>`) and `membership` (JSON [`StoredMembership`]).
const RAFT: TableDefinition<&str, &[u8]> = TableDefinition::new("raft");

/// Request id -> (log index, JSON [`Outcome`]) of the proposals applied lately, so a proposal
/// repeated after a lost answer is applied once (see [`super::types::Proposal`]).
const REQUESTS: TableDefinition<&str, (u64, &str)> = TableDefinition::new("requests");
/// Log index -> request id: the order in which [`REQUESTS`] forgets.
const REQUEST_AGE: TableDefinition<u64, &str> = TableDefinition::new("request_age");
/// How many request ids are remembered. A repeat comes within the proposer's write deadline
/// (5 s); this covers that at 4,000 writes a second, at about 100 bytes an id.
const KEEP_REQUESTS: u64 = 20_000;

/// A `/cache` row: (namespace, key) -> (creation sequence, created millis, value).
type KvRow = ((String, String), (u64, u64, String));
/// The snapshot kept for peers that need one: its meta and its bytes.
type Current = Option<(SnapshotMeta<u64, openraft::BasicNode>, Vec<u8>)>;

/// Every table, owned.
#[derive(Serialize, Deserialize, Default)]
struct Dump {
    kv: Vec<KvRow>,
    age: Vec<(u64, (String, String))>,
    maps: Vec<((String, String, String), String)>,
    /// The change log's entries are JSON text: kept as strings (a byte array would be a JSON
    /// array of numbers, four times the size).
    feed: Vec<(u64, String)>,
    meta: Vec<(String, u64)>,
    ns_count: Vec<(String, u64)>,
    ident: Vec<(String, String)>,
    raft: Vec<(String, Vec<u8>)>,
    /// Request ids remembered (absent in snapshots from before they existed).
    #[serde(default)]
    requests: Vec<(String, (u64, String))>,
}

/// The replica's state machine.
#[derive(Clone)]
pub struct StateMachine {
    store: Arc<Embedded>,
    current: Arc<Mutex<Current>>,
}

fn sm_err(e: impl std::fmt::Display) -> StorageError<u64> {
    StorageIOError::write_state_machine(&std::io::Error::other(e.to_string())).into()
}

impl StateMachine {
    /// Over `store`.
    pub fn new(store: Arc<Embedded>) -> StateMachine {
        StateMachine { store, current: Arc::new(Mutex::new(None)) }
    }

    async fn applied(&self) -> Result<(Option<LogId<u64>>, Membership), CacheError> {
        self.store
            .blocking(|db, _| {
                let txn = redb::ReadableDatabase::begin_read(db)?;
                let table = match txn.open_table(RAFT) {
                    Ok(t) => t,
                    Err(redb::TableError::TableDoesNotExist(_)) => return Ok((None, Membership::default())),
                    Err(e) => return Err(e.into()),
                };
                let read = |k: &str| -> Result<Option<Vec<u8>>, CacheError> { Ok(table.get(k)?.map(|v| v.value().to_vec())) };
                let applied =
                    read("applied")?.map(|b| serde_json::from_slice(&b)).transpose().map_err(|e| CacheError::Internal(e.to_string()))?;
                let membership =
                    read("membership")?.map(|b| serde_json::from_slice(&b)).transpose().map_err(|e| CacheError::Internal(e.to_string()))?;
                Ok((applied.flatten(), membership.unwrap_or_default()))
            })
            .await
    }

    /// A consistent dump of the whole state and the log id it is at.
    async fn dump(&self) -> Result<(Dump, Option<LogId<u64>>, Membership), CacheError> {
        self.store
            .blocking(|db, _| {
                let txn = redb::ReadableDatabase::begin_read(db)?;
                let mut d = Dump::default();
                for item in txn.open_table(KV)?.iter()? {
                    let (k, v) = item?;
                    let ((n, key), (seq, created, value)) = (k.value(), v.value());
                    d.kv.push(((n.to_owned(), key.to_owned()), (seq, created, value.to_owned())));
                }
                for item in txn.open_table(AGE)?.iter()? {
                    let (k, v) = item?;
                    let (n, key) = v.value();
                    d.age.push((k.value(), (n.to_owned(), key.to_owned())));
                }
                for item in txn.open_table(MAPS)?.iter()? {
                    let (k, v) = item?;
                    let (n, m, key) = k.value();
                    d.maps.push(((n.to_owned(), m.to_owned(), key.to_owned()), v.value().to_owned()));
                }
                for item in txn.open_table(FEED)?.iter()? {
                    let (k, v) = item?;
                    d.feed.push((k.value(), String::from_utf8_lossy(v.value()).into_owned()));
                }
                for item in txn.open_table(META)?.iter()? {
                    let (k, v) = item?;
                    d.meta.push((k.value().to_owned(), v.value()));
                }
                for item in txn.open_table(NS_COUNT)?.iter()? {
                    let (k, v) = item?;
                    d.ns_count.push((k.value().to_owned(), v.value()));
                }
                for item in txn.open_table(IDENT)?.iter()? {
                    let (k, v) = item?;
                    d.ident.push((k.value().to_owned(), v.value().to_owned()));
                }
                if let Ok(table) = txn.open_table(REQUESTS) {
                    for item in table.iter()? {
                        let (k, v) = item?;
                        let (index, outcome) = v.value();
                        d.requests.push((k.value().to_owned(), (index, outcome.to_owned())));
                    }
                }
                let (mut applied, mut membership) = (None, Membership::default());
                if let Ok(table) = txn.open_table(RAFT) {
                    for item in table.iter()? {
                        let (k, v) = item?;
                        let (k, v) = (k.value().to_owned(), v.value().to_vec());
                        let bad = |e: serde_json::Error| CacheError::Internal(e.to_string());
                        match k.as_str() {
                            "applied" => applied = serde_json::from_slice(&v).map_err(bad)?,
                            "membership" => membership = serde_json::from_slice(&v).map_err(bad)?,
                            _ => {}
                        }
                        d.raft.push((k, v));
                    }
                }
                Ok((d, applied, membership))
            })
            .await
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<u64>> {
        let (dump, applied, membership) = self.dump().await.map_err(sm_err)?;
        let bytes = serde_json::to_vec(&dump).map_err(sm_err)?;
        let snapshot_id = match applied {
            Some(l) => format!("{}-{}-{}", l.leader_id.term, l.index, uuid::Uuid::new_v4().simple()),
            None => format!("empty-{}", uuid::Uuid::new_v4().simple()),
        };
        let meta = SnapshotMeta { last_log_id: applied, last_membership: membership, snapshot_id };
        tracing::info!(bytes = bytes.len(), last = ?applied, "replicated store: snapshot built");
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Some((meta.clone(), bytes.clone()));
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(bytes)) })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(&mut self) -> Result<(Option<LogId<u64>>, Membership), StorageError<u64>> {
        self.applied().await.map_err(sm_err)
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Outcome>, StorageError<u64>>
    where
        I: IntoIterator<Item = Entry> + openraft::OptionalSend,
        I::IntoIter: openraft::OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        self.store
            .write(move |txn, limits| {
                let mut out = Vec::with_capacity(entries.len());
                let mut membership = None;
                let last = entries.last().map(|e| e.log_id);
                for e in entries {
                    match e.payload {
                        EntryPayload::Blank => out.push(Outcome::Done(0)),
                        EntryPayload::Normal(p) => out.push(apply_proposal(txn, limits, e.log_id.index, p)?),
                        EntryPayload::Membership(m) => {
                            membership = Some(StoredMembership::new(Some(e.log_id), m));
                            out.push(Outcome::Done(0));
                        }
                    }
                }
                let mut raft = txn.open_table(RAFT)?;
                let bad = |e: serde_json::Error| CacheError::Internal(e.to_string());
                raft.insert("applied", serde_json::to_vec(&last).map_err(bad)?.as_slice())?;
                if let Some(m) = membership {
                    raft.insert("membership", serde_json::to_vec(&m).map_err(bad)?.as_slice())?;
                }
                Ok(out)
            })
            .await
            .map_err(sm_err)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError<u64>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, openraft::BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<u64>> {
        let bytes = snapshot.into_inner();
        let dump: Dump = serde_json::from_slice(&bytes).map_err(sm_err)?;
        self.store
            .write(move |txn, _| {
                let mut kv = txn.open_table(KV)?;
                kv.retain(|_, _| false)?;
                for ((n, k), (seq, created, v)) in &dump.kv {
                    kv.insert((n.as_str(), k.as_str()), (*seq, *created, v.as_str()))?;
                }
                let mut age = txn.open_table(AGE)?;
                age.retain(|_, _| false)?;
                for (seq, (n, k)) in &dump.age {
                    age.insert(*seq, (n.as_str(), k.as_str()))?;
                }
                let mut maps = txn.open_table(MAPS)?;
                maps.retain(|_, _| false)?;
                for ((n, m, k), v) in &dump.maps {
                    maps.insert((n.as_str(), m.as_str(), k.as_str()), v.as_str())?;
                }
                let mut feed = txn.open_table(FEED)?;
                feed.retain(|_, _| false)?;
                for (r, v) in &dump.feed {
                    feed.insert(*r, v.as_bytes())?;
                }
                let mut meta = txn.open_table(META)?;
                meta.retain(|_, _| false)?;
                for (k, v) in &dump.meta {
                    meta.insert(k.as_str(), *v)?;
                }
                let mut ns = txn.open_table(NS_COUNT)?;
                ns.retain(|_, _| false)?;
                for (k, v) in &dump.ns_count {
                    ns.insert(k.as_str(), *v)?;
                }
                let mut ident = txn.open_table(IDENT)?;
                ident.retain(|_, _| false)?;
                for (k, v) in &dump.ident {
                    ident.insert(k.as_str(), v.as_str())?;
                }
                let mut raft = txn.open_table(RAFT)?;
                raft.retain(|_, _| false)?;
                for (k, v) in &dump.raft {
                    raft.insert(k.as_str(), v.as_slice())?;
                }
                let mut requests = txn.open_table(REQUESTS)?;
                requests.retain(|_, _| false)?;
                let mut request_age = txn.open_table(REQUEST_AGE)?;
                request_age.retain(|_, _| false)?;
                for (id, (index, outcome)) in &dump.requests {
                    requests.insert(id.as_str(), (*index, outcome.as_str()))?;
                    request_age.insert(*index, id.as_str())?;
                }
                Ok(())
            })
            .await
            .map_err(sm_err)?;
        tracing::info!(last = ?meta.last_log_id, "replicated store: snapshot installed");
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Some((meta.clone(), bytes));
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError<u64>> {
        let current = self.current.lock().unwrap_or_else(|p| p.into_inner()).clone();
        match current {
            Some((meta, bytes)) => Ok(Some(Snapshot { meta, snapshot: Box::new(Cursor::new(bytes)) })),
            // None kept across a restart: build one from the (durable) state.
            None => self.build_snapshot().await.map(Some),
        }
    }
}

/// Applies one proposal at log `index`: a request applied before answers its first outcome
/// again and changes nothing.
fn apply_proposal(txn: &redb::WriteTransaction, limits: crate::storage::Limits, index: u64, p: Proposal) -> Result<Outcome, CacheError> {
    let Some(id) = p.request else { return Ok(Outcome::of(apply_once(txn, limits, p.write))) };
    let mut requests = txn.open_table(REQUESTS)?;
    if let Some(seen) = requests.get(id.as_str())? {
        let (_, outcome) = seen.value();
        return serde_json::from_str(outcome).map_err(|e| CacheError::Internal(format!("a remembered outcome: {e}")));
    }
    let outcome = Outcome::of(apply_once(txn, limits, p.write));
    let json = serde_json::to_string(&outcome).map_err(|e| CacheError::Internal(e.to_string()))?;
    requests.insert(id.as_str(), (index, json.as_str()))?;
    let mut age = txn.open_table(REQUEST_AGE)?;
    age.insert(index, id.as_str())?;
    while age.len()? > KEEP_REQUESTS {
        let Some((_, oldest)) = age.pop_first()? else { break };
        requests.remove(oldest.value())?;
    }
    Ok(outcome)
}

/// Applies one write; a second `SetEpoch` changes nothing (the group's first one stays).
fn apply_once(txn: &redb::WriteTransaction, limits: crate::storage::Limits, w: Write) -> Result<u64, CacheError> {
    if let Write::SetEpoch { .. } = &w
        && txn.open_table(IDENT)?.get("group")?.is_some()
    {
        return Ok(0);
    }
    let epoch = match &w {
        Write::SetEpoch { epoch } => Some(epoch.clone()),
        _ => None,
    };
    let n = apply(txn, limits, w)?;
    if let Some(e) = epoch {
        txn.open_table(IDENT)?.insert("group", e.as_str())?;
    }
    Ok(n)
}
