//! `/application/health` (UP, DOWN or DRAINING, with the revocation view and caching-service
//! link) and `/application/metrics`.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::metrics as m;
use crate::state::Gateway;

/// UP once the revocation view has loaded; DRAINING after SIGTERM; DOWN before. Anything but
/// UP is a 503, so the distributor sends no new connections.
pub async fn health(State(g): State<Arc<Gateway>>) -> Response {
    let view = g.revocations.status();
    let status = if g.is_draining() {
        "DRAINING"
    } else if view.loaded {
        "UP"
    } else {
        "DOWN"
    };
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
            "cachingService": {
                "status": if view.connected { "UP" } else { "DOWN" },
                "details": {"url": view.url, "lastError": view.last_error},
            },
        },
    });
    let code = if status == "UP" { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, Json(body)).into_response()
}

/// Prometheus text.
pub async fn metrics(State(g): State<Arc<Gateway>>) -> Response {
    match &g.metrics {
        Some(h) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], h.render()).into_response(),
        None => (StatusCode::SERVICE_UNAVAILABLE, "metrics recorder not installed").into_response(),
    }
}
