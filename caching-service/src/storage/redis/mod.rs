//! The `redis` back end: the same semantics as the embedded store (its module is the
//! reference), on a Redis server or a Sentinel-managed master, shared by any number of
//! caching-service processes.
//!
//! # Data layout
//!
//! Namespaces and map names may hold any UTF-8 (`:`, `{`, spaces, emoji), so they appear in
//! key names only as lowercase hex of their bytes, which never contains `:`; two different
//! (namespace, map) pairs can therefore never share a key. Keys and values are hash fields and
//! values, stored as given.
//!
//! | key | type | holds |
//! |---|---|---|
//! | `plexgate:kv:<hex ns>` | hash | `/cache` key -> `<created millis>:<value>` |
//! | `plexgate:age` | sorted set | `<hex ns>:<key>` scored by creation sequence: the order `removeOldest` evicts in |
//! | `plexgate:map:<hex ns>:<hex map>` | hash | map key -> value |
//! | `plexgate:maps:<hex ns>` | set | hex names of the namespace's non-empty maps (so listing maps needs no `SCAN`) |
//! | `plexgate:count` | string | entries held, per the counting rule of [`super`] |
//! | `plexgate:seq` | string | last creation sequence |
//! | `plexgate:rev` | string | last revision of the change feed |
//! | `plexgate:feed` | stream | one entry per map change, id `<revision>-0`, fields `n` namespace, `m` map, `o` `put`/`delete`, `k` key, `v` value; trimmed with `MAXLEN ~ feedRetention` |
//!
//! Every mutation is one Lua script (`EVALSHA`), so the size check, eviction, write, counters
//! and feed entry are atomic, also against other caching services on the same Redis. The
//! scripts touch keys they compute (eviction reaches into another namespace's hash), so Redis
//! Cluster is not supported; a single master, with replicas and Sentinel, is.
//!
//! `snapshot` reads the maps and `plexgate:rev` in one read-only script, so the revision is
//! exactly the one the maps are at. `since(R)` reads the stream from `R+1`, in the same
//! script as `plexgate:rev`; it answers [`Since::TooOld`] as the embedded store does (the
//! stream's first entry is past `R+1`), and in two cases the embedded store never meets: `R`
//! is past the last revision, or `R` is within the stream but not in it. Both mean Redis lost
//! changes the subscriber had seen (a failover, below, or a flush), and a fresh snapshot is
//! then the only correct answer.
//!
//! # Connections and failures
//!
//! See [`link`]: a `ConnectionManager` without Sentinel; with Sentinel, a connection to the
//! master Sentinel names, replaced (asking Sentinel again) when it fails or is refused as not
//! a writable master (`READONLY`, `NOREPLICAS`, `MASTERDOWN`, `LOADING`), and when Sentinel,
//! asked every second, names another master. Redis unreachable at start is not an error:
//! [`RedisStorage::connect`] logs a warning and the storage answers [`CacheError::Unavailable`]
//! (503) until Redis answers, then recovers by itself; the same when Redis goes away later.
//! Every operation is bounded by `storage.redis.timeout`. An operation is sent a second time
//! (within that bound) only when that is certainly right: after a refusal (the write did not
//! happen), or after a broken connection when it is a read or a write that is harmless twice
//! (`update`, `clear`); `create`, `delete`, `map_put` and `map_remove` whose connection broke
//! answer 503, as they may or may not have been applied.
//!
//! The revision watch of [`Storage::revisions`] is kept current by [`follow`] (`XREAD BLOCK`
//! on the stream, see there why not a poll), so changes made by other caching services
//! sharing this Redis wake this one's feed subscribers too.
//!
//! # What a master failover can lose, and what is guaranteed
//!
//! Redis replicates asynchronously: the master acknowledges a write before any replica has
//! it. Two ways an acknowledged write is lost when Sentinel promotes a replica:
//!
//! 1. The master dies (or is cut off) before a replica received the write.
//! 2. Split brain: the old master is still up after the promotion (a manual `SENTINEL
//!    failover`, a partition) and takes writes until clients move away or Sentinel demotes it
//!    (Sentinel looks at it every 10 s); those writes are discarded when it resyncs as a
//!    replica. This storage asks Sentinel every second and moves at once when it names a new
//!    master, which bounds the window to about a second, not to zero.
//!
//! What the storage does about it:
//!
//! - After every map write that changed something (`map_put`, and `map_remove` that removed
//!   something: revocations), it sends `WAIT 1 <ms>` on the same connection when the master
//!   has at least one connected replica (from `ROLE`, read at most once a second), `<ms>` =
//!   half the timeout, at most 1000. If `WAIT` answers 1 or more, a replica had the write
//!   before the client got its answer, so case 1 cannot lose it when Sentinel promotes that
//!   replica (with several replicas Sentinel prefers the one furthest ahead, but a lagging one
//!   can still win). If it answers 0 (no replica caught up in time) the write still succeeds
//!   and a warning is logged: it can be lost by a failover in the next moments. Without a
//!   connected replica there is no `WAIT` and nothing bounds the loss. `/cache` writes are
//!   never waited for. `WAIT` is no transaction: a write no replica has is not undone.
//! - Lost revisions are never reused: a write script never gives a change a revision at or
//!   below the highest this process has seen (its "floor"), so after a failover lost
//!   revisions 21..23, the next change is 24, and a subscriber that applied a lost change is
//!   told [`Since::TooOld`] and takes a new snapshot (which also drops the lost change from
//!   its view). Not covered: a caching-service process that had not seen the lost revisions
//!   (its follower was behind) may reuse their numbers.
//!
//! What operators should do for revocations that survive failovers: run at least one replica,
//! and set `min-replicas-to-write 1` and `min-replicas-max-lag 10` on every Redis node (any may
//! become master). A master then refuses writes (`NOREPLICAS`, which this storage treats like
//! `READONLY`) while no replica follows it, which closes case 2 almost entirely (the master
//! notices a replica gone within `min-replicas-max-lag`, at once when the connection closes)
//! and most of case 1; the price is that writes fail (503) while no replica is connected.

