//! The change feed: plexgate's own endpoint (not in Zowe's API) that lets a gateway keep a
//! local copy of chosen maps of its namespace without a call per request.
//!
//! `GET /cachingservice/api/v1/feed?maps=invalidTokens,invalidUsers[&since=R&epoch=E]` answers a
//! stream of JSON lines (`application/x-ndjson`):
//! - `{"type":"snapshot","epoch":E,"revision":R,"maps":{...}}`: the maps as of revision R of
//!   the store with epoch E; sent first, unless `since` and `epoch` are given, `epoch` is this
//!   store's and the log still holds every change after `since`;
//! - `{"type":"change","revision":R,"map":M,"op":"put","key":K,"value":V}` or `"op":"delete"`:
//!   each change after that, in order;
//! - `{"type":"heartbeat","epoch":E,"revision":R}`: when nothing happened for a heartbeat
//!   interval. It is sent only right after the storage itself answered that R is its latest
//!   revision (a fresh read, not a timer), so it proves the subscriber is in step with the
//!   store as of that moment; an instance cut off from its storage sends none, and its
//!   subscribers' views age until they fail over or reach their staleness bound.
//!
//! A subscriber that reconnects passes the last revision it applied as `since`, with the
//! epoch, and resumes exactly there; when that is too old, of another store (an inMemory
//! restart, a flushed Redis, another instance's store) or ahead of the store, it gets a fresh
//! snapshot. A replica answers only once it has applied every committed change, so a
//! subscriber failing over to one that is catching up is never sent a state behind what it
//! was already shown (it waits, or is told to go elsewhere).

use std::collections::HashSet;
use std::sync::Arc;

use axum::Extension;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::mpsc;

use crate::api::AppState;
use crate::error::CacheError;
use crate::identity::{PeerIdentity, namespace};
use crate::metrics as m;
use crate::storage::{Op, Since};

/// Changes read from the log per round.
const BATCH: usize = 1000;

/// Query of the feed endpoint.
#[derive(Deserialize)]
pub struct FeedQuery {
    /// Comma-separated map names.
    maps: Option<String>,
    /// Resume after this revision...
    since: Option<u64>,
    /// ...of the store with this epoch.
    epoch: Option<String>,
}

/// `GET /feed`.
pub async fn feed(
    State(s): State<Arc<AppState>>,
    Extension(peer): Extension<PeerIdentity>,
    headers: HeaderMap,
    Query(q): Query<FeedQuery>,
) -> Result<Response, CacheError> {
    let ns = namespace(&peer, &headers)?;
    let maps: Vec<String> = q.maps.unwrap_or_default().split(',').map(str::trim).filter(|m| !m.is_empty()).map(str::to_owned).collect();
    if maps.is_empty() {
        return Err(CacheError::BadPayload("query parameter `maps` names no map (e.g. ?maps=invalidTokens,invalidUsers)".to_owned()));
    }
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(64);
    let resume = q.since.zip(q.epoch);
    tokio::spawn(run(s, ns, maps, resume, tx));
    let stream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
    let mut resp = Body::from_stream(stream).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-ndjson"));
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

fn line(v: serde_json::Value) -> Result<Bytes, std::io::Error> {
    let mut bytes = serde_json::to_vec(&v).map_err(std::io::Error::other)?;
    bytes.push(b'\n');
    Ok(Bytes::from(bytes))
}

/// Feeds one subscriber until it goes away or the storage fails.
async fn run(
    s: Arc<AppState>,
    ns: String,
    maps: Vec<String>,
    since: Option<(u64, String)>,
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
) {
    metrics::gauge!(m::FEED_SUBSCRIBERS).increment(1.0);
    if let Err(e) = pump(&s, &ns, &maps, since, &tx).await {
        // Ending the stream tells the subscriber to reconnect; say why first.
        let _ = tx.send(line(json!({"type": "error", "message": e.to_string()}))).await;
    }
    metrics::gauge!(m::FEED_SUBSCRIBERS).decrement(1.0);
}

async fn pump(
    s: &AppState,
    ns: &str,
    maps: &[String],
    since: Option<(u64, String)>,
    tx: &mpsc::Sender<Result<Bytes, std::io::Error>>,
) -> Result<(), CacheError> {
    let wanted: HashSet<&str> = maps.iter().map(String::as_str).collect();
    // Once per subscription: a replica still catching up must not answer from behind.
    s.storage.caught_up().await?;
    let mut revisions = s.storage.revisions();
    let mut last = since;
    // A heartbeat interval passed: send one once the store has confirmed we are in step.
    let mut beat_due = false;
    loop {
        revisions.borrow_and_update();
        let Some((at, epoch)) = last.clone() else {
            let snap = s.storage.snapshot(ns, maps).await?;
            let event = json!({"type": "snapshot", "epoch": snap.epoch, "revision": snap.revision, "maps": snap.maps});
            if tx.send(line(event)).await.is_err() {
                return Ok(());
            }
            last = Some((snap.revision, snap.epoch));
            continue;
        };
        match s.storage.since(&epoch, at, BATCH).await? {
            Since::TooOld => last = None,
            Since::Changes(changes) if !changes.is_empty() => {
                for c in &changes {
                    if c.namespace != ns || !wanted.contains(c.map.as_str()) {
                        continue;
                    }
                    let v = match &c.op {
                        Op::Put { key, value } => {
                            json!({"type": "change", "revision": c.revision, "map": c.map, "op": "put", "key": key, "value": value})
                        }
                        Op::Delete { key } => json!({"type": "change", "revision": c.revision, "map": c.map, "op": "delete", "key": key}),
                    };
                    if tx.send(line(v)).await.is_err() {
                        return Ok(());
                    }
                }
                last = changes.last().map(|c| (c.revision, epoch));
            }
            Since::Changes(_) => {
                // The store answered just now that `at` is its latest revision.
                if std::mem::take(&mut beat_due)
                    && tx.send(line(json!({"type": "heartbeat", "epoch": epoch, "revision": at}))).await.is_err()
                {
                    return Ok(());
                }
                tokio::select! {
                    changed = revisions.changed() => {
                        if changed.is_err() {
                            return Err(CacheError::Unavailable("the storage's revision stream ended".to_owned()));
                        }
                    }
                    _ = tokio::time::sleep(s.heartbeat) => beat_due = true,
                    _ = tx.closed() => return Ok(()),
                }
            }
        }
    }
}
