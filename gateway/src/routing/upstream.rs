//! The client that forwards to API services. On a serving thread ([`crate::workers`]) and over
//! HTTP/1.1 it keeps that thread's own idle connections per instance: a request takes the one
//! last given back (or opens one with the same connector: connect timeout, TLS verified against
//! the truststore), and the answer's body gives it back when it ends, on the same thread.
//!
//! Why not hyper-util's pooled client there: per request it locks its pool, races a checkout
//! against a connect, and spawns a task that waits to put the connection back once the answer's
//! body is read. On the bare thread-per-core proxy of bench/tools that cost 2.5 us of user CPU
//! a request (5.0 -> 7.5 us, 67.7k -> 63.0k req/s, `python3 bench/profile.py compare`, issue
//! 14). The pooled client stays for what this one does not do: HTTP/2 to services
//! (`routing.http2`), requests off the serving threads (health checks, tests) and upgrades.

use std::cell::RefCell;
use std::collections::HashMap;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use bytes::Bytes;
use http::uri::{Authority, Scheme};
use http::{HeaderValue, Request, Response, Uri, header};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::client::conn::http1::SendRequest;
use hyper_util::client::legacy::connect::HttpConnector;
use tower::ServiceExt;

use super::HttpClient;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// An idle connection not used for this long is closed (as the pooled client's idle timeout).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How often a serving thread closes its connections idle past [`IDLE_TIMEOUT`], so an
/// instance no request goes to any more does not keep them.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(15);

/// Which idle connections a request may take: the same routing table and connect timeout (so
/// the same connector) and the same instance address.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Key {
    routes: usize,
    connect_timeout: Duration,
    scheme: Scheme,
    authority: Authority,
}

struct Idle {
    sender: SendRequest<Body>,
    since: Instant,
}

thread_local! {
    /// This serving thread's idle connections, the last given back at the end of each list.
    static IDLE: RefCell<HashMap<Key, Vec<Idle>>> = RefCell::new(HashMap::new());
}

/// The client of one routing table and connect timeout.
#[derive(Clone)]
pub enum Upstream {
    /// A serving thread's own HTTP/1.1 connections.
    Own {
        /// Opens new connections (TCP with the connect timeout, then TLS for https).
        connector: hyper_rustls::HttpsConnector<HttpConnector>,
        /// The routing table's id.
        routes: usize,
        /// The connector's connect timeout.
        connect_timeout: Duration,
        /// The serving thread it belongs to.
        worker: usize,
    },
    /// hyper-util's pooled client (boxed: it is several times the size of the other).
    Pooled(Box<HttpClient>),
}

/// Why a request got no answer.
#[derive(Debug)]
pub struct SendError {
    connect: bool,
    source: BoxError,
}

impl SendError {
    /// The connection could not be opened: nothing was sent.
    pub fn is_connect(&self) -> bool {
        self.connect
    }
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.connect { write!(f, "connect: {}", self.source) } else { self.source.fmt(f) }
    }
}

impl std::error::Error for SendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.source)
    }
}

impl Upstream {
    /// Sends `req` (its URI absolute: the instance's) and returns the answer's head.
    pub async fn request(&self, req: Request<Body>) -> Result<Response<UpBody>, SendError> {
        match self {
            Upstream::Pooled(client) => match client.request(req).await {
                Ok(resp) => Ok(resp.map(UpBody::plain)),
                Err(e) => Err(SendError { connect: e.is_connect(), source: Box::new(e) }),
            },
            Upstream::Own { connector, routes, connect_timeout, worker } => {
                let uri = req.uri().clone();
                let (Some(scheme), Some(authority)) = (uri.scheme().cloned(), uri.authority().cloned()) else {
                    return Err(SendError { connect: true, source: format!("not an absolute URI: {uri}").into() });
                };
                let key = Key { routes: *routes, connect_timeout: *connect_timeout, scheme, authority };
                send(connector, key, *worker, uri, req).await
            }
        }
    }
}