mod follow;
mod link;
mod reply;
mod scripts;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ::redis::{FromRedisValue, RedisError, RedisResult, Role, Script, ScriptInvocation, Value};
use async_trait::async_trait;
use plexgate_config::{Certificates, EvictionStrategy, RedisConfig};
use tokio::sync::watch;

use self::follow::Revisions;
use self::link::{Conn, Link};
use self::reply::{array, bad_reply, change, entry, int, pairs, text};
use self::scripts::{AGE, COUNT, EPOCH, FEED, NS_COUNT, REV, SCRIPTS, SEQ};
use super::{Entry, Limits, MapEntries, Merge, Removal, Room, Since, Snapshot, Storage, new_epoch, now_millis};
use crate::error::CacheError;

/// How long a replica count read with `ROLE` is trusted.
const REPLICAS_TTL: Duration = Duration::from_secs(1);
/// Longest `WAIT` for a replica after a map write.
const MAX_WAIT: Duration = Duration::from_secs(1);
/// Longest wait for Redis during [`RedisStorage::connect`].
const PROBE: Duration = Duration::from_secs(5);

/// Redis-backed storage.
pub struct RedisStorage {
    link: Arc<Link>,
    limits: Limits,
    timeout: Duration,
    revision: Arc<Revisions>,
    /// Connected replicas as last seen: (when, link generation, count).
    replicas: Mutex<Option<(Instant, u64, usize)>>,
    /// The revision follower and (with Sentinel) the master watch.
    tasks: Vec<tokio::task::AbortHandle>,
}

