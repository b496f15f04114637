//! The embedded back ends: `durable` (one redb file, ACID, fsync on every commit, so an
//! acknowledged write survives `kill -9`) and `inMemory` (the same code on redb's in-memory
//! backend, so the two can never drift).
//!
//! Writes go to one writer thread, which takes every write waiting at that moment into one
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
use plexgate_config::EvictionStrategy;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, Table, TableDefinition, WriteTransaction};
use tokio::sync::watch;

use super::{Change, Entry, Limits, MapEntries, Merge, Op, Room, Since, Snapshot, Storage, max_value, new_epoch, now_millis};
use crate::error::CacheError;

/// `(namespace, key)` -> `(creation sequence, created millis, value)`.
const KV: TableDefinition<(&str, &str), (u64, u64, &str)> = TableDefinition::new("kv");
/// Creation sequence -> `(namespace, key)`: the age index `removeOldest` pops from.
const AGE: TableDefinition<u64, (&str, &str)> = TableDefinition::new("age");
/// `(namespace, map, key)` -> value.
const MAPS: TableDefinition<(&str, &str, &str), &str> = TableDefinition::new("maps");
/// Revision -> JSON of the [`Change`]: the change feed's log.
const FEED: TableDefinition<u64, &[u8]> = TableDefinition::new("feed");
/// Counters: `rev` (last revision), `seq` (last creation sequence), `count` (counted entries held).
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Counted entries held per namespace (the quota's number).
const NS_COUNT: TableDefinition<&str, u64> = TableDefinition::new("ns_count");
/// The store's identity: `epoch`, made when the store is created.
const IDENT: TableDefinition<&str, &str> = TableDefinition::new("ident");

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
    epoch: String,
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
        Ok(Embedded { db, limits, revision, mode, epoch, jobs })
    }

    /// Runs a read with the database: on the blocking pool for a file, inline in memory.
    async fn blocking<T: Send + 'static>(
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
    async fn write<T: Send + 'static>(
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

fn not_a_number() -> CacheError {
    CacheError::BadPayload("a revocation rule's value must be epoch milliseconds (an unsigned integer)".to_owned())
}

fn get(meta: &impl ReadableTable<&'static str, u64>, name: &str) -> Result<u64, CacheError> {
    Ok(meta.get(name)?.map(|v| v.value()).unwrap_or(0))
}

fn bump(meta: &mut Table<&str, u64>, name: &str, delta: i64) -> Result<u64, CacheError> {
    let v = get(meta, name)?.saturating_add_signed(delta);
    meta.insert(name, v)?;
    Ok(v)
}

/// Makes room for one more counted entry of `ns`, per its quota, the size and the eviction
/// strategy, and counts it.
fn make_room(txn: &WriteTransaction, limits: Limits, ns: &str) -> Result<(), CacheError> {
    if ns_count(txn, ns)? >= limits.per_namespace {
        if limits.eviction == EvictionStrategy::Reject {
            return Err(CacheError::Full);
        }
        // The namespace's own oldest entry: its quota is its own business.
        let mut oldest: Option<(u64, String)> = None;
        for item in txn.open_table(KV)?.range::<(&str, &str)>((ns, "")..)? {
            let (k, v) = item?;
            let (n, key) = k.value();
            if n != ns {
                break;
            }
            let seq = v.value().0;
            if seq != 0 && oldest.as_ref().is_none_or(|(s, _)| seq < *s) {
                oldest = Some((seq, key.to_owned()));
            }
        }
        let Some((seq, key)) = oldest else { return Err(CacheError::Full) };
        evict(txn, seq, ns, &key)?;
    }
    if get(&txn.open_table(META)?, "count")? >= limits.size {
        if limits.eviction == EvictionStrategy::Reject {
            return Err(CacheError::Full);
        }
        let oldest = txn.open_table(AGE)?.first()?.map(|(k, v)| {
            let (ns, key) = v.value();
            (k.value(), ns.to_owned(), key.to_owned())
        });
        let Some((seq, victim_ns, key)) = oldest else { return Err(CacheError::Full) };
        evict(txn, seq, &victim_ns, &key)?;
    }
    count(txn, ns, 1)
}

/// Removes one counted `/cache` entry to make room.
fn evict(txn: &WriteTransaction, seq: u64, ns: &str, key: &str) -> Result<(), CacheError> {
    txn.open_table(AGE)?.remove(seq)?;
    txn.open_table(KV)?.remove((ns, key))?;
    count(txn, ns, -1)?;
    tracing::debug!(namespace = %ns, "storage full: evicted the oldest entry");
    Ok(())
}

fn ns_count(txn: &WriteTransaction, ns: &str) -> Result<u64, CacheError> {
    Ok(txn.open_table(NS_COUNT)?.get(ns)?.map(|v| v.value()).unwrap_or(0))
}

/// Adds `delta` counted entries of `ns` (to its quota's number and to the store's).
fn count(txn: &WriteTransaction, ns: &str, delta: i64) -> Result<(), CacheError> {
    bump(&mut txn.open_table(META)?, "count", delta)?;
    let n = ns_count(txn, ns)?.saturating_add_signed(delta);
    let mut table = txn.open_table(NS_COUNT)?;
    if n == 0 {
        table.remove(ns)?;
    } else {
        table.insert(ns, n)?;
    }
    Ok(())
}

