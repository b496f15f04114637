//! A real `redis-server` on a free loopback port, for the `redis` storage tests.

use std::process::Command;
use std::time::Duration;

use crate::process::Proc;
use crate::{Workspace, free_port};

/// Whether `redis-server` is on PATH. Under `CI=true` its absence fails the test; elsewhere
/// the caller skips with a message.
pub fn available() -> bool {
    let found = Command::new("redis-server").arg("--version").output().is_ok_and(|o| o.status.success());
    if !found {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "redis-server is not on PATH, and CI=true: install it (.ci/run does)");
        eprintln!("SKIPPED: redis-server is not on PATH (install it, or run .ci/run)");
    }
    found
}

/// A running redis-server.
pub struct RedisServer {
    /// Its port on 127.0.0.1.
    pub port: u16,
    proc: Proc,
}

impl RedisServer {
    /// Starts one on a free port, without persistence.
    pub fn start(ws: &Workspace) -> RedisServer {
        Self::start_on(ws, free_port())
    }

    /// Starts one on `port` (to restart a killed one at the same address).
    pub fn start_on(ws: &Workspace, port: u16) -> RedisServer {
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]).current_dir(ws.path());
        let proc = Proc::spawn("redis-server", cmd, &ws.path().join(format!("redis-{port}.log")));
        let r = RedisServer { port, proc };
        crate::assert_eventually!(
            Duration::from_secs(10),
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
            "redis-server on {port}"
        );
        r
    }

    /// `host:port` as the configuration takes it.
    pub fn uri(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        self.proc.kill();
    }
}
