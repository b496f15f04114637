//! Forwarding one request: resolve the route, authenticate per the service's scheme, pick
//! instances, send with retries, stream the answer back.
//!
//! Retries: a failed connect moves to the next instance for any method; a reset before any
//! response byte, or a 502/503 from the instance, moves on only for idempotent methods (GET,
//! HEAD, PUT, DELETE, OPTIONS). Only requests whose body is small enough to keep (or empty)
//! can be sent twice; a large streamed upload gets one attempt.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, Uri, header};
use axum::response::IntoResponse;
use bytes::Bytes;
use http_body_util::BodyExt;

use super::definitions::{RouteDef, Scheme};
use super::idle::{IdleBody, Sent};
use super::registry::{Instance, Service};
use super::upstream::UpBody;
use crate::error::GatewayError;
use crate::state::{AUTH_COOKIE, ClientAddr, ClientCert, Gateway, PAT_COOKIE, PAT_HEADER, bearer, cookie};
use crate::tokens::Kind;

/// Bodies up to this size are kept so the request can be retried on another instance.
const REPLAYABLE_BODY: usize = 1024 * 1024;
/// Header naming the service when the path does not.
pub const FORWARD_TO: &str = "x-forward-to";
/// Header pinning a request to one instance.
pub const INSTANCE_ID: &str = "x-instanceid";

/// Header carrying the request id, taken from the client when it sends a sane one.
pub const REQUEST_ID: &str = "x-request-id";

/// What the access log and the metrics say of one routed request; filled in as it goes.
#[derive(Default)]
struct Trace {
    /// The request id, made a header value once: it goes to the instance and to the client.
    id: Option<HeaderValue>,
    service: Option<Arc<Service>>,
    /// The index of the route in the service's routes.
    route: Option<usize>,
    instance: Option<Arc<Instance>>,
    user: Option<String>,
    attempts: u32,
    /// Time spent waiting for instances' answers (headers), over all attempts.
    upstream: std::time::Duration,
}

/// Handles a request that is not one of the gateway's own endpoints, received at `start`.
pub async fn handle(g: Arc<Gateway>, addr: ClientAddr, req: Request<Body>, start: Instant) -> Response<Body> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let mut t = Trace { id: request_id(req.headers()), ..Trace::default() };
    let result = forward(&g, addr, req, &mut t).await;
    let mut resp = result.unwrap_or_else(IntoResponse::into_response);
    if let Some(v) = &t.id {
        resp.headers_mut().insert(REQUEST_ID, v.clone());
    }
    let status = resp.status().as_u16();
    let service = t.service.as_ref().map_or("-", |s| s.def.service_id.as_str());
    let instance = t.instance.as_ref().map_or("-", |i| i.id.as_str());
    let route = t.service.as_ref().zip(t.route).and_then(|(s, i)| s.def.routes.get(i)).map_or("-", |r| r.gateway_url.as_str());
    crate::access_log::write(&crate::access_log::Entry {
        id: t.id.as_ref().and_then(|v| v.to_str().ok()).unwrap_or("-"),
        client: addr.0,
        user: t.user.as_deref().unwrap_or("-"),
        method: &method,
        path: &path,
        service,
        route,
        instance,
        attempts: t.attempts,
        status,
        upstream_millis: t.upstream.as_millis() as u64,
        millis: start.elapsed().as_millis() as u64,
    });
    match &t.instance {
        Some(i) => {
            i.metrics.routed.increment(status);
            if t.attempts > 0 {
                i.metrics.upstream().record(t.upstream.as_secs_f64());
            }
        }
        // No instance tried (no route, refused, none available): not the hot path.
        None => {
            let m = crate::metrics::ROUTED_REQUESTS_TOTAL;
            metrics::counter!(m, "service" => service.to_owned(), "instance" => "-", "status" => status.to_string()).increment(1);
        }
    }
    resp
}

/// The client's `X-Request-Id` when it is 1 to 128 of `[A-Za-z0-9._:-]`, else a new one:
/// a tag drawn once per process and a counter.
fn request_id(headers: &HeaderMap) -> Option<HeaderValue> {
    static TAG: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| uuid::Uuid::new_v4().simple().to_string()[..8].to_owned());
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let sane =
        |v: &&HeaderValue| (1..=128).contains(&v.len()) && v.as_bytes().iter().all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(b));
    match headers.get(REQUEST_ID).filter(sane) {
        Some(v) => Some(v.clone()),
        None => {
            let id = format!("{}-{}", *TAG, NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
            HeaderValue::from_maybe_shared(Bytes::from(id)).ok()
        }
    }
}

