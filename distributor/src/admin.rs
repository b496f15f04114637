//! The admin listener (plain HTTP, meant for loopback): `GET /status` is the JSON
//! [`Status`](crate::status::Status), `GET /metrics` the Prometheus text, `GET /health` whether
//! this distributor should hold the virtual address (200 `UP`: serving, not draining, some
//! target not down; else 503 `DRAINING` or `DOWN`). [`fetch_status`] is the client side
//! `plexgate status` uses, [`fetch_health`] the one keepalived's check runs.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Empty, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

use crate::error::DistributorError;
use crate::server::Shared;
use crate::status::Status;

/// Largest status document `fetch_status` reads.
const MAX_STATUS_BYTES: usize = 4 * 1024 * 1024;

/// Serves the admin listener until the task is aborted.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "admin accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(answer(&shared, &req)) }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tcp), service).await {
                tracing::debug!(%peer, error = %e, "admin connection ended with an error");
            }
        });
    }
}

fn answer(shared: &Shared, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, content_type: &'static str, body: Vec<u8>| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = status;
        r.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static(content_type));
        r
    };
    const TEXT: &str = "text/plain; charset=utf-8";
    if req.method() != Method::GET {
        return reply(StatusCode::METHOD_NOT_ALLOWED, TEXT, b"only GET\n".to_vec());
    }
    match req.uri().path() {
        "/status" => match serde_json::to_vec_pretty(&shared.status()) {
            Ok(body) => reply(StatusCode::OK, "application/json", body),
            Err(e) => reply(StatusCode::INTERNAL_SERVER_ERROR, TEXT, e.to_string().into_bytes()),
        },
        "/health" => {
            let (code, body) = health(shared);
            reply(code, "application/json", body.to_string().into_bytes())
        }
        "/metrics" => match &shared.metrics {
            Some(h) => reply(StatusCode::OK, "text/plain; version=0.0.4", h.render().into_bytes()),
            None => reply(StatusCode::SERVICE_UNAVAILABLE, TEXT, b"metrics recorder not installed\n".to_vec()),
        },
        _ => reply(StatusCode::NOT_FOUND, TEXT, b"GET /status, /health or /metrics\n".to_vec()),
    }
}

/// Whether this distributor should hold the virtual address, as `/health` answers it.
fn health(shared: &Shared) -> (StatusCode, serde_json::Value) {
    let up = shared.targets.iter().filter(|t| t.state() != crate::target::State::Down).count();
    let (code, status) = if shared.draining.load(std::sync::atomic::Ordering::Relaxed) {
        (StatusCode::SERVICE_UNAVAILABLE, "DRAINING")
    } else if up == 0 {
        // Every gateway is down from here: another host may still reach some.
        (StatusCode::SERVICE_UNAVAILABLE, "DOWN")
    } else {
        (StatusCode::OK, "UP")
    };
    (code, serde_json::json!({ "status": status, "targetsNotDown": up, "targets": shared.targets.len() }))
}

/// `GET /status` from the admin listener at `address` (`host:port`), within `timeout`.
pub async fn fetch_status(address: &str, timeout: Duration) -> Result<Status, DistributorError> {
    let err = |message: String| DistributorError::Admin { address: address.to_owned(), message };
    let (status, body) = get(address, "/status", timeout).await?;
    if status != StatusCode::OK {
        return Err(err(format!("answered {status}: {}", String::from_utf8_lossy(&body))));
    }
    serde_json::from_slice::<Status>(&body).map_err(|e| err(format!("unexpected status document: {e}")))
}

/// `GET /health` from the admin listener at `address`, within `timeout`: `Ok` with the
/// answer when the distributor is UP, an error saying why not otherwise.
pub async fn fetch_health(address: &str, timeout: Duration) -> Result<String, DistributorError> {
    let (status, body) = get(address, "/health", timeout).await?;
    let text = String::from_utf8_lossy(&body).into_owned();
    if status != StatusCode::OK {
        return Err(DistributorError::Admin { address: address.to_owned(), message: format!("answered {status}: {text}") });
    }
    Ok(text)
}

/// One GET on the admin listener, within `timeout`.
async fn get(address: &str, path: &str, timeout: Duration) -> Result<(StatusCode, Bytes), DistributorError> {
    let err = |message: String| DistributorError::Admin { address: address.to_owned(), message };
    let work = async {
        let tcp = TcpStream::connect(address).await.map_err(|e| err(format!("cannot connect: {e} (is the distributor running?)")))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.map_err(|e| err(e.to_string()))?;
        let driver = tokio::spawn(conn);
        let request = Request::get(path).header(header::HOST, address).body(Empty::<Bytes>::new()).map_err(|e| err(e.to_string()))?;
        let response = sender.send_request(request).await.map_err(|e| err(e.to_string()))?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_STATUS_BYTES).collect().await.map_err(|e| err(e.to_string()))?.to_bytes();
        driver.abort();
        Ok((status, body))
    };
    tokio::time::timeout(timeout, work).await.map_err(|_| err(format!("no answer within {} ms", timeout.as_millis())))?
}
