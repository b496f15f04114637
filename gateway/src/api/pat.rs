//! Personal Access Tokens: generate, validate, revoke, rules and eviction.

use std::sync::Arc;

use axum::Extension;
use axum::body::Body;
use axum::extract::OriginalUri;
use axum::extract::State;
use axum::http::Uri;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;

use super::small_body;
use crate::error::GatewayError;
use crate::revocation::Rule;
use crate::state::{ClientAddr, Gateway};
use crate::tokens::{Kind, Rejection};

type St = State<Arc<Gateway>>;

fn now_millis() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// The body as JSON, or `err` when it is missing, too large or not JSON.
async fn json_body(body: Body, err: GatewayError) -> Result<Value, GatewayError> {
    let bytes = small_body(body).await.ok_or_else(|| err.clone())?;
    serde_json::from_slice(&bytes).map_err(|_| err)
}

/// `POST /access-token/generate`: `{"validity": days, "scopes": [...]}` -> the PAT as text.
pub async fn generate(
    State(g): St,
    Extension(addr): Extension<ClientAddr>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, GatewayError> {
    let user = g.caller(&headers, addr.0, uri.path()).await?;
    #[derive(Deserialize)]
    struct Req {
        #[serde(default)]
        validity: i64,
        #[serde(default)]
        scopes: Option<Vec<String>>,
    }
    let bytes = small_body(body).await.ok_or(GatewayError::PatBodyInvalid)?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(GatewayError::PatNoScopes);
    }
    let req: Req = serde_json::from_slice(&bytes).map_err(|_| GatewayError::PatBodyInvalid)?;
    let scopes: Vec<String> = req.scopes.unwrap_or_default().into_iter().filter(|s| !s.trim().is_empty()).collect();
    if scopes.is_empty() {
        return Err(GatewayError::PatNoScopes);
    }
    let (token, claims) =
        g.tokens.issue_pat(&user, req.validity, &scopes).map_err(|e| GatewayError::Internal(format!("cannot sign the token: {e}")))?;
    tracing::info!(user, scopes = ?claims.scopes, days = (claims.exp - claims.iat) / 86_400, "personal access token issued");
    let mut resp = (StatusCode::OK, token).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    Ok(resp)
}

