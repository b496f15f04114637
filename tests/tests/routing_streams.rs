//! Large bodies stream through the gateway both ways with flat memory, and a client that
//! goes away mid-upload takes the upstream request with it.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use plexgate_tests::assert_eventually;
use plexgate_tests::cluster::{Cluster, ClusterSetup, Sample, sample_definition};

const GIB: u64 = 1024 * 1024 * 1024;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok()).unwrap_or(0)
}

fn cluster() -> (Cluster, Sample) {
    let mut c = Cluster::start(ClusterSetup { gateways: 1, start_gateways: 0, ..ClusterSetup::default() });
    let a = c.start_sample("a");
    c.define("sample.yml", &sample_definition("sample", &[a.port], "bypass"));
    c.start_gateway(0);
    (c, a)
}

/// Samples the gateway's resident memory while `work` runs; returns (work's result, peak KiB).
fn watch_rss<T: Send>(pid: u32, work: impl FnOnce() -> T + Send) -> (T, u64) {
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        let sampler = s.spawn(|| {
            let mut peak = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(rss_kib(pid));
                std::thread::park_timeout(Duration::from_millis(50));
            }
            peak
        });
        let out = work();
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        (out, sampler.join().unwrap())
    })
}

#[test]
fn one_gib_down_and_up_with_flat_memory() {
    let (c, _a) = cluster();
    let pid = c.gateways[0].as_ref().unwrap().pid();
    let before = rss_kib(pid);
    let http = reqwest::blocking::Client::builder()
        .tls_backend_preconfigured(plexgate_tests::https::tls_config(&c.ws.ca(), None))
        .timeout(Duration::from_secs(600))
        .build()
        .unwrap();
    // Download.
    let start = Instant::now();
    let (received, peak_down) = watch_rss(pid, || {
        let mut r = http.get(c.url(0, &format!("/sample/api/v1/download?bytes={GIB}"))).send().unwrap();
        assert_eq!(r.status(), 200);
        let mut buf = vec![0u8; 1 << 16];
        let mut n = 0u64;
        loop {
            let k = r.read(&mut buf).unwrap();
            if k == 0 {
                break n;
            }
            n += k as u64;
        }
    });
    assert_eq!(received, GIB);
    let down = start.elapsed();
    // Upload, streamed from a reader so the client holds no copy either.
    struct Zeros(u64);
    impl Read for Zeros {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = (buf.len() as u64).min(self.0) as usize;
            buf[..n].fill(b'z');
            self.0 -= n as u64;
            Ok(n)
        }
    }
    let start = Instant::now();
    let (answer, peak_up) = watch_rss(pid, || {
        let body = reqwest::blocking::Body::sized(Zeros(GIB), GIB);
        http.post(c.url(0, "/sample/api/v1/upload")).body(body).send().unwrap().json::<serde_json::Value>().unwrap()
    });
    assert_eq!(answer["received"], GIB);
    let up = start.elapsed();
    println!(
        "1 GiB through the gateway: download {down:?}, upload {up:?}; gateway RSS before {before} KiB, peak {peak_down} KiB down, {peak_up} KiB up"
    );
    // Flat: the gateway never holds more than a few buffers of the body.
    assert!(
        peak_down < before + 64 * 1024 && peak_up < before + 64 * 1024,
        "RSS grew: before {before} KiB, peaks {peak_down}/{peak_up} KiB"
    );
}

