//! Zowe's caching-service REST API (`/cachingservice/api/v1`), plus health and metrics.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Extension, Json};
use http_body_util::BodyExt;
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::error::CacheError;
use crate::identity::{DN_HEADER, PeerIdentity, SERVICE_ID_HEADER, namespace};
use crate::metrics as m;
use crate::storage::{Entry, Merge, Removal, Room, Storage, now_millis};

/// Base path of the API.
pub const BASE: &str = "/cachingservice/api/v1";
/// Longest key or map name accepted, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;
/// Rules older than this are dropped by `evict/rules` (as Zowe does).
pub const RULE_MAX_AGE_MILLIS: u64 = 90 * 24 * 3600 * 1000;
/// Kept past expiry plus leeway: token checks compare whole seconds, so a token expiring at
/// `exp` passes until `exp + leeway + 1 s`.
pub const EVICTION_MARGIN_MILLIS: u64 = 1000;

/// What every handler needs.
pub struct AppState {
    /// The storage back end.
    pub storage: Arc<dyn Storage>,
    /// Largest body accepted.
    pub max_body: usize,
    /// Heartbeat interval of the change feed.
    pub heartbeat: std::time::Duration,
    /// The gateways' token verification leeway: a revoked token is kept this long past its
    /// expiry (and a rule this long past its 90 days), since verification still accepts it.
    pub leeway: std::time::Duration,
    /// Prometheus rendering, when this process owns the recorder.
    pub metrics: Option<PrometheusHandle>,
}

type St = State<Arc<AppState>>;

/// The router; each connection adds its [`PeerIdentity`] as an extension.
pub fn router(state: Arc<AppState>) -> Router {
    let api = Router::new()
        .route("/cache", get(list).post(create).put(update).delete(clear))
        .route("/cache/{*key}", get(read).delete(remove))
        .route("/cache-list", get(list_maps))
        .route("/cache-list/{map}", get(read_map).post(put_map))
        .route("/cache-list/{map}/{key}", delete(remove_map_entry))
        .route("/cache-list/evict/tokens/{map}", delete(evict_tokens))
        .route("/cache-list/evict/rules/{map}", delete(evict_rules))
        .route("/feed", get(crate::feed::feed));
    Router::new()
        .nest(BASE, api)
        .route("/application/health", get(health))
        .route("/application/metrics", get(metrics))
        .fallback(|uri: axum::http::Uri| async move { CacheError::NoRoute(uri.path().to_owned()) })
        .layer(middleware::from_fn(observe))
        .with_state(state)
}

/// Counts and times every request by route pattern and status.
async fn observe(req: Request, next: Next) -> Response {
    let endpoint = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned()).unwrap_or_else(|| "unmatched".to_owned());
    let method = req.method().to_string();
    let start = Instant::now();
    let resp = next.run(req).await;
    let labels = [("endpoint", endpoint), ("method", method)];
    metrics::counter!(m::REQUESTS_TOTAL, "endpoint" => labels[0].1.clone(), "method" => labels[1].1.clone(), "status" => resp.status().as_u16().to_string()).increment(1);
    metrics::histogram!(m::REQUEST_DURATION_SECONDS, &labels).record(start.elapsed().as_secs_f64());
    resp
}

/// The JSON body of `/cache` and `/cache-list` writes. As in Zowe's
/// `checkForInvalidPayload`, a missing or `null` key or value is an invalid payload (400
/// ZWECS130E); unknown fields (`serviceId`, `created`) are ignored.
#[derive(Deserialize)]
struct RawKeyValue {
    key: Option<String>,
    value: Option<String>,
}

/// A checked [`RawKeyValue`].
struct KeyValue {
    key: String,
    value: String,
}

/// Reads the body (at most `max` bytes) as a [`KeyValue`].
async fn key_value(body: Body, max: usize) -> Result<KeyValue, CacheError> {
    let bytes = read_body(body, max).await?;
    if bytes.is_empty() {
        return Err(CacheError::BadPayload("the body is empty; send {\"key\": ..., \"value\": ...}".to_owned()));
    }
    let raw: RawKeyValue = serde_json::from_slice(&bytes)
        .map_err(|e| CacheError::BadPayload(format!("not a JSON object with string fields key and value ({e})")))?;
    let key = raw.key.ok_or_else(|| CacheError::BadPayload("No key provided in the payload".to_owned()))?;
    let value = raw.value.ok_or_else(|| CacheError::BadPayload("No value provided in the payload".to_owned()))?;
    check_key(&key)?;
    Ok(KeyValue { key, value })
}

