//! The embedded back ends: `durable` (one redb file, ACID, fsync on every commit, so an
//! acknowledged write survives `kill -9`) and `inMemory` (the same code on redb's in-memory
//! backend, so the two can never drift).
//!
//! Writes (see [`apply`]) go to one writer thread, which takes every write waiting at that moment into one
//! transaction and one commit (group commit), and answers each only after that commit: under
//! load a commit's cost (an fsync for `durable`) is shared, and no thread waits on another for
//! the write lock (a thread per write on the blocking pool spent a third of its time in the
//! scheduler). Each write checks its preconditions (conflict, not found, full) before it
//! changes anything, so a refused write in a batch leaves nothing behind. Reads run on the
//! blocking pool for `durable` (they may touch the disk) and inline for `inMemory`.
//!
//! A `/cache` entry of an exempt namespace ([`Room::Exempt`]) is stored with creation
//! sequence 0: it is in no age index and no count, so its deletion knows not to uncount it.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc;

use async_trait::async_trait;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition, WriteTransaction};
use tokio::sync::watch;

mod apply;

use apply::get;
pub use apply::{Write, apply};

use super::{Entry, Limits, MapEntries, Merge, Removal, Room, Since, Snapshot, Storage, new_epoch, now_millis};
use crate::error::CacheError;

