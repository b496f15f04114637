//! `/application/health` and `/application/metrics`.
//!
//! The northbound port answers anyone, so its health says only UP, DOWN or DRAINING (and the
//! instance id, by which operators and the distributor's tests tell which gateway answered);
//! the details (revocation view, caching-service URL and last error) and the metrics are on
//! the admin listener ([`admin_router`]), loopback by default.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::metrics as m;
use crate::state::Gateway;

/// UP once the revocation view (and the registrations, so a gateway that just started routes
/// what is registered) has loaded and while it can be trusted; DRAINING after
/// SIGTERM; DOWN before it loads, and while it is staler than the staleness bound with no
/// caching service feeding it (this gateway then cannot know revocation state, so the
/// distributor should move its clients to a gateway that can).
fn status(g: &Gateway) -> &'static str {
    let view = g.revocations.status();
    let registrations = g.routes.registrations_status().is_none_or(|r| r.loaded);
    if g.is_draining() {
        "DRAINING"
    } else if view.loaded && registrations && (view.connected || view.age.is_some_and(|a| a <= g.revocations.staleness_bound())) {
        "UP"
    } else {
        "DOWN"
    }
}

/// Anything but UP is a 503, so the distributor sends no new connections.
fn code(status: &str) -> StatusCode {
    if status == "UP" { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }
}

/// The northbound health: the status and nothing internal.
pub async fn health(State(g): State<Arc<Gateway>>) -> Response {
    let status = status(&g);
    (code(status), Json(json!({"status": status, "instance": g.instance}))).into_response()
}

/// The admin listener's health: the status with the revocation view and the caching-service link.
pub async fn health_details(State(g): State<Arc<Gateway>>) -> Response {
    let status = status(&g);
    let view = g.revocations.status();
    let age_ms = view.age.map(|a| a.as_millis() as u64);
    if let Some(a) = view.age {
        metrics::gauge!(m::REVOCATION_VIEW_AGE_SECONDS).set(a.as_secs_f64());
    }
    let body = json!({
        "status": status,
        "instance": g.instance,
        "components": {
            "revocationView": {
                "status": if view.loaded { "UP" } else { "DOWN" },
                "details": {"loaded": view.loaded, "revision": view.revision, "ageMillis": age_ms, "verifiedTokensCached": g.cache.len()},
            },
            "registrations": g.routes.registrations_status().map(|r| json!({
                "status": if r.loaded { "UP" } else { "DOWN" },
                "details": {"loaded": r.loaded, "connected": r.connected, "revision": r.revision, "ageMillis": r.age.map(|a| a.as_millis() as u64), "url": r.url, "lastError": r.last_error},
            })),
            "cachingService": {
                "status": if view.connected { "UP" } else { "DOWN" },
                "details": {"url": view.url, "lastError": view.last_error},
            },
        },
    });
    (code(status), Json(body)).into_response()
}

/// The admin listener's routes: detailed health and metrics.
pub fn admin_router(state: Arc<Gateway>) -> axum::Router {
    axum::Router::new()
        .route("/application/health", axum::routing::get(health_details))
        .route("/application/metrics", axum::routing::get(metrics))
        .route("/application/services", axum::routing::get(super::services::list))
        .with_state(state)
}

/// Prometheus text.
pub async fn metrics(State(g): State<Arc<Gateway>>) -> Response {
    match &g.metrics {
        Some(h) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], h.render()).into_response(),
        None => (StatusCode::SERVICE_UNAVAILABLE, "metrics recorder not installed").into_response(),
    }
}
