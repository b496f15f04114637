//! The Raft log and vote in redb: one file per replica, every append and vote committed with
//! `Durability::Immediate` before openraft is told it is flushed, so an entry a majority
//! acknowledged survives `kill -9` of any of them.

// openraft's trait methods return its `StorageError`/`RPCError`, which are large; boxing
// them is not ours to choose.
#![allow(clippy::result_large_err)]

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{LogId, OptionalSend, RaftLogReader, StorageError, StorageIOError, Vote};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

use super::types::TypeConfig;
use crate::error::CacheError;

type Entry = openraft::Entry<TypeConfig>;

/// Index -> JSON of the entry.
const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
/// `vote`, `committed`, `purged`: JSON.
const STATE: TableDefinition<&str, &[u8]> = TableDefinition::new("state");

/// The log of one replica (cheap to clone: the reader is a clone).
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Database>,
}

fn io(e: impl std::error::Error + 'static) -> StorageError<u64> {
    StorageIOError::write_logs(&e).into()
}

fn read_err(e: impl std::error::Error + 'static) -> StorageError<u64> {
    StorageIOError::read_logs(&e).into()
}

impl LogStore {
    /// Opens (or creates) the log in `path`.
    pub fn open(path: &Path) -> Result<LogStore, CacheError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| CacheError::Startup(format!("cannot create {}: {e}", dir.display())))?;
        }
        let db = Database::create(path).map_err(|e| CacheError::Startup(format!("cannot open the raft log {}: {e}", path.display())))?;
        let txn = db.begin_write()?;
        txn.open_table(LOG)?;
        txn.open_table(STATE)?;
        txn.commit()?;
        Ok(LogStore { db: Arc::new(db) })
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, StorageError<u64>> + Send + 'static,
    ) -> Result<T, StorageError<u64>> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db)).await.map_err(io)?
    }

    fn get_state<T: serde::de::DeserializeOwned>(db: &Database, key: &str) -> Result<Option<T>, StorageError<u64>> {
        let txn = db.begin_read().map_err(read_err)?;
        let table = txn.open_table(STATE).map_err(read_err)?;
        let Some(v) = table.get(key).map_err(read_err)? else { return Ok(None) };
        serde_json::from_slice(v.value()).map(Some).map_err(read_err)
    }

    fn put_state<T: serde::Serialize>(db: &Database, key: &str, value: &T, durability: Durability) -> Result<(), StorageError<u64>> {
        let bytes = serde_json::to_vec(value).map_err(io)?;
        let mut txn = db.begin_write().map_err(io)?;
        txn.set_durability(durability).map_err(io)?;
        txn.open_table(STATE).map_err(io)?.insert(key, bytes.as_slice()).map_err(io)?;
        txn.commit().map_err(io)
    }
}

impl LogStore {
    /// Bytes the log's entries take in its table (for compaction by size).
    pub async fn stored_bytes(&self) -> Result<u64, StorageError<u64>> {
        self.run(|db| {
            let txn = db.begin_read().map_err(read_err)?;
            let table = txn.open_table(LOG).map_err(read_err)?;
            Ok(redb::ReadableTableMetadata::stats(&table).map_err(read_err)?.stored_bytes())
        })
        .await
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError<u64>> {
        let start = match range.start_bound() {
            Bound::Included(s) => *s,
            Bound::Excluded(s) => s + 1,
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(e) => Some(e + 1),
            Bound::Excluded(e) => Some(*e),
            Bound::Unbounded => None,
        };
        self.run(move |db| {
            let txn = db.begin_read().map_err(read_err)?;
            let table = txn.open_table(LOG).map_err(read_err)?;
            let mut out = Vec::new();
            let iter = match end {
                Some(e) => table.range(start..e),
                None => table.range(start..),
            }
            .map_err(read_err)?;
            for item in iter {
                let (_, v) = item.map_err(read_err)?;
                out.push(serde_json::from_slice(v.value()).map_err(read_err)?);
            }
            Ok(out)
        })
        .await
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<u64>> {
        self.run(|db| {
            let purged: Option<LogId<u64>> = LogStore::get_state(db, "purged")?;
            let txn = db.begin_read().map_err(read_err)?;
            let table = txn.open_table(LOG).map_err(read_err)?;
            let last = match table.last().map_err(read_err)? {
                Some((_, v)) => Some(serde_json::from_slice::<Entry>(v.value()).map_err(read_err)?.log_id),
                None => purged,
            };
            Ok(LogState { last_purged_log_id: purged, last_log_id: last })
        })
        .await
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), StorageError<u64>> {
        let vote = *vote;
        self.run(move |db| LogStore::put_state(db, "vote", &vote, Durability::Immediate)).await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, StorageError<u64>> {
        self.run(|db| LogStore::get_state(db, "vote")).await
    }

    async fn save_committed(&mut self, committed: Option<LogId<u64>>) -> Result<(), StorageError<u64>> {
        // Not fsynced: it only saves re-applying after a restart; a committed index lost with
        // a crash is learnt again from the leader (the entries themselves are durable). An
        // fsync here would sit in Raft's core loop once per commit.
        self.run(move |db| LogStore::put_state(db, "committed", &committed, Durability::None)).await
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<u64>>, StorageError<u64>> {
        self.run(|db| Ok(LogStore::get_state::<Option<LogId<u64>>>(db, "committed")?.flatten())).await
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError<u64>>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let rows: Vec<(u64, Vec<u8>)> =
            entries.into_iter().map(|e| serde_json::to_vec(&e).map(|b| (e.log_id.index, b))).collect::<Result<_, _>>().map_err(io)?;
        let result = self
            .run(move |db| {
                let mut txn = db.begin_write().map_err(io)?;
                txn.set_durability(Durability::Immediate).map_err(io)?;
                {
                    let mut table = txn.open_table(LOG).map_err(io)?;
                    for (index, bytes) in &rows {
                        table.insert(*index, bytes.as_slice()).map_err(io)?;
                    }
                }
                txn.commit().map_err(io)
            })
            .await;
        // Flushed (fsynced) only now: openraft counts this replica towards the majority after this.
        callback.log_io_completed(result.as_ref().map(|_| ()).map_err(|e| std::io::Error::other(e.to_string())));
        result
    }

    async fn truncate(&mut self, log_id: LogId<u64>) -> Result<(), StorageError<u64>> {
        self.run(move |db| {
            let mut txn = db.begin_write().map_err(io)?;
            txn.set_durability(Durability::Immediate).map_err(io)?;
            txn.open_table(LOG).map_err(io)?.retain(|i, _| i < log_id.index).map_err(io)?;
            txn.commit().map_err(io)
        })
        .await
    }

    async fn purge(&mut self, log_id: LogId<u64>) -> Result<(), StorageError<u64>> {
        self.run(move |db| {
            LogStore::put_state(db, "purged", &Some(log_id), Durability::Immediate)?;
            let txn = db.begin_write().map_err(io)?;
            txn.open_table(LOG).map_err(io)?.retain(|i, _| i > log_id.index).map_err(io)?;
            txn.commit().map_err(io)
        })
        .await
    }
}