async fn forward(g: &Gateway, addr: ClientAddr, mut req: Request<Body>, t: &mut Trace) -> Result<Response<Body>, GatewayError> {
    let registry = g.routes.registry();
    let forward_to = req.headers().get(FORWARD_TO).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let Some((service, route_index, rest)) = resolve(&registry, req.uri().path(), forward_to.as_deref()) else {
        return Err(GatewayError::NotFound);
    };
    t.service = Some(service.clone());
    t.route = Some(route_index);
    let route = &service.def.routes[route_index];
    check_path(&rest)?;
    let cert = req.extensions().get::<Option<ClientCert>>().cloned().flatten();
    let (user, token) = authenticate(g, &service, req.headers(), req.uri().path(), cert.as_ref()).await?;
    t.user = user.clone();
    let candidates: Vec<Arc<Instance>> = match req.headers().get(INSTANCE_ID).and_then(|v| v.to_str().ok()) {
        Some(id) => match service.instance(id) {
            Some(i) if i.available() => vec![i],
            Some(_) => {
                return Err(GatewayError::NotReady(format!("instance {id} of service {} is not available", service.def.service_id)));
            }
            None => {
                return Err(GatewayError::NotReady(format!("service {} has no instance {id}", service.def.service_id)));
            }
        },
        None => {
            let mut c = service.candidates();
            // A user bound to an instance goes there while it is available (on any gateway).
            if let (true, Some(u)) = (service.def.sticky_by_user, user.as_deref())
                && let Some(bound) = g.sticky.get(&service.def.service_id, u)
                && let Some(pos) = c.iter().position(|i| i.id == bound && i.available())
            {
                let chosen = c.remove(pos);
                c.insert(0, chosen);
            }
            c
        }
    };
    // A protocol upgrade (WebSocket): one attempt over HTTP/1.1, then the two sides are joined.
    let upgrade = req.headers().get(header::UPGRADE).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let client_upgrade = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    let replayable = body_for_retries(&parts.headers, &parts.method, body).await?;
    let idempotent = matches!(parts.method, Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS);
    let authority = parts.uri.authority().map(|a| a.as_str().to_owned());
    let mut headers = upstream_headers(std::mem::take(&mut parts.headers), authority.as_deref(), addr, token.as_deref());
    if let Some(v) = &t.id {
        headers.insert(REQUEST_ID, v.clone());
    }
    if service.def.scheme == Scheme::X509
        && let Some(c) = &cert
    {
        for (name, value) in
            [("x-certificate-distinguishedname", &c.dn), ("x-certificate-commonname", &c.cn), ("x-certificate-public", &c.der_base64)]
        {
            if let Ok(v) = HeaderValue::from_str(value) {
                headers.insert(HeaderName::from_static(name), v);
            }
        }
    }
    if let (Some(proto), Some(on_client)) = (upgrade, client_upgrade) {
        if let (Ok(p), Some(instance)) = (HeaderValue::from_str(&proto), candidates.first()) {
            headers.insert(header::UPGRADE, p);
            headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            t.instance = Some(instance.clone());
            t.attempts = 1;
            return tunnel(g, instance, route, &rest, &parts, headers, on_client).await;
        }
        return Err(GatewayError::NotReady(format!("no instance of service {} is available", service.def.service_id)));
    }
    let attempts = (g.routes.config.retries as usize + 1).min(candidates.len().max(1));
    let mut last = GatewayError::NotReady(format!("no instance of service {} is available", service.def.service_id));
    let mut body_slot = Some(replayable);
    let client = g.routes.client_for(service.def.connect_timeout);
    let idle = service.def.idle_timeout.unwrap_or(g.routes.config.idle_timeout);
    let read_timeout = service.def.read_timeout.unwrap_or(g.routes.config.response_timeout);
    for (n, instance) in candidates.iter().take(attempts).enumerate() {
        let Some(body) = body_slot.take() else { break };
        // A streamed body is watched for stalls, and the wait for the answer starts when it is
        // all sent: an upload longer than the read timeout is not cut by it.
        let (this_body, keep, sent) = match body {
            Kept::Bytes(b) => (Body::from(b.clone()), Some(Kept::Bytes(b)), None),
            Kept::Stream(s) => {
                let sent = Arc::new(Sent::default());
                (Body::new(IdleBody::new(s, idle, "request", Some(sent.clone()))), None, Some(sent))
            }
        };
        let uri = join(&instance.base, &route.service_relative_url, &rest, parts.uri.query())?;
        let mut up = Request::builder().method(parts.method.clone()).uri(uri).version(http::Version::HTTP_11);
        if let Some(h) = up.headers_mut() {
            // The last attempt takes them; earlier ones copy them for the next.
            *h = if n + 1 == attempts { std::mem::take(&mut headers) } else { headers.clone() };
        }
        let Ok(up) = up.body(this_body) else {
            return Err(GatewayError::Internal("cannot build the upstream request".to_owned()));
        };
        instance.requests.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        t.instance = Some(instance.clone());
        t.attempts += 1;
        let asked = Instant::now();
        let first_byte = async {
            if let Some(s) = &sent {
                s.wait().await;
            }
            tokio::time::sleep(read_timeout).await;
        };
        let answer = tokio::select! {
            r = client.request(up) => Ok(r),
            () = first_byte => Err(()),
        };
        t.upstream += asked.elapsed();
        let more = n + 1 < attempts && keep.is_some();
        match answer {
            Err(()) => {
                return Err(GatewayError::GatewayTimeout(format!("{read_timeout:?}")));
            }
            // The client's side failed, not the instance: no retry, no mark against it.
            Ok(Err(_)) if sent.as_ref().is_some_and(|s| s.stalled()) => {
                return Err(GatewayError::BadRequest(format!("the request body stalled: no data for {idle:?}")));
            }
            Ok(Err(e)) if sent.as_ref().is_some_and(|s| s.broke()) => {
                return Err(GatewayError::BadRequest(format!("the request body broke off ({e})")));
            }
            // This gateway is out of file descriptors: not the instance's fault, and every
            // other instance would fail the same way. Ejecting them all would shed traffic
            // for the ejection period after the descriptors are back.
            Ok(Err(e)) if e.is_connect() && out_of_descriptors(&e) => {
                tracing::warn!(instance = %instance.id, error = %e, "cannot open an upstream connection: this gateway is out of file descriptors (raise its open-files limit)");
                return Err(GatewayError::NotReady("the gateway is out of file descriptors".to_owned()));
            }
            Ok(Err(e)) if e.is_connect() => {
                instance.failed(g.routes.config.ejection);
                last = GatewayError::NotReady(format!("no instance of service {} is available", service.def.service_id));
                tracing::debug!(instance = %instance.id, error = %e, "connect failed");
                if more {
                    body_slot = keep;
                    continue;
                }
            }
            Ok(Err(e)) => {
                instance.failed(g.routes.config.ejection);
                last = GatewayError::BadGateway(format!("the instance failed before answering ({e})"));
                if more && idempotent {
                    body_slot = keep;
                    continue;
                }
            }
            Ok(Ok(resp)) if matches!(resp.status().as_u16(), 502 | 503) && more && idempotent => {
                instance.failed(g.routes.config.ejection);
                body_slot = keep;
                continue;
            }
            Ok(Ok(resp)) => {
                if matches!(resp.status().as_u16(), 502 | 503) {
                    instance.failed(g.routes.config.ejection);
                } else {
                    instance.succeeded();
                    if let (true, Some(u)) = (service.def.sticky_by_user, user.as_deref()) {
                        g.sticky.served(&service.def.service_id, u, &instance.id);
                    }
                }
                return Ok(downstream(resp, idle));
            }
        }
        break;
    }
    Err(last)
}