/// Verifies a PAT for the PAT endpoints: their own wording (ZWEAG102E/103E), and `None` when
/// it is revoked.
async fn pat(g: &Gateway, token: &str, path: &str) -> Result<Option<(crate::tokens::Claims, String)>, GatewayError> {
    if let Err(r) = g.tokens.verify(token, Kind::Pat) {
        return Err(match r {
            Rejection::Expired => GatewayError::PatExpired,
            Rejection::Invalid(_) => GatewayError::PatInvalid,
        });
    }
    match g.verify(token, Kind::Pat, path).await {
        Ok(v) => Ok(Some(v)),
        Err(GatewayError::InvalidToken(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// `POST /access-token/validate`: `{"token", "serviceId"}` -> 204 when valid for that service.
pub async fn validate(State(g): St, OriginalUri(uri): OriginalUri, body: Body) -> Result<StatusCode, GatewayError> {
    let v = json_body(body, GatewayError::PatBodyInvalid).await?;
    let (Some(token), Some(service)) = (v["token"].as_str(), v["serviceId"].as_str()) else { return Err(GatewayError::PatBodyInvalid) };
    let Some((claims, _)) = pat(&g, token, uri.path()).await? else { return Err(GatewayError::PatRejected) };
    let service = service.to_lowercase();
    if claims.scopes.iter().flatten().any(|s| *s == service) { Ok(StatusCode::NO_CONTENT) } else { Err(GatewayError::PatRejected) }
}

/// `DELETE /access-token/revoke`: `{"token"}` -> 204; 401 when already revoked.
pub async fn revoke(State(g): St, OriginalUri(uri): OriginalUri, body: Body) -> Result<StatusCode, GatewayError> {
    let v = json_body(body, GatewayError::PatBodyInvalid).await?;
    let Some(token) = v["token"].as_str() else { return Err(GatewayError::PatBodyInvalid) };
    let Some((claims, hash)) = pat(&g, token, uri.path()).await? else { return Err(GatewayError::PatRejected) };
    g.revocations.revoke_token(&hash, &claims).await?;
    tracing::info!(user = claims.sub, "personal access token revoked");
    Ok(StatusCode::NO_CONTENT)
}

/// How far past this gateway's clock a caller's `timestamp` may be (a client's clock a little
/// ahead) before it is refused; within it, the rule is set to now.
const FUTURE_TOLERANCE_MILLIS: u64 = 1000;

/// The optional `timestamp` of a rule body: now when absent or 0, never later than now (a rule
/// dated in the future would revoke tokens not yet issued); one clearly in the future is
/// refused. Whatever it is, the stored rule only rises (see [`crate::revocation`]).
fn timestamp(v: &Value) -> Result<u64, GatewayError> {
    let now = now_millis();
    match &v["timestamp"] {
        Value::Null => Ok(now),
        t => match t.as_u64() {
            Some(0) => Ok(now),
            Some(ms) if ms > now.saturating_add(FUTURE_TOLERANCE_MILLIS) => Err(GatewayError::RevokeTimestampInFuture(ms)),
            Some(ms) => Ok(ms.min(now)),
            None => Err(GatewayError::RevokeBodyInvalid),
        },
    }
}

/// `DELETE /access-token/revoke/tokens`: every token of the caller issued at or before the timestamp.
pub async fn revoke_own(
    State(g): St,
    Extension(addr): Extension<ClientAddr>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, GatewayError> {
    let user = g.caller(&headers, addr.0, uri.path()).await?;
    let bytes = small_body(body).await.ok_or(GatewayError::RevokeBodyInvalid)?;
    let v: Value = if bytes.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).map_err(|_| GatewayError::RevokeBodyInvalid)?
    };
    let at = timestamp(&v)?;
    g.revocations.revoke_rule(Rule::User, &user, at).await?;
    tracing::info!(user, at, "tokens of the user revoked by the user");
    Ok(StatusCode::NO_CONTENT)
}

/// The caller, who must be an admin.
async fn admin(g: &Gateway, headers: &HeaderMap, addr: ClientAddr, path: &str) -> Result<String, GatewayError> {
    let user = g.caller(headers, addr.0, path).await?;
    if !g.is_admin(&user) {
        return Err(GatewayError::Forbidden(path.to_owned()));
    }
    Ok(user)
}

/// An admin's rule: `{"<field>": id, "timestamp"?}` revokes every token of that user or for
/// that service issued at or before the timestamp.
async fn admin_rule(
    g: &Gateway,
    addr: ClientAddr,
    uri: &Uri,
    headers: &HeaderMap,
    body: Body,
    rule: Rule,
) -> Result<StatusCode, GatewayError> {
    let by = admin(g, headers, addr, uri.path()).await?;
    let v = json_body(body, GatewayError::RevokeBodyInvalid).await?;
    let id = v[rule.field()].as_str().filter(|s| !s.trim().is_empty()).ok_or(GatewayError::RevokeBodyInvalid)?;
    let at = timestamp(&v)?;
    g.revocations.revoke_rule(rule, id, at).await?;
    tracing::info!(?rule, id, by, at, "revocation rule set by an admin");
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /access-token/revoke/tokens/user` (admin): `{"userId", "timestamp"?}`.
pub async fn revoke_user(
    State(g): St,
    Extension(addr): Extension<ClientAddr>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, GatewayError> {
    admin_rule(&g, addr, &uri, &headers, body, Rule::User).await
}

/// `DELETE /access-token/revoke/tokens/scope` (admin): `{"serviceId", "timestamp"?}`.
pub async fn revoke_scope(
    State(g): St,
    Extension(addr): Extension<ClientAddr>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, GatewayError> {
    admin_rule(&g, addr, &uri, &headers, body, Rule::Scope).await
}

/// `DELETE /access-token/evict` (admin): drop expired tokens and rules older than 90 days.
pub async fn evict(
    State(g): St,
    Extension(addr): Extension<ClientAddr>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
) -> Result<StatusCode, GatewayError> {
    admin(&g, &headers, addr, uri.path()).await?;
    g.revocations.evict().await?;
    Ok(StatusCode::NO_CONTENT)
}