/// Whether a request's writes count against the size and quota: not for a trusted gateway
/// writing in its own namespace (revocations, sticky routes, the salt), which must never be
/// refused for room other callers took.
fn room(peer: &PeerIdentity, headers: &HeaderMap) -> Room {
    let own = !headers.contains_key(DN_HEADER) && !headers.contains_key(SERVICE_ID_HEADER);
    match peer {
        PeerIdentity::Trusted { gateway: true, .. } if own => Room::Exempt,
        _ => Room::Counted,
    }
}

/// Query of `POST /cache-list/{map}`: plexgate's `merge=max` makes the write an atomic
/// maximum (revocation rules only rise).
#[derive(Deserialize)]
struct PutQuery {
    merge: Option<String>,
}

/// The body, refused with 413 past `max` bytes without reading the rest.
pub(crate) async fn read_body(body: Body, max: usize) -> Result<Bytes, CacheError> {
    let limited = http_body_util::Limited::new(body, max);
    match limited.collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => Err(CacheError::TooLarge(max)),
        Err(e) => Err(CacheError::BadPayload(format!("cannot read the body: {e}"))),
    }
}

fn check_key(key: &str) -> Result<(), CacheError> {
    if key.is_empty() {
        return Err(CacheError::KeyNotProvided);
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(CacheError::BadPayload(format!("the key is longer than {MAX_KEY_BYTES} bytes")));
    }
    Ok(())
}

fn check_map(map: &str) -> Result<(), CacheError> {
    if map.is_empty() || map.len() > MAX_KEY_BYTES {
        return Err(CacheError::BadPayload(format!("the map name must have 1 to {MAX_KEY_BYTES} bytes")));
    }
    Ok(())
}

/// Zowe's KeyValue: every field a string, `created` in epoch milliseconds.
fn entry_json(e: &Entry) -> Value {
    json!({"key": e.key, "value": e.value, "created": e.created.to_string()})
}

async fn create(State(s): St, Extension(peer): Extension<PeerIdentity>, headers: HeaderMap, body: Body) -> Result<StatusCode, CacheError> {
    let ns = namespace(&peer, &headers)?;
    let kv = key_value(body, s.max_body).await?;
    s.storage.create(&ns, room(&peer, &headers), &kv.key, &kv.value).await?;
    Ok(StatusCode::CREATED)
}

async fn list(State(s): St, Extension(peer): Extension<PeerIdentity>, headers: HeaderMap) -> Result<Json<Map<String, Value>>, CacheError> {
    let ns = namespace(&peer, &headers)?;
    Ok(Json(s.storage.list(&ns).await?.iter().map(|e| (e.key.clone(), entry_json(e))).collect()))
}

async fn read(
    State(s): St,
    Extension(peer): Extension<PeerIdentity>,
    headers: HeaderMap,
    Path(key): Path<String>,
) -> Result<Json<Value>, CacheError> {
    let ns = namespace(&peer, &headers)?;
    check_key(&key)?;
    Ok(Json(entry_json(&s.storage.get(&ns, &key).await?)))
}