/// Forwards an upgrade request; on 101 joins the client's and the instance's connections.
async fn tunnel(
    g: &Gateway,
    instance: &Instance,
    route: &RouteDef,
    rest: &str,
    parts: &http::request::Parts,
    headers: HeaderMap,
    on_client: hyper::upgrade::OnUpgrade,
) -> Result<Response<Body>, GatewayError> {
    let uri = join(&instance.base, &route.service_relative_url, rest, parts.uri.query())?;
    let mut up = Request::builder().method(parts.method.clone()).uri(uri).version(http::Version::HTTP_11);
    if let Some(h) = up.headers_mut() {
        *h = headers;
    }
    let up = up.body(Body::empty()).map_err(|e| GatewayError::Internal(e.to_string()))?;
    let mut resp = match tokio::time::timeout(g.routes.config.response_timeout, g.routes.upgrade_client.request(up)).await {
        Err(_) => return Err(GatewayError::GatewayTimeout(format!("{:?}", g.routes.config.response_timeout))),
        Ok(Err(e)) => {
            instance.failed(g.routes.config.ejection);
            return Err(if e.is_connect() {
                GatewayError::NotReady(format!("instance {} is not available", instance.id))
            } else {
                GatewayError::BadGateway(e.to_string())
            });
        }
        Ok(Ok(r)) => r,
    };
    instance.succeeded();
    if resp.status() != http::StatusCode::SWITCHING_PROTOCOLS {
        let idle = g.routes.config.idle_timeout;
        return Ok(downstream(resp.map(UpBody::plain), idle));
    }
    let on_instance = hyper::upgrade::on(&mut resp);
    // Counted until the tunnel closes, so a draining gateway lets it finish (up to shutdown.timeout).
    let open = g.routes.tunnel_opened();
    tokio::spawn(async move {
        let _open = open;
        match tokio::try_join!(on_client, on_instance) {
            Ok((client, instance)) => {
                let mut client = hyper_util::rt::TokioIo::new(client);
                let mut instance = hyper_util::rt::TokioIo::new(instance);
                let _ = tokio::io::copy_bidirectional(&mut client, &mut instance).await;
            }
            Err(e) => tracing::debug!(error = %e, "upgrade failed"),
        }
    });
    // The 101 keeps its Upgrade and Connection headers: they are the point of it.
    let (p, _) = resp.into_parts();
    Ok(Response::from_parts(p, Body::empty()))
}

