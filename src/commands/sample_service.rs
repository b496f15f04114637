//! `plexgate sample-service`: a small real API service for demos, tests and benchmarks.
//!
//! Routes under `/sample/api/v1` (the serviceRelativeUrl of the example definition):
//! - `GET hello`: `{"instance", "message", "user", "headers"}`: who answered, the user it sees
//!   (the `sub` of the JWT the gateway passes on, read without verification: display only) and
//!   the forwarding headers it received;
//! - `ANY echo/**`: method, HTTP version, path, query, headers and body length as JSON;
//! - `GET slow?ms=N`: answers after N milliseconds;
//! - `GET fail?status=N`: answers status N;
//! - `GET download?bytes=N[&stallMs=M]`: N bytes streamed (a pause of M ms after the first
//!   64 KiB); `POST upload`: counts the bytes it receives;
//! - `GET ws`: a WebSocket that echoes every text message, prefixed with the instance id;
//! - `/application/health`: UP.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use futures_util::StreamExt;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::{load, runtime, stop_signal};
use crate::cli::SampleArgs;

/// Largest download served.
const MAX_DOWNLOAD: u64 = 4 * 1024 * 1024 * 1024;

/// Runs the sample service until SIGTERM or Ctrl-C.
pub fn run(args: &SampleArgs) -> anyhow::Result<ExitCode> {
    let config = load(&args.config, None)?.config;
    let id = Arc::new(args.id.clone());
    let app = Router::new()
        .route("/sample/api/v1/hello", get(hello))
        .route("/sample/api/v1/echo", any(echo))
        .route("/sample/api/v1/echo/{*rest}", any(echo))
        .route("/sample/api/v1/slow", get(slow))
        .route("/sample/api/v1/fail", get(fail))
        .route("/sample/api/v1/download", get(download))
        .route("/sample/api/v1/upload", post(upload))
        .route("/sample/api/v1/ws", get(websocket))
        .route("/application/health", get(|| async { axum::Json(json!({"status": "UP"})) }))
        .with_state(id.clone());
    let tls = if args.plain {
        None
    } else {
        let c = &config.gateway.certificates;
        let server = plexgate_config::tls::server_config(
            c,
            config.tls,
            rustls::server::WebPkiClientVerifier::no_client_auth(),
            &[b"h2", b"http/1.1"],
        )?;
        Some(tokio_rustls::TlsAcceptor::from(Arc::new(server)))
    };
    let port = args.port;
    crate::limits::raise_open_files("sample-service");
    runtime()?.block_on(async move {
        // A deep accept queue, as the gateway's: the bench opens thousands of connections at once.
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.set_reuseaddr(true)?;
        socket.bind((std::net::Ipv4Addr::LOCALHOST, port).into())?;
        let listener = socket.listen(plexgate_gateway::LISTEN_BACKLOG)?;
        tracing::info!(port, id = %id, tls = tls.is_some(), "sample service listening");
        let stop = stop_signal();
        tokio::pin!(stop);
        loop {
            let (tcp, _) = tokio::select! {
                a = listener.accept() => a?,
                _ = &mut stop => break,
            };
            let _ = tcp.set_nodelay(true);
            let app = app.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                let service = TowerToHyperService::new(app.map_request(|r: hyper::Request<hyper::body::Incoming>| r.map(Body::new)));
                let builder = auto::Builder::new(TokioExecutor::new());
                let _ = match tls {
                    Some(acceptor) => match acceptor.accept(tcp).await {
                        Ok(s) => builder.serve_connection_with_upgrades(TokioIo::new(s), service).await,
                        Err(_) => return,
                    },
                    None => builder.serve_connection_with_upgrades(TokioIo::new(tcp), service).await,
                };
            });
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// The headers, as a JSON object (repeated headers joined with ", ").
fn headers_json(h: &HeaderMap) -> Value {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in h {
        let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
        out.entry(k.as_str().to_owned()).and_modify(|e| *e = format!("{e}, {v}")).or_insert(v);
    }
    json!(out)
}

/// The `sub` of the bearer token, read without verification (the gateway verified it).
fn user(h: &HeaderMap) -> Option<String> {
    use base64::Engine;
    let auth = h.get("authorization")?.to_str().ok()?;
    let token = auth.strip_prefix("Bearer ")?;
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token.split('.').nth(1)?).ok()?;
    serde_json::from_slice::<Value>(&payload).ok()?.get("sub")?.as_str().map(str::to_owned)
}

async fn hello(State(id): State<Arc<String>>, headers: HeaderMap) -> impl IntoResponse {
    axum::Json(
        json!({"instance": *id, "message": "hello from the plexgate sample service", "user": user(&headers), "headers": headers_json(&headers)}),
    )
}

async fn echo(
    State(id): State<Arc<String>>,
    method: Method,
    version: axum::http::Version,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    axum::Json(
        json!({"instance": *id, "method": method.as_str(), "version": format!("{version:?}"), "path": uri.path(), "query": uri.query(), "headers": headers_json(&headers), "bodyLength": body.len()}),
    )
}

async fn slow(State(id): State<Arc<String>>, Query(q): Query<BTreeMap<String, String>>) -> impl IntoResponse {
    let ms = q.get("ms").and_then(|v| v.parse::<u64>().ok()).unwrap_or(1000).min(600_000);
    tokio::time::sleep(Duration::from_millis(ms)).await;
    axum::Json(json!({"instance": *id, "sleptMillis": ms}))
}

async fn fail(State(id): State<Arc<String>>, Query(q): Query<BTreeMap<String, String>>) -> Response {
    let status = q
        .get("status")
        .and_then(|v| v.parse::<u16>().ok())
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, axum::Json(json!({"instance": *id, "status": status.as_u16()}))).into_response()
}

