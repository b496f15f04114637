//! `GET /gateway/api/v1/services`: the registered services and their instances, with health
//! (what `zowe config auto-init` reads). Each instance says where it came from (`origin`:
//! `static`, with its `definitionFile`, or `eureka`, with its `registrationKey`) and, when
//! registered, its Eureka status (`eurekaStatus`; one that is not UP is listed, never routed).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use crate::routing::registry::Parked;
use crate::routing::{Instance, Origin, Registry};
use crate::state::Gateway;

/// One instance as listed: `status` is what routing makes of it (UP: gets requests).
fn instance(i: &Instance, eureka_status: Option<&str>, routable: bool) -> Value {
    let mut v = json!({
        "instanceId": i.id,
        "baseUrl": i.base.to_string(),
        "status": if routable { i.status() } else { "DOWN" },
        "requests": i.requests.load(std::sync::atomic::Ordering::Relaxed),
        "origin": i.origin.name(),
        "eurekaStatus": eureka_status,
    });
    match &i.origin {
        Origin::Static { file } => v["definitionFile"] = json!(file.display().to_string()),
        Origin::Eureka { key } => v["registrationKey"] = json!(key),
    }
    v
}

/// The list.
pub async fn list(State(g): State<Arc<Gateway>>) -> Json<Value> {
    Json(listing(&g.routes.registry()))
}

/// The list of `registry`, as `/gateway/api/v1/services` answers it (and the admin listener's
/// `/application/services`, which `plexgate status` reads).
pub fn listing(registry: &Registry) -> Value {
    let services: Vec<Value> = registry
        .all()
        .map(|s| {
            let d = &s.def;
            json!({
                "serviceId": d.service_id,
                "status": s.status(),
                "apiml": {
                    "service": {"title": d.title, "description": d.description},
                    "apiInfo": d.routes.iter().map(|r| json!({"gatewayUrl": r.gateway_url, "basePath": format!("/{}/{}", d.service_id, r.gateway_url)})).collect::<Vec<_>>(),
                    "authentication": [{"scheme": d.scheme.name()}],
                },
                "instances": s.instances.iter().map(|i| {
                    let eureka = matches!(i.origin, Origin::Eureka { .. }).then_some("UP");
                    instance(i, eureka, true)
                }).chain(s.parked.iter().map(|Parked { instance: i, status }| instance(i, Some(status.as_str()), false))).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!(services)
}
