//! Keeps the storage's revision watch current with changes made by any process sharing the
//! Redis, so every caching service wakes its feed subscribers, not only the one that wrote.
//!
//! It blocks on `XREAD BLOCK` on the feed stream, on a connection of its own (a blocking
//! command would stall every other command pipelined on a shared connection), and reads
//! `plexgate:rev` after each wake-up. Compared with polling `plexgate:rev`, that wakes
//! subscribers as soon as a change lands (polling costs its interval in latency, and a request
//! per interval per process while idle), and while idle costs one round trip per
//! [`BLOCK`]. The read after a timeout also notices a revision that went *down* (a failover
//! that lost writes, a flushed Redis), which `XREAD` alone would wait out in silence.
//!
//! Redis gone: reconnect with back-off (100 ms doubling to 5 s), and with Sentinel each
//! attempt asks Sentinel for the master again. The task ends when the storage is dropped
//! (it is aborted then).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ::redis::aio::MultiplexedConnection;
use ::redis::{RedisResult, Value};
use tokio::sync::watch;

use super::link::Link;
use super::scripts::{FEED, REV};

/// How long one `XREAD` blocks; also how soon a new master or a lower revision is noticed.
const BLOCK: Duration = Duration::from_secs(1);
/// First and longest pause between reconnection attempts.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(5));

/// Follows the feed until aborted.
pub(super) async fn run(link: Arc<Link>, revision: Arc<Revisions>, timeout: Duration) {
    let mut pause = BACKOFF.0;
    let mut down = false;
    loop {
        let generation = link.generation();
        let result = match link.dedicated(timeout, BLOCK + timeout).await {
            Ok(conn) => {
                if down {
                    tracing::info!(target = %link.target, "redis: revision follower reconnected");
                    down = false;
                }
                pause = BACKOFF.0;
                follow(&link, generation, conn, &revision).await
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => continue,
            Err(e) if !down => {
                tracing::warn!(target = %link.target, error = %e, "redis: revision follower lost Redis; retrying");
                down = true;
            }
            Err(e) => tracing::debug!(error = %e, "redis: revision follower still without Redis"),
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(BACKOFF.1);
    }
}

/// Follows on one connection; returns `Ok` when the link moved to another master.
async fn follow(link: &Link, generation: u64, mut conn: MultiplexedConnection, revision: &Revisions) -> RedisResult<()> {
    let mut last: u64 = ::redis::cmd("GET").arg(REV).query_async::<Option<u64>>(&mut conn).await?.unwrap_or(0);
    revision.set(last);
    loop {
        if link.generation() != generation && link.uses_sentinel() {
            return Ok(());
        }
        let _: Value = ::redis::cmd("XREAD")
            .arg("BLOCK")
            .arg(BLOCK.as_millis() as u64)
            .arg("COUNT")
            .arg(1)
            .arg("STREAMS")
            .arg(FEED)
            .arg(format!("{last}-0"))
            .query_async(&mut conn)
            .await?;
        last = ::redis::cmd("GET").arg(REV).query_async::<Option<u64>>(&mut conn).await?.unwrap_or(0);
        revision.set(last);
    }
}

/// The revision as this process knows it: the watch subscribers wait on, and the highest
/// revision ever seen (the floor of new revisions, see the scripts).
pub(super) struct Revisions {
    watch: watch::Sender<u64>,
    highest: AtomicU64,
}

impl Revisions {
    pub(super) fn new() -> Revisions {
        Revisions { watch: watch::channel(0).0, highest: AtomicU64::new(0) }
    }

    pub(super) fn subscribe(&self) -> watch::Receiver<u64> {
        self.watch.subscribe()
    }

    /// The highest revision seen.
    pub(super) fn highest(&self) -> u64 {
        self.highest.load(Ordering::SeqCst)
    }

    /// `rev` was seen (in a reply).
    pub(super) fn saw(&self, rev: u64) {
        self.highest.fetch_max(rev, Ordering::SeqCst);
    }

    /// A write of this process made `rev`: raises the watch to it (never lowers it, as writes
    /// finish in any order).
    pub(super) fn raise(&self, rev: u64) {
        self.saw(rev);
        self.watch.send_if_modified(|r| {
            let newer = rev > *r;
            if newer {
                *r = rev;
            }
            newer
        });
    }

    /// Redis says the last revision is `rev`: the watch takes exactly that, down too, so
    /// subscribers ahead of it find out (and take a new snapshot).
    fn set(&self, rev: u64) {
        self.saw(rev);
        self.watch.send_if_modified(|r| {
            let changed = *r != rev;
            *r = rev;
            changed
        });
    }
}
