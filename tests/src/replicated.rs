//! A replicated caching service: three (or more) real `plexgate caching-service` processes,
//! haInstances `r1`..`rN` of one zowe.yaml, forming one Raft group on free loopback ports.

use std::time::Duration;

use serde_json::Value;

use crate::process::Proc;
use crate::{Workspace, assert_eventually, free_port};

/// The group's processes and ports.
pub struct Group {
    /// Replica processes by index (`None` while stopped).
    pub procs: Vec<Option<Proc>>,
    /// Their caching-service ports.
    pub ports: Vec<u16>,
    /// The configuration file.
    pub config: std::path::PathBuf,
}

impl Group {
    /// Writes the configuration (`service` and `storage` are extra YAML lines under
    /// `components.caching-service` (4 spaces) and its `storage` (6 spaces)) and starts `n`
    /// replicas; waits until one of them leads and all answer healthy.
    pub fn start(ws: &Workspace, n: usize, service: &str, storage: &str) -> Group {
        let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let config = Group::write_config(ws, &ports, service, storage);
        let mut g = Group { procs: (0..n).map(|_| None).collect(), ports, config };
        for i in 0..n {
            g.spawn(ws, i);
        }
        g.wait_all_healthy(ws);
        g
    }

    /// Writes `zowe-replicated.yaml` naming one replica (`r1`, `r2`, ...) per port.
    pub fn write_config(ws: &Workspace, ports: &[u16], service: &str, storage: &str) -> std::path::PathBuf {
        let mut yaml = format!(
            "zowe:\n  externalDomains: [127.0.0.1]\n  workspaceDirectory: workspace\ncomponents:\n  gateway:\n    enabled: false\n  caching-service:\n{service}    changeFeed: {{heartbeat: 200ms}}\n    storage:\n      mode: replicated\n{storage}  distributor: {{enabled: false}}\nhaInstances:\n"
        );
        for (i, p) in ports.iter().enumerate() {
            yaml.push_str(&format!("  r{}:\n    hostname: 127.0.0.1\n    components: {{caching-service: {{port: {p}}}}}\n", i + 1));
        }
        ws.write("zowe-replicated.yaml", &yaml)
    }

    /// Stops replica `i` (SIGTERM, bounded) and starts it again with the current file.
    pub fn restart(&mut self, ws: &Workspace, i: usize) {
        if let Some(mut p) = self.procs[i].take() {
            p.signal("TERM");
            if p.wait_exit(Duration::from_secs(20)).is_none() {
                p.kill();
            }
        }
        self.spawn(ws, i);
    }

    /// Starts replica `i` (again) without waiting.
    pub fn spawn(&mut self, ws: &Workspace, i: usize) {
        let name = format!("replica-r{}", i + 1);
        let args = ["caching-service", "-c", self.config.to_str().expect("utf-8 path"), "--ha-instance", &format!("r{}", i + 1)];
        self.procs[i] = Some(Proc::spawn(&name, ws.plexgate(&args), &ws.path().join(format!("{name}.log"))));
    }

    /// `/application/health` of replica `i`, if it answers.
    pub fn health(&self, ws: &Workspace, i: usize) -> Option<(u16, Value)> {
        let r = ws
            .client()
            .get(format!("https://127.0.0.1:{}/application/health", self.ports[i]))
            .timeout(Duration::from_secs(2))
            .send()
            .ok()?;
        let status = r.status().as_u16();
        Some((status, r.json().ok()?))
    }

    /// The role replica `i` reports (`Leader`, `Follower`, `Candidate`...).
    pub fn role(&self, ws: &Workspace, i: usize) -> Option<String> {
        self.health(ws, i).and_then(|(_, h)| h["components"]["storage"]["details"]["replica"]["role"].as_str().map(str::to_owned))
    }

    /// The index of the replica that leads now, among the running ones.
    pub fn leader(&self, ws: &Workspace) -> Option<usize> {
        (0..self.ports.len()).filter(|i| self.procs[*i].is_some()).find(|i| self.role(ws, *i).as_deref() == Some("Leader"))
    }

    /// Waits until every running replica is healthy (in contact with a leader).
    pub fn wait_all_healthy(&self, ws: &Workspace) {
        for i in (0..self.ports.len()).filter(|i| self.procs[*i].is_some()) {
            assert_eventually!(
                Duration::from_secs(30),
                self.health(ws, i).is_some_and(|(s, _)| s == 200),
                "replica r{} healthy\n{}",
                i + 1,
                self.logs()
            );
        }
    }

    /// Every replica's log so far.
    pub fn logs(&self) -> String {
        self.procs.iter().flatten().map(Proc::logs).collect()
    }
}