async fn update(State(s): St, Extension(peer): Extension<PeerIdentity>, headers: HeaderMap, body: Body) -> Result<StatusCode, CacheError> {
    let ns = namespace(&peer, &headers)?;
    let kv = key_value(body, s.max_body).await?;
    s.storage.update(&ns, &kv.key, &kv.value).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn remove(
    State(s): St,
    Extension(peer): Extension<PeerIdentity>,
    headers: HeaderMap,
    Path(key): Path<String>,
) -> Result<StatusCode, CacheError> {
    let ns = namespace(&peer, &headers)?;
    check_key(&key)?;
    s.storage.delete(&ns, &key).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn clear(State(s): St, Extension(peer): Extension<PeerIdentity>, headers: HeaderMap) -> Result<StatusCode, CacheError> {
    let ns = namespace(&peer, &headers)?;
    s.storage.clear(&ns).await?;
    Ok(StatusCode::OK)
}

async fn put_map(
    State(s): St,
    Extension(peer): Extension<PeerIdentity>,
    headers: HeaderMap,
    Path(map): Path<String>,
    Query(q): Query<PutQuery>,
    body: Body,
) -> Result<StatusCode, CacheError> {
    let ns = namespace(&peer, &headers)?;
    check_map(&map)?;
    let merge = match q.merge.as_deref() {
        None | Some("overwrite") => Merge::Overwrite,
        Some("max") => Merge::Max,
        Some(other) => return Err(CacheError::BadPayload(format!("query parameter merge={other}: allowed `overwrite` or `max`"))),
    };
    let kv = key_value(body, s.max_body).await?;
    s.storage.map_put(&ns, room(&peer, &headers), &map, &kv.key, &kv.value, merge).await?;
    Ok(StatusCode::CREATED)
}

/// The optional body of `DELETE /cache-list/{map}/{key}`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RemoveCondition {
    /// Remove only while the entry holds exactly this value.
    if_value: String,
}

/// `DELETE /cache-list/{map}/{key}` (plexgate's own): removes one map entry, 204, or 404 when
/// absent. With a body `{"ifValue": "..."}` only while the entry still holds that value, else
/// 412: the discovery service expires a registration so, and a renewal written meanwhile
/// through another instance wins.
async fn remove_map_entry(
    State(s): St,
    Extension(peer): Extension<PeerIdentity>,
    headers: HeaderMap,
    Path((map, key)): Path<(String, String)>,
    body: Body,
) -> Result<StatusCode, CacheError> {
    let ns = namespace(&peer, &headers)?;
    check_map(&map)?;
    check_key(&key)?;
    let bytes = read_body(body, s.max_body).await?;
    let room = room(&peer, &headers);
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return match s.storage.map_remove(&ns, room, &map, std::slice::from_ref(&key)).await? {
            0 => Err(CacheError::NotFound(key)),
            _ => Ok(StatusCode::NO_CONTENT),
        };
    }
    let cond: RemoveCondition = serde_json::from_slice(&bytes)
        .map_err(|e| CacheError::BadPayload(format!("expected {{\"ifValue\": \"...\"}} or no body ({e})")))?;
    match s.storage.map_remove_if(&ns, room, &map, &key, &cond.if_value).await? {
        Removal::Removed => Ok(StatusCode::NO_CONTENT),
        Removal::Absent => Err(CacheError::NotFound(key)),
        Removal::Changed => Err(CacheError::Changed(key)),
    }
}

async fn read_map(
    State(s): St,
    Extension(peer): Extension<PeerIdentity>,
    headers: HeaderMap,
    Path(map): Path<String>,
) -> Result<Json<Value>, CacheError> {
    let ns = namespace(&peer, &headers)?;
    check_map(&map)?;
    // An unknown map is an empty one, as in Zowe (which answers 200 with no body).
    Ok(Json(json!(s.storage.map_get(&ns, &map).await?.unwrap_or_default())))
}

async fn list_maps(State(s): St, Extension(peer): Extension<PeerIdentity>, headers: HeaderMap) -> Result<Json<Value>, CacheError> {
    let ns = namespace(&peer, &headers)?;
    Ok(Json(json!(s.storage.maps(&ns).await?)))
}

/// Drops token entries whose expiry plus the verification leeway has passed (see
/// [`expiry_millis`]): until then the gateways still accept the token, so its revocation must
/// stay. Entries whose value names no expiry are kept, as Zowe keeps unparseable ones.
async fn evict_tokens(
    State(s): St,
    Extension(peer): Extension<PeerIdentity>,
    headers: HeaderMap,
    Path(map): Path<String>,
) -> Result<StatusCode, CacheError> {
    let cutoff = now_millis().saturating_sub(s.leeway.as_millis() as u64 + EVICTION_MARGIN_MILLIS);
    evict_where(&s, &peer, &headers, &map, |v| expiry_millis(v).is_some_and(|e| e < cutoff)).await
}

/// Drops rules (value: their timestamp, epoch milliseconds) older than 90 days plus the leeway.
async fn evict_rules(
    State(s): St,
    Extension(peer): Extension<PeerIdentity>,
    headers: HeaderMap,
    Path(map): Path<String>,
) -> Result<StatusCode, CacheError> {
    let cutoff = now_millis().saturating_sub(RULE_MAX_AGE_MILLIS + s.leeway.as_millis() as u64 + EVICTION_MARGIN_MILLIS);
    evict_where(&s, &peer, &headers, &map, |v| v.trim().parse::<u64>().is_ok_and(|t| t < cutoff)).await
}

