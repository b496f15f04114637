//! A route's own timeouts (Zowe's `customMetadata.apiml.connectTimeout` and `readTimeout`,
//! plexgate's `idleTimeout`): an instance that never accepts, an answer that stops halfway, an
//! upload that stops halfway, and an upload slower than the read timeout that must still pass.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use plexgate_tests::assert_eventually;
use plexgate_tests::cluster::{Cluster, ClusterSetup, Sample, sample_definition};
use serde_json::Value;

const MIB: u64 = 1024 * 1024;
/// The route's idle timeout in these tests.
const IDLE: Duration = Duration::from_millis(1500);

/// The gateway's own connect timeout in these tests.
const GATEWAY_CONNECT: Duration = Duration::from_secs(3);

/// One gateway with longer defaults of its own (3 s connect, 60 s idle), a sample instance,
/// the service `timed` on it with short timeouts of its own, `plain` without, and `extra`
/// definition files.
fn cluster(extra: &[(&str, String)]) -> (Cluster, Sample) {
    let mut c = Cluster::start(ClusterSetup {
        gateways: 1,
        start_gateways: 0,
        gateway_yaml: format!("    routing: {{connectTimeout: {}ms, idleTimeout: 60s, retries: 0}}\n", GATEWAY_CONNECT.as_millis()),
        ..ClusterSetup::default()
    });
    let a = c.start_sample("a");
    let timed = sample_definition("timed", &[a.port], "bypass")
        + &format!("    customMetadata:\n      apiml:\n        readTimeout: 1000\n        idleTimeout: {}\n", IDLE.as_millis());
    c.define("timed.yml", &timed);
    c.define("plain.yml", &sample_definition("plain", &[a.port], "bypass"));
    for (file, yaml) in extra {
        c.define(file, yaml);
    }
    c.start_gateway(0);
    (c, a)
}

fn client(c: &Cluster) -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .tls_backend_preconfigured(plexgate_tests::https::tls_config(&c.ws.ca(), None))
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// Reads a body to its end or its first error: (bytes read, whether it ended cleanly).
fn drain(mut r: reqwest::blocking::Response) -> (u64, bool) {
    let mut buf = vec![0u8; 1 << 16];
    let mut n = 0;
    loop {
        match r.read(&mut buf) {
            Ok(0) => return (n, true),
            Ok(k) => n += k as u64,
            Err(_) => return (n, false),
        }
    }
}

#[test]
fn an_answer_that_stops_halfway_is_cut_after_the_idle_timeout_and_a_shorter_pause_is_not() {
    let (c, _a) = cluster(&[]);
    let http = client(&c);
    // The instance sends 64 KiB, then nothing for 30 s: the gateway cuts the answer.
    let start = Instant::now();
    let r = http.get(c.url(0, &format!("/timed/api/v1/download?bytes={MIB}&stallMs=30000"))).send().unwrap();
    assert_eq!(r.status(), 200);
    let (got, clean) = drain(r);
    let took = start.elapsed();
    assert!(!clean && got < MIB, "a cut answer ends in an error, not a short clean body: {got} bytes, clean {clean}");
    assert!(took >= IDLE && took < IDLE + Duration::from_secs(8), "cut after {took:?}, the idle timeout is {IDLE:?}");
    assert_eventually!(
        Duration::from_secs(10),
        c.gateways[0].as_ref().unwrap().logs().contains("no data moved within the idle timeout"),
        "the cut is logged"
    );
    // A pause below the idle timeout is only a pause.
    let r = http.get(c.url(0, &format!("/timed/api/v1/download?bytes={MIB}&stallMs=300"))).send().unwrap();
    assert_eq!(drain(r), (MIB, true));
    // The same stall on a service without its own idleTimeout (the gateway's 60 s) is waited out.
    let start = Instant::now();
    let r = http.get(c.url(0, &format!("/plain/api/v1/download?bytes={MIB}&stallMs=2500"))).send().unwrap();
    assert_eq!(drain(r), (MIB, true));
    assert!(start.elapsed() >= Duration::from_millis(2500));
}

/// An upload that stops after `sent` bytes of a chunked body, over raw TLS; the gateway's answer.
fn stalled_upload(c: &Cluster, path: &str) -> String {
    let config = std::sync::Arc::new({
        let mut t = plexgate_tests::https::tls_config(&c.ws.ca(), None);
        t.alpn_protocols = vec![b"http/1.1".to_vec()];
        t
    });
    let mut conn = rustls::ClientConnection::new(config, "127.0.0.1".try_into().unwrap()).unwrap();
    let mut sock = TcpStream::connect(("127.0.0.1", c.ports[0])).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut tls = rustls::Stream::new(&mut conn, &mut sock);
    let head = format!("POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
    tls.write_all(head.as_bytes()).unwrap();
    let piece = vec![b'u'; 64 * 1024];
    tls.write_all(format!("{:x}\r\n", piece.len()).as_bytes()).unwrap();
    tls.write_all(&piece).unwrap();
    tls.write_all(b"\r\n").unwrap();
    tls.flush().unwrap();
    // ... and then nothing: no more chunks, no end. Read what the gateway says.
    let mut answer = vec![0u8; 4096];
    let n = tls.read(&mut answer).unwrap_or(0);
    String::from_utf8_lossy(&answer[..n]).into_owned()
}

#[test]
fn an_upload_that_stops_halfway_is_answered_400_and_the_instance_request_cancelled() {
    let (c, a) = cluster(&[]);
    let start = Instant::now();
    let answer = stalled_upload(&c, "/timed/api/v1/upload");
    let took = start.elapsed();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("ZWEAO400E") && answer.contains("stalled"), "{answer}");
    assert!(took >= IDLE && took < IDLE + Duration::from_secs(8), "answered after {took:?}, the idle timeout is {IDLE:?}");
    assert_eventually!(Duration::from_secs(10), a.proc.logs().contains("upload aborted"), "the instance saw the request cancelled");
    // A client that stalls is not the instance's fault: it is still served at once.
    let v: Value = c.http.get(c.url(0, "/timed/api/v1/hello")).send().unwrap().json().unwrap();
    assert_eq!(v["instance"], "a");
    assert_eq!(c.http.get(c.url(0, "/gateway/api/v1/services")).send().unwrap().status(), 200);
}