/// The service, the index of its route and the rest of the path (raw, still percent-encoded)
/// for `path`: `/<serviceId>/<gatewayUrl>/<rest>`, or `/<gatewayUrl>/<rest>` with
/// `X-Forward-To`. Routes are tried longest gatewayUrl first.
pub fn resolve(registry: &super::Registry, path: &str, forward_to: Option<&str>) -> Option<(Arc<Service>, usize, String)> {
    let (service, after) = match forward_to {
        Some(id) => (registry.get(id.trim())?, path),
        None => {
            let trimmed = path.strip_prefix('/')?;
            let (id, after) = match trimmed.find('/') {
                Some(i) => (&trimmed[..i], &trimmed[i..]),
                None => (trimmed, ""),
            };
            (registry.get(id)?, after)
        }
    };
    let found = service.def.routes.iter().enumerate().find_map(|(i, route)| {
        let rest = after.strip_prefix('/')?.strip_prefix(route.gateway_url.as_str())?;
        (rest.is_empty() || rest.starts_with('/')).then(|| (i, rest.to_owned()))
    });
    found.map(|(route, rest)| (service, route, rest))
}

/// Refuses a rest of path that could step out of the route (`..`, `.` in any encoding).
fn check_path(rest: &str) -> Result<(), GatewayError> {
    for seg in rest.split('/') {
        if is_dots(seg) {
            return Err(GatewayError::BadRequest("the path contains a `.` or `..` segment".to_owned()));
        }
        let has = |needle: &[u8]| seg.as_bytes().windows(needle.len()).any(|w| w.eq_ignore_ascii_case(needle));
        if seg.contains('\\') || has(b"%5c") || has(b"%00") {
            return Err(GatewayError::BadRequest("the path contains a backslash or NUL".to_owned()));
        }
    }
    Ok(())
}

/// Whether `seg` is `.` or `..`, each dot plain or `%2e` in any case (checked without
/// allocating: this runs for every segment of every routed path).
fn is_dots(seg: &str) -> bool {
    let (mut rest, mut dots) = (seg.as_bytes(), 0);
    while !rest.is_empty() {
        if rest[0] == b'.' {
            rest = &rest[1..];
        } else if rest.len() >= 3 && rest[..3].eq_ignore_ascii_case(b"%2e") {
            rest = &rest[3..];
        } else {
            return false;
        }
        dots += 1;
    }
    (1..=2).contains(&dots)
}

