//! The bare bound of the caching-service scenario: hyper 1 + tokio-rustls with mutual TLS,
//! answering Zowe's caching-service JSON from a HashMap. No routing framework, no storage, no
//! namespaces, no metrics: what is left is TLS, HTTP/1.1 and JSON, the floor any HTTPS JSON
//! service on this machine pays.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio_rustls::TlsAcceptor;

const BASE: &str = "/cachingservice/api/v1";

type Store = Mutex<HashMap<String, (String, u64)>>;

pub fn main(args: &[String]) -> Result<(), String> {
    let (_, opts) = crate::parse_args(args)?;
    let need = |n: &str| crate::opt(&opts, n).map(str::to_owned).ok_or_else(|| format!("--{n} is required"));
    let port: u16 = need("port")?.parse().map_err(|_| "--port: not a port".to_owned())?;
    let config = crate::tls::server_mutual(&need("cert")?, &need("key")?, &need("ca")?)?;
    let threads = crate::opt_parse(&opts, "threads", 0usize)?;
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let store: Arc<Store> = Arc::new(Mutex::new(HashMap::new()));
    crate::runtime(threads)?.block_on(async move {
        // A deep accept queue (4096, as the gateway's), so many clients connecting at once are not dropped.
        let listener = (|| {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.set_reuseaddr(true)?;
            socket.bind((std::net::Ipv4Addr::LOCALHOST, port).into())?;
            socket.listen(4096)
        })()
        .map_err(|e| format!("bind: {e}"))?;
        eprintln!("serve-json listening on 127.0.0.1:{port}");
        loop {
            let Ok((tcp, _)) = listener.accept().await else { continue };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let store = store.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let svc = hyper::service::service_fn(move |req| handle(req, store.clone()));
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), svc).await;
            });
        }
    })
}

fn json(status: StatusCode, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/json"));
    r
}

fn empty(status: StatusCode) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = status;
    r
}

fn now_millis() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// `{"key","value"}` from a request body.
fn key_value(body: &[u8]) -> Option<(String, String)> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let key = v.get("key")?.as_str()?.to_owned();
    let value = v.get("value").and_then(|x| x.as_str()).unwrap_or("").to_owned();
    (!key.is_empty()).then_some((key, value))
}

async fn handle(req: Request<Incoming>, store: Arc<Store>) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    let Some(rest) = path.strip_prefix(BASE) else { return Ok(empty(StatusCode::NOT_FOUND)) };
    if method == Method::GET
        && let Some(key) = rest.strip_prefix("/cache/")
    {
        let found = store.lock().unwrap_or_else(|p| p.into_inner()).get(key).cloned();
        return Ok(match found {
            Some((value, created)) => {
                let body = serde_json::json!({"key": key, "value": value, "created": created.to_string()});
                json(StatusCode::OK, serde_json::to_vec(&body).unwrap_or_default())
            }
            None => empty(StatusCode::NOT_FOUND),
        });
    }
    if method != Method::POST {
        return Ok(empty(StatusCode::NOT_FOUND));
    }
    let Ok(body) = req.into_body().collect().await.map(|b| b.to_bytes()) else { return Ok(empty(StatusCode::BAD_REQUEST)) };
    let Some((key, value)) = key_value(&body) else { return Ok(empty(StatusCode::BAD_REQUEST)) };
    let mut s = store.lock().unwrap_or_else(|p| p.into_inner());
    if rest == "/cache" {
        if s.contains_key(&key) {
            return Ok(empty(StatusCode::CONFLICT));
        }
        s.insert(key, (value, now_millis()));
        return Ok(empty(StatusCode::CREATED));
    }
    if let Some(map) = rest.strip_prefix("/cache-list/") {
        s.insert(format!("{map}\u{0}{key}"), (value, now_millis()));
        return Ok(empty(StatusCode::CREATED));
    }
    Ok(empty(StatusCode::NOT_FOUND))
}
