//! Harness for plexgate's black-box suite: the built `plexgate` binary run as real child
//! processes, in throw-away workspaces, on free loopback ports.
//!
//! Nothing here fakes a plexgate part; it only finds the binary, makes directories and ports,
//! and waits for conditions with a deadline ([`assert_eventually!`]) instead of sleeping.

pub mod caching;
pub mod certs;
pub mod cluster;
pub mod distributor;
pub mod drills;
pub mod eureka;
pub mod forge;
pub mod freeze;
pub mod https;
pub mod nodejs;
pub mod process;
pub mod proxy;
pub mod redis;
pub mod replicated;
pub mod vip;
pub mod zosmf;
pub mod zowe_cli;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The `plexgate` binary under test: `$PLEXGATE_BIN`, or the one cargo built next to this test.
pub fn plexgate_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("PLEXGATE_BIN") {
        return PathBuf::from(p);
    }
    // Test executables live in target/<profile>/deps; the binary in target/<profile>.
    let exe = std::env::current_exe().expect("current_exe");
    let profile_dir = exe.parent().and_then(Path::parent).expect("target/<profile>");
    let bin = profile_dir.join("plexgate");
    assert!(bin.exists(), "{} not found: run the suite with `cargo test --workspace` (which builds it) or set PLEXGATE_BIN", bin.display());
    bin
}

/// A directory with one set of development certificates for the whole test process
/// (`plexgate init certificate` once; RSA key generation is the slow part of a test's setup).
pub fn fixture_certs() -> &'static Path {
    static DIR: std::sync::OnceLock<(tempfile::TempDir, PathBuf)> = std::sync::OnceLock::new();
    &DIR.get_or_init(|| {
        let ws = tempfile::Builder::new().prefix("plexgate-certs-").tempdir().expect("tempdir");
        let out = Command::new(plexgate_bin())
            .args(["init", "certificate"])
            .current_dir(ws.path())
            .output()
            .expect("run plexgate init certificate");
        assert!(out.status.success(), "init certificate: {}", String::from_utf8_lossy(&out.stderr));
        let dir = ws.path().join("workspace/certificates");
        (ws, dir)
    })
    .1
}

/// Whether `python3` runs (the tests' stand-in upstreams are Python scripts). Missing: a
/// failure under CI, a skip with a message naming `purpose` elsewhere.
pub fn python3_available(purpose: &str) -> bool {
    let ok = Command::new("python3").arg("--version").output().is_ok_and(|o| o.status.success());
    if !ok {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "python3 is required for {purpose} under CI");
        eprintln!("SKIPPED: python3 not found; {purpose} need it to run their upstreams");
    }
    ok
}

/// A port on 127.0.0.1 that was free a moment ago, and handed out to no other test process
/// still running: tests hold ports with nothing bound on them (a process being restarted, a
/// port that must stay dead), and nextest runs every test in a process of its own, so each
/// port is reserved by an exclusive lock on a file named after it, held until this process
/// exits (the kernel drops it even on a crash). Two tests given one port would put two servers
/// on it; with `SO_REUSEPORT` both could listen, each answering some of the other's requests.
///
/// It is taken below the kernel's ephemeral range (`net.ipv4.ip_local_port_range`), where
/// outgoing connections take their local ports: a port from that range, free when picked, was
/// sometimes taken by a client's connection before the process meant to listen on it had
/// started (a gateway's admin listener failed so in CI).
pub fn free_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    static HELD: std::sync::Mutex<Vec<std::fs::File>> = std::sync::Mutex::new(Vec::new());
    let ephemeral_start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    // Ports 10000 up to the ephemeral range; below 10000 are too many well-known services.
    let (low, high) = (10_000u16, ephemeral_start.max(10_001));
    let locks = std::env::temp_dir().join("plexgate-test-ports");
    std::fs::create_dir_all(&locks).expect("create the port reservation directory");
    let random = std::collections::hash_map::RandomState::new();
    for attempt in 0u64.. {
        let mut h = random.build_hasher();
        h.write_u64(attempt);
        let port = low + (h.finish() % u64::from(high - low)) as u16;
        // Reserved first (by this process too: a lock is per open file), then checked free.
        let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(locks.join(port.to_string()));
        if let Ok(file) = file
            && file.try_lock().is_ok()
            && TcpListener::bind(("127.0.0.1", port)).is_ok()
        {
            HELD.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(file);
            return port;
        }
        assert!(attempt < 100_000, "no free port below {high}");
    }
    unreachable!()
}