/// Authenticates per the service's scheme: the user, and the token to pass on.
async fn authenticate(
    g: &Gateway,
    service: &Service,
    headers: &HeaderMap,
    path: &str,
    cert: Option<&ClientCert>,
) -> Result<(Option<String>, Option<String>), GatewayError> {
    match service.def.scheme {
        Scheme::Bypass => return Ok((None, None)),
        Scheme::X509 => return cert.map(|c| (Some(c.cn.clone()), None)).ok_or(GatewayError::Unauthorized),
        Scheme::ZoweJwt => {}
    }
    let unauthorized = |e: GatewayError| match e {
        GatewayError::NotReady(_) => e,
        _ => GatewayError::Unauthorized,
    };
    if let Some(pat) = headers.get(PAT_HEADER).and_then(|v| v.to_str().ok()).map(str::to_owned).or_else(|| cookie(headers, PAT_COOKIE)) {
        let (claims, _) = g.verify(&pat, Kind::Pat, path).await.map_err(unauthorized)?;
        if !claims.scopes.iter().flatten().any(|s| *s == service.def.service_id) {
            return Err(GatewayError::Unauthorized);
        }
        return Ok((Some(claims.sub), Some(pat)));
    }
    let token = cookie(headers, AUTH_COOKIE).or_else(|| bearer(headers)).ok_or(GatewayError::Unauthorized)?;
    match g.verify(&token, Kind::Login, path).await {
        Ok((claims, _)) => Ok((Some(claims.sub), Some(token))),
        // Revocation state unknown: a 503, not a 401 (and not a second try as a PAT).
        Err(e @ GatewayError::NotReady(_)) => Err(e),
        // A PAT sent as Bearer.
        Err(_) => {
            let (claims, _) = g.verify(&token, Kind::Pat, path).await.map_err(unauthorized)?;
            if claims.scopes.iter().flatten().any(|s| *s == service.def.service_id) {
                Ok((Some(claims.sub), Some(token)))
            } else {
                Err(GatewayError::Unauthorized)
            }
        }
    }
}

/// Whether `e` (or an error it wraps) is this process running out of file descriptors
/// (EMFILE, or ENFILE for the whole system).
fn out_of_descriptors(e: &(dyn std::error::Error + 'static)) -> bool {
    let local = [rustix::io::Errno::MFILE.raw_os_error(), rustix::io::Errno::NFILE.raw_os_error()];
    let mut next = Some(e);
    while let Some(err) = next {
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && io.raw_os_error().is_some_and(|c| local.contains(&c))
        {
            return true;
        }
        next = err.source();
    }
    false
}

/// A request body: kept in memory (retryable) or streamed (one attempt).
enum Kept {
    Bytes(Bytes),
    Stream(Body),
}

async fn body_for_retries(headers: &HeaderMap, method: &Method, body: Body) -> Result<Kept, GatewayError> {
    let length = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    let chunked = headers.contains_key(header::TRANSFER_ENCODING);
    let small = match length {
        Some(n) => n <= REPLAYABLE_BODY,
        None => !chunked && matches!(*method, Method::GET | Method::HEAD | Method::DELETE | Method::OPTIONS),
    };
    if !small {
        return Ok(Kept::Stream(body));
    }
    let bytes = http_body_util::Limited::new(body, REPLAYABLE_BODY)
        .collect()
        .await
        .map_err(|e| GatewayError::BadRequest(format!("cannot read the request body: {e}")))?
        .to_bytes();
    Ok(Kept::Bytes(bytes))
}

/// Hop-by-hop headers (RFC 9110 7.6.1), never forwarded.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
];

/// The headers the instance gets: the client's, with hop-by-hop and client-sent
/// `X-Certificate-*` removed (in place: no second map), `X-Forwarded-*` and `Forwarded` set,
/// the token passed on as cookie and Bearer.
fn upstream_headers(mut out: HeaderMap, authority: Option<&str>, addr: ClientAddr, token: Option<&str>) -> HeaderMap {
    let listed = connection_listed(&out);
    let incoming_host = out.get(header::HOST).and_then(|v| v.to_str().ok()).map(str::to_owned);
    remove_where(&mut out, |name| {
        HOP_BY_HOP.contains(&name)
            || listed.iter().any(|l| l == name)
            || name.starts_with("x-certificate-")
            || name == FORWARD_TO
            || name == INSTANCE_ID
    });
    // HTTP/1.1 sends Host; HTTP/2 sends :authority instead.
    let host = incoming_host.as_deref().or(authority).unwrap_or("").to_owned();
    let client = addr.0.to_string();
    let xff = match out.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(prev) => format!("{prev}, {client}"),
        None => client.clone(),
    };
    let set = |out: &mut HeaderMap, name: &'static str, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            out.insert(HeaderName::from_static(name), v);
        }
    };
    set(&mut out, "x-forwarded-for", xff);
    set(&mut out, "x-forwarded-proto", "https".to_owned());
    if !host.is_empty() {
        set(&mut out, "x-forwarded-host", host.clone());
    }
    let for_ = if addr.0.is_ipv6() { format!("\"[{client}]\"") } else { client };
    set(
        &mut out,
        "forwarded",
        if host.is_empty() { format!("for={for_};proto=https") } else { format!("for={for_};proto=https;host=\"{host}\"") },
    );
    if let Some(t) = token {
        set(&mut out, "authorization", format!("Bearer {t}"));
        let mut cookies = format!("{AUTH_COOKIE}={t}");
        let ours = |c: &str| c.strip_prefix(AUTH_COOKIE).is_some_and(|rest| rest.starts_with('='));
        for c in out.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).map(str::trim) {
            if !c.is_empty() && !ours(c) {
                cookies.push_str("; ");
                cookies.push_str(c);
            }
        }
        out.remove(header::COOKIE);
        set(&mut out, "cookie", cookies);
    }
    out
}

