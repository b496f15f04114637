//! Helpers for the distributor's black-box tests: a `plexgate distributor` process with its
//! admin status, raw TLS connections through it (so a test knows which target each
//! connection reached), and small real backends: [`Backend`], an HTTPS server answering every
//! GET with `{"status":"UP","instance":...}` the way a gateway's health endpoint does (for
//! tests about the distributor's own behaviour: idle timeouts, thousands of connections, PROXY
//! headers), and [`HoldServer`], which accepts TCP and never answers.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

use crate::process::Proc;
use crate::{Workspace, assert_eventually, free_port};

/// A YAML file with no gateway, no caching service and the distributor off: the base for
/// tests whose targets are [`Backend`]s.
pub const NO_GATEWAYS_YAML: &str = "zowe:\n  externalDomains: [127.0.0.1]\n  workspaceDirectory: workspace\ncomponents:\n  gateway: {enabled: false, apiml: {security: {auth: {provider: users-file}}}}\n  caching-service: {enabled: false}\n  distributor: {enabled: false}\n";

/// A running `plexgate distributor`.
pub struct Dist {
    /// The process.
    pub proc: Proc,
    /// The virtual address's port (127.0.0.1).
    pub port: u16,
    /// The admin listener's port.
    pub admin_port: u16,
    /// The configuration file it runs with.
    pub config: std::path::PathBuf,
    http: reqwest::blocking::Client,
}

impl Dist {
    /// Writes `<name>.yaml`: `base` (which has `  distributor: {enabled: false}`) with that
    /// line replaced by an enabled distributor on free ports plus `section` (YAML lines
    /// indented 4 spaces under `components.distributor`); starts it; waits for its status.
    pub fn start(ws: &Workspace, base: &str, name: &str, section: &str) -> Dist {
        let (port, admin_port) = (free_port(), free_port());
        let enabled = format!(
            "  distributor:\n    enabled: true\n    address: 127.0.0.1\n    port: {port}\n    admin: {{port: {admin_port}}}\n{section}"
        );
        assert!(base.contains("  distributor: {enabled: false}\n"), "base YAML without the distributor line:\n{base}");
        let yaml = base.replace("  distributor: {enabled: false}\n", &enabled);
        let config = ws.write(&format!("{name}.yaml"), &yaml);
        let file = format!("{name}.yaml");
        let proc = ws.spawn(name, &["distributor", "-c", &file]);
        let http = reqwest::blocking::Client::builder().timeout(Duration::from_secs(5)).build().expect("http client");
        let mut d = Dist { proc, port, admin_port, config, http };
        assert_eventually!(
            Duration::from_secs(10),
            d.status().is_some() || !d.proc.is_running(),
            "distributor {name} answers its status\n{}",
            d.proc.logs()
        );
        assert!(d.proc.is_running(), "distributor {name} exited:\n{}", d.proc.logs());
        d
    }

    /// The admin listener's `GET /status`, if it answers.
    pub fn status(&self) -> Option<Value> {
        let r = self.http.get(format!("http://127.0.0.1:{}/status", self.admin_port)).send().ok()?;
        if r.status() != 200 {
            return None;
        }
        r.json().ok()
    }

    /// The admin listener's `GET /metrics` text.
    pub fn metrics(&self) -> String {
        self.http.get(format!("http://127.0.0.1:{}/metrics", self.admin_port)).send().and_then(|r| r.text()).unwrap_or_default()
    }

    /// The status entry of target `name`.
    pub fn target(&self, name: &str) -> Value {
        let s = self.status().expect("status");
        s["targets"]
            .as_array()
            .and_then(|t| t.iter().find(|t| t["name"] == name).cloned())
            .unwrap_or_else(|| panic!("no target {name} in {s}"))
    }

    /// The health state of target `name` (`unverified`, `up`, `suspect`, `down`).
    pub fn state(&self, name: &str) -> String {
        self.target(name)["state"].as_str().unwrap_or_default().to_owned()
    }

    /// Waits until target `name` is in `state`.
    pub fn wait_state(&self, name: &str, state: &str, timeout: Duration) {
        assert_eventually!(timeout, self.state(name) == state, "target {name} {state}: {}\n{}", self.target(name), self.proc.logs());
    }
}

/// A TLS client configuration for connections through the distributor: trusts the
/// workspace CA, speaks HTTP/1.1, resumes sessions (as real clients do).
pub fn tls_client(ws: &Workspace) -> Arc<rustls::ClientConfig> {
    let mut c = crate::https::tls_config(&ws.ca(), None);
    c.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(c)
}

/// One client connection through the distributor, TLS end to end with the target.
pub struct Conn {
    stream: rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
}