/// A temporary directory that plexgate runs in: relative paths of its config land here.
pub struct Workspace {
    dir: tempfile::TempDir,
}

impl Default for Workspace {
    fn default() -> Self {
        Self::new()
    }
}

impl Workspace {
    /// A fresh, empty directory.
    pub fn new() -> Workspace {
        Workspace { dir: tempfile::Builder::new().prefix("plexgate-test-").tempdir().expect("tempdir") }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `name` with `text`; returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(&p, text).expect("write file");
        p
    }

    /// A workspace with the shared development certificates in `workspace/certificates`
    /// (generated once per test process by `plexgate init certificate`, then copied).
    pub fn with_certs() -> Workspace {
        let ws = Workspace::new();
        let dir = ws.certs_dir();
        std::fs::create_dir_all(&dir).expect("mkdir certificates");
        for entry in std::fs::read_dir(fixture_certs()).expect("read fixture certs") {
            let entry = entry.expect("entry");
            std::fs::copy(entry.path(), dir.join(entry.file_name())).expect("copy cert");
        }
        ws
    }

    /// Where the development certificates of this workspace are.
    pub fn certs_dir(&self) -> PathBuf {
        self.path().join("workspace/certificates")
    }

    /// The CA certificate.
    pub fn ca(&self) -> PathBuf {
        self.certs_dir().join("ca.pem")
    }

    /// `(certificate, key)` of the gateway client certificate.
    pub fn client_identity(&self) -> (PathBuf, PathBuf) {
        (self.certs_dir().join("client.pem"), self.certs_dir().join("client.key"))
    }

    /// `(certificate, key)` of the server certificate (it may act as a client too).
    pub fn server_identity(&self) -> (PathBuf, PathBuf) {
        (self.certs_dir().join("server.pem"), self.certs_dir().join("server.key"))
    }

    /// An HTTPS client trusting this workspace's CA and presenting the gateway client certificate.
    pub fn client(&self) -> reqwest::blocking::Client {
        let (c, k) = self.client_identity();
        https::client(&self.ca(), Some((&c, &k)))
    }

    /// Starts `plexgate <args>` in the background, logging to `<name>.log` in the workspace.
    pub fn spawn(&self, name: &str, args: &[&str]) -> process::Proc {
        process::Proc::spawn(name, self.plexgate(args), &self.path().join(format!("{name}.log")))
    }

    /// `plexgate <args>` started in this directory, with no `PLEXGATE*` variables inherited.
    pub fn plexgate(&self, args: &[&str]) -> Command {
        let mut c = Command::new(plexgate_bin());
        c.args(args).current_dir(self.path());
        for (k, _) in std::env::vars() {
            if k.starts_with("PLEXGATE") {
                c.env_remove(k);
            }
        }
        c
    }

    /// Runs `plexgate <args>` to completion with `stdin` as its input.
    pub fn run(&self, args: &[&str], stdin: &str) -> Run {
        use std::io::Write;
        let mut child =
            self.plexgate(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn plexgate");
        // A command that refuses its arguments may exit before reading its input.
        if let Err(e) = child.stdin.take().expect("stdin").write_all(stdin.as_bytes()) {
            assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "write stdin: {e}");
        }
        Run(child.wait_with_output().expect("wait plexgate"))
    }
}

/// The outcome of one finished `plexgate` run.
pub struct Run(pub Output);

impl Run {
    /// Exit code (`-1` when killed by a signal).
    pub fn code(&self) -> i32 {
        self.0.status.code().unwrap_or(-1)
    }
    /// Standard output as text.
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }
    /// Standard error as text.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }
    /// Panics with both streams unless the exit code is `code`.
    pub fn expect_code(self, code: i32) -> Run {
        assert_eq!(self.code(), code, "exit code\n--- stdout\n{}\n--- stderr\n{}", self.stdout(), self.stderr());
        self
    }
}

/// Waits until `cond` holds, polling every few milliseconds, or panics after `timeout` with
/// the message. Timing bounds in HA tests are asserted with this, never with bare sleeps.
#[macro_export]
macro_rules! assert_eventually {
    ($timeout:expr, $cond:expr, $($msg:tt)+) => {{
        let deadline = std::time::Instant::now() + $timeout;
        loop {
            if $cond {
                break;
            }
            if std::time::Instant::now() >= deadline {
                panic!("condition not met within {:?}: {}", $timeout, format!($($msg)+));
            }
            std::thread::park_timeout(std::time::Duration::from_millis(10));
        }
    }};
}