/// A reader handing out `total` bytes, `piece` at a time, one piece per `every`: a slow client.
struct Paced {
    left: u64,
    piece: usize,
    every: Duration,
    next: Instant,
}

impl Read for Paced {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        // The client's own pace (not a wait for a condition): park until this piece is due.
        while let Some(wait) = self.next.checked_duration_since(Instant::now()) {
            std::thread::park_timeout(wait);
        }
        self.next += self.every;
        let n = buf.len().min(self.piece).min(self.left as usize);
        buf[..n].fill(b'p');
        self.left -= n as u64;
        Ok(n)
    }
}

#[test]
fn an_upload_slower_than_the_read_timeout_passes_because_that_timeout_starts_when_the_body_is_sent() {
    let (c, _a) = cluster(&[]);
    let http = client(&c);
    // 2 MiB (streamed, above the 1 MiB kept for retries) in 32 pieces 100 ms apart: about
    // 3 s of upload against a read timeout of 1 s, each pause well inside the idle timeout.
    let total = 2 * MIB;
    let body = Paced { left: total, piece: 64 * 1024, every: Duration::from_millis(100), next: Instant::now() };
    let start = Instant::now();
    let r = http.post(c.url(0, "/timed/api/v1/upload")).body(reqwest::blocking::Body::sized(body, total)).send().unwrap();
    let took = start.elapsed();
    assert_eq!(r.status(), 200, "{took:?}");
    let v: Value = r.json().unwrap();
    assert_eq!(v["received"], total);
    assert!(took > Duration::from_secs(2), "the upload really was slower than the read timeout: {took:?}");
    // The read timeout itself still holds once the body is in.
    let r = c.http.get(c.url(0, "/timed/api/v1/slow?ms=5000")).send().unwrap();
    assert_eq!(r.status(), 504);
}

/// A listening socket that never accepts, its one-slot queue already full: connects to it
/// hang until the caller gives up (a host that drops SYNs).
fn black_hole() -> (rustix::fd::OwnedFd, TcpStream, u16) {
    use rustix::net::{AddressFamily, SocketType, bind, listen, socket};
    let fd = socket(AddressFamily::INET, SocketType::STREAM, None).unwrap();
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    bind(&fd, &any).unwrap();
    listen(&fd, 0).unwrap();
    let port = match rustix::net::getsockname(&fd).unwrap().try_into().unwrap() {
        SocketAddr::V4(a) => a.port(),
        SocketAddr::V6(a) => a.port(),
    };
    let filler = TcpStream::connect(("127.0.0.1", port)).unwrap();
    // Proof that it holds: the next connect does not get through.
    assert!(TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], port)), Duration::from_millis(300)).is_err());
    (fd, filler, port)
}

#[test]
fn a_service_with_its_own_connect_timeout_gives_up_on_an_instance_that_never_accepts() {
    let (_fd, _filler, hole) = black_hole();
    let def = |id: &str, extra: &str| {
        format!(
            "services:\n  - serviceId: {id}\n    instanceBaseUrls: [https://127.0.0.1:{hole}/]\n    routes: [{{gatewayUrl: api/v1, serviceRelativeUrl: /sample/api/v1}}]\n{extra}"
        )
    };
    // `quick` gives up connecting after its own 400 ms; `slow` waits the gateway's 3 s.
    let (c, _a) =
        cluster(&[("quick.yml", def("quick", "    customMetadata: {apiml: {connectTimeout: 400}}\n")), ("slow.yml", def("slow", ""))]);
    let http = client(&c);
    for (service, least, most) in [
        ("quick", Duration::from_millis(400), Duration::from_millis(2500)),
        ("slow", GATEWAY_CONNECT, GATEWAY_CONNECT + Duration::from_secs(5)),
    ] {
        let start = Instant::now();
        let r = http.get(c.url(0, &format!("/{service}/api/v1/hello"))).send().unwrap();
        let took = start.elapsed();
        assert_eq!(r.status(), 503, "{service} after {took:?}");
        let body: Value = r.json().unwrap();
        assert_eq!(body["messages"][0]["messageNumber"], "ZWEAO503E", "{body}");
        assert!(took >= least && took < most, "{service} gave up connecting after {took:?}, expected {least:?}..{most:?}");
    }
}
