//! Log compaction by size. openraft's policy counts entries (a snapshot every 10,000, 1,000
//! kept after it), which bounds a log of logouts (a few hundred bytes each) but not one of
//! large values: 1,000 entries of 1 MiB would be a gigabyte of log. So each replica also
//! watches the bytes its log takes and, past [`LOG_BYTES`], builds a snapshot and purges
//! every entry it covers. A follower that then lags catches up by that snapshot.

use std::time::Duration;

use openraft::Raft;

use super::log::LogStore;
use super::types::TypeConfig;

/// The most bytes of log kept before a snapshot and purge by size.
pub const LOG_BYTES: u64 = 32 * 1024 * 1024;
/// How often the log's size is looked at.
const EVERY: Duration = Duration::from_secs(1);
/// How long a snapshot may take to build before the purge waits for the next round.
const BUILD_WAIT: Duration = Duration::from_secs(30);

/// Runs until the replica stops.
pub async fn by_size(raft: Raft<TypeConfig>, log: LogStore) {
    loop {
        tokio::time::sleep(EVERY).await;
        let bytes = match log.stored_bytes().await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "replicated store: cannot read the log's size");
                continue;
            }
        };
        if bytes <= LOG_BYTES {
            continue;
        }
        let m = raft.metrics().borrow().clone();
        let Some(applied) = m.last_applied else { continue };
        if m.snapshot.is_none_or(|s| s.index < applied.index) {
            tracing::info!(bytes, limit = LOG_BYTES, "replicated store: the log is past its size; building a snapshot");
            if raft.trigger().snapshot().await.is_err() {
                return;
            }
            let built =
                raft.wait(Some(BUILD_WAIT)).metrics(|m| m.snapshot.is_some_and(|s| s.index >= applied.index), "snapshot by size").await;
            if built.is_err() {
                continue;
            }
        }
        let Some(upto) = raft.metrics().borrow().snapshot.map(|s| s.index) else { continue };
        if raft.metrics().borrow().purged.is_none_or(|p| p.index < upto) {
            tracing::info!(bytes, upto, "replicated store: purging the log up to the snapshot (compaction by size)");
            if raft.trigger().purge_log(upto).await.is_err() {
                return;
            }
        }
    }
}