impl Drop for RedisStorage {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Whether an operation may be sent again after its connection failed.
#[derive(Clone, Copy, PartialEq)]
enum Retry {
    /// A read, or a write that is harmless twice.
    Safe,
    /// A write that could have been applied.
    OnlyIfRefused,
}

/// One command or script call, owned so it can be sent again.
enum Request {
    Cmd(::redis::Cmd),
    Script(ScriptInvocation<'static>),
}

impl Request {
    async fn send(&self, conn: &mut Conn) -> RedisResult<Value> {
        match self {
            Request::Cmd(c) => c.query_async(conn).await,
            Request::Script(s) => s.invoke_async(conn).await,
        }
    }
}

impl From<&mut ::redis::Cmd> for Request {
    fn from(c: &mut ::redis::Cmd) -> Request {
        Request::Cmd(c.clone())
    }
}

impl From<ScriptInvocation<'static>> for Request {
    fn from(s: ScriptInvocation<'static>) -> Request {
        Request::Script(s)
    }
}

/// What a write script answered.
struct Outcome {
    code: String,
    revision: u64,
    n: u64,
}

impl RedisStorage {
    /// Prepares the storage and checks Redis once. An unreachable Redis is not an error (see
    /// the module doc); bad settings (TLS files, no master or Sentinel) are.
    pub async fn connect(c: &RedisConfig, certs: &Certificates, limits: Limits) -> Result<RedisStorage, CacheError> {
        let link = Arc::new(Link::new(c, certs)?);
        let limits = Limits { feed_retention: limits.feed_retention.max(1), ..limits };
        let revision = Arc::new(Revisions::new());
        let mut storage = RedisStorage {
            link: link.clone(),
            limits,
            timeout: c.timeout,
            revision: revision.clone(),
            replicas: Mutex::new(None),
            tasks: vec![tokio::spawn(follow::run(link.clone(), revision, c.timeout)).abort_handle()],
        };
        if link.uses_sentinel() {
            storage.tasks.push(tokio::spawn(link::watch_sentinel(link.clone())).abort_handle());
        }
        let probe = tokio::time::timeout(PROBE.min(c.timeout), storage.current_revision()).await;
        match probe {
            Ok(Ok(rev)) => {
                storage.revision.raise(rev);
                tracing::info!(target = %link.target, revision = rev, "redis storage connected");
            }
            Ok(Err(e)) => tracing::warn!(target = %link.target, error = %e, "redis is not reachable yet; requests answer 503 until it is"),
            Err(_) => tracing::warn!(target = %link.target, "redis did not answer yet; requests answer 503 until it does"),
        }
        Ok(storage)
    }

    async fn current_revision(&self) -> Result<u64, CacheError> {
        self.run::<Option<u64>>("read the revision", Retry::Safe, ::redis::cmd("GET").arg(REV)).await.map(|r| r.unwrap_or(0))
    }

    /// Runs `op` on a connection to the master within the timeout; retries once when `retry`
    /// allows. Gives the connection back for a follow-up on the same one (`WAIT`).
    async fn run_on(&self, what: &str, retry: Retry, req: Request) -> Result<(Value, Conn), CacheError> {
        // The generation of the connection in use, for when the timeout drops the attempt.
        let in_use = Mutex::new(None);
        let attempt = async {
            let mut tries = 0;
            loop {
                tries += 1;
                let mut conn = self.link.conn().await?;
                *lock(&in_use) = Some(conn.generation());
                match req.send(&mut conn).await {
                    Ok(v) => return Ok((v, conn)),
                    Err(e) => {
                        self.link.failed(conn.generation(), Some(&e));
                        let again = link::not_master(&e) || (retry == Retry::Safe && (e.is_io_error() || e.is_connection_dropped()));
                        if tries >= 2 || !again {
                            return Err(e);
                        }
                        tracing::debug!(error = %e, "redis: {what} failed; trying once more");
                    }
                }
            }
        };
        match tokio::time::timeout(self.timeout, attempt).await {
            Ok(r) => r.map_err(|e: RedisError| CacheError::Unavailable(format!("redis ({what}): {e}"))),
            Err(_) => {
                if let Some(generation) = *lock(&in_use) {
                    self.link.failed(generation, None);
                }
                Err(CacheError::Unavailable(format!("redis ({what}): no answer within {:?}", self.timeout)))
            }
        }
    }

    /// [`Self::run_on`], the reply converted to `T`.
    async fn run<T: FromRedisValue>(&self, what: &str, retry: Retry, req: impl Into<Request>) -> Result<T, CacheError> {
        let (v, _) = self.run_on(what, retry, req.into()).await?;
        ::redis::from_redis_value(v).map_err(|e| CacheError::Internal(format!("redis ({what}): unexpected reply: {e}")))
    }

