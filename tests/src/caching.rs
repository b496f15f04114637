//! A real `plexgate caching-service` process on a free port, with its storage of choice.

use std::time::Duration;

use crate::drills::redis_group::{MASTER_NAME, RedisGroup};
use crate::process::Proc;
use crate::redis::RedisServer;
use crate::{Workspace, free_port};

/// A caching service under test, in its own workspace.
pub struct CachingService {
    /// The process.
    pub proc: Proc,
    /// Its HTTPS port.
    pub port: u16,
    /// The Redis behind it, for mode `redis`.
    pub redis: Option<RedisServer>,
    /// Master, replica and Sentinel behind it, for mode [`REDIS_SENTINEL`].
    pub group: Option<RedisGroup>,
    /// The other replicas, for [`REPLICATED_LEADER`] and [`REPLICATED_FOLLOWER`].
    pub replicas: Option<crate::replicated::Group>,
    config: std::path::PathBuf,
    /// Its workspace (certificates in `workspace/certificates`). Last: dropped after the
    /// processes, which print their logs from it when a test fails.
    pub ws: Workspace,
}

/// A `Setup::mode` of the tests only: `redis` reached through Sentinel (master, replica,
/// Sentinel), as production runs it.
pub const REDIS_SENTINEL: &str = "redisSentinel";

/// `Setup::mode`s of the tests only: `replicated` with three replicas, talking to the leader
/// or to a follower.
pub const REPLICATED_LEADER: &str = "replicatedLeader";
/// See [`REPLICATED_LEADER`].
pub const REPLICATED_FOLLOWER: &str = "replicatedFollower";

/// How to build one.
pub struct Setup<'a> {
    /// `storage.mode`.
    pub mode: &'a str,
    /// Extra YAML lines under `components.caching-service.storage` (indented 6 spaces).
    pub storage: &'a str,
    /// Extra YAML lines under `components.caching-service` (indented 4 spaces).
    pub service: &'a str,
}

impl CachingService {
    /// Starts one with `mode` and defaults; `None` when mode is `redis` and redis-server is
    /// missing outside CI (the caller skips).
    pub fn start(mode: &str) -> Option<CachingService> {
        CachingService::start_with(Setup { mode, storage: "", service: "" })
    }

    /// Starts one per `setup` and waits until it is healthy.
    pub fn start_with(setup: Setup<'_>) -> Option<CachingService> {
        let ws = Workspace::with_certs();
        if setup.mode == REPLICATED_LEADER || setup.mode == REPLICATED_FOLLOWER {
            let mut g = crate::replicated::Group::start(&ws, 3, setup.service, setup.storage);
            let leader = g.leader(&ws).expect("a leader among healthy replicas");
            let i = if setup.mode == REPLICATED_LEADER { leader } else { (leader + 1) % 3 };
            let proc = g.procs[i].take().expect("running");
            let (port, config) = (g.ports[i], g.config.clone());
            return Some(CachingService { ws, proc, port, redis: None, group: None, replicas: Some(g), config });
        }
        let redis_needed = setup.mode == "redis" || setup.mode == REDIS_SENTINEL;
        if redis_needed && !crate::redis::available() {
            return None;
        }
        let redis = (setup.mode == "redis").then(|| RedisServer::start(&ws));
        let group = (setup.mode == REDIS_SENTINEL).then(|| RedisGroup::start(&ws));
        let port = free_port();
        let redis_yaml = match (&redis, &group) {
            (Some(r), _) => format!("      redis:\n        masterNodeUri: \"{}\"\n        timeout: 2\n", r.uri()),
            (_, Some(g)) => format!(
                "      redis:\n        timeout: 2\n        sentinel:\n          enabled: true\n          masterInstance: {MASTER_NAME}\n          nodes: [\"127.0.0.1:{}\"]\n",
                g.sentinel.port
            ),
            _ => String::new(),
        };
        let mode = if redis_needed { "redis" } else { setup.mode };
        let yaml = format!(
            "zowe:\n  externalDomains: [127.0.0.1]\n  workspaceDirectory: workspace\ncomponents:\n  gateway:\n    apiml: {{security: {{auth: {{provider: users-file}}}}}}\n  caching-service:\n    port: {port}\n{}    storage:\n      mode: {mode}\n{}{}",
            setup.service, setup.storage, redis_yaml
        );
        let config = ws.write("zowe.yaml", &yaml);
        let proc = ws.spawn("caching-service", &["caching-service", "-c", config.to_str().expect("utf-8 path")]);
        let cs = CachingService { ws, proc, port, redis, group, replicas: None, config };
        cs.wait_healthy();
        Some(cs)
    }

    /// The URL of `path` on this service.
    pub fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port)
    }

    /// The URL of `path` under `/cachingservice/api/v1`.
    pub fn api(&self, path: &str) -> String {
        self.url(&format!("/cachingservice/api/v1{path}"))
    }

    /// The configuration file.
    pub fn config(&self) -> &std::path::Path {
        &self.config
    }

    /// Waits (bounded) until `/application/health` answers 200.
    pub fn wait_healthy(&self) {
        let client = self.ws.client();
        crate::assert_eventually!(
            Duration::from_secs(20),
            client.get(self.url("/application/health")).send().is_ok_and(|r| r.status() == 200),
            "caching service on {} healthy; log:\n{}",
            self.port,
            self.proc.logs()
        );
    }

    /// SIGKILLs the process and starts it again on the same port and storage.
    pub fn kill_and_restart(&mut self) {
        self.proc.kill();
        self.restart();
    }

    /// Starts the process again (after it was stopped) and waits until it is healthy.
    pub fn restart(&mut self) {
        self.proc = self.ws.spawn("caching-service-restarted", &["caching-service", "-c", self.config.to_str().expect("utf-8 path")]);
        self.wait_healthy();
    }
}
