//! `components.caching-service.storage`, checked.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::checked::*;
use crate::model;

use super::Ctx;

/// Storage modes as written, case-insensitive. `VSAM` is an alias of `durable`.
pub const STORAGE_MODES: &[&str] = &["inMemory", "durable", "VSAM", "redis", "infinispan", "replicated"];
/// Eviction strategies as written, case-insensitive.
pub const EVICTION_STRATEGIES: &[&str] = &["reject", "removeOldest"];

pub(crate) fn check(ctx: &mut Ctx<'_>, s: &model::Storage, workspace: &Path, default_cluster: &str) -> StorageConfig {
    const P: &str = "components.caching-service.storage";
    let mode = match ctx.choice(&format!("{P}.mode"), &s.mode, STORAGE_MODES) {
        Some(0) => StorageMode::InMemory,
        Some(2) => {
            ctx.warn(&format!("{P}.mode"), "`VSAM` is deprecated in Zowe; plexgate runs it as `durable`, its embedded single-file store");
            StorageMode::Durable
        }
        Some(3) => StorageMode::Redis,
        Some(4) => StorageMode::Infinispan,
        Some(5) => StorageMode::Replicated,
        _ => StorageMode::Durable,
    };
    let size = u64::from(ctx.at_least(&format!("{P}.size"), s.size, 1));
    let size_per_namespace = match s.size_per_namespace {
        0 => (size / 4).max(1),
        n => u64::from(ctx.at_least(&format!("{P}.sizePerNamespace"), n, 1)).min(size),
    };
    let eviction_strategy = match ctx.choice(&format!("{P}.evictionStrategy"), &s.eviction_strategy, EVICTION_STRATEGIES) {
        Some(1) => EvictionStrategy::RemoveOldest,
        _ => EvictionStrategy::Reject,
    };
    let name = ctx.instance.unwrap_or("default");
    let durable_file =
        s.durable.file.as_deref().map(|f| ctx.path(f)).unwrap_or_else(|| workspace.join("caching-service").join(format!("{name}.redb")));
    let redis = (mode == StorageMode::Redis).then(|| redis(ctx, &s.redis));
    let replicated_dir =
        s.replicated.directory.as_deref().map(|d| ctx.path(d)).unwrap_or_else(|| workspace.join("caching-service").join(name));
    let cluster_name = match s.replicated.cluster_name.as_deref().map(str::trim) {
        Some("") => {
            ctx.problem(&format!("{P}.replicated.clusterName"), "found an empty name, allowed a non-empty cluster id");
            default_cluster.to_owned()
        }
        Some(n) => n.to_owned(),
        None => default_cluster.to_owned(),
    };
    StorageConfig { mode, size, size_per_namespace, eviction_strategy, durable_file, redis, replicated_dir, cluster_name }
}

fn redis(ctx: &mut Ctx<'_>, r: &model::Redis) -> RedisConfig {
    const P: &str = "components.caching-service.storage.redis";
    let master = r.master_node_uri.as_ref().and_then(|u| node(ctx, &format!("{P}.masterNodeUri"), u.expose()));
    let timeout = Duration::from_secs(u64::from(ctx.at_least(&format!("{P}.timeout"), r.timeout, 1)));
    let sentinel = r.sentinel.enabled.then(|| {
        let master_instance = r.sentinel.master_instance.clone().unwrap_or_default();
        if master_instance.trim().is_empty() {
            ctx.problem(
                &format!("{P}.sentinel.masterInstance"),
                "missing; with sentinel enabled, the master's name as Sentinel knows it is needed",
            );
        }
        if r.sentinel.nodes.is_empty() {
            ctx.problem(
                &format!("{P}.sentinel.nodes"),
                "found no nodes; with sentinel enabled, list at least one Sentinel as host:port or {host, port}",
            );
        }
        let nodes =
            r.sentinel.nodes.iter().enumerate().filter_map(|(i, v)| sentinel_node(ctx, &format!("{P}.sentinel.nodes.{i}"), v)).collect();
        SentinelConfig { master_instance, nodes }
    });
    if master.is_none() && sentinel.is_none() && r.master_node_uri.is_none() {
        ctx.problem(
            &format!("{P}.masterNodeUri"),
            "missing; storage mode `redis` needs masterNodeUri ([user:password@]host:port) or sentinel.enabled with nodes",
        );
    }
    let tls = r.ssl.enabled.then(|| RedisTls { ca: r.ssl.trust_store.iter().map(|p| ctx.path(p)).collect() });
    RedisConfig { master, timeout, sentinel, tls }
}

/// `[redis[s]://][user[:password]@]host:port`.
fn node(ctx: &mut Ctx<'_>, path: &str, uri: &str) -> Option<RedisNode> {
    let rest = uri.trim();
    let rest = rest.strip_prefix("rediss://").or_else(|| rest.strip_prefix("redis://")).unwrap_or(rest);
    let rest = rest.trim_end_matches('/');
    let (cred, hostport) = match rest.rsplit_once('@') {
        Some((c, h)) => (Some(c), h),
        None => (None, rest),
    };
    let (user, password) = match cred {
        None => (None, None),
        Some(c) => match c.split_once(':') {
            Some((u, p)) => ((!u.is_empty()).then(|| u.to_owned()), Some(model::Secret::new(p))),
            None => (None, Some(model::Secret::new(c))),
        },
    };
    let parsed = hostport.rsplit_once(':').and_then(|(h, p)| Some((h.trim_matches(['[', ']']).to_owned(), p.parse::<i64>().ok()?)));
    match parsed {
        Some((host, port)) if !host.is_empty() => {
            let port = ctx.port(path, port);
            Some(RedisNode { host, port, user, password })
        }
        // Never echo the value: it may hold a password.
        _ => {
            ctx.problem(path, "not of the form [user:password@]host:port");
            None
        }
    }
}

fn sentinel_node(ctx: &mut Ctx<'_>, path: &str, v: &Value) -> Option<RedisNode> {
    match v {
        Value::String(s) => node(ctx, path, s),
        Value::Object(m) => {
            let host = m.get("host").and_then(Value::as_str).map(str::to_owned);
            let port = m.get("port").and_then(Value::as_i64);
            match (host, port) {
                (Some(host), Some(port)) => {
                    let port = ctx.port(&format!("{path}.port"), port);
                    let password = m.get("password").and_then(Value::as_str).map(model::Secret::new);
                    Some(RedisNode { host, port, user: None, password })
                }
                _ => {
                    ctx.problem(path, "a Sentinel node needs `host` (a string) and `port` (a number)");
                    None
                }
            }
        }
        _ => {
            ctx.problem(path, "allowed a `host:port` string or a mapping with host and port");
            None
        }
    }
}