/// Removes the entries of the caller's `map` whose value `doomed` picks.
async fn evict_where(
    s: &AppState,
    peer: &PeerIdentity,
    headers: &HeaderMap,
    map: &str,
    doomed: impl Fn(&str) -> bool,
) -> Result<StatusCode, CacheError> {
    let ns = namespace(peer, headers)?;
    let entries = s.storage.map_get(&ns, map).await?.unwrap_or_default();
    let keys: Vec<String> = entries.into_iter().filter(|(_, v)| doomed(v)).map(|(k, _)| k).collect();
    s.storage.map_remove(&ns, room(peer, headers), map, &keys).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The expiry of a token entry in epoch milliseconds, if its value says: a number of
/// milliseconds, or a JSON object with `expiresAt` (Zowe's AccessTokenContainer: an array
/// `[y, M, d, h, m, s?]` read as UTC, or epoch milliseconds), `expiration` (milliseconds) or
/// `exp` (seconds).
pub fn expiry_millis(value: &str) -> Option<u64> {
    if let Ok(ms) = value.trim().parse::<u64>() {
        return Some(ms);
    }
    let v: Value = serde_json::from_str(value).ok()?;
    if let Some(at) = v.get("expiresAt") {
        return match at {
            Value::Number(n) => n.as_u64(),
            Value::Array(parts) => {
                let p: Vec<i64> = parts.iter().map(|x| x.as_i64()).collect::<Option<_>>()?;
                let get = |i: usize| p.get(i).copied().unwrap_or(0);
                let days = days_from_civil(get(0), get(1), get(2))?;
                let secs = days * 86_400 + get(3) * 3600 + get(4) * 60 + get(5);
                u64::try_from(secs).ok().map(|s| s * 1000)
            }
            _ => None,
        };
    }
    v.get("expiration").and_then(Value::as_u64).or_else(|| v.get("exp").and_then(Value::as_u64).map(|s| s * 1000))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> Option<i64> {
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146_097 + doe - 719_468)
}

async fn health(State(s): St) -> Response {
    let entries = s.storage.len().await;
    let health = s.storage.health().await;
    let up = health.is_ok();
    if let Ok(n) = entries {
        metrics::gauge!(m::STORAGE_ENTRIES).set(n as f64);
    }
    let mut storage = json!({"status": if up { "UP" } else { "DOWN" }, "details": {"mode": s.storage.mode()}});
    let details = s.storage.details();
    if !details.is_null() {
        storage["details"]["replica"] = details;
    }
    match (&health, entries) {
        (Err(e), _) => storage["details"]["error"] = json!(e.to_string()),
        (Ok(()), Ok(n)) => storage["details"]["entries"] = json!(n),
        _ => {}
    }
    let body = json!({"status": if up { "UP" } else { "DOWN" }, "components": {"storage": storage}});
    let status = if up { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(body)).into_response()
}

async fn metrics(State(s): St) -> Response {
    if let Ok(n) = s.storage.len().await {
        metrics::gauge!(m::STORAGE_ENTRIES).set(n as f64);
    }
    match &s.metrics {
        Some(h) => ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], h.render()).into_response(),
        None => CacheError::Internal("metrics recorder not installed".to_owned()).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_expiry_in_every_format() {
        assert_eq!(expiry_millis("1700000000000"), Some(1_700_000_000_000));
        assert_eq!(expiry_millis(r#"{"exp": 1700000000}"#), Some(1_700_000_000_000));
        assert_eq!(expiry_millis(r#"{"expiration": 5}"#), Some(5));
        // Zowe's AccessTokenContainer: 2021-11-15T15:13:18 = 1636989198 s.
        assert_eq!(
            expiry_millis(r#"{"tokenValue":"h","issuedAt":[2022,8,17,16,13,18],"expiresAt":[2021,11,15,15,13,18]}"#),
            Some(1_636_989_198_000)
        );
        assert_eq!(expiry_millis(r#"{"expiresAt":[1970,1,1,0,0]}"#), Some(0));
        assert_eq!(expiry_millis("not a token"), None);
    }
}
