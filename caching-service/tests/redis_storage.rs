//! The `redis` storage back end against real `redis-server` (and `redis-sentinel`) processes
//! on free loopback ports: the storage contract, the change feed, other instances' changes,
//! Redis down at start and mid-run, and a Sentinel failover.
//!
//! Without `redis-server` on PATH each test prints a skip message and passes, except under
//! `CI=true`, where that is a failure.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use plexgate_caching_service::CacheError;
use plexgate_caching_service::storage::{Limits, Merge, Op, RedisStorage, Room, Since, Storage};
use plexgate_config::model::Secret;
use plexgate_config::{Certificates, EvictionStrategy, RedisConfig, RedisNode, RedisTls, SentinelConfig};

/// Polls `$cond` (an async expression giving bool) every 50 ms until true or `$timeout`.
macro_rules! assert_eventually {
    ($timeout:expr, $cond:expr, $($msg:tt)+) => {{
        let deadline = Instant::now() + $timeout;
        loop {
            if $cond {
                break;
            }
            if Instant::now() > deadline {
                panic!("not within {:?}: {}", $timeout, format!($($msg)+));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }};
}

fn redis_available() -> bool {
    let found = Command::new("redis-server").arg("--version").output().is_ok_and(|o| o.status.success());
    if !found {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "redis-server is not on PATH, and CI=true: install it");
        eprintln!(
            "SKIPPED: redis-server is not on PATH; install redis-server (Debian package redis-server) to run the redis storage tests"
        );
    }
    found
}

/// A free port, never handed out twice in this test process (servers are restarted on theirs).
fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<std::collections::BTreeSet<u16>> = std::sync::Mutex::new(std::collections::BTreeSet::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port");
        if GIVEN.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(port) {
            return port;
        }
    }
}

/// A redis-server or redis-sentinel child process in a temporary directory of its own (its
/// working directory, log and any file it writes), killed (SIGKILL) on drop.
struct Server {
    port: u16,
    child: Option<Child>,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start() -> Server {
        Server::redis(None, &[])
    }

    fn start_on(port: u16) -> Server {
        Server::redis(Some(port), &[])
    }

    fn replica_of(master: u16) -> Server {
        // No delay before a replica's initial sync (Redis waits 5 s for more replicas by
        // default); this one may become a master with replicas of its own.
        Server::redis(None, &["--replicaof", "127.0.0.1", &master.to_string(), "--repl-diskless-sync-delay", "0"])
    }

    /// A redis-server without persistence, on `port` or a free one.
    fn redis(port: Option<u16>, extra: &[&str]) -> Server {
        Server::launch(port, "Ready to accept connections", |port, dir| {
            let mut args: Vec<String> = ["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir"]
                .iter()
                .map(|a| a.to_string())
                .collect();
            args.push(dir.display().to_string());
            args.extend(extra.iter().map(|a| a.to_string()));
            ("redis-server", args)
        })
    }

    fn sentinel(master: u16) -> Server {
        Server::launch(None, "+monitor master", |port, dir| {
            let conf = dir.join("sentinel.conf");
            std::fs::write(
                &conf,
                format!(
                    "port {port}\nbind 127.0.0.1\ndir {}\nsentinel monitor mymaster 127.0.0.1 {master} 1\nsentinel down-after-milliseconds mymaster 1000\nsentinel failover-timeout mymaster 5000\n",
                    dir.display()
                ),
            )
            .expect("write sentinel.conf");
            ("redis-server", vec![conf.display().to_string(), "--sentinel".to_owned()])
        })
    }

