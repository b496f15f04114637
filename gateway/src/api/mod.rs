//! The gateway's own endpoints: authentication (`/gateway/api/v1/auth`), health and metrics.

mod auth;
pub mod health;
mod pat;
mod services;

use std::sync::Arc;
use std::time::Instant;

use axum::Extension;
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::extract::{MatchedPath, Request};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{delete, get, post};
use http_body_util::BodyExt;

use crate::metrics as m;
use crate::state::{ClientAddr, Gateway};

/// Base path of the authentication API.
pub const AUTH_BASE: &str = "/gateway/api/v1/auth";
/// Largest request body the authentication endpoints read.
pub const MAX_AUTH_BODY: usize = 64 * 1024;

/// The router of the gateway's own endpoints.
pub fn router(state: Arc<Gateway>) -> Router {
    let auth = Router::new()
        .route("/login", post(auth::login).fallback(auth::method_not_supported))
        .route("/logout", post(auth::logout).fallback(auth::method_not_supported))
        .route("/query", get(auth::query).fallback(auth::method_not_supported))
        .route("/keys/public/all", get(auth::keys_all))
        .route("/keys/public/current", get(auth::keys_current))
        .route("/access-token/generate", post(pat::generate))
        .route("/access-token/validate", post(pat::validate))
        .route("/access-token/revoke", delete(pat::revoke))
        .route("/access-token/revoke/tokens", delete(pat::revoke_own))
        .route("/access-token/revoke/tokens/user", delete(pat::revoke_user))
        .route("/access-token/revoke/tokens/scope", delete(pat::revoke_scope))
        .route("/access-token/evict", delete(pat::evict));
    Router::new()
        .nest(AUTH_BASE, auth)
        .route("/application/health", get(health::health))
        .route("/gateway/api/v1/services", get(services::list))
        .fallback(proxy)
        .layer(middleware::from_fn_with_state(state.clone(), close_while_draining))
        .layer(middleware::from_fn(observe))
        .with_state(state)
}

/// Whether `path` may be one of the gateway's own endpoints (then the router decides, and its
/// fallback still routes what it does not know); every other path is routed directly by
/// [`routed`], without the router, its middlewares and their boxed services per request.
pub fn is_own(path: &str) -> bool {
    path == "/application/health"
        || path == "/gateway/api/v1/services"
        || path.strip_prefix(AUTH_BASE).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// A routed request outside the router: what its middlewares do ([`observe`] with kept
/// handles, [`close_while_draining`]) around [`crate::routing::forward::handle`].
pub async fn routed(g: Arc<Gateway>, addr: ClientAddr, req: Request) -> Response {
    let h1 = req.version() <= axum::http::Version::HTTP_11;
    let start = Instant::now();
    let mut resp = crate::routing::forward::handle(g.clone(), addr, req, start).await;
    if h1 && g.is_draining() {
        resp.headers_mut().insert(axum::http::header::CONNECTION, axum::http::HeaderValue::from_static("close"));
    }
    m::handles::UNMATCHED_REQUESTS.increment(resp.status().as_u16());
    m::handles::UNMATCHED_DURATION.record(start.elapsed().as_secs_f64());
    resp
}

/// Everything that is not an endpoint of the gateway's own goes to an API service.
async fn proxy(State(g): State<Arc<Gateway>>, Extension(addr): Extension<ClientAddr>, req: Request) -> Response {
    crate::routing::forward::handle(g, addr, req, Instant::now()).await
}

/// While draining, HTTP/1.1 answers say `Connection: close`, so keep-alive clients open their
/// next connection elsewhere instead of racing the close of this one. (HTTP/2 clients get a
/// GOAWAY when the grace period ends.)
async fn close_while_draining(State(g): State<Arc<Gateway>>, req: Request, next: Next) -> Response {
    let h1 = req.version() <= axum::http::Version::HTTP_11;
    let mut resp = next.run(req).await;
    if h1 && g.is_draining() {
        resp.headers_mut().insert(axum::http::header::CONNECTION, axum::http::HeaderValue::from_static("close"));
    }
    resp
}

/// Counts and times every request by route pattern and status.
async fn observe(req: Request, next: Next) -> Response {
    let endpoint = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned());
    let start = Instant::now();
    let resp = next.run(req).await;
    let status = resp.status().as_u16();
    match endpoint {
        Some(endpoint) => {
            metrics::counter!(m::REQUESTS_TOTAL, "endpoint" => endpoint.clone(), "status" => status.to_string()).increment(1);
            metrics::histogram!(m::REQUEST_DURATION_SECONDS, "endpoint" => endpoint).record(start.elapsed().as_secs_f64());
        }
        // Routed requests, the hot path: kept handles.
        None => {
            m::handles::UNMATCHED_REQUESTS.increment(status);
            m::handles::UNMATCHED_DURATION.record(start.elapsed().as_secs_f64());
        }
    }
    resp
}

/// The body, at most [`MAX_AUTH_BODY`] bytes; `None` when it is larger or unreadable.
pub(crate) async fn small_body(body: Body) -> Option<bytes::Bytes> {
    http_body_util::Limited::new(body, MAX_AUTH_BODY).collect().await.ok().map(|c| c.to_bytes())
}