/// `(namespace, key)` -> `(creation sequence, created millis, value)`.
pub(crate) const KV: TableDefinition<(&str, &str), (u64, u64, &str)> = TableDefinition::new("kv");
/// Creation sequence -> `(namespace, key)`: the age index `removeOldest` pops from.
pub(crate) const AGE: TableDefinition<u64, (&str, &str)> = TableDefinition::new("age");
/// `(namespace, map, key)` -> value.
pub(crate) const MAPS: TableDefinition<(&str, &str, &str), &str> = TableDefinition::new("maps");
/// Revision -> JSON of the [`Change`]: the change feed's log.
pub(crate) const FEED: TableDefinition<u64, &[u8]> = TableDefinition::new("feed");
/// Counters: `rev` (last revision), `seq` (last creation sequence), `count` (counted entries held).
pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Counted entries held per namespace (the quota's number).
pub(crate) const NS_COUNT: TableDefinition<&str, u64> = TableDefinition::new("ns_count");
/// The store's identity: `epoch`, made when the store is created.
pub(crate) const IDENT: TableDefinition<&str, &str> = TableDefinition::new("ident");

/// Most writes in one transaction.
const MAX_BATCH: usize = 256;

/// Delivers a write's outcome once its batch is committed (`None`) or has failed.
type Reply = Box<dyn FnOnce(Option<CacheError>) + Send>;
/// One write: runs in the batch's transaction, returns how to answer its caller.
type Job = Box<dyn FnOnce(&WriteTransaction, Limits) -> Reply + Send>;

/// redb-backed storage, in a file or in memory.
pub struct Embedded {
    db: Arc<Database>,
    limits: Limits,
    revision: Arc<watch::Sender<u64>>,
    mode: &'static str,
    /// To the writer thread; it ends when this is dropped.
    jobs: mpsc::Sender<Job>,
}

impl Embedded {
    /// `inMemory`: nothing persists.
    pub fn memory(limits: Limits) -> Result<Embedded, CacheError> {
        let db = Database::builder().create_with_backend(redb::backends::InMemoryBackend::new())?;
        Embedded::init(db, limits, "inMemory")
    }

    /// `durable`: the store in `path` (created with its directory when missing).
    pub async fn file(path: &Path, limits: Limits) -> Result<Embedded, CacheError> {
        let path = path.to_path_buf();
        let db = tokio::task::spawn_blocking(move || {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| CacheError::Startup(format!("cannot create {}: {e}", dir.display())))?;
            }
            Database::create(&path).map_err(|e| CacheError::Startup(format!("cannot open the durable store {}: {e}", path.display())))
        })
        .await
        .map_err(|e| CacheError::Internal(e.to_string()))??;
        Embedded::init(db, limits, "durable")
    }

    fn init(db: Database, limits: Limits, mode: &'static str) -> Result<Embedded, CacheError> {
        let txn = db.begin_write()?;
        let (rev, epoch) = {
            // Create every table so readers never meet a missing one.
            txn.open_table(KV)?;
            txn.open_table(AGE)?;
            txn.open_table(MAPS)?;
            txn.open_table(NS_COUNT)?;
            let mut ident = txn.open_table(IDENT)?;
            let stored = ident.get("epoch")?.map(|v| v.value().to_owned());
            let epoch = match stored {
                Some(e) => e,
                None => {
                    let e = new_epoch();
                    ident.insert("epoch", e.as_str())?;
                    e
                }
            };
            let mut feed = txn.open_table(FEED)?;
            let meta = txn.open_table(META)?;
            let rev = get(&meta, "rev")?;
            // A smaller retention than last time: trim now.
            let keep_from = rev.saturating_sub(limits.feed_retention) + 1;
            feed.retain(|r, _| r >= keep_from)?;
            (rev, epoch)
        };
        txn.commit()?;
        let db = Arc::new(db);
        let revision = Arc::new(watch::channel(rev).0);
        let (jobs, queue) = mpsc::channel();
        let (wdb, wrev) = (db.clone(), revision.clone());
        std::thread::Builder::new()
            .name(format!("{mode}-writer"))
            .spawn(move || writer(&wdb, limits, &wrev, &queue))
            .map_err(|e| CacheError::Startup(format!("cannot start the storage writer: {e}")))?;
        tracing::info!(mode, epoch, revision = rev, "embedded store opened");
        Ok(Embedded { db, limits, revision, mode, jobs })
    }

    /// Runs a read with the database: on the blocking pool for a file, inline in memory.
    pub(crate) async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database, Limits) -> Result<T, CacheError> + Send + 'static,
    ) -> Result<T, CacheError> {
        if self.mode == "inMemory" {
            return f(&self.db, self.limits);
        }
        let db = self.db.clone();
        let limits = self.limits;
        tokio::task::spawn_blocking(move || f(&db, limits)).await.map_err(|e| CacheError::Internal(e.to_string()))?
    }

    /// Runs `f` in the writer's next transaction; returns once that transaction is committed
    /// (and the new revision published).
    pub(crate) async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&WriteTransaction, Limits) -> Result<T, CacheError> + Send + 'static,
    ) -> Result<T, CacheError> {
        let (tx, rx) = tokio::sync::oneshot::channel::<Result<T, CacheError>>();
        let job: Job = Box::new(move |txn, limits| {
            let out = f(txn, limits);
            Box::new(move |failed: Option<CacheError>| {
                let _ = tx.send(match failed {
                    None => out,
                    Some(e) => out.and(Err(e)),
                });
            })
        });
        self.jobs.send(job).map_err(|_| CacheError::Internal("the storage writer has stopped".to_owned()))?;
        // A job dropped unrun: its batch could not even begin.
        rx.await.map_err(|_| CacheError::Unavailable("the write could not be started".to_owned()))?
    }
}

/// The writer thread: a batch of whatever writes are waiting, one transaction, one commit,
/// then every answer, then the new revision for the change feed.
fn writer(db: &Database, limits: Limits, revision: &watch::Sender<u64>, queue: &mpsc::Receiver<Job>) {
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let mut replies = Vec::with_capacity(batch.len());
        let committed = (|| {
            let mut txn = db.begin_write()?;
            txn.set_durability(Durability::Immediate)?;
            replies.extend(batch.drain(..).map(|job| job(&txn, limits)));
            let rev = get(&txn.open_table(META)?, "rev")?;
            txn.commit()?;
            Ok::<u64, CacheError>(rev)
        })();
        match committed {
            Ok(rev) => {
                replies.into_iter().for_each(|reply| reply(None));
                revision.send_if_modified(|r| {
                    let changed = *r != rev;
                    *r = rev;
                    changed
                });
            }
            Err(e) => {
                tracing::error!(error = %e, writes = replies.len() + batch.len(), "storage commit failed; the writes are refused");
                replies.into_iter().for_each(|reply| reply(Some(CacheError::Unavailable(e.to_string()))));
                // Jobs never run (the transaction did not begin) answer through their dropped channel.
            }
        }
    }
}

