//! An open-model load generator: requests at a fixed rate, each sent at its intended time
//! whatever happened to the ones before it.
//!
//! A closed-loop client (send, wait, send) slows down exactly when the system under test does,
//! and so never sends the requests that would have met the outage: coordinated omission. Here a
//! scheduler wakes at `start + i / rate` and spawns request `i`; a request that waits for a
//! dead gateway does not delay the next one. Latency is measured from the intended send time,
//! so a scheduler that wakes late (a loaded machine) shows up as latency, not as a gap.
//!
//! Every request's outcome (status or error cause), its intended, actual start and finish
//! times and the sample-service instance that answered are recorded; [`Run`] slices them into
//! phases around the fault. The generator runs on its own tokio runtime in a thread of its
//! own, so a drill's body stays blocking and steers the fault with the harness's helpers.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How the generator uses connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connections {
    /// A new TCP + TLS connection (HTTP/1.1) for every request: every request is routed by
    /// the distributor afresh, as from short-lived clients (scripts, CLI invocations).
    Fresh,
    /// A pool of HTTP/1.1 keep-alive connections (reqwest's default pool), as a long-running
    /// client or a browser holds them; requests on a pooled connection stay on its gateway.
    /// A GET whose connection closed before any answer is sent once more on a new connection,
    /// as such clients do (counted in [`Run::retried_by_cause`]).
    KeepAlive,
    /// The same pool without that retry: every request that meets a closing connection fails
    /// (to show how often a server's close races a client's request).
    KeepAliveNoRetry,
    /// One HTTP/2 connection multiplexing the requests (ALPN h2).
    Http2,
}

impl Connections {
    /// A short label for reports.
    pub fn label(self) -> &'static str {
        match self {
            Connections::Fresh => "fresh connection per request",
            Connections::KeepAlive => "HTTP/1.1 keep-alive pool",
            Connections::KeepAliveNoRetry => "HTTP/1.1 keep-alive pool, no retry",
            Connections::Http2 => "HTTP/2 connection",
        }
    }
}

/// What to send.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// A label for the report (several streams may run in one drill).
    pub name: String,
    /// The URL every request GETs.
    pub url: String,
    /// Requests per second.
    pub rate: u32,
    /// A token sent as `Authorization: Bearer`.
    pub bearer: Option<String>,
    /// Connection use.
    pub connections: Connections,
    /// A request with no complete answer by then fails as `timeout`.
    pub timeout: Duration,
    /// The CA certificate to trust.
    pub ca: PathBuf,
    /// A network namespace (`/var/run/netns/<name>`) the generator's sockets live in.
    pub netns: Option<PathBuf>,
}

/// The outcome of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// 200 with its body read.
    Ok,
    /// Anything else: an HTTP status other than 200 (with the Zowe message number if the body
    /// had one) or a transport error, as a short cause.
    Failed(String),
}

/// One request as it happened. Times are offsets from the start of the run.
#[derive(Debug, Clone)]
pub struct Record {
    /// Its number: intended at `seq / rate`.
    pub seq: u64,
    /// When it should have been sent.
    pub intended: Duration,
    /// When it was handed to the client.
    pub started: Duration,
    /// When its answer (or error) was complete.
    pub finished: Duration,
    /// What happened.
    pub outcome: Outcome,
    /// The `instance` field of a sample service's answer.
    pub instance: Option<String>,
    /// The cause of a first attempt that was retried (keep-alive streams only, see [`Connections::KeepAlive`]).
    pub retried: Option<String>,
}

impl Record {
    /// Latency from the intended send time (what a user waiting since then saw).
    pub fn latency(&self) -> Duration {
        self.finished.saturating_sub(self.intended)
    }

    /// Whether it succeeded.
    pub fn ok(&self) -> bool {
        self.outcome == Outcome::Ok
    }

    /// The failure cause, if it failed.
    pub fn cause(&self) -> Option<&str> {
        match &self.outcome {
            Outcome::Ok => None,
            Outcome::Failed(c) => Some(c),
        }
    }
}

#[derive(Default)]
struct Progress {
    sent: AtomicU64,
    ok: AtomicU64,
    failed: AtomicU64,
    instances: Mutex<BTreeMap<String, u64>>,
}

/// A running load. Stop it with [`Load::stop`]; dropping it stops it too.
pub struct Load {
    spec: LoadSpec,
    start: Instant,
    progress: Arc<Progress>,
    marks: Mutex<Vec<(String, Duration)>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Vec<Record>>>,
}

