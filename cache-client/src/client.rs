//! Calls of the caching service's REST API, with failover between its instances.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use plexgate_config::{Config, tls};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::ClientError;

/// Base path of the caching service's API.
const BASE: &str = "/cachingservice/api/v1";

/// Timeouts and retries of a [`CacheClient`].
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Time to open a connection to one instance.
    pub connect_timeout: Duration,
    /// Time for one whole call to one instance.
    pub request_timeout: Duration,
    /// Rounds over all instances before giving up (each round tries every URL once).
    pub rounds: usize,
    /// Pause between rounds.
    pub backoff: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            connect_timeout: Duration::from_millis(500),
            request_timeout: Duration::from_secs(2),
            rounds: 2,
            backoff: Duration::from_millis(100),
        }
    }
}

/// One `/cache` entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Entry {
    /// The key.
    pub key: String,
    /// The value.
    pub value: String,
    /// Creation time, epoch milliseconds as a string (as Zowe sends it).
    pub created: String,
}

/// A caching-service client shared by all of a gateway's tasks (cheap to clone).
#[derive(Clone)]
pub struct CacheClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    /// Streaming client: no overall timeout (the feed is long-lived).
    stream: reqwest::Client,
    urls: Vec<String>,
    /// Index of the URL that answered last; calls start there.
    preferred: AtomicUsize,
    options: ClientOptions,
}

impl CacheClient {
    /// A client of `config.caching_service_urls`, presenting the gateway's client certificate.
    pub fn from_config(config: &Config, options: ClientOptions) -> Result<CacheClient, ClientError> {
        let mut tls = tls::client_config(&config.gateway.certificates, config.tls, config.verify_certificates)
            .map_err(|e| ClientError::Setup(e.to_string()))?;
        tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        CacheClient::new(config.caching_service_urls.clone(), tls, options)
    }

    /// A client of `urls` with this TLS configuration.
    pub fn new(urls: Vec<String>, tls: rustls::ClientConfig, options: ClientOptions) -> Result<CacheClient, ClientError> {
        if urls.is_empty() {
            return Err(ClientError::Setup("no caching-service URL configured".to_owned()));
        }
        let build = |timeout: Option<Duration>| {
            let mut b = reqwest::Client::builder()
                .tls_backend_preconfigured(tls.clone())
                .connect_timeout(options.connect_timeout)
                .pool_idle_timeout(Duration::from_secs(30));
            if let Some(t) = timeout {
                b = b.timeout(t);
            }
            b.build().map_err(|e| ClientError::Setup(e.to_string()))
        };
        let urls = urls.into_iter().map(|u| u.trim_end_matches('/').to_owned()).collect();
        Ok(CacheClient {
            inner: Arc::new(Inner {
                http: build(Some(options.request_timeout))?,
                stream: build(None)?,
                urls,
                preferred: AtomicUsize::new(0),
                options,
            }),
        })
    }

    /// The caching-service URLs, in the order calls start from.
    pub fn urls(&self) -> Vec<String> {
        let n = self.inner.urls.len();
        let start = self.inner.preferred.load(Ordering::Relaxed) % n;
        (0..n).map(|i| self.inner.urls[(start + i) % n].clone()).collect()
    }

    pub(crate) fn stream_client(&self) -> &reqwest::Client {
        &self.inner.stream
    }

    pub(crate) fn mark_good(&self, url: &str) {
        if let Some(i) = self.inner.urls.iter().position(|u| u == url) {
            self.inner.preferred.store(i, Ordering::Relaxed);
        }
    }

    /// One call with failover: each URL in turn, `rounds` times, until one answers.
    async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Result<(StatusCode, bytes::Bytes), ClientError> {
        let mut last = String::new();
        for round in 0..self.inner.options.rounds {
            if round > 0 {
                tokio::time::sleep(self.inner.options.backoff).await;
            }
            for url in self.urls() {
                let mut req = self.inner.http.request(method.clone(), format!("{url}{BASE}{path}"));
                if let Some(b) = body {
                    req = req.json(b);
                }
                match req.send().await {
                    Ok(resp) if !resp.status().is_server_error() || resp.status() == StatusCode::INSUFFICIENT_STORAGE => {
                        let status = resp.status();
                        match resp.bytes().await {
                            Ok(bytes) => {
                                self.mark_good(&url);
                                return Ok((status, bytes));
                            }
                            Err(e) => last = format!("{url}: {e}"),
                        }
                    }
                    Ok(resp) => last = format!("{url}: HTTP {}", resp.status()),
                    Err(e) => last = format!("{url}: {}", describe(&e)),
                }
                tracing::debug!(error = %last, "caching service call failed; trying the next instance");
            }
        }
        Err(ClientError::Unavailable(last))
    }

    async fn expect(&self, method: Method, path: &str, body: Option<&Value>, ok: StatusCode) -> Result<bytes::Bytes, ClientError> {
        let (status, bytes) = self.call(method, path, body).await?;
        if status == ok {
            return Ok(bytes);
        }
        Err(match status {
            StatusCode::NOT_FOUND => ClientError::NotFound,
            StatusCode::CONFLICT => ClientError::Conflict,
            StatusCode::PRECONDITION_FAILED => ClientError::Changed,
            StatusCode::INSUFFICIENT_STORAGE => ClientError::Full,
            s => ClientError::Rejected { status: s.as_u16(), message: zowe_message(&bytes) },
        })
    }

