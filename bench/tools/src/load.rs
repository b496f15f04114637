//! The load generator (see the crate doc). Connections are opened before the clock starts;
//! the first `--warmup` seconds are run but not recorded; then `--duration` seconds are.
//!
//! Open model (`--rate R`): connection j of C sends its i-th request at
//! `start + (j + i*C) / R`; if the previous answer on that connection arrived late, the
//! request goes at once but its latency still counts from the time it was due. How late
//! requests on idle connections went out is reported as `send_lag_p99_us` (the generator's
//! own timer and scheduling lag, excluded from the latencies).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

struct Target {
    tls: Option<(TlsConnector, ServerName<'static>)>,
    host: String,
    port: u16,
    path: String,
    method: hyper::Method,
    headers: Vec<(hyper::header::HeaderName, hyper::header::HeaderValue)>,
    body: Bytes,
}

#[derive(Default)]
struct Stats {
    latencies_us: Vec<u32>,
    /// Open model: how late requests on idle connections were sent (the generator's own lag).
    lag_us: Vec<u32>,
    non2xx: u64,
    errors: u64,
    reconnects: u64,
}

pub fn main(args: &[String]) -> Result<(), String> {
    let (pos, opts) = crate::parse_args(args)?;
    let url = pos.first().ok_or("a URL is required")?;
    let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else {
        return Err(format!("{url}: only http:// and https:// URLs"));
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = authority.rsplit_once(':').ok_or("the URL needs an explicit port")?;
    let port: u16 = port.parse().map_err(|_| "bad port")?;
    let rate: f64 = crate::opt_parse(&opts, "rate", 0.0)?;
    let connections: usize = crate::opt_parse(&opts, "connections", 32)?;
    let duration: f64 = crate::opt_parse(&opts, "duration", 10.0)?;
    let warmup: f64 = crate::opt_parse(&opts, "warmup", 1.0)?;
    let threads: usize = crate::opt_parse(&opts, "threads", 2)?;
    let method: hyper::Method = crate::opt(&opts, "method").unwrap_or("GET").parse().map_err(|_| "bad method")?;
    let body = Bytes::from(crate::opt(&opts, "body").unwrap_or("").to_owned());
    let mut headers = Vec::new();
    for (n, v) in opts.iter().filter(|(n, _)| n == "H") {
        let (name, value) = v.split_once(':').ok_or_else(|| format!("-H {v}: expected `Name: value`"))?;
        headers.push((
            name.trim().parse().map_err(|_| format!("-H {n}: bad name"))?,
            value.trim().parse().map_err(|_| format!("-H {n}: bad value"))?,
        ));
    }
    let tls = if tls {
        let cacert = crate::opt(&opts, "cacert").ok_or("https needs --cacert")?;
        let identity = match (crate::opt(&opts, "cert"), crate::opt(&opts, "key")) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            _ => return Err("--cert and --key go together".to_owned()),
        };
        let config = crate::tls::client(cacert, identity)?;
        let name = ServerName::try_from(host.to_owned()).map_err(|e| format!("{host}: {e}"))?;
        Some((TlsConnector::from(Arc::new(config)), name))
    } else {
        None
    };
    if connections == 0 || duration <= 0.0 {
        return Err("--connections and --duration must be above 0".to_owned());
    }
    let target = Arc::new(Target { tls, host: host.to_owned(), port, path: path.to_owned(), method, headers, body });
    crate::runtime(threads)?.block_on(async move {
        let mut conns = Vec::with_capacity(connections);
        for _ in 0..connections {
            conns.push(connect(&target).await?);
        }
        let start = Instant::now() + Duration::from_millis(20);
        let measure = start + Duration::from_secs_f64(warmup);
        let end = measure + Duration::from_secs_f64(duration);
        let tasks: Vec<_> = conns
            .into_iter()
            .enumerate()
            .map(|(j, c)| tokio::spawn(run(target.clone(), c, j, connections, rate, start, measure, end)))
            .collect();
        let mut all = Stats::default();
        for t in tasks {
            let s = t.await.map_err(|e| format!("task: {e}"))?;
            all.latencies_us.extend(s.latencies_us);
            all.lag_us.extend(s.lag_us);
            all.non2xx += s.non2xx;
            all.errors += s.errors;
            all.reconnects += s.reconnects;
        }
        report(all, duration, rate, connections);
        Ok(())
    })
}

async fn connect(t: &Target) -> Result<SendRequest<Full<Bytes>>, String> {
    let tcp = TcpStream::connect((t.host.as_str(), t.port)).await.map_err(|e| format!("connect {}:{}: {e}", t.host, t.port))?;
    let _ = tcp.set_nodelay(true);
    let io: Box<dyn Io> = match &t.tls {
        Some((connector, name)) => Box::new(connector.connect(name.clone(), tcp).await.map_err(|e| format!("TLS: {e}"))?),
        None => Box::new(tcp),
    };
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await.map_err(|e| format!("HTTP: {e}"))?;
    tokio::spawn(conn);
    Ok(sender)
}

async fn send(t: &Target, sender: &mut SendRequest<Full<Bytes>>) -> Result<u16, String> {
    sender.ready().await.map_err(|e| e.to_string())?;
    let mut req = hyper::Request::builder().method(t.method.clone()).uri(t.path.as_str());
    req = req.header(hyper::header::HOST, format!("{}:{}", t.host, t.port));
    for (n, v) in &t.headers {
        req = req.header(n, v);
    }
    if !t.body.is_empty() {
        req = req.header(hyper::header::CONTENT_TYPE, "application/json");
    }
    let req = req.body(Full::new(t.body.clone())).map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    resp.into_body().collect().await.map_err(|e| e.to_string())?;
    Ok(status)
}

#[allow(clippy::too_many_arguments)]
async fn run(
    t: Arc<Target>,
    mut sender: SendRequest<Full<Bytes>>,
    j: usize,
    conns: usize,
    rate: f64,
    start: Instant,
    measure: Instant,
    end: Instant,
) -> Stats {
    let mut s = Stats::default();
    let mut i: u64 = 0;
    // When the previous answer on this connection arrived (or the connection was opened).
    let mut free_at = Instant::now();
    loop {
        let due = if rate > 0.0 { start + Duration::from_secs_f64((j as f64 + i as f64 * conns as f64) / rate) } else { Instant::now() };
        if due >= end {
            break;
        }
        if rate > 0.0 {
            tokio::time::sleep_until(due.into()).await;
        }
        i += 1;
        // The clock starts when the request was due if the connection was still busy then
        // (the server fell behind: its fault, counted), else when it was actually sent (tokio's
        // timer wakes up to a millisecond late: the generator's fault, not counted).
        let began = if free_at > due { due } else { Instant::now() };
        if rate > 0.0 && free_at <= due && due >= measure {
            s.lag_us.push(began.saturating_duration_since(due).as_micros().min(u32::MAX as u128) as u32);
        }
        let result = send(&t, &mut sender).await;
        let took = began.elapsed();
        free_at = Instant::now();
        let counted = due >= measure;
        match result {
            Ok(status) => {
                if counted {
                    s.latencies_us.push(took.as_micros().min(u32::MAX as u128) as u32);
                    if !(200..300).contains(&status) {
                        s.non2xx += 1;
                    }
                }
                if sender.is_closed() {
                    s.reconnects += 1;
                    match reconnect(&t, end).await {
                        Some(c) => sender = c,
                        None => break,
                    }
                }
            }
            Err(_) => {
                if counted {
                    s.errors += 1;
                }
                s.reconnects += 1;
                match reconnect(&t, end).await {
                    Some(c) => sender = c,
                    None => break,
                }
            }
        }
    }
    s
}

async fn reconnect(t: &Target, end: Instant) -> Option<SendRequest<Full<Bytes>>> {
    while Instant::now() < end {
        if let Ok(c) = connect(t).await {
            return Some(c);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

fn report(mut s: Stats, duration: f64, rate: f64, conns: usize) {
    s.latencies_us.sort_unstable();
    s.lag_us.sort_unstable();
    let lag_p99 = if s.lag_us.is_empty() { 0 } else { s.lag_us[(s.lag_us.len() * 99).div_ceil(100).clamp(1, s.lag_us.len()) - 1] };
    let n = s.latencies_us.len();
    let pct = |p: f64| -> u32 {
        if n == 0 {
            return 0;
        }
        let idx = ((p / 100.0) * n as f64).ceil() as usize;
        s.latencies_us[idx.clamp(1, n) - 1]
    };
    let mean = if n == 0 { 0.0 } else { s.latencies_us.iter().map(|&x| f64::from(x)).sum::<f64>() / n as f64 };
    println!(
        "{{\"requests\":{n},\"rps\":{:.1},\"offered_rps\":{rate},\"connections\":{conns},\"non2xx\":{},\"errors\":{},\"reconnects\":{},\
         \"send_lag_p99_us\":{lag_p99},\"mean_us\":{mean:.0},\"p50_us\":{},\"p90_us\":{},\"p99_us\":{},\"p999_us\":{},\"max_us\":{}}}",
        n as f64 / duration,
        s.non2xx,
        s.errors,
        s.reconnects,
        pct(50.0),
        pct(90.0),
        pct(99.0),
        pct(99.9),
        s.latencies_us.last().copied().unwrap_or(0)
    );
}
