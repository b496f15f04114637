//! Eureka's REST API as Zowe's onboarding enablers and Eureka clients call it (`/eureka/apps`),
//! JSON or XML in and out, and `/application/health`.

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Extension, middleware};
use http_body_util::BodyExt;
use serde_json::{Value, json};

use crate::error::DiscoveryError;
use crate::instance::{Instance, Status, check_app, check_instance_id};
use crate::registry::{Record, applications};
use crate::store::Registrations;
use crate::xml;

/// Largest registration body accepted (an instance with 512 metadata keys fits).
pub const MAX_BODY: usize = 1024 * 1024;

/// Whether the connection presented a client certificate (its chain was verified against
/// the truststore during the handshake, so presence means trust).
#[derive(Debug, Clone, Copy)]
pub struct ClientCertificate(pub bool);

type St = State<Arc<Registrations>>;
type Answer = Result<Response, DiscoveryError>;

/// The router; each connection adds its [`ClientCertificate`] as an extension.
pub fn router(registrations: Arc<Registrations>) -> Router {
    let eureka = Router::new()
        .route("/apps", get(all))
        // eureka-js-client (inside Zowe's Node.js enabler) fetches the registry as its base
        // URL `.../eureka/apps/` plus an empty path: the trailing slash is the same read.
        .route("/apps/", get(all))
        .route("/apps/delta", get(delta))
        .route("/apps/{app}", get(application).post(register))
        .route("/apps/{app}/{id}", get(instance).put(renew).delete(cancel))
        .route("/apps/{app}/{id}/status", put(set_status).delete(clear_status))
        .route("/apps/{app}/{id}/metadata", put(set_metadata))
        .layer(middleware::from_fn(require_certificate));
    Router::new()
        .nest("/eureka", eureka)
        .route("/application/health", get(health))
        .fallback(|| async { (StatusCode::NOT_FOUND, axum::Json(json!({"status": 404, "error": "Not Found"}))) })
        .with_state(registrations)
}

impl IntoResponse for DiscoveryError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status.is_server_error() {
            tracing::warn!(error = %self, "discovery call failed");
        } else {
            tracing::debug!(error = %self, "discovery call refused");
        }
        let field = match &self {
            DiscoveryError::BadField { field, .. } => Some(field.clone()),
            _ => None,
        };
        let body = json!({"status": status.as_u16(), "error": status.canonical_reason(), "message": self.to_string(), "field": field});
        (status, axum::Json(body)).into_response()
    }
}

async fn require_certificate(
    Extension(cert): Extension<ClientCertificate>,
    req: axum::extract::Request,
    next: middleware::Next,
) -> Response {
    if !cert.0 {
        return DiscoveryError::NoCertificate.into_response();
    }
    next.run(req).await
}

/// The path's app and instance id, checked (an id holding `/`, `..` or escapes is refused
/// rather than looked up).
fn names(app: &str, id: &str) -> Result<(), DiscoveryError> {
    check_app(app)?;
    check_instance_id(id)
}

/// Answers `value` (the inside of the root element `root`) as XML when the client asks for
/// it, else as JSON `{root: value}`.
fn answer(headers: &HeaderMap, root: &str, value: Value) -> Response {
    let wants_xml = headers.get(header::ACCEPT).and_then(|a| a.to_str().ok()).is_some_and(|a| a.contains("xml") && !a.contains("json"));
    if wants_xml {
        let mut r = xml::render(root, &value).into_response();
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/xml"));
        r
    } else {
        axum::Json(json!({ root: value })).into_response()
    }
}

fn version(r: &Registrations) -> u64 {
    r.view().status().revision.unwrap_or(0)
}

async fn all(State(r): St, headers: HeaderMap) -> Response {
    let doc = applications(r.all().iter(), version(&r));
    answer(&headers, "applications", doc["applications"].clone())
}

/// Eureka's delta is what changed lately; this answers every registration with the full
/// registry's hash code. A client that merges it and still has an instance removed since sees
/// its hash code differ and fetches the full registry, as Eureka's clients do.
async fn delta(state: St, headers: HeaderMap) -> Response {
    all(state, headers).await
}

async fn application(State(r): St, headers: HeaderMap, Path(app): Path<String>) -> Answer {
    check_app(&app)?;
    let records: Vec<Record> = r.all().into_iter().filter(|x| x.instance.app.eq_ignore_ascii_case(&app)).collect();
    if records.is_empty() {
        return Err(DiscoveryError::NotFound(format!("application {}", app.to_ascii_uppercase())));
    }
    let doc = applications(records.iter(), version(&r));
    Ok(answer(&headers, "application", doc["applications"]["application"][0].clone()))
}