    /// Runs a write script for namespace `ns`: KEYS = the six shared keys then `keys`; ARGV =
    /// size, eviction, retention, revision floor, room, quota, hex namespace, then `args`.
    #[allow(clippy::too_many_arguments)]
    async fn write(
        &self,
        what: &str,
        retry: Retry,
        script: &'static Script,
        (ns, room): (&str, Room),
        keys: &[String],
        args: &[&str],
    ) -> Result<(Outcome, Conn), CacheError> {
        let evict = match self.limits.eviction {
            EvictionStrategy::Reject => "reject",
            EvictionStrategy::RemoveOldest => "removeOldest",
        };
        let (size, retain, floor) =
            (self.limits.size.to_string(), self.limits.feed_retention.to_string(), self.revision.highest().to_string());
        let mut inv = script.key(COUNT);
        inv.key(SEQ).key(REV).key(FEED).key(AGE).key(NS_COUNT);
        for k in keys {
            inv.key(k);
        }
        let room = match room {
            Room::Counted => "counted",
            Room::Exempt => "exempt",
        };
        inv.arg(size).arg(evict).arg(retain).arg(floor).arg(room).arg(self.limits.per_namespace.to_string()).arg(scripts::hex(ns));
        for a in args {
            inv.arg(*a);
        }
        let (reply, conn) = self.run_on(what, retry, Request::Script(inv)).await?;
        let outcome = match reply {
            Value::Array(items) if items.len() == 3 => Outcome { code: text(&items[0])?, revision: int(&items[1])?, n: int(&items[2])? },
            other => return Err(bad_reply(what, &other)),
        };
        Ok((outcome, conn))
    }

    /// After a map write: publish its revision, and give a replica the chance to have it.
    async fn after_map_write(&self, rev: u64, conn: &mut Conn) {
        self.revision.raise(rev);
        if self.replica_count(conn).await == 0 {
            return;
        }
        let wait = (self.timeout / 2).min(MAX_WAIT);
        let acked =
            tokio::time::timeout(wait + self.timeout, ::redis::cmd("WAIT").arg(1).arg(wait.as_millis() as u64).query_async::<i64>(conn))
                .await;
        match acked {
            Ok(Ok(n)) if n > 0 => {}
            Ok(Ok(_)) => tracing::warn!(
                revision = rev,
                "redis: no replica acknowledged a map write within {wait:?}; a master failover now could lose it"
            ),
            Ok(Err(e)) => tracing::warn!(revision = rev, error = %e, "redis: WAIT for a replica failed; the map write stands"),
            Err(_) => tracing::warn!(revision = rev, "redis: WAIT for a replica did not answer; the map write stands"),
        }
    }

    /// Connected replicas of the master, from `ROLE`, cached for [`REPLICAS_TTL`].
    async fn replica_count(&self, conn: &mut Conn) -> usize {
        let generation = conn.generation();
        let cached = *lock(&self.replicas);
        if let Some((at, g, n)) = cached
            && g == generation
            && at.elapsed() < REPLICAS_TTL
        {
            return n;
        }
        let role = tokio::time::timeout(self.timeout, ::redis::cmd("ROLE").query_async::<Role>(conn)).await;
        let n = match role {
            Ok(Ok(Role::Primary { replicas, .. })) => replicas.len(),
            _ => 0,
        };
        *lock(&self.replicas) = Some((Instant::now(), generation, n));
        n
    }
}

fn outcome_error(o: &Outcome, key: &str) -> Option<CacheError> {
    match o.code.as_str() {
        "ok" => None,
        "conflict" => Some(CacheError::Conflict(key.to_owned())),
        "notfound" => Some(CacheError::NotFound(key.to_owned())),
        "full" => Some(CacheError::Full),
        other => Some(CacheError::Internal(format!("redis: unexpected script answer '{other}'"))),
    }
}

#[async_trait]
impl Storage for RedisStorage {
    async fn create(&self, ns: &str, room: Room, key: &str, value: &str) -> Result<(), CacheError> {
        let created = now_millis().to_string();
        let (o, _) = self
            .write(
                "create",
                Retry::OnlyIfRefused,
                &SCRIPTS.create,
                (ns, room),
                &[scripts::kv(ns)],
                &[key, value, &created, &scripts::age_member(ns, key)],
            )
            .await?;
        outcome_error(&o, key).map_or(Ok(()), Err)
    }