    /// `POST /cache`.
    pub async fn create(&self, key: &str, value: &str) -> Result<(), ClientError> {
        self.expect(Method::POST, "/cache", Some(&json!({"key": key, "value": value})), StatusCode::CREATED).await.map(drop)
    }

    /// `GET /cache/{key}`.
    pub async fn get(&self, key: &str) -> Result<Entry, ClientError> {
        let bytes = self.expect(Method::GET, &format!("/cache/{}", encode(key)), None, StatusCode::OK).await?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Unavailable(format!("unreadable answer: {e}")))
    }

    /// `PUT /cache`.
    pub async fn update(&self, key: &str, value: &str) -> Result<(), ClientError> {
        self.expect(Method::PUT, "/cache", Some(&json!({"key": key, "value": value})), StatusCode::NO_CONTENT).await.map(drop)
    }

    /// `DELETE /cache/{key}`.
    pub async fn delete(&self, key: &str) -> Result<(), ClientError> {
        self.expect(Method::DELETE, &format!("/cache/{}", encode(key)), None, StatusCode::NO_CONTENT).await.map(drop)
    }

    /// `POST /cache-list/{map}`: sets `key` in `map`, overwriting.
    pub async fn map_put(&self, map: &str, key: &str, value: &str) -> Result<(), ClientError> {
        self.expect(Method::POST, &format!("/cache-list/{}", encode(map)), Some(&json!({"key": key, "value": value})), StatusCode::CREATED)
            .await
            .map(drop)
    }

    /// `POST /cache-list/{map}?merge=max`: sets `key` to the larger of `value` and what is
    /// stored, atomically in the store (revocation rules only rise).
    pub async fn map_put_max(&self, map: &str, key: &str, value: u64) -> Result<(), ClientError> {
        let body = json!({"key": key, "value": value.to_string()});
        self.expect(Method::POST, &format!("/cache-list/{}?merge=max", encode(map)), Some(&body), StatusCode::CREATED).await.map(drop)
    }

    /// `DELETE /cache-list/{map}/{key}`: removes one entry ([`ClientError::NotFound`] when absent).
    pub async fn map_remove(&self, map: &str, key: &str) -> Result<(), ClientError> {
        let path = format!("/cache-list/{}/{}", encode(map), encode(key));
        self.expect(Method::DELETE, &path, None, StatusCode::NO_CONTENT).await.map(drop)
    }

    /// `DELETE /cache-list/{map}/{key}` with `{"ifValue"}`: removes the entry only while it
    /// holds `value`, decided in the store; [`ClientError::Changed`] when it holds another.
    pub async fn map_remove_if(&self, map: &str, key: &str, value: &str) -> Result<(), ClientError> {
        let path = format!("/cache-list/{}/{}", encode(map), encode(key));
        self.expect(Method::DELETE, &path, Some(&json!({"ifValue": value})), StatusCode::NO_CONTENT).await.map(drop)
    }

    /// `GET /cache-list/{map}` (an unknown map is empty).
    pub async fn map_get(&self, map: &str) -> Result<BTreeMap<String, String>, ClientError> {
        let bytes = self.expect(Method::GET, &format!("/cache-list/{}", encode(map)), None, StatusCode::OK).await?;
        if bytes.is_empty() {
            return Ok(BTreeMap::new());
        }
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Unavailable(format!("unreadable answer: {e}")))
    }

    /// `GET /cache-list`: every map of the caller.
    pub async fn maps(&self) -> Result<BTreeMap<String, BTreeMap<String, String>>, ClientError> {
        let bytes = self.expect(Method::GET, "/cache-list", None, StatusCode::OK).await?;
        if bytes.is_empty() {
            return Ok(BTreeMap::new());
        }
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Unavailable(format!("unreadable answer: {e}")))
    }

    /// `DELETE /cache-list/evict/tokens/{map}`.
    pub async fn evict_tokens(&self, map: &str) -> Result<(), ClientError> {
        self.expect(Method::DELETE, &format!("/cache-list/evict/tokens/{}", encode(map)), None, StatusCode::NO_CONTENT).await.map(drop)
    }

    /// `DELETE /cache-list/evict/rules/{map}`.
    pub async fn evict_rules(&self, map: &str) -> Result<(), ClientError> {
        self.expect(Method::DELETE, &format!("/cache-list/evict/rules/{}", encode(map)), None, StatusCode::NO_CONTENT).await.map(drop)
    }
}

/// Percent-encodes one path segment: everything but letters, digits and `-_~` (dots too, so a
/// key `..` is not taken for a path step).
pub(crate) fn encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || b"-_~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Zowe's `messageContent`, or the start of the body.
fn zowe_message(bytes: &[u8]) -> String {
    serde_json::from_slice::<Value>(bytes)
        .ok()
        .and_then(|v| v["messages"][0]["messageContent"].as_str().map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned())
}

/// A reqwest error with its causes, for logs.
pub(crate) fn describe(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}