/// The instance's answer, without hop-by-hop headers, streamed; cut when it stalls for `idle`.
fn downstream(resp: Response<UpBody>, idle: std::time::Duration) -> Response<Body> {
    let (mut parts, body) = resp.into_parts();
    let listed = connection_listed(&parts.headers);
    remove_where(&mut parts.headers, |name| (name != "host" && HOP_BY_HOP.contains(&name)) || listed.iter().any(|l| l == name));
    Response::from_parts(parts, Body::new(IdleBody::new(body, idle, "response", None)))
}

/// Removes every header whose (lower-case) name `drop` picks: one pass to find them (a
/// message usually has one or none), rather than a hashed removal of each candidate name.
fn remove_where(headers: &mut HeaderMap, drop: impl Fn(&str) -> bool) {
    let names: Vec<HeaderName> = headers.keys().filter(|k| drop(k.as_str())).cloned().collect();
    for name in names {
        headers.remove(name);
    }
}

/// The header names a `Connection` header lists (hop-by-hop too), lower case; none
/// allocated when there is no such header, the usual case.
fn connection_listed(headers: &HeaderMap) -> Vec<String> {
    if !headers.contains_key(header::CONNECTION) {
        return Vec::new();
    }
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_ascii_lowercase())
        .collect()
}

/// `base` + `prefix` + `rest` (already encoded) + `query`, built in one string.
pub fn join(base: &Uri, prefix: &str, rest: &str, query: Option<&str>) -> Result<Uri, GatewayError> {
    let base_path = base.path().trim_end_matches('/');
    let mut pq = String::with_capacity(base_path.len() + prefix.len() + rest.len() + query.map_or(0, |q| q.len() + 1));
    pq.push_str(base_path);
    pq.push_str(prefix);
    pq.push_str(rest);
    if pq.is_empty() {
        pq.push('/');
    }
    if let Some(q) = query {
        pq.push('?');
        pq.push_str(q);
    }
    let mut parts = base.clone().into_parts();
    parts.path_and_query = Some(pq.parse().map_err(|e| GatewayError::BadRequest(format!("cannot form the upstream path: {e}")))?);
    Uri::from_parts(parts).map_err(|e| GatewayError::BadRequest(format!("cannot form the upstream URL: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_segments_in_any_encoding_are_refused() {
        for bad in ["/a/../b", "/%2e%2e/x", "/.%2E/x", "/./x", "/a/%2E", "/a\\b", "/a%5cb"] {
            assert!(check_path(bad).is_err(), "{bad}");
        }
        for ok in ["/a/b", "/a%2Fb", "//double", "/a..b", "/.hidden", ""] {
            assert!(check_path(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn running_out_of_descriptors_is_told_from_an_instance_refusing() {
        #[derive(Debug)]
        struct Wrapped(std::io::Error);
        impl std::fmt::Display for Wrapped {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "connect: {}", self.0)
            }
        }
        impl std::error::Error for Wrapped {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let emfile = Wrapped(std::io::Error::from_raw_os_error(rustix::io::Errno::MFILE.raw_os_error()));
        assert!(out_of_descriptors(&emfile));
        let refused = Wrapped(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(!out_of_descriptors(&refused));
    }

    #[test]
    fn join_keeps_the_encoded_path_and_query() {
        let base: Uri = "https://h:1/base/".parse().unwrap();
        assert_eq!(join(&base, "/svc", "/a%2Fb//c", Some("x=%20&y")).unwrap().to_string(), "https://h:1/base/svc/a%2Fb//c?x=%20&y");
        assert_eq!(join(&"http://h:1".parse().unwrap(), "", "", None).unwrap().to_string(), "http://h:1/");
    }
}
