//! Login, logout, query and the JWK sets.

use std::sync::Arc;

use axum::Extension;
use axum::Json;
use axum::body::Body;
use axum::extract::OriginalUri;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::small_body;
use crate::error::GatewayError;
use crate::state::{AUTH_COOKIE, ClientAddr, Gateway, basic_credentials, login_token};
use crate::tokens::Kind;

type St = State<Arc<Gateway>>;

/// The JSON body of a login.
#[derive(Deserialize)]
struct LoginBody {
    username: String,
    password: String,
    #[serde(rename = "newPassword")]
    new_password: Option<String>,
}

/// `POST /login`: basic auth or a JSON body; 204 with the token in `apimlAuthenticationToken`.
pub async fn login(
    State(g): St,
    Extension(addr): Extension<ClientAddr>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, GatewayError> {
    let path = uri.path();
    let invalid = || GatewayError::InvalidLoginInput(path.to_owned());
    let (user, password) = match basic_credentials(&headers) {
        Some(c) => c,
        None => {
            let bytes = small_body(body).await.ok_or_else(invalid)?;
            let b: LoginBody = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
            if b.new_password.is_some() {
                // Changing a password is the provider's business (z/OSMF, SAF); ours does not.
                return Err(invalid());
            }
            (b.username, b.password)
        }
    };
    if user.trim().is_empty() || password.is_empty() {
        return Err(invalid());
    }
    g.check_password(&user, &password, addr.0, path).await?;
    let (token, _) = g.tokens.issue_login(&user).map_err(|e| GatewayError::Internal(format!("cannot sign the token: {e}")))?;
    tracing::info!(user, client = %addr.0, "login");
    let cookie = format!("{AUTH_COOKIE}={token}; Path=/; SameSite=Strict; HttpOnly; Secure");
    let mut resp = StatusCode::NO_CONTENT.into_response();
    resp.headers_mut().insert(header::SET_COOKIE, HeaderValue::from_str(&cookie).map_err(|e| GatewayError::Internal(e.to_string()))?);
    Ok(resp)
}

/// `POST /logout`: the token (cookie or Bearer) is rejected by every gateway from then on.
pub async fn logout(State(g): St, OriginalUri(uri): OriginalUri, headers: HeaderMap) -> Result<StatusCode, GatewayError> {
    let path = uri.path();
    let token = login_token(&headers).ok_or_else(|| GatewayError::TokenNotProvided(path.to_owned()))?;
    let (claims, hash) = match g.verify(&token, Kind::Login, path).await {
        Ok(v) => v,
        // Zowe answers every logout failure of a presented token with ZWEAG130E.
        Err(GatewayError::ExpiredToken(p)) => return Err(GatewayError::InvalidToken(p)),
        Err(e) => return Err(e),
    };
    g.revocations.revoke_token(&hash, &claims).await?;
    tracing::info!(user = claims.sub, "logout");
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /query`: who the token belongs to and when it expires.
pub async fn query(State(g): St, OriginalUri(uri): OriginalUri, headers: HeaderMap) -> Result<Json<Value>, GatewayError> {
    let path = uri.path();
    let token = login_token(&headers).ok_or_else(|| GatewayError::TokenNotProvided(path.to_owned()))?;
    let (c, _) = g.verify(&token, Kind::Login, path).await?;
    Ok(Json(
        json!({"domain": c.dom.unwrap_or_default(), "userId": c.sub, "creation": c.iat.saturating_mul(1000), "expiration": c.exp.saturating_mul(1000)}),
    ))
}

/// `GET /keys/public/all`.
pub async fn keys_all(State(g): St) -> Json<Value> {
    Json(g.tokens.keys().jwk_set(true))
}

/// `GET /keys/public/current`.
pub async fn keys_current(State(g): St) -> Json<Value> {
    Json(g.tokens.keys().jwk_set(false))
}

/// Any other method on an authentication endpoint.
pub async fn method_not_supported(method: Method, OriginalUri(uri): OriginalUri) -> GatewayError {
    GatewayError::MethodNotSupported { method: method.to_string(), url: uri.path().to_owned() }
}