/// HTTP/1.1 over this thread's connections: an idle one if there is one, else a new one. A
/// request an idle connection turned away unsent (the instance closed it meanwhile) goes once
/// more, over a new connection, as the pooled client does.
async fn send(
    connector: &hyper_rustls::HttpsConnector<HttpConnector>,
    key: Key,
    worker: usize,
    uri: Uri,
    mut req: Request<Body>,
) -> Result<Response<UpBody>, SendError> {
    if !req.headers().contains_key(header::HOST) {
        // As the pooled client: the instance's host, and its port unless the scheme's default.
        let default = if key.scheme == Scheme::HTTPS { 443 } else { 80 };
        let host = match key.authority.port_u16() {
            Some(p) if p != default => HeaderValue::from_str(key.authority.as_str()),
            _ => HeaderValue::from_str(key.authority.host()),
        };
        if let Ok(h) = host {
            req.headers_mut().insert(header::HOST, h);
        }
    }
    // Origin form on the wire.
    let origin = uri.path_and_query().cloned().map_or_else(|| Uri::from_static("/"), Uri::from);
    *req.uri_mut() = origin;
    loop {
        let (mut sender, reused) = match take(&key) {
            Some(s) => (s, true),
            None => (connect(connector, uri.clone()).await?, false),
        };
        match sender.try_send_request(req).await {
            Ok(resp) => {
                let back = Some(Back { key, sender, worker });
                return Ok(resp.map(|inner| UpBody { inner, back, done: false }));
            }
            Err(mut e) => match e.take_message() {
                Some(unsent) if reused => req = unsent,
                _ => return Err(SendError { connect: false, source: Box::new(e.into_error()) }),
            },
        }
    }
}

/// The idle connection given back last that is ready for a request. One closed by its
/// instance or idle too long is dropped; one not ready (its connection task has not yet seen
/// the end of the last exchange, or the request's upload still goes on after an early answer)
/// stays for later, in front: a request never waits on another one's connection.
fn take(key: &Key) -> Option<SendRequest<Body>> {
    IDLE.with(|p| {
        let mut p = p.borrow_mut();
        let list = p.get_mut(key)?;
        let mut later = Vec::new();
        let mut found = None;
        while let Some(c) = list.pop() {
            if c.sender.is_closed() || c.since.elapsed() >= IDLE_TIMEOUT {
                continue;
            }
            if c.sender.is_ready() {
                found = Some(c.sender);
                break;
            }
            later.push(c);
        }
        if !later.is_empty() {
            later.reverse();
            list.splice(0..0, later);
        }
        found
    })
}

async fn connect(connector: &hyper_rustls::HttpsConnector<HttpConnector>, uri: Uri) -> Result<SendRequest<Body>, SendError> {
    let failed = |source: BoxError| SendError { connect: true, source };
    let io = connector.clone().oneshot(uri).await.map_err(failed)?;
    let (sender, conn) = hyper::client::conn::http1::Builder::new()
        // An instance's answer gets the same header limit as a client's request.
        .max_buf_size(crate::server::MAX_HEADER_BYTES)
        .handshake(io)
        .await
        .map_err(|e| failed(Box::new(e)))?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "upstream connection ended with an error");
        }
    });
    Ok(sender)
}

/// Closes this thread's connections idle past [`IDLE_TIMEOUT`] or closed by their instance.
pub fn sweep() {
    IDLE.with(|p| {
        p.borrow_mut().retain(|_, list| {
            list.retain(|c| !c.sender.is_closed() && c.since.elapsed() < IDLE_TIMEOUT);
            !list.is_empty()
        });
    });
}

/// A connection to give back when its answer's body has ended.
struct Back {
    key: Key,
    sender: SendRequest<Body>,
    worker: usize,
}

/// An answer's body; its connection goes back to its thread's idle list once the body has
/// ended (read to the end, or empty), and is closed when the body is dropped before that.
pub struct UpBody {
    inner: Incoming,
    back: Option<Back>,
    done: bool,
}

impl UpBody {
    /// A body with no connection to give back.
    pub fn plain(inner: Incoming) -> UpBody {
        UpBody { inner, back: None, done: false }
    }
}

impl Drop for UpBody {
    fn drop(&mut self) {
        let Some(back) = self.back.take() else { return };
        // A connection whose answer was not read to the end cannot carry another one.
        if !(self.done || hyper::body::Body::is_end_stream(&self.inner)) || crate::workers::current() != Some(back.worker) {
            return;
        }
        IDLE.with(|p| p.borrow_mut().entry(back.key).or_default().push(Idle { sender: back.sender, since: Instant::now() }));
    }
}

impl hyper::body::Body for UpBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(None) = polled {
            self.done = true;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