    async fn get(&self, ns: &str, key: &str) -> Result<Entry, CacheError> {
        let kv = scripts::kv(ns);
        let stored = self.run::<Option<String>>("get", Retry::Safe, ::redis::cmd("HGET").arg(&kv).arg(key)).await?;
        match stored {
            Some(s) => entry(key.to_owned(), &s),
            None => Err(CacheError::NotFound(key.to_owned())),
        }
    }

    async fn list(&self, ns: &str) -> Result<Vec<Entry>, CacheError> {
        let kv = scripts::kv(ns);
        let all = self.run::<BTreeMap<String, String>>("list", Retry::Safe, ::redis::cmd("HGETALL").arg(&kv)).await?;
        all.into_iter().map(|(k, v)| entry(k, &v)).collect()
    }

    async fn update(&self, ns: &str, key: &str, value: &str) -> Result<(), CacheError> {
        let (o, _) = self.write("update", Retry::Safe, &SCRIPTS.update, (ns, Room::Counted), &[scripts::kv(ns)], &[key, value]).await?;
        outcome_error(&o, key).map_or(Ok(()), Err)
    }

    async fn delete(&self, ns: &str, key: &str) -> Result<(), CacheError> {
        let (o, _) = self
            .write(
                "delete",
                Retry::OnlyIfRefused,
                &SCRIPTS.delete,
                (ns, Room::Counted),
                &[scripts::kv(ns)],
                &[key, &scripts::age_member(ns, key)],
            )
            .await?;
        outcome_error(&o, key).map_or(Ok(()), Err)
    }

    async fn clear(&self, ns: &str) -> Result<(), CacheError> {
        let (o, _) = self.write("clear", Retry::Safe, &SCRIPTS.clear, (ns, Room::Counted), &[scripts::kv(ns)], &[]).await?;
        outcome_error(&o, "").map_or(Ok(()), Err)
    }

    async fn map_put(&self, ns: &str, room: Room, map: &str, key: &str, value: &str, merge: Merge) -> Result<(), CacheError> {
        let merge = match merge {
            Merge::Overwrite => "overwrite",
            // Lua numbers are doubles: integers are exact up to 2^53 (epoch millis are far below).
            Merge::Max if value.parse::<u64>().is_ok_and(|v| v < 1 << 53) => "max",
            Merge::Max => {
                return Err(CacheError::BadPayload(
                    "a revocation rule's value must be epoch milliseconds (an unsigned integer)".to_owned(),
                ));
            }
        };
        let keys = [scripts::map(ns, map), scripts::maps(ns)];
        let (o, mut conn) = self
            .write("map put", Retry::OnlyIfRefused, &SCRIPTS.map_put, (ns, room), &keys, &[ns, map, &scripts::hex(map), key, value, merge])
            .await?;
        if let Some(e) = outcome_error(&o, key) {
            return Err(e);
        }
        if o.n == 0 {
            // A rule that did not rise: nothing changed.
            return Ok(());
        }
        self.after_map_write(o.revision, &mut conn).await;
        Ok(())
    }

    async fn map_get(&self, ns: &str, map: &str) -> Result<Option<MapEntries>, CacheError> {
        let name = scripts::map(ns, map);
        let entries = self.run::<BTreeMap<String, String>>("map get", Retry::Safe, ::redis::cmd("HGETALL").arg(&name)).await?;
        Ok((!entries.is_empty()).then_some(entries))
    }

    async fn maps(&self, ns: &str) -> Result<BTreeMap<String, MapEntries>, CacheError> {
        let (set, prefix) = (scripts::maps(ns), scripts::map_prefix(ns));
        let reply = {
            let mut inv = SCRIPTS.maps.key(set);
            inv.arg(prefix);
            self.run::<Value>("maps", Retry::Safe, inv).await?
        };
        let mut out = BTreeMap::new();
        for item in array(&reply)?.chunks(2) {
            let [name, entries] = item else { return Err(bad_reply("maps", &reply)) };
            let name = match name {
                Value::BulkString(b) => scripts::unhex(b).ok_or_else(|| bad_reply("map name", name))?,
                _ => return Err(bad_reply("map name", name)),
            };
            let entries = pairs(entries)?;
            if !entries.is_empty() {
                out.insert(name, entries);
            }
        }
        Ok(out)
    }