impl Conn {
    /// Connects to `127.0.0.1:port` and completes the TLS handshake.
    pub fn open(port: u16, tls: &Arc<rustls::ClientConfig>) -> std::io::Result<Conn> {
        let tcp = TcpStream::connect(("127.0.0.1", port))?;
        tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
        tcp.set_nodelay(true)?;
        let name = ServerName::try_from("127.0.0.1").expect("server name");
        let tls_conn = rustls::ClientConnection::new(tls.clone(), name).map_err(std::io::Error::other)?;
        let mut stream = rustls::StreamOwned::new(tls_conn, tcp);
        while stream.conn.is_handshaking() {
            stream.conn.complete_io(&mut stream.sock)?;
        }
        Ok(Conn { stream })
    }

    /// The client side's local port.
    pub fn local_port(&self) -> u16 {
        self.stream.sock.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// `GET path` on this connection; the status and the body.
    pub fn get(&mut self, path: &str, close: bool) -> std::io::Result<(u16, String)> {
        let connection = if close { "close" } else { "keep-alive" };
        // One write, one TLS record: pieces would each wait for an ACK (Nagle, delayed ACK).
        let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: {connection}\r\n\r\n");
        self.stream.write_all(request.as_bytes())?;
        self.stream.flush()?;
        let mut reader = BufReader::new(&mut self.stream);
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let status: u16 =
            line.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| std::io::Error::other(format!("status line `{line}`")))?;
        let mut length = 0;
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            if line == "\r\n" {
                break;
            }
            if let Some((k, v)) = line.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse().map_err(std::io::Error::other)?;
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }

    /// Writes `bytes` on the connection (a request, WebSocket frames).
    pub fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }

    /// Reads an HTTP response head, up to and including the blank line.
    pub fn read_head(&mut self) -> std::io::Result<String> {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            self.stream.read_exact(&mut byte)?;
            head.push(byte[0]);
        }
        Ok(String::from_utf8_lossy(&head).into_owned())
    }

    /// Reads exactly `n` bytes.
    pub fn read_bytes(&mut self, n: usize) -> std::io::Result<Vec<u8>> {
        let mut buf = vec![0; n];
        self.stream.read_exact(&mut buf)?;
        Ok(buf)
    }

    /// Asks for a WebSocket at `path` (with a Bearer `token` if given); the answer's head.
    pub fn upgrade_websocket(&mut self, path: &str, token: Option<&str>) -> std::io::Result<String> {
        let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        self.send(request.as_bytes())?;
        self.read_head()
    }

    /// Sends `text` as one masked text frame (RFC 6455 5.3; under 126 bytes) and returns the
    /// payload of the frame that comes back.
    pub fn ws_echo(&mut self, text: &str) -> std::io::Result<String> {
        let mask = [1u8, 2, 3, 4];
        let mut frame = vec![0x81, 0x80 | text.len() as u8];
        frame.extend_from_slice(&mask);
        frame.extend(text.bytes().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.send(&frame)?;
        let hdr = self.read_bytes(2)?;
        Ok(String::from_utf8_lossy(&self.read_bytes((hdr[1] & 0x7f) as usize)?).into_owned())
    }

    /// Sets the read timeout of the underlying socket.
    pub fn set_read_timeout(&self, d: Duration) -> std::io::Result<()> {
        self.stream.sock.set_read_timeout(Some(d))
    }

    /// The `instance` that answers `GET /application/health` on this connection.
    pub fn instance(&mut self) -> std::io::Result<String> {
        let (_, body) = self.get("/application/health", false)?;
        let v: Value = serde_json::from_str(&body).map_err(std::io::Error::other)?;
        Ok(v["instance"].as_str().unwrap_or_default().to_owned())
    }
}

/// One short-lived connection through the distributor: which instance answered.
pub fn instance_via(port: u16, tls: &Arc<rustls::ClientConfig>) -> Result<String, String> {
    let mut c = Conn::open(port, tls).map_err(|e| format!("connect/TLS: {e}"))?;
    let (_, body) = c.get("/application/health", true).map_err(|e| format!("GET: {e}"))?;
    let v: Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
    v["instance"].as_str().map(str::to_owned).ok_or_else(|| format!("no instance in {body}"))
}

/// A TCP stream that notes when the first byte from the server arrived: whether a connection
/// that failed had heard from its gateway (it was cut mid-exchange) or not (a new connection).
struct FirstByte {
    tcp: TcpStream,
    first: Option<std::time::Instant>,
}

impl Read for FirstByte {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.tcp.read(buf)?;
        if n > 0 && self.first.is_none() {
            self.first = Some(std::time::Instant::now());
        }
        Ok(n)
    }
}

