//! Every write of the embedded store, as one [`Write`] value applied inside a redb write
//! transaction: the same code path for a local write (`inMemory`, `durable`) and for an entry
//! of the replicated log, so replicas that apply the same log hold the same state (a write
//! carries everything that is not in the state already, such as its creation time).
//!
//! Each write checks its preconditions (conflict, not found, full) before it changes
//! anything, so a refused write in a batch leaves nothing behind.

use plexgate_config::EvictionStrategy;
use redb::{ReadableTable, Table, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::{AGE, FEED, IDENT, KV, MAPS, META, NS_COUNT};
use crate::error::CacheError;
use crate::storage::{Change, Limits, Merge, Op, Room, max_value};

/// One change of the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "write", rename_all = "camelCase")]
pub enum Write {
    /// `POST /cache`.
    Create {
        /// Namespace.
        ns: String,
        /// Whether it counts.
        room: Room,
        /// Key.
        key: String,
        /// Value.
        value: String,
        /// Creation time, epoch milliseconds (decided by whoever accepted the write).
        created: u64,
    },
    /// `PUT /cache`.
    Update {
        /// Namespace.
        ns: String,
        /// Key.
        key: String,
        /// Value.
        value: String,
    },
    /// `DELETE /cache/{key}`.
    Delete {
        /// Namespace.
        ns: String,
        /// Key.
        key: String,
    },
    /// `DELETE /cache`.
    Clear {
        /// Namespace.
        ns: String,
    },
    /// `POST /cache-list/{map}`.
    MapPut {
        /// Namespace.
        ns: String,
        /// Whether it counts.
        room: Room,
        /// Map.
        map: String,
        /// Key.
        key: String,
        /// Value.
        value: String,
        /// Overwrite or maximum.
        merge: Merge,
    },
    /// Removal of map keys (eviction).
    MapRemove {
        /// Namespace.
        ns: String,
        /// Whether they counted.
        room: Room,
        /// Map.
        map: String,
        /// Keys.
        keys: Vec<String>,
    },
    /// `key` of `map` goes if its value is `expected`.
    MapRemoveIf {
        /// Namespace.
        ns: String,
        /// Whether it counted.
        room: Room,
        /// Map.
        map: String,
        /// Key.
        key: String,
        /// The value it must still hold.
        expected: String,
    },
    /// The store's epoch becomes `epoch` (a replicated group's id, set once by its first leader).
    SetEpoch {
        /// The epoch.
        epoch: String,
    },
}

/// Applies `w` in `txn`; returns how many entries it changed (`map_remove`'s count).
pub fn apply(txn: &WriteTransaction, limits: Limits, w: Write) -> Result<u64, CacheError> {
    match w {
        Write::Create { ns, room, key, value, created } => {
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
            txn.open_table(KV)?.insert((ns.as_str(), key.as_str()), (seq, created, value.as_str()))?;
            Ok(1)
        }
        Write::Update { ns, key, value } => {
            let mut kv = txn.open_table(KV)?;
            let old = kv.get((ns.as_str(), key.as_str()))?.map(|v| {
                let (seq, created, _) = v.value();
                (seq, created)
            });
            let Some((seq, created)) = old else { return Err(CacheError::NotFound(key)) };
            kv.insert((ns.as_str(), key.as_str()), (seq, created, value.as_str()))?;
            Ok(1)
        }
        Write::Delete { ns, key } => {
            let removed = txn.open_table(KV)?.remove((ns.as_str(), key.as_str()))?.map(|v| v.value().0);
            let Some(seq) = removed else { return Err(CacheError::NotFound(key)) };
            if seq != 0 {
                txn.open_table(AGE)?.remove(seq)?;
                count(txn, &ns, -1)?;
            }
            Ok(1)
        }
        Write::Clear { ns } => {
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
            Ok(doomed.len() as u64)
        }
        Write::MapPut { ns, room, map, key, value, merge } => {
            let old = txn.open_table(MAPS)?.get((ns.as_str(), map.as_str(), key.as_str()))?.map(|v| v.value().to_owned());
            let value = match merge {
                Merge::Overwrite => value,
                Merge::Max => max_value(old.as_deref(), &value).ok_or_else(not_a_number)?,
            };
            if merge == Merge::Max && old.as_deref() == Some(value.as_str()) {
                // A rule only rises: an equal or lower one changes nothing.
                return Ok(0);
            }
            if old.is_none() && room == Room::Counted {
                make_room(txn, limits, &ns)?;
            }
            txn.open_table(MAPS)?.insert((ns.as_str(), map.as_str(), key.as_str()), value.as_str())?;
            record(txn, limits, &ns, &map, Op::Put { key, value })?;
            Ok(1)
        }
        Write::MapRemove { ns, room, map, keys } => {
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
            Ok(removed as u64)
        }
        Write::MapRemoveIf { ns, room, map, key, expected } => {
            // 1 removed, 0 absent, 2 another value (see `Removal::from_count`).
            let mut table = txn.open_table(MAPS)?;
            let held = table.get((ns.as_str(), map.as_str(), key.as_str()))?.map(|v| v.value() == expected);
            match held {
                None => Ok(0),
                Some(false) => Ok(2),
                Some(true) => {
                    table.remove((ns.as_str(), map.as_str(), key.as_str()))?;
                    drop(table);
                    record(txn, limits, &ns, &map, Op::Delete { key })?;
                    if room == Room::Counted {
                        count(txn, &ns, -1)?;
                    }
                    Ok(1)
                }
            }
        }
        Write::SetEpoch { epoch } => {
            txn.open_table(IDENT)?.insert("epoch", epoch.as_str())?;
            Ok(1)
        }
    }
}

fn not_a_number() -> CacheError {
    CacheError::BadPayload("a revocation rule's value must be epoch milliseconds (an unsigned integer)".to_owned())
}

pub(super) fn get(meta: &impl ReadableTable<&'static str, u64>, name: &str) -> Result<u64, CacheError> {
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