async fn instance(State(r): St, headers: HeaderMap, Path((app, id)): Path<(String, String)>) -> Answer {
    names(&app, &id)?;
    Ok(answer(&headers, "instance", r.get(&app, &id)?.to_eureka("ADDED")))
}

async fn register(State(r): St, headers: HeaderMap, Path(app): Path<String>, body: Body) -> Answer {
    let bytes = read(body).await?;
    let xml_body = headers.get(header::CONTENT_TYPE).and_then(|c| c.to_str().ok()).is_some_and(|c| c.contains("xml"))
        || bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'<');
    let value = if xml_body {
        let text = std::str::from_utf8(&bytes).map_err(|_| DiscoveryError::BadBody("XML: not UTF-8".to_owned()))?;
        let (root, value) = xml::parse(text)?;
        if root != "instance" {
            return Err(DiscoveryError::BadBody(format!("XML: the root element is <{root}>, expected <instance>")));
        }
        json!({ "instance": value })
    } else {
        serde_json::from_slice(&bytes).map_err(|e| DiscoveryError::BadBody(format!("JSON: {e}")))?
    };
    let record = r.register(Instance::from_registration(&app, &value)?).await?;
    tracing::info!(instance = %record.key(), url = %record.instance.base_url(), status = record.status().as_str(), "instance registered");
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn renew(State(r): St, Path((app, id)): Path<(String, String)>, Query(q): Query<Vec<(String, String)>>) -> Answer {
    names(&app, &id)?;
    // The Java client sends its own `status` and `lastDirtyTimestamp`; the status it has is
    // what it registered (it registers again when that changes), so both are only checked.
    if let Some((_, s)) = q.iter().find(|(k, _)| k == "status")
        && Status::parse(s).is_none()
    {
        return Err(DiscoveryError::BadQuery(format!("status=`{}` is not a Eureka status", s.escape_debug())));
    }
    let record = r.renew(&app, &id).await?;
    tracing::debug!(instance = %record.key(), "lease renewed");
    Ok(StatusCode::OK.into_response())
}

async fn cancel(State(r): St, Path((app, id)): Path<(String, String)>) -> Answer {
    names(&app, &id)?;
    r.cancel(&app, &id).await?;
    Ok(StatusCode::OK.into_response())
}

async fn set_status(State(r): St, Path((app, id)): Path<(String, String)>, Query(q): Query<Vec<(String, String)>>) -> Answer {
    names(&app, &id)?;
    let value = q
        .iter()
        .find(|(k, _)| k == "value")
        .map(|(_, v)| v.as_str())
        .ok_or_else(|| DiscoveryError::BadQuery("value is required".to_owned()))?;
    let status =
        Status::parse(value).ok_or_else(|| DiscoveryError::BadQuery(format!("value=`{}` is not a Eureka status", value.escape_debug())))?;
    let record = r.set_override(&app, &id, Some(status)).await?;
    tracing::info!(instance = %record.key(), status = status.as_str(), "status override set");
    Ok(StatusCode::OK.into_response())
}

async fn clear_status(State(r): St, Path((app, id)): Path<(String, String)>) -> Answer {
    names(&app, &id)?;
    let record = r.set_override(&app, &id, None).await?;
    tracing::info!(instance = %record.key(), "status override removed");
    Ok(StatusCode::OK.into_response())
}

async fn set_metadata(State(r): St, Path((app, id)): Path<(String, String)>, Query(q): Query<Vec<(String, String)>>) -> Answer {
    names(&app, &id)?;
    if q.is_empty() {
        return Err(DiscoveryError::BadQuery("no key=value pair to set".to_owned()));
    }
    let record = r.set_metadata(&app, &id, q).await?;
    tracing::info!(instance = %record.key(), "metadata updated");
    Ok(StatusCode::OK.into_response())
}

async fn health(State(r): St) -> Response {
    let s = r.view().status();
    let up = s.loaded;
    let body = json!({
        "status": if up { "UP" } else { "DOWN" },
        "registrations": { "loaded": s.loaded, "connected": s.connected, "revision": s.revision, "cachingService": s.url, "lastError": s.last_error },
    });
    (if up { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, axum::Json(body)).into_response()
}

async fn read(body: Body) -> Result<Bytes, DiscoveryError> {
    match http_body_util::Limited::new(body, MAX_BODY).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => Err(DiscoveryError::TooLarge(MAX_BODY)),
        Err(e) => Err(DiscoveryError::BadBody(format!("cannot read it: {e}"))),
    }
}