impl Load {
    /// Starts sending at once.
    pub fn start(spec: LoadSpec) -> Load {
        assert!(spec.rate > 0, "a rate above 0");
        let start = Instant::now();
        let progress = Arc::new(Progress::default());
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let (s, p) = (spec.clone(), progress.clone());
        let thread = std::thread::Builder::new()
            .name(format!("load {}", spec.name))
            .spawn(move || {
                if let Some(ns) = &s.netns {
                    super::netns::enter(ns).unwrap_or_else(|e| panic!("enter network namespace {}: {e}", ns.display()));
                }
                let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("load runtime");
                rt.block_on(run(s, start, p, stopped))
            })
            .expect("spawn load thread");
        Load { spec, start, progress, marks: Mutex::new(Vec::new()), stop: Some(stop), thread: Some(thread) }
    }

    /// Time since the load started.
    pub fn now(&self) -> Duration {
        self.start.elapsed()
    }

    /// Notes an event (a fault injected, a process back) at the current time; its offset.
    pub fn mark(&self, name: &str) -> Duration {
        let at = self.now();
        self.marks.lock().expect("marks").push((name.to_owned(), at));
        at
    }

    /// Requests sent so far.
    pub fn sent(&self) -> u64 {
        self.progress.sent.load(Ordering::Relaxed)
    }

    /// Requests answered 200 so far.
    pub fn succeeded(&self) -> u64 {
        self.progress.ok.load(Ordering::Relaxed)
    }

    /// Requests failed so far.
    pub fn failed(&self) -> u64 {
        self.progress.failed.load(Ordering::Relaxed)
    }

    /// Answers so far from sample-service instance `id`.
    pub fn answered_by(&self, id: &str) -> u64 {
        self.progress.instances.lock().expect("instances").get(id).copied().unwrap_or(0)
    }

    /// Stops scheduling, waits for the requests in flight (each bounded by the timeout) and
    /// returns every record, in send order.
    pub fn stop(mut self) -> Run {
        let records = self.finish();
        let marks = std::mem::take(&mut *self.marks.lock().expect("marks"));
        Run { spec: self.spec.clone(), records, marks }
    }

    fn finish(&mut self) -> Vec<Record> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let mut records = self.thread.take().map(|t| t.join().expect("load thread")).unwrap_or_default();
        records.sort_by_key(|r| r.seq);
        records
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.finish();
        }
    }
}

fn client(spec: &LoadSpec, connections: Connections) -> reqwest::Client {
    let mut tls = crate::https::tls_config(&spec.ca, None);
    tls.alpn_protocols = match connections {
        Connections::Http2 => vec![b"h2".to_vec()],
        _ => vec![b"http/1.1".to_vec()],
    };
    let b = reqwest::Client::builder().tls_backend_preconfigured(tls).connect_timeout(spec.timeout).timeout(spec.timeout);
    let b = match connections {
        Connections::Fresh => b.http1_only().pool_max_idle_per_host(0),
        Connections::KeepAlive | Connections::KeepAliveNoRetry => b.http1_only(),
        Connections::Http2 => b,
    };
    b.build().expect("load client")
}

