//! The revocation race: tokens logged out on one gateway while the other gateway keeps
//! using each of them, and how long the other one still accepts it.
//!
//! Per token: gateway B answers a query with it (200: valid there, and in B's verified-token
//! cache); then a poller queries B with it back to back while gateway A is asked to log it out;
//! the poller stops at B's first 401. Propagation is the time from the logout being sent to
//! A to that first 401 arriving from B (an upper bound: it includes one query's round trip).
//! Queries B answered 200 although they were sent after A had acknowledged the logout are
//! counted too: that is the window in which a revoked token still worked; those sent later
//! than the propagation bound after the acknowledgement are a broken guarantee, not a delay.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// One token's race.
#[derive(Debug, Clone)]
pub struct RaceSample {
    /// The gateway the logout went to (0 or 1); the other one was polled.
    pub logout_on: usize,
    /// B's answer before the logout.
    pub before: u16,
    /// A's answer to the logout.
    pub logout: u16,
    /// From sending the logout to B's first 401 (`None`: B never refused within the limit).
    pub propagation: Option<Duration>,
    /// From A's acknowledgement to B's first 401; zero when B refused before A answered.
    pub after_ack: Option<Duration>,
    /// Queries B answered 200 that were sent after A acknowledged the logout.
    pub stale_accepts: usize,
    /// Of those, the ones sent later than the propagation bound after the acknowledgement.
    pub late_accepts: usize,
    /// How long after the acknowledgement the last stale accept was sent.
    pub last_stale_accept: Option<Duration>,
    /// Queries B answered while the logout was under way.
    pub polls: usize,
}

/// Races `tokens` over the gateways at `bases` (`https://host:port`), `workers` at a time;
/// token `k` is logged out on gateway `k % 2` and polled on the other. `limit` bounds one
/// poller; `bound` is the promised propagation time (see [`RaceSample::late_accepts`]).
pub fn run(
    bases: [String; 2],
    ca: &std::path::Path,
    tokens: Vec<String>,
    workers: usize,
    limit: Duration,
    bound: Duration,
) -> Vec<RaceSample> {
    let mut tls = crate::https::tls_config(ca, None);
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(async move {
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .http1_only()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("client");
        let tokens = Arc::new(tokens);
        let bases = Arc::new(bases);
        let next = Arc::new(AtomicUsize::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..workers {
            let (client, tokens, bases, next) = (client.clone(), tokens.clone(), bases.clone(), next.clone());
            tasks.spawn(async move {
                let mut out = Vec::new();
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    let Some(token) = tokens.get(k) else { break };
                    out.push(one(&client, &bases, k % 2, token, limit, bound).await);
                }
                out
            });
        }
        let mut all = Vec::new();
        while let Some(r) = tasks.join_next().await {
            all.extend(r.expect("race worker"));
        }
        all
    })
}

async fn query(client: &reqwest::Client, base: &str, token: &str) -> u16 {
    match client.get(format!("{base}/gateway/api/v1/auth/query")).bearer_auth(token).send().await {
        Ok(r) => {
            let s = r.status().as_u16();
            let _ = r.bytes().await;
            s
        }
        Err(_) => 0,
    }
}

async fn one(client: &reqwest::Client, bases: &[String; 2], a: usize, token: &str, limit: Duration, bound: Duration) -> RaceSample {
    let b = 1 - a;
    let before = query(client, &bases[b], token).await;
    // Polls B until its first 401: (sent, received, status) of every query.
    let poller = {
        let (client, base, token) = (client.clone(), bases[b].clone(), token.to_owned());
        tokio::spawn(async move {
            let started = Instant::now();
            let mut seen = Vec::new();
            while started.elapsed() < limit {
                let sent = Instant::now();
                let status = query(&client, &base, &token).await;
                seen.push((sent, Instant::now(), status));
                if status == 401 {
                    break;
                }
            }
            seen
        })
    };
    let sent = Instant::now();
    let logout = match client.post(format!("{}/gateway/api/v1/auth/logout", bases[a])).bearer_auth(token).send().await {
        Ok(r) => r.status().as_u16(),
        Err(_) => 0,
    };
    let acked = Instant::now();
    let seen = poller.await.expect("poller");
    let first_401 = seen.iter().find(|(_, _, s)| *s == 401).map(|(_, received, _)| *received);
    let stale: Vec<Duration> = seen.iter().filter(|(s, _, status)| *s >= acked && *status == 200).map(|(s, _, _)| *s - acked).collect();
    RaceSample {
        logout_on: a,
        before,
        logout,
        propagation: first_401.map(|t| t.saturating_duration_since(sent)),
        after_ack: first_401.map(|t| t.saturating_duration_since(acked)),
        stale_accepts: stale.len(),
        late_accepts: stale.iter().filter(|d| **d > bound).count(),
        last_stale_accept: stale.iter().max().copied(),
        polls: seen.len(),
    }
}
