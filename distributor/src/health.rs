//! Active health checks: every target checked every `interval`, each check bounded by
//! `timeout`, results fed into the target's state ([`crate::target`]). The check itself is
//! behind the [`HealthCheck`] trait; the one plexgate runs is [`HttpsCheck`]: a TCP connect,
//! then an HTTPS GET of the gateway's health endpoint where only 200 counts (a gateway that
//! is DOWN or DRAINING answers 503, and must get no new connections).

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use plexgate_config::{Config, HealthCheckConfig, tls};
use rustls::pki_types::ServerName;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;

use crate::error::DistributorError;
use crate::metrics as m;
use crate::target::Target;

/// Largest health response body read.
const MAX_BODY_BYTES: usize = 64 * 1024;

/// Why a check failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// What was seen.
    pub detail: String,
    /// No TCP connection could be made and nothing answered: the connect timed out, or the
    /// host or its network is unreachable (EHOSTUNREACH, ENETUNREACH). The target, or the
    /// link to it, is gone. A refused connect is not this: a reset is sent by a live host
    /// (a draining gateway past its grace closes its listener but still serves its open
    /// requests), so its open connections must be kept.
    pub unreachable: bool,
}

impl Failure {
    fn unreachable(detail: String) -> Failure {
        Failure { detail, unreachable: true }
    }

    fn unhealthy(detail: String) -> Failure {
        Failure { detail, unreachable: false }
    }
}

/// One check of one target.
#[async_trait]
pub trait HealthCheck: Send + Sync + 'static {
    /// `Ok(detail)` when the target may take new connections, `Err` when not. Bounded by its
    /// own timeout (the caller adds a safety margin only).
    async fn check(&self, target: &Target) -> Result<String, Failure>;
}

/// TCP connect plus HTTPS GET of `path`; 200 passes, anything else fails.
pub struct HttpsCheck {
    connector: TlsConnector,
    path: String,
    proxy_protocol: bool,
    timeout: Duration,
}

impl HttpsCheck {
    /// Trusts the configured certificate authorities (per `zowe.verifyCertificates`).
    pub fn from_config(config: &Config) -> Result<HttpsCheck, DistributorError> {
        let mut client = tls::client_config(&config.certificates, config.tls, config.verify_certificates)
            .map_err(|e| DistributorError::Config(format!("TLS for health checks: {e}")))?;
        client.alpn_protocols = vec![b"http/1.1".to_vec()];
        let d = &config.distributor;
        Ok(HttpsCheck {
            connector: TlsConnector::from(Arc::new(client)),
            path: d.health_check.path.clone(),
            proxy_protocol: d.proxy_protocol,
            timeout: d.health_check.timeout,
        })
    }
}

#[async_trait]
impl HealthCheck for HttpsCheck {
    async fn check(&self, target: &Target) -> Result<String, Failure> {
        let t = &target.config;
        let deadline = tokio::time::Instant::now() + self.timeout;
        let within = humanize(self.timeout);
        // The addresses resolved in the background, as the data path uses.
        let addresses = target.addresses();
        if addresses.is_empty() {
            return Err(Failure::unhealthy(format!("host name {} not resolved (yet)", t.host)));
        }
        let mut tcp = match tokio::time::timeout_at(deadline, TcpStream::connect(&addresses[..])).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) if no_host(&e) => return Err(Failure::unreachable(format!("connect: {e}"))),
            Ok(Err(e)) => return Err(Failure::unhealthy(format!("connect: {e}"))),
            Err(_) => return Err(Failure::unreachable(format!("connect: no connection within {within}"))),
        };
        let _ = tcp.set_nodelay(true);
        let exchange = async {
            if self.proxy_protocol {
                tcp.write_all(&crate::proxy_protocol::local_header()).await.map_err(|e| format!("PROXY header: {e}"))?;
            }
            let name = ServerName::try_from(t.host.clone()).map_err(|e| format!("host name {}: {e}", t.host))?;
            let stream = self.connector.connect(name, tcp).await.map_err(|e| format!("TLS: {e}"))?;
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| format!("HTTP: {e}"))?;
            let driver = AbortOnDrop(tokio::spawn(conn));
            let request = http::Request::get(&self.path)
                .header(http::header::HOST, format!("{}:{}", t.host, t.port))
                .header(http::header::CONNECTION, "close")
                .header(http::header::USER_AGENT, "plexgate-distributor")
                .body(Empty::<Bytes>::new())
                .map_err(|e| format!("request: {e}"))?;
            let response = sender.send_request(request).await.map_err(|e| format!("GET {}: {e}", self.path))?;
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_BODY_BYTES).collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            drop(driver);
            let detail = format!("{} {}", status.as_u16(), summary(&body));
            if status == http::StatusCode::OK { Ok(detail) } else { Err(detail) }
        };
        match tokio::time::timeout_at(deadline, exchange).await {
            Ok(r) => r.map_err(Failure::unhealthy),
            Err(_) => Err(Failure::unhealthy(format!("no answer within {within}"))),
        }
    }
}

/// Whether a failed connect says that no host answers at all (as against a host that
/// answered with a reset: refused).
pub fn no_host(e: &std::io::Error) -> bool {
    matches!(e.kind(), std::io::ErrorKind::HostUnreachable | std::io::ErrorKind::NetworkUnreachable | std::io::ErrorKind::TimedOut)
}

/// The `status` of a JSON health body (`UP`, `DOWN`, `DRAINING`), else its start.
fn summary(body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body)
        && let Some(s) = v.get("status").and_then(|s| s.as_str())
    {
        return s.to_owned();
    }
    String::from_utf8_lossy(&body[..body.len().min(80)]).trim().to_owned()
}

struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts one checker task per target; they run until aborted.
pub fn spawn_checkers(targets: &[Arc<Target>], check: Arc<dyn HealthCheck>, config: &HealthCheckConfig) -> Vec<JoinHandle<()>> {
    targets.iter().map(|t| tokio::spawn(run(t.clone(), check.clone(), config.clone()))).collect()
}

/// Checks `target` at once, then every `interval` (start to start; a slow check delays the
/// next one instead of piling up).
async fn run(target: Arc<Target>, check: Arc<dyn HealthCheck>, config: HealthCheckConfig) {
    let mut ticks = tokio::time::interval(config.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let started = Instant::now();
        // The check keeps its own timeout; this margin only guards against a check that does not.
        let result = match tokio::time::timeout(config.timeout * 2, check.check(&target)).await {
            Ok(r) => r,
            Err(_) => Err(Failure::unhealthy(format!("no answer within {}", humanize(config.timeout)))),
        };
        let outcome = if result.is_ok() { "ok" } else { "failed" };
        metrics::histogram!(m::HEALTH_CHECK_DURATION_SECONDS, "target" => target.config.name.clone(), "result" => outcome)
            .record(started.elapsed().as_secs_f64());
        match result {
            Ok(detail) => {
                tracing::debug!(target_name = %target.config.name, ok = true, %detail, "health check");
                target.record_check(true, detail, &config);
            }
            Err(Failure { detail, unreachable }) => {
                tracing::debug!(target_name = %target.config.name, ok = false, unreachable, %detail, "health check");
                target.record_check(false, detail, &config);
                if unreachable && config.close_sessions_when_unreachable && target.state() == crate::target::State::Down {
                    target.close_sessions();
                }
            }
        }
    }
}

fn humanize(d: std::time::Duration) -> String {
    if d.subsec_millis() == 0 { format!("{}s", d.as_secs()) } else { format!("{}ms", d.as_millis()) }
}