async fn run(spec: LoadSpec, start: Instant, progress: Arc<Progress>, mut stopped: tokio::sync::oneshot::Receiver<()>) -> Vec<Record> {
    let spec = Arc::new(spec);
    // A retry goes out on a new connection, never on another pooled one.
    let clients = Arc::new((client(&spec, spec.connections), client(&spec, Connections::Fresh)));
    let records = Arc::new(Mutex::new(Vec::new()));
    let period = Duration::from_secs_f64(1.0 / f64::from(spec.rate));
    let t0 = tokio::time::Instant::from_std(start);
    let mut tasks = tokio::task::JoinSet::new();
    for seq in 0u64.. {
        let intended = period.mul_f64(seq as f64);
        tokio::select! {
            biased;
            _ = &mut stopped => break,
            _ = tokio::time::sleep_until(t0 + intended) => {}
        }
        let (clients, spec, records, progress) = (clients.clone(), spec.clone(), records.clone(), progress.clone());
        progress.sent.fetch_add(1, Ordering::Relaxed);
        tasks.spawn(async move {
            let started = start.elapsed();
            let (outcome, instance, retried) = one(&clients.0, &clients.1, &spec).await;
            let finished = start.elapsed();
            let counter = if outcome == Outcome::Ok { &progress.ok } else { &progress.failed };
            counter.fetch_add(1, Ordering::Relaxed);
            if let Some(i) = &instance {
                *progress.instances.lock().expect("instances").entry(i.clone()).or_insert(0) += 1;
            }
            records.lock().expect("records").push(Record { seq, intended, started, finished, outcome, instance, retried });
        });
        // Reap finished tasks as we go, so the set stays small on long runs.
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    std::mem::take(&mut *records.lock().expect("records"))
}

/// Whether a failed request died with its connection before any answer: what a client with a
/// keep-alive pool meets when the server closes an idle connection just as the request is
/// sent on it.
fn stale_connection(cause: &str) -> bool {
    cause.starts_with("request: ")
        && ["connection closed before the response", "unexpected EOF", "connection reset", "broken pipe"].iter().any(|c| cause.ends_with(c))
}

async fn one(client: &reqwest::Client, fresh: &reqwest::Client, spec: &LoadSpec) -> (Outcome, Option<String>, Option<String>) {
    let (outcome, instance) = attempt(client, spec).await;
    match &outcome {
        // What HTTP clients with a connection pool do (Go's net/http, browsers, curl, Java's
        // HttpClient; RFC 9110 section 9.2.2): an idempotent request whose reused connection
        // closed before the answer is sent once more, on a new connection. reqwest does not,
        // so the generator does it for the keep-alive stream, and counts it.
        Outcome::Failed(cause) if spec.connections == Connections::KeepAlive && stale_connection(cause) => {
            let first = cause.clone();
            let (outcome, instance) = attempt(fresh, spec).await;
            (outcome, instance, Some(first))
        }
        _ => (outcome, instance, None),
    }
}

async fn attempt(client: &reqwest::Client, spec: &LoadSpec) -> (Outcome, Option<String>) {
    let mut req = client.get(&spec.url);
    if let Some(t) = &spec.bearer {
        req = req.bearer_auth(t);
    }
    let answer = async {
        let r = req.send().await?;
        let status = r.status().as_u16();
        let body = r.bytes().await?;
        Ok::<_, reqwest::Error>((status, body))
    };
    // reqwest's own timeout covers the whole exchange; this one is a backstop.
    match tokio::time::timeout(spec.timeout + Duration::from_secs(1), answer).await {
        Err(_) => (Outcome::Failed("timeout".to_owned()), None),
        Ok(Err(e)) => (Outcome::Failed(cause(&e)), None),
        Ok(Ok((200, body))) => {
            let instance = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("instance").and_then(|i| i.as_str()).map(str::to_owned));
            (Outcome::Ok, instance)
        }
        Ok(Ok((status, body))) => {
            let number = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["messages"][0]["messageNumber"].as_str().map(str::to_owned));
            let cause = match number {
                Some(n) => format!("HTTP {status} {n}"),
                None => format!("HTTP {status}"),
            };
            (Outcome::Failed(cause), None)
        }
    }
}

/// A short, stable description of a transport error: the stage (connect, request, body) and
/// what the socket or the HTTP layer saw.
pub fn cause(e: &reqwest::Error) -> String {
    use std::error::Error as _;
    let stage = if e.is_timeout() {
        return "timeout".to_owned();
    } else if e.is_connect() {
        "connect"
    } else if e.is_body() || e.is_decode() {
        "body"
    } else {
        "request"
    };
    let mut what = None;
    let mut last = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        if let Some(h) = s.downcast_ref::<hyper::Error>()
            && h.is_incomplete_message()
        {
            what.get_or_insert("connection closed before the response".to_owned());
        }
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            let kind = match io.kind() {
                std::io::ErrorKind::ConnectionRefused => Some("connection refused"),
                std::io::ErrorKind::ConnectionReset => Some("connection reset"),
                std::io::ErrorKind::ConnectionAborted => Some("connection aborted"),
                std::io::ErrorKind::BrokenPipe => Some("broken pipe"),
                std::io::ErrorKind::UnexpectedEof => Some("unexpected EOF"),
                std::io::ErrorKind::TimedOut => Some("timed out"),
                _ => None,
            };
            if let Some(k) = kind {
                what.get_or_insert(k.to_owned());
            }
        }
        last = s.to_string();
        source = s.source();
    }
    let mut detail = what.unwrap_or(last);
    detail.truncate(80);
    format!("{stage}: {detail}")
}