impl Write for FirstByte {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.tcp.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.tcp.flush()
    }
}

/// One short-lived connection (TLS handshake, `GET /application/health`, close): the instance
/// that answered or the error, and when the first byte from the server arrived.
pub fn timed_instance_via(port: u16, tls: &Arc<rustls::ClientConfig>) -> (Result<String, String>, Option<std::time::Instant>) {
    let tcp = match TcpStream::connect(("127.0.0.1", port)) {
        Ok(t) => t,
        Err(e) => return (Err(format!("connect: {e}")), None),
    };
    let _ = tcp.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = tcp.set_nodelay(true);
    let name = ServerName::try_from("127.0.0.1").expect("server name");
    let conn = rustls::ClientConnection::new(tls.clone(), name).expect("TLS client");
    let mut stream = rustls::StreamOwned::new(conn, FirstByte { tcp, first: None });
    let mut exchange = || -> Result<String, String> {
        while stream.conn.is_handshaking() {
            stream.conn.complete_io(&mut stream.sock).map_err(|e| format!("TLS: {e}"))?;
        }
        stream
            .write_all(b"GET /application/health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            .map_err(|e| format!("write: {e}"))?;
        let mut answer = Vec::new();
        match stream.read_to_end(&mut answer) {
            Ok(_) => {}
            // A peer closing without close_notify after a complete answer is fine.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !answer.is_empty() => {}
            Err(e) => return Err(format!("read: {e}")),
        }
        let text = String::from_utf8_lossy(&answer);
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b).ok_or_else(|| format!("no answer head: {text}"))?;
        let v: Value = serde_json::from_str(body).map_err(|e| format!("{e}: {text}"))?;
        v["instance"].as_str().map(str::to_owned).ok_or_else(|| format!("no instance in {text}"))
    };
    let result = exchange();
    (result, stream.sock.first)
}

/// `n` short-lived connections; how many each instance answered, and the errors.
pub fn spread(port: u16, tls: &Arc<rustls::ClientConfig>, n: usize) -> (std::collections::BTreeMap<String, usize>, Vec<String>) {
    let mut counts = std::collections::BTreeMap::new();
    let mut errors = Vec::new();
    for _ in 0..n {
        match instance_via(port, tls) {
            Ok(i) => *counts.entry(i).or_insert(0) += 1,
            Err(e) => errors.push(e),
        }
    }
    (counts, errors)
}