/// The epoch as stored (every store has one from its first open).
fn stored_epoch(txn: &redb::ReadTransaction) -> Result<String, CacheError> {
    Ok(txn.open_table(IDENT)?.get("epoch")?.map(|v| v.value().to_owned()).unwrap_or_default())
}

fn read_map(
    maps: &impl ReadableTable<(&'static str, &'static str, &'static str), &'static str>,
    ns: &str,
    map: &str,
) -> Result<MapEntries, CacheError> {
    let mut out = MapEntries::new();
    for item in maps.range::<(&str, &str, &str)>((ns, map, "")..)? {
        let (k, v) = item?;
        let (n, m, key) = k.value();
        if n != ns || m != map {
            break;
        }
        out.insert(key.to_owned(), v.value().to_owned());
    }
    Ok(out)
}

#[async_trait]
impl Storage for Embedded {
    async fn create(&self, ns: &str, room: Room, key: &str, value: &str) -> Result<(), CacheError> {
        let w = Write::Create { ns: ns.to_owned(), room, key: key.to_owned(), value: value.to_owned(), created: now_millis() };
        self.write(move |txn, limits| apply(txn, limits, w)).await.map(drop)
    }

    async fn get(&self, ns: &str, key: &str) -> Result<Entry, CacheError> {
        let (ns, key) = (ns.to_owned(), key.to_owned());
        self.blocking(move |db, _| {
            let kv = db.begin_read()?.open_table(KV)?;
            let found = kv.get((ns.as_str(), key.as_str()))?.map(|v| {
                let (_, created, value) = v.value();
                (created, value.to_owned())
            });
            match found {
                Some((created, value)) => Ok(Entry { key, value, created }),
                None => Err(CacheError::NotFound(key)),
            }
        })
        .await
    }

    async fn list(&self, ns: &str) -> Result<Vec<Entry>, CacheError> {
        let ns = ns.to_owned();
        self.blocking(move |db, _| {
            let kv = db.begin_read()?.open_table(KV)?;
            let mut out = Vec::new();
            for item in kv.range::<(&str, &str)>((ns.as_str(), "")..)? {
                let (k, v) = item?;
                let (n, key) = k.value();
                if n != ns {
                    break;
                }
                let (_, created, value) = v.value();
                out.push(Entry { key: key.to_owned(), value: value.to_owned(), created });
            }
            Ok(out)
        })
        .await
    }

    async fn update(&self, ns: &str, key: &str, value: &str) -> Result<(), CacheError> {
        let w = Write::Update { ns: ns.to_owned(), key: key.to_owned(), value: value.to_owned() };
        self.write(move |txn, limits| apply(txn, limits, w)).await.map(drop)
    }

    async fn delete(&self, ns: &str, key: &str) -> Result<(), CacheError> {
        let w = Write::Delete { ns: ns.to_owned(), key: key.to_owned() };
        self.write(move |txn, limits| apply(txn, limits, w)).await.map(drop)
    }

    async fn clear(&self, ns: &str) -> Result<(), CacheError> {
        let w = Write::Clear { ns: ns.to_owned() };
        self.write(move |txn, limits| apply(txn, limits, w)).await.map(drop)
    }

    async fn map_put(&self, ns: &str, room: Room, map: &str, key: &str, value: &str, merge: Merge) -> Result<(), CacheError> {
        let w = Write::MapPut { ns: ns.to_owned(), room, map: map.to_owned(), key: key.to_owned(), value: value.to_owned(), merge };
        self.write(move |txn, limits| apply(txn, limits, w)).await.map(drop)
    }

    async fn map_get(&self, ns: &str, map: &str) -> Result<Option<MapEntries>, CacheError> {
        let (ns, map) = (ns.to_owned(), map.to_owned());
        self.blocking(move |db, _| {
            let entries = read_map(&db.begin_read()?.open_table(MAPS)?, &ns, &map)?;
            Ok((!entries.is_empty()).then_some(entries))
        })
        .await
    }

    async fn maps(&self, ns: &str) -> Result<BTreeMap<String, MapEntries>, CacheError> {
        let ns = ns.to_owned();
        self.blocking(move |db, _| {
            let maps = db.begin_read()?.open_table(MAPS)?;
            let mut out: BTreeMap<String, MapEntries> = BTreeMap::new();
            for item in maps.range::<(&str, &str, &str)>((ns.as_str(), "", "")..)? {
                let (k, v) = item?;
                let (n, map, key) = k.value();
                if n != ns {
                    break;
                }
                out.entry(map.to_owned()).or_default().insert(key.to_owned(), v.value().to_owned());
            }
            Ok(out)
        })
        .await
    }

    async fn map_remove(&self, ns: &str, room: Room, map: &str, keys: &[String]) -> Result<usize, CacheError> {
        let w = Write::MapRemove { ns: ns.to_owned(), room, map: map.to_owned(), keys: keys.to_vec() };
        self.write(move |txn, limits| apply(txn, limits, w)).await.map(|n| n as usize)
    }

    async fn map_remove_if(&self, ns: &str, room: Room, map: &str, key: &str, expected: &str) -> Result<Removal, CacheError> {
        let w = Write::MapRemoveIf { ns: ns.to_owned(), room, map: map.to_owned(), key: key.to_owned(), expected: expected.to_owned() };
        self.write(move |txn, limits| apply(txn, limits, w)).await.map(Removal::from_count)
    }

    async fn snapshot(&self, ns: &str, maps: &[String]) -> Result<Snapshot, CacheError> {
        let (ns, names) = (ns.to_owned(), maps.to_vec());
        self.blocking(move |db, _| {
            // One read transaction: the maps, the revision and the epoch are of the same moment.
            let txn = db.begin_read()?;
            let revision = get(&txn.open_table(META)?, "rev")?;
            let epoch = stored_epoch(&txn)?;
            let table = txn.open_table(MAPS)?;
            let mut maps = BTreeMap::new();
            for name in names {
                let entries = read_map(&table, &ns, &name)?;
                maps.insert(name, entries);
            }
            Ok(Snapshot { epoch, revision, maps })
        })
        .await
    }

    async fn since(&self, epoch: &str, revision: u64, limit: usize) -> Result<Since, CacheError> {
        let epoch = epoch.to_owned();
        self.blocking(move |db, _| {
            let txn = db.begin_read()?;
            if stored_epoch(&txn)? != epoch {
                return Ok(Since::TooOld);
            }
            let last = get(&txn.open_table(META)?, "rev")?;
            // Ahead of the store: not a revision of this store's history.
            if revision > last {
                return Ok(Since::TooOld);
            }
            if revision == last {
                return Ok(Since::Changes(Vec::new()));
            }
            let feed = txn.open_table(FEED)?;
            let first = feed.first()?.map(|(k, _)| k.value());
            if first.is_none_or(|f| f > revision + 1) {
                return Ok(Since::TooOld);
            }
            let mut out = Vec::new();
            for item in feed.range((revision + 1)..)?.take(limit) {
                let (_, v) = item?;
                out.push(serde_json::from_slice(v.value()).map_err(|e| CacheError::Internal(format!("corrupt feed entry: {e}")))?);
            }
            Ok(Since::Changes(out))
        })
        .await
    }

    fn revisions(&self) -> watch::Receiver<u64> {
        self.revision.subscribe()
    }

    async fn len(&self) -> Result<u64, CacheError> {
        self.blocking(|db, _| get(&db.begin_read()?.open_table(META)?, "count")).await
    }

    async fn health(&self) -> Result<(), CacheError> {
        self.blocking(|db, _| {
            db.begin_read()?.open_table(META)?.len()?;
            Ok(())
        })
        .await
    }

    fn mode(&self) -> &'static str {
        self.mode
    }
}