/// Latency figures of a set of requests.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Latency {
    /// Requests counted.
    pub n: usize,
    /// Median.
    pub p50: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Largest.
    pub max: Duration,
}

impl Latency {
    /// The figures of `samples` (any order).
    pub fn of(mut samples: Vec<Duration>) -> Latency {
        samples.sort();
        let n = samples.len();
        if n == 0 {
            return Latency::default();
        }
        let at = |q: f64| samples[(((n as f64) * q).ceil() as usize).clamp(1, n) - 1];
        Latency { n, p50: at(0.50), p99: at(0.99), max: samples[n - 1] }
    }
}

/// A finished run: the spec, every request and the marks the drill set.
#[derive(Debug, Clone)]
pub struct Run {
    /// What was sent.
    pub spec: LoadSpec,
    /// Every request, in send order.
    pub records: Vec<Record>,
    /// `(name, offset)` of every [`Load::mark`].
    pub marks: Vec<(String, Duration)>,
}

impl Run {
    /// The offset of mark `name`; panics if the drill never set it.
    pub fn mark(&self, name: &str) -> Duration {
        self.marks.iter().find(|(n, _)| n == name).map(|(_, t)| *t).unwrap_or_else(|| panic!("no mark {name}"))
    }

    /// Requests sent.
    pub fn sent(&self) -> usize {
        self.records.len()
    }

    /// Requests that succeeded.
    pub fn succeeded(&self) -> usize {
        self.records.iter().filter(|r| r.ok()).count()
    }

    /// The failed requests.
    pub fn failures(&self) -> Vec<&Record> {
        self.records.iter().filter(|r| !r.ok()).collect()
    }

    /// Failed requests by cause.
    pub fn failed_by_cause(&self) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for c in self.records.iter().filter_map(Record::cause) {
            *m.entry(c.to_owned()).or_insert(0) += 1;
        }
        m
    }

    /// The requests intended in `[from, to)`.
    pub fn between(&self, from: Duration, to: Duration) -> impl Iterator<Item = &Record> {
        self.records.iter().filter(move |r| r.intended >= from && r.intended < to)
    }

    /// Latency of the requests intended in `[from, to)` (failed ones included: a user waited for them too).
    pub fn latency(&self, from: Duration, to: Duration) -> Latency {
        Latency::of(self.between(from, to).map(Record::latency).collect())
    }

    /// Requests sent a second time after their connection closed, by the first attempt's cause.
    pub fn retried_by_cause(&self) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for c in self.records.iter().filter_map(|r| r.retried.as_deref()) {
            *m.entry(c.to_owned()).or_insert(0) += 1;
        }
        m
    }

    /// Requests in flight at `t`: handed to the client before it, not finished by it.
    pub fn in_flight_at(&self, t: Duration) -> usize {
        self.records.iter().filter(|r| r.started <= t && r.finished > t).count()
    }

    /// How long after `fault` the last failed request was intended (zero when every failure
    /// was intended before it); `None` when nothing failed.
    pub fn errors_stopped_after(&self, fault: Duration) -> Option<Duration> {
        self.records.iter().filter(|r| !r.ok()).map(|r| r.intended.saturating_sub(fault)).max()
    }

    /// Answers per sample-service instance among the requests intended in `[from, to)`.
    pub fn instances(&self, from: Duration, to: Duration) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for r in self.between(from, to) {
            if let Some(i) = &r.instance {
                *m.entry(i.clone()).or_insert(0) += 1;
            }
        }
        m
    }

    /// The end of the run (the last intended send time plus one period).
    pub fn end(&self) -> Duration {
        self.records.last().map(|r| r.intended + Duration::from_secs_f64(1.0 / f64::from(self.spec.rate))).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let l = Latency::of((1..=100).map(Duration::from_millis).collect());
        assert_eq!((l.n, l.p50, l.p99, l.max), (100, Duration::from_millis(50), Duration::from_millis(99), Duration::from_millis(100)));
        let one = Latency::of(vec![Duration::from_millis(7)]);
        assert_eq!((one.p50, one.p99, one.max), (Duration::from_millis(7), Duration::from_millis(7), Duration::from_millis(7)));
        assert_eq!(Latency::of(Vec::new()).n, 0);
    }
}