/// An HTTPS server answering every GET with 200 `{"status":"UP","instance":<name>}`
/// (keep-alive), holding silent connections open for ever. Stops when dropped.
pub struct Backend {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// TCP connections accepted so far.
    pub accepted: Arc<AtomicUsize>,
    /// PROXY protocol headers received, in order (when started with `proxy_protocol`).
    pub proxy_headers: Arc<Mutex<Vec<Vec<u8>>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    unlisten: Option<tokio::sync::oneshot::Sender<()>>,
    unaccept: Option<tokio::sync::oneshot::Sender<()>>,
    /// Connections made to fill the accept queue once it stopped accepting (held open).
    filling: Vec<TcpStream>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Backend {
    /// Starts one with the workspace's server certificate; with `proxy_protocol`, every
    /// connection must start with a PROXY v2 header.
    pub fn spawn(ws: &Workspace, instance: &str, proxy_protocol: bool) -> Backend {
        // A deep accept queue: the tests open thousands of connections in a burst.
        Backend::spawn_with_backlog(ws, instance, proxy_protocol, 4096)
    }

    /// Starts one whose accept queue holds about `backlog` connections (see
    /// [`Backend::stop_accepting`]).
    pub fn spawn_with_backlog(ws: &Workspace, instance: &str, proxy_protocol: bool, backlog: u32) -> Backend {
        let (cert, key) = ws.server_identity();
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(&cert).expect("cert").map(|c| c.expect("cert PEM")).collect();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(chain, PrivateKeyDer::from_pem_file(&key).expect("key"))
            .expect("server config");
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let listener = rt.block_on(async {
            let socket = tokio::net::TcpSocket::new_v4().expect("socket");
            socket.bind("127.0.0.1:0".parse().expect("addr")).expect("bind backend");
            socket.listen(backlog).expect("listen")
        });
        let port = listener.local_addr().expect("addr").port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let proxy_headers = Arc::new(Mutex::new(Vec::new()));
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let (unlisten, unlistened) = tokio::sync::oneshot::channel::<()>();
        let (unaccept, unaccepted) = tokio::sync::oneshot::channel::<()>();
        let body = serde_json::json!({"status": "UP", "instance": instance}).to_string();
        let (acc, headers) = (accepted.clone(), proxy_headers.clone());
        let thread = std::thread::spawn(move || {
            rt.block_on(async move {
                // Borrows the listener: it closes when `listener` is dropped, not when the loop stops.
                let listener = listener;
                let accept_loop = async {
                    while let Ok((tcp, _)) = listener.accept().await {
                        acc.fetch_add(1, Ordering::SeqCst);
                        let (acceptor, body, headers) = (acceptor.clone(), body.clone(), headers.clone());
                        tokio::spawn(async move {
                            let _ = serve_conn(tcp, acceptor, &body, proxy_protocol.then_some(headers)).await;
                        });
                    }
                };
                let keep_listening = tokio::select! {
                    _ = accept_loop => None,
                    _ = unlistened => Some(false),
                    _ = unaccepted => Some(true),
                    _ = &mut stopped => None,
                };
                // Unlisten: the listener closes now (new connects are refused). Unaccept: it
                // stays open but nobody accepts, so once its queue is full new connects go
                // unanswered. Open connections are served until the backend is dropped.
                match keep_listening {
                    Some(false) => {
                        drop(listener);
                        let _ = stopped.await;
                    }
                    Some(true) => {
                        let _ = stopped.await;
                        drop(listener);
                    }
                    None => {}
                }
            });
        });
        Backend {
            port,
            accepted,
            proxy_headers,
            stop: Some(stop),
            unlisten: Some(unlisten),
            unaccept: Some(unaccept),
            filling: Vec::new(),
            thread: Some(thread),
        }
    }

    /// Stops accepting and fills the accept queue: from now on a connect gets no answer at
    /// all (the kernel drops SYNs to a full queue) and times out, as to a host that vanished
    /// or behind a dead link, while the connections already open stay silent. Unlike
    /// [`Backend::stop_listening`], nothing tells a client the host is alive. Needs a small
    /// backlog ([`Backend::spawn_with_backlog`]).
    pub fn stop_accepting(&mut self) {
        if let Some(u) = self.unaccept.take() {
            let _ = u.send(());
        }
        let addr: std::net::SocketAddr = ([127, 0, 0, 1], self.port).into();
        let mut timed_out = 0;
        assert_eventually!(
            Duration::from_secs(10),
            match TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
                Ok(s) => {
                    self.filling.push(s);
                    timed_out = 0;
                    false
                }
                Err(_) => {
                    timed_out += 1;
                    timed_out >= 2
                }
            },
            "backend {} stopped answering connects ({} queued)",
            self.port,
            self.filling.len()
        );
    }

    /// Closes the listening socket but keeps serving the connections already open: as seen
    /// from outside, a host that vanished for new connections while old ones stay silent.
    pub fn stop_listening(&mut self) {
        if let Some(u) = self.unlisten.take() {
            let _ = u.send(());
        }
        assert_eventually!(
            Duration::from_secs(5),
            std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err(),
            "backend {} stopped listening",
            self.port
        );
    }

    /// `127.0.0.1:<port>`, as a distributor target address.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.filling.clear();
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn serve_conn(
    mut tcp: tokio::net::TcpStream,
    acceptor: tokio_rustls::TlsAcceptor,
    body: &str,
    proxy_headers: Option<Arc<Mutex<Vec<Vec<u8>>>>>,
) -> std::io::Result<()> {
    if let Some(headers) = proxy_headers {
        let mut head = [0u8; 16];
        tcp.read_exact(&mut head).await?;
        let len = u16::from_be_bytes([head[14], head[15]]) as usize;
        let mut rest = vec![0; len];
        tcp.read_exact(&mut rest).await?;
        headers.lock().expect("headers").push([&head[..], &rest].concat());
    }
    let tls = acceptor.accept(tcp).await?;
    let mut reader = tokio::io::BufReader::new(tls);
    loop {
        let mut close = false;
        let mut line = String::new();
        if reader.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        loop {
            line.clear();
            if reader.read_line(&mut line).await? == 0 {
                return Ok(());
            }
            if line == "\r\n" {
                break;
            }
            close |= line.to_ascii_lowercase().starts_with("connection: close");
        }
        let response = format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}", body.len());
        reader.get_mut().write_all(response.as_bytes()).await?;
        reader.get_mut().flush().await?;
        if close {
            reader.get_mut().shutdown().await?;
            return Ok(());
        }
    }
}

/// Accepts TCP connections and never says a word (a hung process, as a health check sees it).
pub struct HoldServer {
    /// Its port on 127.0.0.1.
    pub port: u16,
}

impl HoldServer {
    /// Starts one; its thread holds every accepted connection until the test process ends.
    pub fn spawn() -> HoldServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept() {
                held.push(s);
            }
        });
        HoldServer { port }
    }
}
