//! Addresses of targets named by a host name, looked up in the background: once at start,
//! every [`RESOLVE_INTERVAL`], and again soon after a connect to the target failed. The
//! data path and the health checks connect to the addresses last found, so no client
//! connection waits on `getaddrinfo` (which tokio runs on its blocking pool), and a resolver
//! hiccup changes nothing: a failed lookup keeps the addresses found before. Targets given
//! as IP addresses are never looked up.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::metrics as m;
use crate::target::Target;

/// Time between background lookups of one host name.
pub const RESOLVE_INTERVAL: Duration = Duration::from_secs(30);
/// Longest wait for one lookup.
pub const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);
/// Least time between two lookups asked for by failed connects (a dead target fails every
/// connect; its resolver should not spin).
const RETRY_PAUSE: Duration = Duration::from_millis(500);

/// Looks up every target named by host name once (bounded by [`RESOLVE_TIMEOUT`] each), so
/// the first connections find addresses; a failure is logged, not fatal.
pub async fn resolve_all(targets: &[Arc<Target>]) {
    let lookups = targets.iter().filter(|t| t.by_host_name()).map(|t| resolve(t));
    for lookup in lookups {
        lookup.await;
    }
}

/// Starts one resolver task per target named by host name; they run until aborted.
pub fn spawn_resolvers(targets: &[Arc<Target>]) -> Vec<JoinHandle<()>> {
    targets.iter().filter(|t| t.by_host_name()).map(|t| tokio::spawn(run(t.clone()))).collect()
}

async fn run(target: Arc<Target>) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(RESOLVE_INTERVAL) => {}
            () = target.resolve_now.notified() => tokio::time::sleep(RETRY_PAUSE).await,
        }
        resolve(&target).await;
    }
}

/// One lookup; stores what it found unless it found nothing.
async fn resolve(target: &Target) {
    let (host, port) = (target.config.host.as_str(), target.config.port);
    let found = match tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((host, port))).await {
        Ok(Ok(found)) => Ok(found.collect::<Vec<_>>()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {} s", RESOLVE_TIMEOUT.as_secs())),
    };
    match found {
        Ok(found) if !found.is_empty() => {
            metrics::counter!(m::RESOLUTIONS_TOTAL, "target" => target.name().to_owned(), "result" => "ok").increment(1);
            if *target.addresses() != found[..] {
                tracing::info!(target_name = %target.name(), %host, addresses = ?found, "target host name resolved");
            }
            target.set_addresses(found);
        }
        other => {
            let why = other.err().unwrap_or_else(|| "no address".to_owned());
            metrics::counter!(m::RESOLUTIONS_TOTAL, "target" => target.name().to_owned(), "result" => "failed").increment(1);
            tracing::warn!(target_name = %target.name(), %host, error = %why, kept = ?target.addresses(), "cannot resolve the target's host name; keeping the addresses found before");
        }
    }
}
