//! A Sentinel-managed Redis group as real processes: a master, one replica in sync with it and
//! one Sentinel (quorum 1, master down after 1 s), each `redis-server` on a free loopback port
//! without persistence, as `caching-service/tests/redis_storage.rs` sets them up. A minimal
//! RESP client asks them about replication and Sentinel about the master.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use crate::process::Proc;
use crate::{Workspace, assert_eventually, free_port};

/// The name Sentinel knows the master by.
pub const MASTER_NAME: &str = "mymaster";

/// One RESP reply.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// `+...`
    Simple(String),
    /// `-...`
    Error(String),
    /// `:...`
    Int(i64),
    /// `$...` (`None`: the null bulk string).
    Bulk(Option<String>),
    /// `*...` (`None`: the null array).
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// The text of a simple or bulk string.
    pub fn text(&self) -> Option<&str> {
        match self {
            Reply::Simple(s) | Reply::Bulk(Some(s)) => Some(s),
            _ => None,
        }
    }
}

fn read_reply(r: &mut impl BufRead) -> std::io::Result<Reply> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    let line = line.trim_end_matches("\r\n");
    let (kind, rest) = line.split_at(1.min(line.len()));
    let num = || rest.parse::<i64>().map_err(std::io::Error::other);
    Ok(match kind {
        "+" => Reply::Simple(rest.to_owned()),
        "-" => Reply::Error(rest.to_owned()),
        ":" => Reply::Int(num()?),
        "$" => match num()? {
            n if n < 0 => Reply::Bulk(None),
            n => {
                let mut buf = vec![0; n as usize + 2];
                r.read_exact(&mut buf)?;
                buf.truncate(n as usize);
                Reply::Bulk(Some(String::from_utf8_lossy(&buf).into_owned()))
            }
        },
        "*" => match num()? {
            n if n < 0 => Reply::Array(None),
            n => Reply::Array(Some((0..n).map(|_| read_reply(r)).collect::<std::io::Result<_>>()?)),
        },
        _ => return Err(std::io::Error::other(format!("not RESP: {line}"))),
    })
}

/// Sends one command to 127.0.0.1:`port`; its reply (`Err` when unreachable).
pub fn command(port: u16, args: &[&str]) -> std::io::Result<Reply> {
    let mut s = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(1))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut req = format!("*{}\r\n", args.len());
    for a in args {
        req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    s.write_all(req.as_bytes())?;
    read_reply(&mut BufReader::new(s))
}

/// `INFO <section>` as `field -> value`.
pub fn info(port: u16, section: &str) -> std::collections::BTreeMap<String, String> {
    match command(port, &["INFO", section]) {
        Ok(Reply::Bulk(Some(text))) => {
            text.lines().filter_map(|l| l.split_once(':')).map(|(k, v)| (k.to_owned(), v.trim().to_owned())).collect()
        }
        _ => Default::default(),
    }
}

/// Whether `redis-server` is on PATH (see [`crate::redis::available`]: under `CI=true` its
/// absence fails the test).
pub fn available() -> bool {
    crate::redis::available()
}

/// A running redis-server (or Sentinel).
pub struct RedisNode {
    /// Its port.
    pub port: u16,
    /// The process.
    pub proc: Proc,
}

/// Master, replica and Sentinel.
pub struct RedisGroup {
    /// The master at start.
    pub master: RedisNode,
    /// The replica at start.
    pub replica: RedisNode,
    /// The Sentinel.
    pub sentinel: RedisNode,
}

fn server(ws: &Workspace, name: &str, args: &[String], ready: &str) -> RedisNode {
    let port = free_port();
    let dir = ws.path().join(name);
    std::fs::create_dir_all(&dir).expect("redis dir");
    let mut cmd = Command::new("redis-server");
    let mut all: Vec<String> = Vec::new();
    if name.starts_with("sentinel") {
        let conf = dir.join("sentinel.conf");
        let text = format!("port {port}\nbind 127.0.0.1\ndir {}\n{}", dir.display(), args.join("\n"));
        std::fs::write(&conf, text).expect("sentinel.conf");
        all.extend([conf.display().to_string(), "--sentinel".to_owned()]);
    } else {
        all.extend(
            ["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", &dir.display().to_string()]
                .map(str::to_owned),
        );
        all.extend(args.iter().cloned());
    }
    cmd.args(&all).current_dir(&dir);
    let proc = Proc::spawn(name, cmd, &ws.path().join(format!("{name}.log")));
    assert_eventually!(Duration::from_secs(10), proc.logs().contains(ready), "{name} ready\n{}", proc.logs());
    RedisNode { port, proc }
}

impl RedisGroup {
    /// Starts master, replica and Sentinel in `ws`, and waits until the replica is in sync and
    /// Sentinel knows it (it can only promote a replica it has seen).
    pub fn start(ws: &Workspace) -> RedisGroup {
        let master = server(ws, "redis-master", &[], "Ready to accept connections");
        let replica = server(
            ws,
            "redis-replica",
            &["--replicaof".into(), "127.0.0.1".into(), master.port.to_string(), "--repl-diskless-sync-delay".into(), "0".into()],
            "Ready to accept connections",
        );
        assert_eventually!(
            Duration::from_secs(10),
            info(replica.port, "replication").get("master_link_status").is_some_and(|s| s == "up"),
            "replica in sync\n{}",
            replica.proc.logs()
        );
        let sentinel = server(
            ws,
            "sentinel",
            &[
                format!("sentinel monitor {MASTER_NAME} 127.0.0.1 {} 1", master.port),
                format!("sentinel down-after-milliseconds {MASTER_NAME} 1000"),
                format!("sentinel failover-timeout {MASTER_NAME} 5000"),
            ],
            "+monitor master",
        );
        let g = RedisGroup { master, replica, sentinel };
        assert_eventually!(
            Duration::from_secs(20),
            matches!(command(g.sentinel.port, &["SENTINEL", "replicas", MASTER_NAME]), Ok(Reply::Array(Some(r))) if !r.is_empty()),
            "Sentinel found the replica\n{}",
            g.sentinel.proc.logs()
        );
        g
    }

    /// The port of the master Sentinel names now.
    pub fn master_port(&self) -> Option<u16> {
        match command(self.sentinel.port, &["SENTINEL", "get-master-addr-by-name", MASTER_NAME]) {
            Ok(Reply::Array(Some(a))) => a.get(1).and_then(Reply::text).and_then(|p| p.parse().ok()),
            _ => None,
        }
    }

    /// The replica's replication offset as it reports it.
    pub fn replica_offset(&self) -> Option<u64> {
        info(self.replica.port, "replication").get("slave_repl_offset").and_then(|v| v.parse().ok())
    }

    /// `storage` flow YAML for the caching service: Redis through this Sentinel.
    pub fn storage_yaml(&self) -> String {
        format!(
            "{{mode: redis, redis: {{timeout: 2, sentinel: {{enabled: true, masterInstance: {MASTER_NAME}, nodes: [\"127.0.0.1:{}\"]}}}}}}",
            self.sentinel.port
        )
    }
}