/// Appends a change to the feed log, trimming what falls out of the retention.
fn record(txn: &WriteTransaction, limits: Limits, ns: &str, map: &str, op: Op) -> Result<(), CacheError> {
    let mut meta = txn.open_table(META)?;
    let revision = bump(&mut meta, "rev", 1)?;
    let change = Change { revision, namespace: ns.to_owned(), map: map.to_owned(), op };
    let bytes = serde_json::to_vec(&change).map_err(|e| CacheError::Internal(e.to_string()))?;
    let mut feed = txn.open_table(FEED)?;
    feed.insert(revision, bytes.as_slice())?;
    if revision > limits.feed_retention {
        feed.remove(revision - limits.feed_retention)?;
    }
    Ok(())
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
        let (ns, key, value) = (ns.to_owned(), key.to_owned(), value.to_owned());
        self.write(move |txn, limits| {
            if txn.open_table(KV)?.get((ns.as_str(), key.as_str()))?.is_some() {
                return Err(CacheError::Conflict(key));
            }
            let seq = match room {
                Room::Exempt => 0,
                Room::Counted => {
                    make_room(txn, limits, &ns)?;
                    let seq = bump(&mut txn.open_table(META)?, "seq", 1)?;
                    txn.open_table(AGE)?.insert(seq, (ns.as_str(), key.as_str()))?;
                    seq
                }
            };
            txn.open_table(KV)?.insert((ns.as_str(), key.as_str()), (seq, now_millis(), value.as_str()))?;
            Ok(())
        })
        .await
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
        let (ns, key, value) = (ns.to_owned(), key.to_owned(), value.to_owned());
        self.write(move |txn, _| {
            let mut kv = txn.open_table(KV)?;
            let old = kv.get((ns.as_str(), key.as_str()))?.map(|v| {
                let (seq, created, _) = v.value();
                (seq, created)
            });
            let Some((seq, created)) = old else { return Err(CacheError::NotFound(key)) };
            kv.insert((ns.as_str(), key.as_str()), (seq, created, value.as_str()))?;
            Ok(())
        })
        .await
    }

    async fn delete(&self, ns: &str, key: &str) -> Result<(), CacheError> {
        let (ns, key) = (ns.to_owned(), key.to_owned());
        self.write(move |txn, _| {
            let removed = txn.open_table(KV)?.remove((ns.as_str(), key.as_str()))?.map(|v| v.value().0);
            let Some(seq) = removed else { return Err(CacheError::NotFound(key)) };
            if seq != 0 {
                txn.open_table(AGE)?.remove(seq)?;
                count(txn, &ns, -1)?;
            }
            Ok(())
        })
        .await
    }

    async fn clear(&self, ns: &str) -> Result<(), CacheError> {
        let ns = ns.to_owned();
        self.write(move |txn, _| {
            let mut kv = txn.open_table(KV)?;
            let mut doomed = Vec::new();
            for item in kv.range::<(&str, &str)>((ns.as_str(), "")..)? {
                let (k, v) = item?;
                let (n, key) = k.value();
                if n != ns {
                    break;
                }
                doomed.push((key.to_owned(), v.value().0));
            }
            let mut age = txn.open_table(AGE)?;
            for (key, seq) in &doomed {
                kv.remove((ns.as_str(), key.as_str()))?;
                age.remove(*seq)?;
            }
            drop((kv, age));
            let counted = doomed.iter().filter(|(_, seq)| *seq != 0).count();
            count(txn, &ns, -(counted as i64))?;
            Ok(())
        })
        .await
    }

    async fn map_put(&self, ns: &str, room: Room, map: &str, key: &str, value: &str, merge: Merge) -> Result<(), CacheError> {
        let (ns, map, key, value) = (ns.to_owned(), map.to_owned(), key.to_owned(), value.to_owned());
        self.write(move |txn, limits| {
            let old = txn.open_table(MAPS)?.get((ns.as_str(), map.as_str(), key.as_str()))?.map(|v| v.value().to_owned());
            let value = match merge {
                Merge::Overwrite => value,
                Merge::Max => max_value(old.as_deref(), &value).ok_or_else(not_a_number)?,
            };
            if merge == Merge::Max && old.as_deref() == Some(value.as_str()) {
                // A rule only rises: an equal or lower one changes nothing.
                return Ok(());
            }
            if old.is_none() && room == Room::Counted {
                make_room(txn, limits, &ns)?;
            }
            txn.open_table(MAPS)?.insert((ns.as_str(), map.as_str(), key.as_str()), value.as_str())?;
            record(txn, limits, &ns, &map, Op::Put { key, value })
        })
        .await
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
        let (ns, map, keys) = (ns.to_owned(), map.to_owned(), keys.to_vec());
        self.write(move |txn, limits| {
            let mut removed = 0;
            for key in keys {
                let gone = txn.open_table(MAPS)?.remove((ns.as_str(), map.as_str(), key.as_str()))?.is_some();
                if gone {
                    removed += 1;
                    record(txn, limits, &ns, &map, Op::Delete { key })?;
                }
            }
            if room == Room::Counted {
                count(txn, &ns, -(removed as i64))?;
            }
            Ok(removed)
        })
        .await
    }

    async fn snapshot(&self, ns: &str, maps: &[String]) -> Result<Snapshot, CacheError> {
        let (ns, names, epoch) = (ns.to_owned(), maps.to_vec(), self.epoch.clone());
        self.blocking(move |db, _| {
            // One read transaction: the maps and the revision are of the same moment.
            let txn = db.begin_read()?;
            let revision = get(&txn.open_table(META)?, "rev")?;
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
        if epoch != self.epoch {
            return Ok(Since::TooOld);
        }
        self.blocking(move |db, _| {
            let txn = db.begin_read()?;
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
