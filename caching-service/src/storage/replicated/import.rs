//! Upgrade without loss: a replica started on a workspace that holds a single-instance
//! `durable` store (the file `storage.durable.file` names, by default
//! `<workspace>/caching-service/<instance>.redb`) imports it once into the group, through the
//! log, so every replica gets it. Zowe's 3.5 upgrade lost revoked PATs; this must not.
//!
//! Every `/cache` entry is created (one that exists already is kept) and every map entry put
//! (revocation rules as a maximum, so an import never lowers a rule set since), all as
//! exempt from the size, so no revocation is refused for room. A marker file beside the old
//! store records the import; until it is written (a crash half-way), the next start imports
//! again, which changes nothing that was imported.

use std::path::{Path, PathBuf};
use std::sync::Weak;
use std::time::Duration;

use redb::ReadableTable;

use super::{Replica, Replicated, group_epoch};
use crate::error::CacheError;
use crate::storage::embedded::{Embedded, KV, MAPS, Write};
use crate::storage::{Limits, Merge, Room};

fn marker(path: &Path) -> PathBuf {
    let mut m = path.as_os_str().to_owned();
    m.push(".imported");
    PathBuf::from(m)
}

/// Imports the store at `path` once the group is formed, if there is one to import.
pub(super) async fn durable(r: Weak<Replica>, path: PathBuf) {
    if !path.exists() || marker(&path).exists() {
        return;
    }
    let writes = match read(&path).await {
        Ok(w) => w,
        Err(e) => {
            tracing::error!(file = %path.display(), error = %e, "replicated store: the durable store to import cannot be read");
            return;
        }
    };
    tracing::info!(file = %path.display(), entries = writes.len(), "replicated store: importing a durable store");
    // Once the group has a leader and its epoch.
    loop {
        let Some(replica) = r.upgrade() else { return };
        if replica.store.blocking(|db, _| group_epoch(db)).await.ok().flatten().is_some() {
            break;
        }
        drop(replica);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let Some(replica) = r.upgrade() else { return };
    let group = Replicated { r: replica };
    let mut done = 0;
    for w in writes {
        loop {
            match group.propose(w.clone()).await {
                Ok(_) | Err(CacheError::Conflict(_)) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "replicated store: import paused; trying again");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
        done += 1;
    }
    match std::fs::write(marker(&path), format!("{done} entries imported into the replicated store\n")) {
        Ok(()) => tracing::info!(file = %path.display(), entries = done, "replicated store: durable store imported"),
        Err(e) => {
            tracing::error!(error = %e, "replicated store: imported, but the marker file could not be written (the next start imports again, harmlessly)")
        }
    }
}

/// Every entry of the old store, as writes.
async fn read(path: &Path) -> Result<Vec<Write>, CacheError> {
    let limits =
        Limits { size: u64::MAX, eviction: plexgate_config::EvictionStrategy::Reject, per_namespace: u64::MAX, feed_retention: u64::MAX };
    let old = Embedded::file(path, limits).await?;
    old.blocking(|db, _| {
        let txn = redb::ReadableDatabase::begin_read(db)?;
        let mut out = Vec::new();
        for item in txn.open_table(KV)?.iter()? {
            let (k, v) = item?;
            let ((ns, key), (_, created, value)) = (k.value(), v.value());
            out.push(Write::Create { ns: ns.to_owned(), room: Room::Exempt, key: key.to_owned(), value: value.to_owned(), created });
        }
        for item in txn.open_table(MAPS)?.iter()? {
            let (k, v) = item?;
            let (ns, map, key) = k.value();
            let rule = (map == "invalidUsers" || map == "invalidScopes") && v.value().trim().parse::<u64>().is_ok();
            out.push(Write::MapPut {
                ns: ns.to_owned(),
                room: Room::Exempt,
                map: map.to_owned(),
                key: key.to_owned(),
                value: v.value().to_owned(),
                merge: if rule { Merge::Max } else { Merge::Overwrite },
            });
        }
        Ok(out)
    })
    .await
}
