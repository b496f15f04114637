//! Hostile and broken requests at the gateway, sent raw (no client library to tidy them):
//! request smuggling, oversized headers, invalid methods and paths, a slow-loris client.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use plexgate_tests::cluster::{Cluster, ClusterSetup, sample_definition};
use plexgate_tests::https::raw_request;

fn cluster() -> (Cluster, plexgate_tests::cluster::Sample) {
    let mut c = Cluster::start(ClusterSetup { gateways: 1, start_gateways: 0, ..ClusterSetup::default() });
    let a = c.start_sample("a");
    c.define("sample.yml", &sample_definition("sample", &[a.port], "bypass"));
    c.start_gateway(0);
    (c, a)
}

fn status_of(answer: &str) -> u16 {
    answer.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

#[test]
fn request_smuggling_shapes_cannot_desync_the_gateway() {
    let (c, _a) = cluster();
    let send = |req: &str| raw_request(&c.ws.ca(), c.ports[0], req.as_bytes());
    // Both Content-Length and Transfer-Encoding: framed by Transfer-Encoding alone and the
    // Content-Length dropped (RFC 9112 6.1), so the service behind sees one consistent message;
    // the bytes after the chunked body never become part of it.
    let both = send(
        "POST /sample/api/v1/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\nGET /sample/api/v1/hello HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    assert_eq!(status_of(&both), 200, "{both}");
    assert_eq!(both.matches("HTTP/1.1 ").count(), 1, "only one request was served: {both}");
    let body: serde_json::Value = serde_json::from_str(both.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(body["bodyLength"], 0, "{body}");
    // The gateway frames what it forwards itself: never the client's Content-Length next to a
    // Transfer-Encoding (HTTP/1.1 to the service re-chunks the streamed body; HTTP/2 has neither).
    assert!(body["headers"].get("content-length").is_none(), "{body}");
    // Two different Content-Length headers.
    let dup =
        send("POST /sample/api/v1/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 40\r\nConnection: close\r\n\r\nabcd");
    assert_eq!(status_of(&dup), 400, "{dup}");
    // An invalid method and a request line that is not HTTP.
    assert_eq!(status_of(&send("G(T /sample/api/v1/hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")), 400);
    assert_eq!(status_of(&send("GET sample/api/v1/hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")), 400);
    // The gateway still serves normal requests on new connections.
    let ok = send("GET /sample/api/v1/hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_eq!(status_of(&ok), 200, "{ok}");
}

#[test]
fn oversized_headers_get_431() {
    let (c, _a) = cluster();
    let big = "x".repeat(80 * 1024);
    let answer = raw_request(
        &c.ws.ca(),
        c.ports[0],
        format!("GET /sample/api/v1/hello HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    assert_eq!(status_of(&answer), 431, "{}", &answer[..answer.len().min(200)]);
}

#[test]
fn a_client_sending_headers_a_byte_a_second_is_cut_off() {
    let (c, _a) = cluster();
    let config = std::sync::Arc::new(plexgate_tests::https::tls_config(&c.ws.ca(), None));
    let mut conn = rustls::ClientConnection::new(config, "127.0.0.1".try_into().unwrap()).unwrap();
    let mut sock = std::net::TcpStream::connect(("127.0.0.1", c.ports[0])).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let mut tls = rustls::Stream::new(&mut conn, &mut sock);
    tls.write_all(b"GET /sample/api/v1/hello HTTP/1.1\r\n").unwrap();
    let start = Instant::now();
    let mut closed_after = None;
    // Trickle one header byte every 200 ms (read timeouts pace the loop) until the gateway hangs up.
    while start.elapsed() < Duration::from_secs(20) {
        let mut buf = [0u8; 512];
        match tls.read(&mut buf) {
            Ok(0) => {
                closed_after = Some(start.elapsed());
                break;
            }
            Ok(_) => {
                closed_after = Some(start.elapsed());
                break;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => {
                closed_after = Some(start.elapsed());
                break;
            }
        }
        if tls.write_all(b"X").is_err() {
            closed_after = Some(start.elapsed());
            break;
        }
    }
    let t = closed_after.expect("the gateway must cut off a client that never finishes its headers");
    println!("slow client cut off after {t:?}");
    assert!(t >= Duration::from_secs(9) && t < Duration::from_secs(15), "cut off after the 10 s header timeout, not {t:?}");
}
