//! The virtual-address drill's network: namespaces for two distributor hosts (`a`, `b`), a
//! gateway host (`g`, with the caching service) and a client (`c`), each with one `eth0`
//! joined to a bridge in a fifth namespace (the LAN), addresses from 10.213.7.0/24 inside
//! them only. The host's own namespace gets nothing. Dropping [`Lan`] deletes them all.
//!
//! [`Prober`] is the client: from its namespace, a new connection every few milliseconds
//! (TCP connect, TLS handshake, `GET /application/health`, answer read), each outcome recorded.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::drills::netns::{NetNs, enter, ip};

/// The LAN's addresses.
pub const A: &str = "10.213.7.11";
/// Distributor host b.
pub const B: &str = "10.213.7.12";
/// The gateway host.
pub const G: &str = "10.213.7.21";
/// The client.
pub const C: &str = "10.213.7.31";
/// The virtual address.
pub const VIP: &str = "10.213.7.100";

/// The namespaces (deleted on drop, which deletes their veths too).
pub struct Lan {
    /// By role: `a`, `b`, `g`, `c`, then the bridge's.
    pub hosts: Vec<(String, NetNs)>,
}

impl Lan {
    /// Creates the LAN; namespace names start with `prefix` (unique per test process).
    pub fn create(prefix: &str) -> Result<Lan, String> {
        let hub = NetNs::create(&format!("{prefix}lan"))?;
        hub.ip(&["link", "add", "br0", "type", "bridge"])?;
        hub.ip(&["link", "set", "br0", "up"])?;
        let mut hosts = Vec::new();
        for (role, addr) in [("a", A), ("b", B), ("g", G), ("c", C)] {
            let ns = NetNs::create(&format!("{prefix}{role}"))?;
            let port = format!("v{role}");
            ip(&["link", "add", &port, "netns", &hub.name, "type", "veth", "peer", "name", "eth0", "netns", &ns.name])?;
            hub.ip(&["link", "set", &port, "master", "br0", "up"])?;
            ns.ip(&["addr", "add", &format!("{addr}/24"), "dev", "eth0"])?;
            ns.ip(&["link", "set", "eth0", "up"])?;
            hosts.push((role.to_owned(), ns));
        }
        hosts.push(("lan".to_owned(), hub));
        Ok(Lan { hosts })
    }

    /// The namespace of `role`.
    pub fn ns(&self, role: &str) -> &NetNs {
        &self.hosts.iter().find(|(r, _)| r == role).expect("role").1
    }

    /// Whether `role`'s eth0 holds the virtual address now.
    pub fn holds(&self, role: &str) -> bool {
        let out = std::process::Command::new("ip").args(["-n", &self.ns(role).name, "-o", "-4", "addr", "show", "dev", "eth0"]).output();
        out.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(&format!(" {VIP}/")))
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        // Hosts before the bridge's namespace (NetNs::drop deletes each).
        while let Some(h) = self.hosts.pop() {
            drop(h);
        }
    }
}

/// One probe's outcome.
#[derive(Debug, Clone)]
pub struct Probe {
    /// When it started, since the prober started.
    pub at: Duration,
    /// Whether it got a 200 answer.
    pub ok: bool,
    /// What failed.
    pub error: Option<String>,
}

/// The client: new connections to the virtual address in a loop, from namespace `c`.
pub struct Prober {
    /// Every probe so far.
    pub probes: Arc<Mutex<Vec<Probe>>>,
    /// When it started.
    pub started: Instant,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Prober {
    /// Starts probing `https://VIP:port/application/health` from namespace `ns`, trusting `ca`.
    pub fn start(ns: &Path, ca: &Path, port: u16) -> Prober {
        let probes = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let config = Arc::new({
            let mut c = crate::https::tls_config(ca, None);
            c.alpn_protocols = vec![b"http/1.1".to_vec()];
            c
        });
        let (ns, p, s) = (ns.to_owned(), probes.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            enter(&ns).expect("enter the client namespace");
            let addr: SocketAddr = format!("{VIP}:{port}").parse().expect("address");
            while !s.load(Ordering::Relaxed) {
                let at = started.elapsed();
                let outcome = probe(&config, addr);
                p.lock().expect("probes").push(Probe { at, ok: outcome.is_ok(), error: outcome.err() });
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Prober { probes, started, stop, thread: Some(thread) }
    }

    /// Now, on the prober's clock.
    pub fn now(&self) -> Duration {
        self.started.elapsed()
    }

    /// Probes started from `from` on.
    pub fn since(&self, from: Duration) -> Vec<Probe> {
        self.probes.lock().expect("probes").iter().filter(|p| p.at >= from).cloned().collect()
    }

    /// Whether the last `n` probes (started after `from`) all succeeded.
    pub fn healthy_since(&self, from: Duration, n: usize) -> bool {
        let p = self.since(from);
        p.len() >= n && p[p.len() - n..].iter().all(|p| p.ok)
    }
}

impl Drop for Prober {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One new connection: connect, TLS handshake, GET, a 200 status line.
fn probe(config: &Arc<rustls::ClientConfig>, addr: SocketAddr) -> Result<(), String> {
    let mut sock = TcpStream::connect_timeout(&addr, Duration::from_millis(300)).map_err(|e| format!("connect: {e}"))?;
    sock.set_read_timeout(Some(Duration::from_millis(1000))).map_err(|e| e.to_string())?;
    sock.set_write_timeout(Some(Duration::from_millis(1000))).map_err(|e| e.to_string())?;
    let name = rustls::pki_types::ServerName::try_from(VIP.to_owned()).map_err(|e| e.to_string())?;
    let mut conn = rustls::ClientConnection::new(config.clone(), name).map_err(|e| e.to_string())?;
    let mut tls = rustls::Stream::new(&mut conn, &mut sock);
    tls.write_all(format!("GET /application/health HTTP/1.1\r\nHost: {VIP}\r\nConnection: close\r\n\r\n").as_bytes())
        .map_err(|e| format!("TLS/send: {e}"))?;
    let mut out = Vec::new();
    let _ = tls.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    if text.starts_with("HTTP/1.1 200") { Ok(()) } else { Err(format!("answer: {}", text.lines().next().unwrap_or("(none)"))) }
}