async fn download(Query(q): Query<BTreeMap<String, String>>) -> Response {
    let total = q.get("bytes").and_then(|v| v.parse::<u64>().ok()).unwrap_or(1024).min(MAX_DOWNLOAD);
    // `stallMs`: a pause after the first piece, an upstream that stops mid-answer.
    let stall = q.get("stallMs").and_then(|v| v.parse::<u64>().ok()).map(|ms| Duration::from_millis(ms.min(600_000)));
    const CHUNK: u64 = 64 * 1024;
    let chunk = Bytes::from(vec![b'x'; CHUNK as usize]);
    let stream = futures_util::stream::unfold((total, 0u64), move |(left, pieces)| {
        let chunk = chunk.clone();
        async move {
            if left == 0 {
                return None;
            }
            if let (1, Some(d)) = (pieces, stall) {
                tokio::time::sleep(d).await;
            }
            let n = left.min(CHUNK);
            Some((Ok::<_, std::io::Error>(chunk.slice(..n as usize)), (left - n, pieces + 1)))
        }
    });
    let mut resp = Body::from_stream(stream).into_response();
    resp.headers_mut().insert("content-length", total.into());
    resp
}

async fn upload(State(id): State<Arc<String>>, body: Body) -> Response {
    let mut stream = body.into_data_stream();
    let mut total: u64 = 0;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(c) => total += c.len() as u64,
            Err(e) => {
                // What a cancelled upload looks like from here (tests look for this line).
                tracing::warn!(received = total, error = %e, "upload aborted");
                return (StatusCode::BAD_REQUEST, e.to_string()).into_response();
            }
        }
    }
    tracing::info!(received = total, "upload complete");
    axum::Json(json!({"instance": *id, "received": total})).into_response()
}

async fn websocket(State(id): State<Arc<String>>, ws: axum::extract::ws::WebSocketUpgrade) -> Response {
    use axum::extract::ws::Message;
    ws.on_upgrade(move |mut socket| async move {
        while let Some(Ok(msg)) = socket.recv().await {
            let reply = match msg {
                Message::Text(t) => Message::Text(format!("{id}: {}", t.as_str()).into()),
                Message::Close(_) => break,
                _ => continue,
            };
            if socket.send(reply).await.is_err() {
                break;
            }
        }
    })
}
