//! The change feed: plexgate's own endpoint (not in Zowe's API) that lets a gateway keep a
//! local copy of chosen maps of its namespace without a call per request.
//!
//! `GET /cachingservice/api/v1/feed?maps=invalidTokens,invalidUsers[&since=R]` answers a
//! stream of JSON lines (`application/x-ndjson`):
//! - `{"type":"snapshot","revision":R,"maps":{...}}`: the maps as of revision R; sent first,
//!   unless `since` is given and the log still holds every change after it;
//! - `{"type":"change","revision":R,"map":M,"op":"put","key":K,"value":V}` or `"op":"delete"`:
//!   each change after that, in order;
//! - `{"type":"heartbeat","revision":R}`: when nothing happened for a heartbeat interval, so
//!   the subscriber can tell a quiet feed from a dead one.
//!
//! A subscriber that reconnects passes the last revision it applied as `since` and resumes
//! exactly there; when that is too old, it gets a fresh snapshot.

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
    /// Resume after this revision.
    since: Option<u64>,
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
    tokio::spawn(run(s, ns, maps, q.since, tx));
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
async fn run(s: Arc<AppState>, ns: String, maps: Vec<String>, since: Option<u64>, tx: mpsc::Sender<Result<Bytes, std::io::Error>>) {
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
    since: Option<u64>,
    tx: &mpsc::Sender<Result<Bytes, std::io::Error>>,
) -> Result<(), CacheError> {
    let wanted: HashSet<&str> = maps.iter().map(String::as_str).collect();
    let mut revisions = s.storage.revisions();
    let mut last = since;
    loop {
        revisions.borrow_and_update();
        let Some(at) = last else {
            let snap = s.storage.snapshot(ns, maps).await?;
            if tx.send(line(json!({"type": "snapshot", "revision": snap.revision, "maps": snap.maps}))).await.is_err() {
                return Ok(());
            }
            last = Some(snap.revision);
            continue;
        };
        match s.storage.since(at, BATCH).await? {
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
                last = changes.last().map(|c| c.revision);
            }
            Since::Changes(_) => {
                tokio::select! {
                    changed = revisions.changed() => {
                        if changed.is_err() {
                            return Err(CacheError::Unavailable("the storage's revision stream ended".to_owned()));
                        }
                    }
                    _ = tokio::time::sleep(s.heartbeat) => {
                        if tx.send(line(json!({"type": "heartbeat", "revision": at}))).await.is_err() {
                            return Ok(());
                        }
                    }
                    _ = tx.closed() => return Ok(()),
                }
            }
        }
    }
}
