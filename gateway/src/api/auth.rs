//! Login (with an optional password change), logout, query and the JWK sets.

use std::net::IpAddr;
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
use crate::auth::{AuthFailure, ChangeFailure, check_new_password};
use crate::error::GatewayError;
use crate::metrics as m;
use crate::state::{AUTH_COOKIE, ClientAddr, Gateway, basic_credentials, login_token};
use crate::tokens::Kind;

type St = State<Arc<Gateway>>;

/// The JSON body of a login.
#[derive(Deserialize)]
struct LoginBody {
    username: String,
    password: String,
    /// Present: change the password to this one, then log in with it.
    #[serde(rename = "newPassword")]
    new_password: Option<String>,
}

/// `POST /login`: basic auth or a JSON body; 204 with the token in `apimlAuthenticationToken`.
///
/// A JSON body with `newPassword` first changes the user's password through the provider (the
/// users file, or z/OSMF), then answers as a login: 204 and a token. When the password cannot
/// be changed for any reason (wrong old password, new one refused) the answer is the 401
/// ZWEAG120E of a failed login, and an unreachable provider is 503 ZWEAG104E. Basic auth has
/// no field for a new password, so it only ever logs in.
pub async fn login(
    State(g): St,
    Extension(addr): Extension<ClientAddr>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, GatewayError> {
    let path = uri.path();
    let invalid = || GatewayError::InvalidLoginInput(path.to_owned());
    let (user, password, new_password) = match basic_credentials(&headers) {
        Some((user, password)) => (user, password, None),
        None => {
            let bytes = small_body(body).await.ok_or_else(invalid)?;
            let b: LoginBody = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
            (b.username, b.password, b.new_password)
        }
    };
    if user.trim().is_empty() || password.is_empty() {
        return Err(invalid());
    }
    match &new_password {
        None => g.check_password(&user, &password, addr.0, path).await?,
        Some(new) => change_password(&g, &user, &password, new, addr.0, path).await?,
    }
    let (token, _) = g.tokens.issue_login(&user).map_err(|e| GatewayError::Internal(format!("cannot sign the token: {e}")))?;
    tracing::info!(user, client = %addr.0, password_changed = new_password.is_some(), "login");
    let cookie = format!("{AUTH_COOKIE}={token}; Path=/; SameSite=Strict; HttpOnly; Secure");
    let mut resp = StatusCode::NO_CONTENT.into_response();
    resp.headers_mut().insert(header::SET_COOKIE, HeaderValue::from_str(&cookie).map_err(|e| GatewayError::Internal(e.to_string()))?);
    Ok(resp)
}

/// Changes the password of `user` from `old` to `new` through the provider, behind the same
/// failed-login limits as a login: a wrong old password counts as a failed login (it is a
/// guess like any other), a refused new password does not (the old one was not tried, or was
/// right). Counted in the logins metric like a login, except refusals.
async fn change_password(g: &Gateway, user: &str, old: &str, new: &str, addr: IpAddr, path: &str) -> Result<(), GatewayError> {
    if let Err(wait) = g.limiter.check(user, addr) {
        metrics::counter!(m::LOGINS_TOTAL, "result" => "rate_limited").increment(1);
        return Err(GatewayError::TooManyAttempts(wait));
    }
    let result = match check_new_password(old, new) {
        Ok(()) => g.provider.change_password(user, old, new).await,
        Err(refused) => Err(refused),
    };
    match result {
        Ok(()) => {
            g.limiter.succeeded(user, addr);
            metrics::counter!(m::LOGINS_TOTAL, "result" => "success").increment(1);
            tracing::info!(user, client = %addr, provider = g.provider.name(), "password changed");
            Ok(())
        }
        Err(ChangeFailure::Auth(AuthFailure::BadCredentials)) => {
            g.limiter.failed(user, addr);
            metrics::counter!(m::LOGINS_TOTAL, "result" => "bad_credentials").increment(1);
            tracing::info!(user, client = %addr, "password change failed: bad credentials");
            Err(GatewayError::InvalidCredentials(path.to_owned()))
        }
        Err(ChangeFailure::Refused(why)) => {
            tracing::info!(user, client = %addr, why, "password change refused");
            Err(GatewayError::InvalidCredentials(path.to_owned()))
        }
        Err(ChangeFailure::Auth(AuthFailure::Unavailable(reason))) => {
            metrics::counter!(m::LOGINS_TOTAL, "result" => "provider_unavailable").increment(1);
            Err(GatewayError::AuthServiceUnavailable { url: path.to_owned(), reason })
        }
    }
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