    /// Starts the process `command` gives for a port and a directory, and waits until its log
    /// shows `ready`. Without a fixed port, a port another test took in the meantime is
    /// replaced by another free one.
    fn launch(port: Option<u16>, ready: &str, command: impl Fn(u16, &std::path::Path) -> (&'static str, Vec<String>)) -> Server {
        for attempt in 1.. {
            let p = port.unwrap_or_else(free_port);
            let dir = tempfile::tempdir().expect("temp dir");
            let log = dir.path().join("server.log");
            let out = std::fs::File::create(&log).expect("log file");
            let (program, args) = command(p, dir.path());
            let child = Command::new(program)
                .args(&args)
                .current_dir(dir.path())
                .stdin(Stdio::null())
                .stdout(out.try_clone().expect("log file"))
                .stderr(out)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
            let mut server = Server { port: p, child: Some(child), log, _dir: dir };
            match server.wait_ready(ready) {
                Ok(()) => return server,
                Err(why) if port.is_none() && attempt < 5 && why.contains("Address already in use") => continue,
                Err(why) => panic!("{program} on port {p}: {why}"),
            }
        }
        unreachable!()
    }

    fn wait_ready(&mut self, ready: &str) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                return Err(format!("exited with {status}\n{}", self.logs()));
            }
            if self.logs().contains(ready) && ping(self.port) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("not ready within 10 s\n{}", self.logs()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A connection of the test's own; a busy server (a failover in progress) gets a few
    /// seconds to accept it.
    async fn conn(&self) -> redis::aio::MultiplexedConnection {
        let client = redis::Client::open(format!("redis://127.0.0.1:{}", self.port)).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match client.get_multiplexed_async_connection().await {
                Ok(c) => return c,
                Err(e) if Instant::now() > deadline => panic!("test connection to {}: {e}\n{}", self.port, self.logs()),
                Err(_) => tokio::task::yield_now().await,
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

fn ping(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let mut buf = [0u8; 64];
    s.write_all(b"PING\r\n").is_ok() && s.read(&mut buf).is_ok_and(|n| buf[..n].starts_with(b"+PONG") || buf[..n].starts_with(b"-NOAUTH"))
}

fn node(port: u16) -> RedisNode {
    RedisNode { host: "127.0.0.1".to_owned(), port, user: None, password: None }
}

fn config(port: u16) -> RedisConfig {
    RedisConfig { master: Some(node(port)), timeout: Duration::from_secs(2), sentinel: None, tls: None }
}

fn certs() -> Certificates {
    Certificates {
        key: PathBuf::new(),
        certificate: PathBuf::new(),
        certificate_authorities: Vec::new(),
        client_key: PathBuf::new(),
        client_certificate: PathBuf::new(),
        generated: false,
    }
}

fn limits(size: u64, eviction: EvictionStrategy) -> Limits {
    Limits { size, eviction, per_namespace: size, feed_retention: 1000 }
}

async fn open(port: u16, limits: Limits) -> RedisStorage {
    RedisStorage::connect(&config(port), &certs(), limits).await.expect("connect")
}

fn entries(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn unavailable<T: std::fmt::Debug>(r: Result<T, CacheError>) -> bool {
    matches!(r, Err(CacheError::Unavailable(_)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_create_get_list_update_delete_clear() {
    if !redis_available() {
        return;
    }
    let redis = Server::start();
    let s = open(redis.port, limits(100, EvictionStrategy::Reject)).await;
    assert_eq!(s.mode(), "redis");
    s.health().await.expect("health");
    let ns = "CN=user, O=Zowe";

    let before = plexgate_caching_service::storage::now_millis();
    s.create_counted(ns, "k1", "v1").await.unwrap();
    s.create_counted(ns, "k2", "v2").await.unwrap();
    assert!(matches!(s.create_counted(ns, "k1", "other").await, Err(CacheError::Conflict(k)) if k == "k1"));
    let e = s.get(ns, "k1").await.unwrap();
    assert_eq!((e.key.as_str(), e.value.as_str()), ("k1", "v1"));
    assert!(e.created >= before && e.created <= plexgate_caching_service::storage::now_millis());
    assert!(matches!(s.get(ns, "nope").await, Err(CacheError::NotFound(k)) if k == "nope"));
    assert_eq!(s.len().await.unwrap(), 2);

    s.update(ns, "k1", "v1b").await.unwrap();
    let updated = s.get(ns, "k1").await.unwrap();
    assert_eq!(updated.value, "v1b");
    assert_eq!(updated.created, e.created, "update keeps the creation time");
    assert!(matches!(s.update(ns, "nope", "x").await, Err(CacheError::NotFound(_))));

    let list: Vec<(String, String)> = s.list(ns).await.unwrap().into_iter().map(|e| (e.key, e.value)).collect();
    assert_eq!(list, vec![("k1".to_owned(), "v1b".to_owned()), ("k2".to_owned(), "v2".to_owned())]);

    s.delete(ns, "k2").await.unwrap();
    assert!(matches!(s.delete(ns, "k2").await, Err(CacheError::NotFound(_))));
    assert_eq!(s.len().await.unwrap(), 1);

    s.create_counted(ns, "k3", "v3").await.unwrap();
    s.map_put_over(ns, "m", "a", "1").await.unwrap();
    s.clear(ns).await.unwrap();
    assert!(s.list(ns).await.unwrap().is_empty());
    assert_eq!(s.map_get(ns, "m").await.unwrap(), Some(entries(&[("a", "1")])), "clear keeps maps");
    assert_eq!(s.len().await.unwrap(), 1);
    s.clear(ns).await.unwrap();
    // A deleted key can be created again.
    s.create_counted(ns, "k1", "again").await.unwrap();
    assert_eq!(s.get(ns, "k1").await.unwrap().value, "again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn utf8_names_round_trip_and_namespaces_are_isolated() {
    if !redis_available() {
        return;
    }
    let redis = Server::start();
    let s = open(redis.port, limits(100, EvictionStrategy::Reject)).await;
    let ns = "CN=Zoë:{x}/ O=Zowe 🚀";
    let keys = ["a:b", "{c}", "d/e f", "🚀", "plexgate:kv:00", ""];
    for (i, k) in keys.iter().enumerate() {
        s.create_counted(ns, k, &format!("value {i} with : and {{ and 🚀")).await.unwrap();
    }
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(s.get(ns, k).await.unwrap().value, format!("value {i} with : and {{ and 🚀"));
    }
    assert_eq!(s.list(ns).await.unwrap().len(), keys.len());

    // Names that would collide if joined with ':'.
    s.create_counted("a:b", "c", "1").await.unwrap();
    s.create_counted("a", "b:c", "2").await.unwrap();
    assert_eq!(s.get("a:b", "c").await.unwrap().value, "1");
    assert_eq!(s.get("a", "b:c").await.unwrap().value, "2");
    assert!(matches!(s.get("a", "c").await, Err(CacheError::NotFound(_))));
    s.map_put_over("a", "b:c", "k", "x").await.unwrap();
    s.map_put_over("a:b", "c", "k", "y").await.unwrap();
    assert_eq!(s.map_get("a", "b:c").await.unwrap(), Some(entries(&[("k", "x")])));
    assert_eq!(s.map_get("a:b", "c").await.unwrap(), Some(entries(&[("k", "y")])));

    // Isolation: same key in two namespaces.
    s.create_counted("ns1", "same", "one").await.unwrap();
    s.create_counted("ns2", "same", "two").await.unwrap();
    assert_eq!(s.get("ns1", "same").await.unwrap().value, "one");
    s.delete("ns1", "same").await.unwrap();
    assert_eq!(s.get("ns2", "same").await.unwrap().value, "two");
    s.clear("ns2").await.unwrap();
    assert_eq!(s.get(ns, "🚀").await.unwrap().value, "value 3 with : and { and 🚀");

    let map = "inv:{alid}/Tokens 🚀";
    s.map_put_over(ns, map, "tok:1", "exp 🚀").await.unwrap();
    let all = s.maps(ns).await.unwrap();
    assert_eq!(all.keys().collect::<Vec<_>>(), vec![map]);
    assert_eq!(all[map], entries(&[("tok:1", "exp 🚀")]));
    assert!(s.maps("ns1").await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maps_put_get_list_remove() {
    if !redis_available() {
        return;
    }
    let redis = Server::start();
    let s = open(redis.port, limits(100, EvictionStrategy::Reject)).await;
    let ns = "CN=gateway";
    assert_eq!(s.map_get(ns, "invalidTokens").await.unwrap(), None);
    assert!(s.maps(ns).await.unwrap().is_empty());

    s.map_put_over(ns, "invalidTokens", "t1", "100").await.unwrap();
    s.map_put_over(ns, "invalidTokens", "t2", "200").await.unwrap();
    s.map_put_over(ns, "invalidTokens", "t1", "101").await.unwrap(); // overwrites
    s.map_put_over(ns, "invalidUsers", "alice", "300").await.unwrap();
    assert_eq!(s.len().await.unwrap(), 3, "an overwrite adds no entry");
    assert_eq!(s.map_get(ns, "invalidTokens").await.unwrap(), Some(entries(&[("t1", "101"), ("t2", "200")])));
    let all = s.maps(ns).await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all["invalidUsers"], entries(&[("alice", "300")]));

    let removed = s.map_remove_counted(ns, "invalidTokens", &["t1".to_owned(), "missing".to_owned(), "t1".to_owned()]).await.unwrap();
    assert_eq!(removed, 1);
    assert_eq!(s.map_remove_counted(ns, "nomap", &["x".to_owned()]).await.unwrap(), 0);
    assert_eq!(s.map_remove_counted(ns, "invalidTokens", &[]).await.unwrap(), 0);
    assert_eq!(s.len().await.unwrap(), 2);
    assert_eq!(s.map_remove_counted(ns, "invalidTokens", &["t2".to_owned()]).await.unwrap(), 1);
    assert_eq!(s.map_get(ns, "invalidTokens").await.unwrap(), None, "an emptied map is gone");
    assert_eq!(s.maps(ns).await.unwrap().keys().collect::<Vec<_>>(), vec!["invalidUsers"]);
    assert_eq!(s.len().await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn size_limit_reject() {
    if !redis_available() {
        return;
    }
    let redis = Server::start();
    let s = open(redis.port, limits(3, EvictionStrategy::Reject)).await;
    s.create_counted("a", "k1", "v").await.unwrap();
    s.create_counted("b", "k2", "v").await.unwrap();
    s.map_put_over("a", "m", "x", "1").await.unwrap();
    assert!(matches!(s.create_counted("a", "k3", "v").await, Err(CacheError::Full)));
    assert!(matches!(s.map_put_over("a", "m", "y", "1").await, Err(CacheError::Full)));
    // Changing what exists needs no room.
    s.update("a", "k1", "v2").await.unwrap();
    s.map_put_over("a", "m", "x", "2").await.unwrap();
    assert!(matches!(s.create_counted("a", "k1", "v").await, Err(CacheError::Conflict(_))), "a conflict is a conflict, full or not");
    assert_eq!(s.len().await.unwrap(), 3);
    s.delete("b", "k2").await.unwrap();
    s.create_counted("a", "k3", "v").await.unwrap();
    assert_eq!(s.len().await.unwrap(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn size_limit_remove_oldest_evicts_oldest_cache_entry_never_map_entries() {
    if !redis_available() {
        return;
    }
    let redis = Server::start();
    let s = open(redis.port, limits(3, EvictionStrategy::RemoveOldest)).await;
    s.map_put_over("ns", "invalidTokens", "t", "1").await.unwrap();
    s.create_counted("ns", "oldest", "v").await.unwrap();
    s.create_counted("other", "middle", "v").await.unwrap();
    s.create_counted("ns", "newest", "v").await.unwrap();
    assert!(matches!(s.get("ns", "oldest").await, Err(CacheError::NotFound(_))), "the oldest entry went");
    assert_eq!(s.get("other", "middle").await.unwrap().value, "v");
    assert_eq!(s.map_get("ns", "invalidTokens").await.unwrap(), Some(entries(&[("t", "1")])));
    assert_eq!(s.len().await.unwrap(), 3);
    // A map entry may evict a /cache entry too.
    s.map_put_over("ns", "invalidTokens", "t2", "1").await.unwrap();
    assert!(matches!(s.get("other", "middle").await, Err(CacheError::NotFound(_))));
    s.map_put_over("ns", "invalidTokens", "t3", "1").await.unwrap();
    assert!(s.list("ns").await.unwrap().is_empty());
    assert_eq!(s.len().await.unwrap(), 3);
    // Only map entries left: full.
    assert!(matches!(s.create_counted("ns", "x", "v").await, Err(CacheError::Full)));
    assert!(matches!(s.map_put_over("ns", "invalidTokens", "t4", "1").await, Err(CacheError::Full)));
    assert_eq!(s.map_get("ns", "invalidTokens").await.unwrap().map(|m| m.len()), Some(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feed_snapshot_since_and_too_old() {
    if !redis_available() {
        return;
    }
    let redis = Server::start();
    let s = open(redis.port, Limits { size: 10_000, eviction: EvictionStrategy::Reject, per_namespace: 10_000, feed_retention: 10 }).await;
    let ns = "CN=gw";
    let maps = ["invalidTokens".to_owned(), "invalidUsers".to_owned()];
    let snap = s.snapshot(ns, &maps).await.unwrap();
    assert_eq!(snap.revision, 0);
    assert_eq!(snap.maps.len(), 2);
    assert!(snap.maps.values().all(|m| m.is_empty()));
    assert!(matches!(s.since(&epoch(&s).await, 0, 100).await.unwrap(), Since::Changes(c) if c.is_empty()));

    s.map_put_over(ns, "invalidTokens", "t1", "v1").await.unwrap();
    s.map_put_over("CN=other", "invalidTokens", "o", "v").await.unwrap();
    s.map_put_over(ns, "invalidUsers", "u", "v2").await.unwrap();
    s.map_remove_counted(ns, "invalidTokens", &["t1".to_owned()]).await.unwrap();
    s.create_counted(ns, "kv", "not in the feed").await.unwrap();

    let snap = s.snapshot(ns, &maps).await.unwrap();
    assert_eq!(snap.revision, 4);
    assert_eq!(snap.maps["invalidTokens"], BTreeMap::new());
    assert_eq!(snap.maps["invalidUsers"], entries(&[("u", "v2")]));

    let Since::Changes(all) = s.since(&epoch(&s).await, 0, 100).await.unwrap() else { panic!("too old") };
    assert_eq!(all.iter().map(|c| c.revision).collect::<Vec<_>>(), vec![1, 2, 3, 4]);
    assert_eq!((all[0].namespace.as_str(), all[0].map.as_str()), (ns, "invalidTokens"));
    assert_eq!(all[0].op, Op::Put { key: "t1".to_owned(), value: "v1".to_owned() });
    assert_eq!(all[1].namespace, "CN=other");
    assert_eq!(all[3].op, Op::Delete { key: "t1".to_owned() });
    let Since::Changes(some) = s.since(&epoch(&s).await, 1, 2).await.unwrap() else { panic!("too old") };
    assert_eq!(some.iter().map(|c| c.revision).collect::<Vec<_>>(), vec![2, 3]);
    assert!(matches!(s.since(&epoch(&s).await, 4, 100).await.unwrap(), Since::Changes(c) if c.is_empty()));
    assert!(
        matches!(s.since(&epoch(&s).await, 9, 100).await.unwrap(), Since::TooOld),
        "a revision past the last one means Redis lost changes"
    );

    // Far more changes than the retention: the start of the log is trimmed.
    for i in 0..400 {
        s.map_put_over(ns, "invalidTokens", &format!("t{i}"), "v").await.unwrap();
    }
    let last = s.snapshot(ns, &maps).await.unwrap().revision;
    assert_eq!(last, 404);
    assert!(matches!(s.since(&epoch(&s).await, 0, 100).await.unwrap(), Since::TooOld));
    let Since::Changes(tail) = s.since(&epoch(&s).await, last - 5, 100).await.unwrap() else { panic!("the last 5 changes are in the log") };
    assert_eq!(tail.iter().map(|c| c.revision).collect::<Vec<_>>(), (last - 4..=last).collect::<Vec<_>>());
    assert_eq!(*s.revisions().borrow(), last);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revisions_wake_on_writes_of_another_instance() {
    if !redis_available() {
        return;
    }
    let redis = Server::start();
    let a = open(redis.port, limits(100, EvictionStrategy::Reject)).await;
    let b = open(redis.port, limits(100, EvictionStrategy::Reject)).await;
    let mut rx = a.revisions();
    assert_eq!(*rx.borrow_and_update(), 0);
    b.map_put_over("ns", "invalidTokens", "t", "1").await.unwrap();
    tokio::time::timeout(Duration::from_secs(3), rx.changed()).await.expect("a's watch woke on b's write").unwrap();
    assert_eq!(*rx.borrow_and_update(), 1);
    let started = Instant::now();
    b.map_remove_counted("ns", "invalidTokens", &["t".to_owned()]).await.unwrap();
    tokio::time::timeout(Duration::from_secs(3), rx.wait_for(|r| *r == 2)).await.expect("second change seen").unwrap();
    assert!(started.elapsed() < Duration::from_millis(900), "woken by XREAD, not a poll: {:?}", started.elapsed());
    let Since::Changes(c) = a.since(&epoch(&a).await, 0, 10).await.unwrap() else { panic!("too old") };
    assert_eq!(c.len(), 2);
    // A's own writes move B's watch too.
    let mut rb = b.revisions();
    a.map_put_over("ns", "m", "k", "v").await.unwrap();
    tokio::time::timeout(Duration::from_secs(3), rb.wait_for(|r| *r == 3)).await.expect("b saw a's write").unwrap();
    // The follower stops with the storage.
    rx.borrow_and_update();
    drop(a);
    tokio::time::timeout(Duration::from_secs(3), rx.changed()).await.expect("the watch closes when the storage is dropped").unwrap_err();
}

/// What a promoted replica that missed the last change looks like, made by hand: the
/// revision went back, and the lost revision's number is never given to another change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_changes_are_never_mistaken_for_new_ones() {
    if !redis_available() {
        return;
    }
    let redis = Server::start();
    let s = open(redis.port, limits(100, EvictionStrategy::Reject)).await;
    for k in ["a", "b", "c"] {
        s.map_put_over("ns", "m", k, "v").await.unwrap();
    }
    let mut rx = s.revisions();
    assert_eq!(*rx.borrow_and_update(), 3);
    // Lose revision 3 (the put of "c").
    let mut c = redis.conn().await;
    let _: () = redis::pipe()
        .cmd("SET")
        .arg("plexgate:rev")
        .arg(2)
        .cmd("XDEL")
        .arg("plexgate:feed")
        .arg("3-0")
        .cmd("HDEL")
        .arg(format!("plexgate:map:{}:{}", hex("ns"), hex("m")))
        .arg("c")
        .cmd("DECR")
        .arg("plexgate:count")
        .query_async(&mut c)
        .await
        .unwrap();
    // Subscribers wake, and one that saw revision 3 is told to take a new snapshot.
    tokio::time::timeout(Duration::from_secs(3), rx.wait_for(|r| *r == 2)).await.expect("the watch follows Redis down").unwrap();
    assert!(matches!(s.since(&epoch(&s).await, 3, 10).await.unwrap(), Since::TooOld));
    // The next change is revision 4, not a second revision 3...
    s.map_put_over("ns", "m", "d", "v").await.unwrap();
    let Since::Changes(after2) = s.since(&epoch(&s).await, 2, 10).await.unwrap() else { panic!("too old") };
    assert_eq!(after2.iter().map(|c| c.revision).collect::<Vec<_>>(), vec![4]);
    // ...so a subscriber at the lost revision 3 still gets a new snapshot rather than "nothing new".
    assert!(matches!(s.since(&epoch(&s).await, 3, 10).await.unwrap(), Since::TooOld));
    assert_eq!(s.snapshot("ns", &["m".to_owned()]).await.unwrap().revision, 4);
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_mid_run_answers_unavailable_and_recovers_on_restart() {
    if !redis_available() {
        return;
    }
    let mut redis = Server::start();
    let port = redis.port;
    let s = open(port, limits(100, EvictionStrategy::Reject)).await;
    let mut rx = s.revisions();
    s.create_counted("ns", "k", "v").await.unwrap();
    for i in 0..3 {
        s.map_put_over("ns", "m", &format!("k{i}"), "v").await.unwrap();
    }
    assert_eq!(*rx.borrow_and_update(), 3);

    redis.kill();
    assert!(unavailable(s.get("ns", "k").await), "a read while Redis is down");
    assert!(unavailable(s.create_counted("ns", "k2", "v").await), "a write while Redis is down");
    assert!(unavailable(s.health().await));
    assert!(unavailable(s.snapshot("ns", &["m".to_owned()]).await));

    // Same port, empty (no persistence): the storage recovers without being re-created.
    let redis = Server::start_on(port);
    assert_eventually!(Duration::from_secs(15), s.health().await.is_ok(), "health after restart");
    s.create_counted("ns", "k2", "v").await.unwrap();
    assert_eq!(s.get("ns", "k2").await.unwrap().value, "v");
    // The follower reconnected too, and follows the new (lower) revision.
    assert_eventually!(Duration::from_secs(10), *rx.borrow_and_update() == 0, "watch follows the restarted Redis");
    let other = open(redis.port, limits(100, EvictionStrategy::Reject)).await;
    other.map_put_over("ns", "m", "x", "y").await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), rx.wait_for(|r| *r == 1)).await.expect("watch woke after restart").unwrap();
    // A subscriber that was at revision 3 is told to take a new snapshot.
    assert!(matches!(s.since(&epoch(&s).await, 3, 10).await.unwrap(), Since::TooOld));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_at_connect_then_recovers_when_started() {
    if !redis_available() {
        return;
    }
    let port = free_port();
    let started = Instant::now();
    let s = RedisStorage::connect(&config(port), &certs(), limits(100, EvictionStrategy::Reject))
        .await
        .expect("connect does not fail without Redis");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(unavailable(s.health().await));
    assert!(unavailable(s.create_counted("ns", "k", "v").await));
    assert!(unavailable(s.map_get("ns", "m").await));
    let mut rx = s.revisions();

    let redis = Server::start_on(port);
    assert_eventually!(Duration::from_secs(15), s.health().await.is_ok(), "health once Redis is up");
    s.create_counted("ns", "k", "v").await.unwrap();
    assert_eq!(s.get("ns", "k").await.unwrap().value, "v");
    let other = open(redis.port, limits(100, EvictionStrategy::Reject)).await;
    other.map_put_over("ns", "m", "x", "y").await.unwrap();
    tokio::time::timeout(Duration::from_secs(8), rx.wait_for(|r| *r == 1))
        .await
        .expect("the follower connected after Redis came up")
        .unwrap();
}

/// A master, one replica in sync with it, and one Sentinel that knows both.
struct Group {
    master: Server,
    replica: Server,
    sentinel: Server,
}

impl Group {
    async fn start() -> Group {
        // No delay before the replica's initial sync (Redis waits 5 s for more replicas by default).
        let master = Server::redis(None, &["--repl-diskless-sync-delay", "0"]);
        let replica = Server::replica_of(master.port);
        let mut mc = master.conn().await;
        assert_eventually!(
            Duration::from_secs(10),
            redis::cmd("INFO").arg("replication").query_async::<String>(&mut mc).await.is_ok_and(|i| i.contains("state=online")),
            "replica in sync\n{}",
            replica.logs()
        );
        let sentinel = Server::sentinel(master.port);
        let mut sc = sentinel.conn().await;
        assert_eventually!(
            Duration::from_secs(10),
            redis::cmd("SENTINEL")
                .arg("replicas")
                .arg("mymaster")
                .query_async::<Vec<redis::Value>>(&mut sc)
                .await
                .is_ok_and(|r| !r.is_empty()),
            "sentinel found the replica\n{}",
            sentinel.logs()
        );
        Group { master, replica, sentinel }
    }

    fn config(&self) -> RedisConfig {
        RedisConfig {
            master: None,
            timeout: Duration::from_secs(2),
            sentinel: Some(SentinelConfig { master_instance: "mymaster".to_owned(), nodes: vec![node(self.sentinel.port)] }),
            tls: None,
        }
    }

    async fn storage(&self) -> RedisStorage {
        RedisStorage::connect(&self.config(), &certs(), limits(1000, EvictionStrategy::Reject)).await.unwrap()
    }
}

async fn get_rev(server: &Server) -> Option<u64> {
    // A fresh connection: Sentinel disconnects the clients of the instances it reconfigures.
    redis::cmd("GET").arg("plexgate:rev").query_async(&mut server.conn().await).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_master_killed_failover_keeps_map_entries_and_service() {
    if !redis_available() {
        return;
    }
    let mut g = Group::start().await;
    let s = g.storage().await;
    let ns = "CN=gateway";
    for i in 0..20 {
        s.map_put_over(ns, "invalidTokens", &format!("t{i}"), &format!("{i}")).await.unwrap();
    }
    s.create_counted(ns, "kv", "v").await.unwrap();
    let written = s.map_get(ns, "invalidTokens").await.unwrap().expect("written");
    // The storage waited for the replica: it has every map entry already.
    assert_eq!(get_rev(&g.replica).await, Some(20));
    let mut rx = s.revisions();
    assert_eq!(*rx.borrow_and_update(), 20);

    g.master.kill();
    let killed = Instant::now();
    assert_eventually!(
        Duration::from_secs(20),
        s.map_get(ns, "invalidTokens").await.is_ok_and(|m| m.as_ref() == Some(&written))
            && s.map_put_over(ns, "invalidTokens", "after", "x").await.is_ok(),
        "the storage works again through the promoted replica\nsentinel:\n{}",
        g.sentinel.logs()
    );
    eprintln!("recovered {:?} after the master was killed", killed.elapsed());
    let promoted = redis::cmd("ROLE").query_async::<redis::Role>(&mut g.replica.conn().await).await.unwrap();
    assert!(matches!(promoted, redis::Role::Primary { .. }), "the replica is the master now: {promoted:?}");
    assert_eq!(get_rev(&g.replica).await, Some(21));
    assert_eq!(s.get(ns, "kv").await.unwrap().value, "v");
    assert_eq!(s.map_get(ns, "invalidTokens").await.unwrap().map(|m| m.len()), Some(21));
    // The follower moved to the new master as well.
    tokio::time::timeout(Duration::from_secs(5), rx.wait_for(|r| *r == 21)).await.expect("watch follows the new master").unwrap();
    let Since::Changes(tail) = s.since(&epoch(&s).await, 19, 10).await.unwrap() else { panic!("too old") };
    assert_eq!(tail.iter().map(|c| c.revision).collect::<Vec<_>>(), vec![20, 21]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_manual_failover_moves_writes_to_the_new_master() {
    if !redis_available() {
        return;
    }
    let g = Group::start().await;
    // The recommended setting: a master without a replica in sync refuses writes, so the old
    // master takes (almost) none once the replica has left it (NOREPLICAS, handled like READONLY).
    let _: () = redis::cmd("CONFIG").arg("SET").arg("min-replicas-to-write").arg(1).query_async(&mut g.master.conn().await).await.unwrap();
    let s = g.storage().await;
    for i in 0..5 {
        s.map_put_over("ns", "m", &format!("k{i}"), "v").await.unwrap();
    }
    let before = s.map_get("ns", "m").await.unwrap().expect("written");
    // Sentinel takes a moment to know the replica well enough to promote it (NOGOODSLAVE before).
    let mut sc = g.sentinel.conn().await;
    assert_eventually!(
        Duration::from_secs(10),
        redis::cmd("SENTINEL").arg("FAILOVER").arg("mymaster").query_async::<redis::Value>(&mut sc).await.is_ok(),
        "SENTINEL FAILOVER accepted"
    );
    let promoted = async || {
        matches!(redis::cmd("ROLE").query_async::<redis::Role>(&mut g.replica.conn().await).await, Ok(redis::Role::Primary { .. }))
    };
    assert_eventually!(Duration::from_secs(10), promoted().await, "replica promoted\nsentinel:\n{}", g.sentinel.logs());
    let started = Instant::now();
    // The old master is still up, and thinks it is the master until Sentinel demotes it
    // (up to 10 s later). It refuses writes (NOREPLICAS), and the storage's Sentinel watch
    // moves to the new master as soon as Sentinel names it.
    assert_eventually!(Duration::from_secs(10), s.map_put_over("ns", "m", "after", "v").await.is_ok(), "write after the failover");
    eprintln!("writes work {:?} after the promotion", started.elapsed());
    let rev = s.snapshot("ns", &["m".to_owned()]).await.unwrap().revision;
    assert_eq!(get_rev(&g.replica).await, Some(rev), "the write went to the promoted replica");
    let now = s.map_get("ns", "m").await.unwrap().expect("entries");
    assert!(before.iter().all(|(k, v)| now.get(k) == Some(v)), "entries written before the failover survive: {now:?}");
    assert_eq!(now.get("after").map(String::as_str), Some("v"));
    // The old master follows the new one once Sentinel demotes it.
    assert_eventually!(Duration::from_secs(20), get_rev(&g.master).await == Some(rev), "the old master replicates from the new one");
    tokio::time::timeout(Duration::from_secs(5), s.revisions().wait_for(|r| *r == rev)).await.expect("watch follows").unwrap();
}

/// Credentials reach Redis (and are never shown in errors).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_is_used_and_never_shown() {
    if !redis_available() {
        return;
    }
    let redis = Server::redis(None, &["--requirepass", "s3cret-pw"]);
    let port = redis.port;
    let mut c = config(port);
    c.master = Some(RedisNode { password: Some(Secret::new("s3cret-pw")), ..node(port) });
    let s = RedisStorage::connect(&c, &certs(), limits(10, EvictionStrategy::Reject)).await.unwrap();
    s.create_counted("ns", "k", "v").await.unwrap();
    assert_eq!(s.get("ns", "k").await.unwrap().value, "v");

    c.master = Some(RedisNode { password: Some(Secret::new("wrong-pw")), ..node(port) });
    let bad = RedisStorage::connect(&c, &certs(), limits(10, EvictionStrategy::Reject)).await.unwrap();
    let err = bad.get("ns", "k").await.unwrap_err();
    assert!(matches!(err, CacheError::Unavailable(_)), "{err}");
    assert!(!err.to_string().contains("wrong-pw"), "{err}");
}

/// A CA and a server certificate for 127.0.0.1 signed by it, as PEM files in `dir`:
/// (ca.pem, server.pem, server.key).
fn tls_files(dir: &std::path::Path, ca_name: &str) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name.push(rcgen::DnType::CommonName, ca_name);
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap().signed_by(&key, &issuer).unwrap();
    let paths = (dir.join(format!("{ca_name}.pem")), dir.join("server.pem"), dir.join("server.key"));
    std::fs::write(&paths.0, ca_pem).unwrap();
    std::fs::write(&paths.1, cert.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    paths
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_configured_or_default_cas() {
    if !redis_available() {
        return;
    }
    // What every plexgate binary does at start.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = tls_files(dir.path(), "test-ca");
    let other_dir = tempfile::tempdir().unwrap();
    let (other_ca, _, _) = tls_files(other_dir.path(), "other-ca");
    let tls_port = free_port();
    let paths = [cert, key, ca.clone()].map(|p| p.display().to_string());
    let redis = Server::redis(
        None,
        &[
            "--tls-port",
            &tls_port.to_string(),
            "--tls-cert-file",
            &paths[0],
            "--tls-key-file",
            &paths[1],
            "--tls-ca-cert-file",
            &paths[2],
            "--tls-auth-clients",
            "no",
        ],
    );
    let tls_config = |cas: Vec<PathBuf>| RedisConfig { tls: Some(RedisTls { ca: cas }), ..config(tls_port) };

    // The CA of storage.redis.ssl.trustStore.
    let s = RedisStorage::connect(&tls_config(vec![ca.clone()]), &certs(), limits(10, EvictionStrategy::Reject)).await.unwrap();
    s.create_counted("ns", "k", "over TLS").await.unwrap();
    s.map_put_over("ns", "m", "k", "v").await.unwrap();
    let mut rx = s.revisions();
    tokio::time::timeout(Duration::from_secs(5), rx.wait_for(|r| *r == 1)).await.expect("the follower connects over TLS too").unwrap();

    // No trustStore: the configured CAs (zowe.certificate) are used.
    let mut with_default = certs();
    with_default.certificate_authorities = vec![ca];
    let d = RedisStorage::connect(&tls_config(Vec::new()), &with_default, limits(10, EvictionStrategy::Reject)).await.unwrap();
    assert_eq!(d.get("ns", "k").await.unwrap().value, "over TLS");

    // A CA that did not sign Redis' certificate: refused, as a 503, not a panic.
    let bad = RedisStorage::connect(&tls_config(vec![other_ca]), &certs(), limits(10, EvictionStrategy::Reject)).await.unwrap();
    assert!(unavailable(bad.health().await));
    drop(redis);

    // A CA file that is not there: a start-up error naming it.
    let missing = dir.path().join("missing.pem");
    let err =
        RedisStorage::connect(&tls_config(vec![missing]), &certs(), limits(10, EvictionStrategy::Reject)).await.err().expect("bad CA path");
    assert!(matches!(err, CacheError::Startup(ref m) if m.contains("missing.pem")), "{err}");
}

/// The store's epoch (made by the first snapshot of a fresh Redis).
async fn epoch(s: &impl Storage) -> String {
    s.snapshot("epoch-probe", &[]).await.expect("snapshot").epoch
}

/// The calls of these tests, as a caller's namespace makes them.
trait Counted {
    async fn create_counted(&self, ns: &str, key: &str, value: &str) -> Result<(), CacheError>;
    async fn map_put_over(&self, ns: &str, map: &str, key: &str, value: &str) -> Result<(), CacheError>;
    async fn map_remove_counted(&self, ns: &str, map: &str, keys: &[String]) -> Result<usize, CacheError>;
}

impl<S: Storage> Counted for S {
    async fn create_counted(&self, ns: &str, key: &str, value: &str) -> Result<(), CacheError> {
        self.create(ns, Room::Counted, key, value).await
    }
    async fn map_put_over(&self, ns: &str, map: &str, key: &str, value: &str) -> Result<(), CacheError> {
        self.map_put(ns, Room::Counted, map, key, value, Merge::Overwrite).await
    }
    async fn map_remove_counted(&self, ns: &str, map: &str, keys: &[String]) -> Result<usize, CacheError> {
        self.map_remove(ns, Room::Counted, map, keys).await
    }
}
