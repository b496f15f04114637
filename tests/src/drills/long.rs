//! Long-lived work through the distributor while a drill runs: slow routed requests
//! (`GET /sample/api/v1/slow?ms=N`, 5-8 s) and WebSocket sessions of the same length (one
//! message every 500 ms, each echoed), one after another on each slot. A gateway that drains
//! must finish them: the drill counts every one that was cut.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::distributor::Conn;

/// Shortest and longest session, milliseconds.
const SHORTEST_MS: u64 = 5_000;
const SPREAD_MS: u64 = 3_000;
/// Between two WebSocket messages.
const MESSAGE_EVERY: Duration = Duration::from_millis(500);

/// What one session was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A slow request.
    Request,
    /// A WebSocket session.
    WebSocket,
}

/// One finished session.
#[derive(Debug, Clone)]
pub struct Session {
    /// Request or WebSocket.
    pub kind: Kind,
    /// Its planned length.
    pub planned: Duration,
    /// How long it ran.
    pub took: Duration,
    /// `Err` when it was cut (or refused), with what the client saw.
    pub outcome: Result<(), String>,
}

/// Slots running sessions until stopped.
pub struct Long {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<Vec<Session>>>,
}

impl Long {
    /// `slots` slots through the distributor at `127.0.0.1:port`, half of them slow requests,
    /// half WebSockets, each authenticated with `token`.
    pub fn start(port: u16, tls: Arc<rustls::ClientConfig>, token: &str, slots: usize) -> Long {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..slots)
            .map(|slot| {
                let (stop, tls, token) = (stop.clone(), tls.clone(), token.to_owned());
                let kind = if slot % 2 == 0 { Kind::Request } else { Kind::WebSocket };
                std::thread::spawn(move || {
                    let mut done = Vec::new();
                    let mut seq = slot as u64;
                    while !stop.load(Ordering::SeqCst) {
                        seq += 1;
                        let planned = Duration::from_millis(SHORTEST_MS + (seq * 997) % SPREAD_MS);
                        let started = Instant::now();
                        let outcome = match kind {
                            Kind::Request => slow_request(port, &tls, &token, planned),
                            Kind::WebSocket => websocket(port, &tls, &token, planned),
                        };
                        done.push(Session { kind, planned, took: started.elapsed(), outcome });
                    }
                    done
                })
            })
            .collect();
        Long { stop, threads }
    }

    /// Lets the sessions under way finish; every session.
    pub fn stop(self) -> Vec<Session> {
        self.stop.store(true, Ordering::SeqCst);
        self.threads.into_iter().flat_map(|t| t.join().expect("long-session thread")).collect()
    }
}

/// Completed and cut sessions of `kind`.
pub fn tally(sessions: &[Session], kind: Kind) -> (usize, Vec<&Session>) {
    let of: Vec<&Session> = sessions.iter().filter(|s| s.kind == kind).collect();
    let cut: Vec<&Session> = of.iter().copied().filter(|s| s.outcome.is_err()).collect();
    (of.len() - cut.len(), cut)
}

fn slow_request(port: u16, tls: &Arc<rustls::ClientConfig>, token: &str, planned: Duration) -> Result<(), String> {
    let mut c = Conn::open(port, tls).map_err(|e| format!("connect/TLS: {e}"))?;
    c.set_read_timeout(planned + Duration::from_secs(20)).map_err(|e| e.to_string())?;
    let ms = planned.as_millis();
    let request = format!(
        "GET /sample/api/v1/slow?ms={ms} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    c.send(request.as_bytes()).map_err(|e| format!("send: {e}"))?;
    let head = c.read_head().map_err(|e| format!("head: {e}"))?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(format!("answer: {}", head.lines().next().unwrap_or_default()));
    }
    let length = head
        .lines()
        .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("content-length")).and_then(|(_, v)| v.trim().parse().ok()))
        .ok_or_else(|| format!("no content-length: {head}"))?;
    let body = c.read_bytes(length).map_err(|e| format!("body: {e}"))?;
    let text = String::from_utf8_lossy(&body);
    if !text.contains(&format!("\"sleptMillis\":{ms}")) {
        return Err(format!("body: {text}"));
    }
    Ok(())
}

fn websocket(port: u16, tls: &Arc<rustls::ClientConfig>, token: &str, planned: Duration) -> Result<(), String> {
    let mut c = Conn::open(port, tls).map_err(|e| format!("connect/TLS: {e}"))?;
    c.set_read_timeout(Duration::from_secs(10)).map_err(|e| e.to_string())?;
    let head = c.upgrade_websocket("/sample/api/v1/ws", Some(token)).map_err(|e| format!("head: {e}"))?;
    if !head.starts_with("HTTP/1.1 101") {
        return Err(format!("answer: {}", head.lines().next().unwrap_or_default()));
    }
    let started = Instant::now();
    let mut n = 0u32;
    while started.elapsed() < planned {
        n += 1;
        let text = format!("m{n}");
        let at = started.elapsed();
        let echo = c.ws_echo(&text).map_err(|e| format!("message {n} after {at:?}: {e}"))?;
        if !echo.ends_with(&text) {
            return Err(format!("message {n}: echo {echo:?}"));
        }
        // Pacing of the session (what it is made of), not a wait for a condition.
        let next = started + MESSAGE_EVERY * n;
        while Instant::now() < next {
            std::thread::park_timeout(next - Instant::now());
        }
    }
    Ok(())
}