    async fn map_remove(&self, ns: &str, room: Room, map: &str, keys: &[String]) -> Result<usize, CacheError> {
        if keys.is_empty() {
            return Ok(0);
        }
        let names = [scripts::map(ns, map), scripts::maps(ns)];
        let hex_map = scripts::hex(map);
        let mut args: Vec<&str> = vec![ns, map, &hex_map];
        args.extend(keys.iter().map(String::as_str));
        let (o, mut conn) = self.write("map remove", Retry::OnlyIfRefused, &SCRIPTS.map_remove, (ns, room), &names, &args).await?;
        if let Some(e) = outcome_error(&o, "") {
            return Err(e);
        }
        if o.n > 0 {
            self.after_map_write(o.revision, &mut conn).await;
        }
        Ok(o.n as usize)
    }

    async fn map_remove_if(&self, ns: &str, room: Room, map: &str, key: &str, expected: &str) -> Result<Removal, CacheError> {
        let names = [scripts::map(ns, map), scripts::maps(ns)];
        let hex_map = scripts::hex(map);
        let args = [ns, map, &hex_map, key, expected];
        let (o, mut conn) = self.write("map remove if", Retry::OnlyIfRefused, &SCRIPTS.map_remove_if, (ns, room), &names, &args).await?;
        if let Some(e) = outcome_error(&o, key) {
            return Err(e);
        }
        let removal = Removal::from_count(o.n);
        if removal == Removal::Removed {
            self.after_map_write(o.revision, &mut conn).await;
        }
        Ok(removal)
    }

    async fn snapshot(&self, ns: &str, maps: &[String]) -> Result<Snapshot, CacheError> {
        let names: Vec<String> = maps.iter().map(|m| scripts::map(ns, m)).collect();
        let mut inv = SCRIPTS.snapshot.key(REV);
        inv.key(EPOCH);
        for n in &names {
            inv.key(n);
        }
        inv.arg(new_epoch());
        let reply: Value = self.run("snapshot", Retry::Safe, Request::Script(inv)).await?;
        let items = array(&reply)?;
        let [rev, epoch, entries @ ..] = items else { return Err(bad_reply("snapshot", &reply)) };
        if entries.len() != maps.len() {
            return Err(bad_reply("snapshot", &reply));
        }
        let revision = int(rev)?;
        let epoch = text(epoch)?;
        self.revision.saw(revision);
        let maps = maps.iter().zip(entries).map(|(m, e)| Ok((m.clone(), pairs(e)?))).collect::<Result<_, CacheError>>()?;
        Ok(Snapshot { epoch, revision, maps })
    }

    async fn since(&self, epoch: &str, revision: u64, limit: usize) -> Result<Since, CacheError> {
        let (after, count, from, at) =
            (revision.to_string(), limit.max(1).to_string(), format!("{}-0", revision.saturating_add(1)), format!("{revision}-0"));
        let reply = {
            let mut inv = SCRIPTS.since.key(REV);
            inv.key(FEED).key(EPOCH).arg(after).arg(count).arg(from).arg(at).arg(epoch);
            self.run::<Value>("since", Retry::Safe, inv).await?
        };
        let items = array(&reply)?;
        let too_old = items.first().map(int).transpose()? == Some(1);
        match items {
            _ if too_old => Ok(Since::TooOld),
            [_] => Ok(Since::Changes(Vec::new())),
            [_, entries] => {
                let mut out = array(entries)?.iter().map(change).collect::<Result<Vec<_>, _>>()?;
                out.truncate(limit);
                if let Some(c) = out.last() {
                    self.revision.saw(c.revision);
                }
                Ok(Since::Changes(out))
            }
            _ => Err(bad_reply("since", &reply)),
        }
    }

    fn revisions(&self) -> watch::Receiver<u64> {
        self.revision.subscribe()
    }

    async fn len(&self) -> Result<u64, CacheError> {
        self.run::<Option<u64>>("len", Retry::Safe, ::redis::cmd("GET").arg(COUNT)).await.map(|n| n.unwrap_or(0))
    }

    async fn health(&self) -> Result<(), CacheError> {
        self.run::<String>("ping", Retry::Safe, &mut ::redis::cmd("PING")).await.map(|_| ())
    }

    fn mode(&self) -> &'static str {
        "redis"
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
