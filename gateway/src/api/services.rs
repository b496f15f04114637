//! `GET /gateway/api/v1/services`: the registered services and their instances, with health
//! (what `zowe config auto-init` reads).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use crate::state::Gateway;

/// The list.
pub async fn list(State(g): State<Arc<Gateway>>) -> Json<Value> {
    let registry = g.routes.registry();
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
                "instances": s.instances.iter().map(|i| json!({"instanceId": i.id, "baseUrl": i.base.to_string(), "status": i.status(), "requests": i.requests.load(std::sync::atomic::Ordering::Relaxed)})).collect::<Vec<_>>(),
            })
        })
        .collect();
    Json(json!(services))
}