#[test]
fn a_client_leaving_mid_upload_cancels_the_upstream_request() {
    let (c, a) = cluster();
    let config = std::sync::Arc::new({
        let mut t = plexgate_tests::https::tls_config(&c.ws.ca(), None);
        t.alpn_protocols = vec![b"http/1.1".to_vec()];
        t
    });
    let mut conn = rustls::ClientConnection::new(config, "127.0.0.1".try_into().unwrap()).unwrap();
    let mut sock = std::net::TcpStream::connect(("127.0.0.1", c.ports[0])).unwrap();
    {
        let mut tls = rustls::Stream::new(&mut conn, &mut sock);
        tls.write_all(b"POST /sample/api/v1/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 104857600\r\n\r\n").unwrap();
        let chunk = vec![b'u'; 64 * 1024];
        for _ in 0..16 {
            tls.write_all(&chunk).unwrap();
        }
        tls.flush().unwrap();
    }
    // One MiB of a hundred sent; the client goes away.
    drop(sock);
    assert_eventually!(
        Duration::from_secs(10),
        a.proc.logs().contains("upload aborted"),
        "the sample service saw its request cancelled\n{}",
        a.proc.logs()
    );
}

#[test]
fn websocket_upgrades_pass_through() {
    let (c, _a) = cluster();
    let config = std::sync::Arc::new({
        let mut t = plexgate_tests::https::tls_config(&c.ws.ca(), None);
        t.alpn_protocols = vec![b"http/1.1".to_vec()];
        t
    });
    let mut conn = rustls::ClientConnection::new(config, "127.0.0.1".try_into().unwrap()).unwrap();
    let mut sock = std::net::TcpStream::connect(("127.0.0.1", c.ports[0])).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut tls = rustls::Stream::new(&mut conn, &mut sock);
    tls.write_all(
        b"GET /sample/api/v1/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .unwrap();
    // The 101 head.
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        tls.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="), "{head}");
    // A masked text frame "hello" (RFC 6455 5.3), and its echo, unmasked, from the instance.
    let mask = [1u8, 2, 3, 4];
    let payload: Vec<u8> = b"hello".iter().enumerate().map(|(i, b)| b ^ mask[i % 4]).collect();
    let mut frame = vec![0x81, 0x80 | 5];
    frame.extend_from_slice(&mask);
    frame.extend_from_slice(&payload);
    tls.write_all(&frame).unwrap();
    let mut hdr = [0u8; 2];
    tls.read_exact(&mut hdr).unwrap();
    assert_eq!(hdr[0], 0x81, "a final text frame");
    let mut text = vec![0u8; (hdr[1] & 0x7f) as usize];
    tls.read_exact(&mut text).unwrap();
    assert_eq!(String::from_utf8(text).unwrap(), "a: hello");
}

#[test]
fn a_draining_gateway_lets_an_open_websocket_finish() {
    let mut c = Cluster::start(ClusterSetup {
        gateways: 1,
        start_gateways: 0,
        gateway_yaml: "    shutdown: {grace: 300ms, timeout: 20s}\n".to_owned(),
        ..ClusterSetup::default()
    });
    let a = c.start_sample("a");
    c.define("sample.yml", &sample_definition("sample", &[a.port], "bypass"));
    c.start_gateway(0);
    let tls = plexgate_tests::distributor::tls_client(&c.ws);
    let mut ws = plexgate_tests::distributor::Conn::open(c.ports[0], &tls).unwrap();
    assert!(ws.upgrade_websocket("/sample/api/v1/ws", None).unwrap().starts_with("HTTP/1.1 101"));
    assert_eq!(ws.ws_echo("before").unwrap(), "a: before");
    let gateway = c.gateways[0].as_mut().expect("gateway");
    gateway.signal("TERM");
    let port = c.ports[0];
    assert_eventually!(
        Duration::from_secs(5),
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the grace ended: listener closed"
    );
    // The drain has no HTTP connection left to wait for, only the upgraded one.
    assert_eventually!(
        Duration::from_secs(5),
        gateway.logs().contains("waiting for the upgraded ones") || !gateway.is_running(),
        "the drain waits for the WebSocket"
    );
    for i in 0..3 {
        assert_eq!(ws.ws_echo(&format!("during {i}")).expect("the WebSocket outlives the grace"), format!("a: during {i}"));
    }
    assert!(gateway.is_running(), "the gateway waits for its WebSocket");
    drop(ws);
    assert_eq!(gateway.wait_exit(Duration::from_secs(10)), Some(0), "exits 0 once the WebSocket closed");
}
