//! The gateway's one error type. Where an error came from (client, upstream, internal),
//! whether it is worth retrying, and its status, Zowe message number, key and texts are
//! decided here, in [`GatewayError::describe`], and nowhere else.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Everything a gateway request can fail with.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GatewayError {
    /// Wrong user name or password.
    #[error("Invalid username or password for URL '{0}'")]
    InvalidCredentials(String),
    /// No credentials, or an unreadable login body.
    #[error("Authorization header is missing, or the request body is missing or invalid for URL '{0}'")]
    InvalidLoginInput(String),
    /// Too many failed logins for this user or client address.
    #[error("Too many failed login attempts; try again in {0} seconds")]
    TooManyAttempts(u64),
    /// The method is not allowed on an authentication endpoint.
    #[error("Authentication method '{method}' is not supported for URL '{url}'")]
    MethodNotSupported {
        /// The method used.
        method: String,
        /// The path.
        url: String,
    },
    /// No token in the request.
    #[error("No authorization token provided for URL '{0}'")]
    TokenNotProvided(String),
    /// A token that does not verify, is revoked, or is of the wrong kind.
    #[error("Token is not valid for URL '{0}'")]
    InvalidToken(String),
    /// A token past its `exp`.
    #[error("Token is expired for URL '{0}'")]
    ExpiredToken(String),
    /// A PAT that does not verify (the PAT endpoints' own wording).
    #[error("Token is not valid")]
    PatInvalid,
    /// A PAT past its `exp` (the PAT endpoints' own wording).
    #[error("The token has expired")]
    PatExpired,
    /// A PAT that is revoked or not scoped to the service: Zowe answers 401 with no body.
    #[error("")]
    PatRejected,
    /// The PAT request body cannot be read.
    #[error("Invalid body provided in request to create personal access token")]
    PatBodyInvalid,
    /// The PAT request names no scope.
    #[error("Body in the HTTP request for Personal Access Token does not contain scopes")]
    PatNoScopes,
    /// A revoke request without the id it needs.
    #[error("Body in the revoke request is not valid.")]
    RevokeBodyInvalid,
    /// A revoke request whose `timestamp` is later than now.
    #[error("The timestamp {0} in the revoke request is in the future.")]
    RevokeTimestampInFuture(u64),
    /// The caller is authenticated but not allowed.
    #[error("The user is not authorized to the target resource: {0}")]
    Forbidden(String),
    /// The password checker (z/OSMF) does not answer.
    #[error("Authentication service is not available at URL '{url}'. Error returned: '{reason}'")]
    AuthServiceUnavailable {
        /// The request path.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// Revocation state cannot be known (caching service unreachable past the staleness bound).
    #[error("The server is not ready to handle the request: {0}")]
    NotReady(String),
    /// Nothing is routed here.
    #[error("The service can not find the requested resource.")]
    NotFound,
    /// A request the gateway will not forward (a path escaping its route, a bad header).
    #[error("The structure of the request is invalid: {0}")]
    BadRequest(String),
    /// A protected route without valid authentication.
    #[error("The request has not been applied because it lacks valid authentication credentials.")]
    Unauthorized,
    /// An API service did not start answering in time.
    #[error("Request to the resource ended with unexpected status code: no response within {0}")]
    GatewayTimeout(String),
    /// No piece of a body moved, either way, for the route's idle timeout.
    #[error("no data moved for {0:?}")]
    Idle(std::time::Duration),
    /// An API service answered with something that is not HTTP, or broke the connection.
    #[error("Request to the resource ended with unexpected status code: {0}")]
    BadGateway(String),
    /// A bug or an unexpected state.
    #[error("The service has encountered a situation it doesn't know how to handle: {0}")]
    Internal(String),
}

/// Where an error came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The request itself.
    Client,
    /// Something the gateway depends on (z/OSMF, the caching service, an API service).
    Upstream,
    /// The gateway.
    Internal,
}

/// How a [`GatewayError`] is answered.
pub struct Description {
    /// HTTP status.
    pub status: StatusCode,
    /// Zowe message number with its type letter; `None` for Zowe's empty-body 401s.
    pub number: Option<&'static str>,
    /// Zowe message key.
    pub key: &'static str,
    /// Why.
    pub reason: &'static str,
    /// What to do.
    pub action: &'static str,
    /// Where it came from.
    pub origin: Origin,
    /// Whether the same request may succeed if retried (elsewhere or later).
    pub retryable: bool,
}

impl GatewayError {
    /// The one place statuses, message numbers and keys are decided.
    pub fn describe(&self) -> Description {
        use GatewayError as E;
        use Origin::*;
        use StatusCode as S;
        let d =
            |status, number, key, reason, action, origin, retryable| Description { status, number, key, reason, action, origin, retryable };
        match self {
            E::InvalidCredentials(_) => d(
                S::UNAUTHORIZED,
                Some("ZWEAG120E"),
                "org.zowe.apiml.security.login.invalidCredentials",
                "The username and/or password are invalid.",
                "Provide a valid username and password.",
                Client,
                false,
            ),
            E::InvalidLoginInput(_) => d(
                S::BAD_REQUEST,
                Some("ZWEAG121E"),
                "org.zowe.apiml.security.login.invalidInput",
                "The authorization header is missing, or the request body is missing or invalid.",
                "Provide valid authentication.",
                Client,
                false,
            ),
            E::TooManyAttempts(_) => d(
                S::TOO_MANY_REQUESTS,
                Some("ZWEAG122E"),
                "org.zowe.apiml.security.login.tooManyAttempts",
                "Too many failed logins came for this user or from this address.",
                "Wait, then log in with valid credentials.",
                Client,
                true,
            ),
            E::MethodNotSupported { .. } => d(
                S::METHOD_NOT_ALLOWED,
                Some("ZWEAG101E"),
                "org.zowe.apiml.security.invalidMethod",
                "The HTTP request method is not supported by the URL.",
                "Use the correct HTTP request method supported by the URL.",
                Client,
                false,
            ),
            E::TokenNotProvided(_) => d(
                S::UNAUTHORIZED,
                Some("ZWEAG131E"),
                "org.zowe.apiml.security.query.tokenNotProvided",
                "No authorization token is provided.",
                "Provide a valid authorization token.",
                Client,
                false,
            ),
            E::InvalidToken(_) => d(
                S::UNAUTHORIZED,
                Some("ZWEAG130E"),
                "org.zowe.apiml.security.query.invalidToken",
                "The token is not valid.",
                "Provide a valid token.",
                Client,
                false,
            ),
            E::ExpiredToken(_) => d(
                S::UNAUTHORIZED,
                Some("ZWEAT100E"),
                "org.zowe.apiml.security.expiredToken",
                "The validity of the token is expired.",
                "Obtain a new token by performing an authentication request.",
                Client,
                false,
            ),
            E::PatInvalid => d(
                S::UNAUTHORIZED,
                Some("ZWEAG102E"),
                "org.zowe.apiml.zaas.security.invalidToken",
                "The JWT token is not valid.",
                "Provide a valid token.",
                Client,
                false,
            ),
            E::PatExpired => d(
                S::UNAUTHORIZED,
                Some("ZWEAG103E"),
                "org.zowe.apiml.zaas.security.expiredToken",
                "The JWT token has expired.",
                "Obtain a new token by performing an authentication request.",
                Client,
                false,
            ),
            E::PatRejected => d(S::UNAUTHORIZED, None, "", "", "", Client, false),
            E::PatBodyInvalid => d(
                S::BAD_REQUEST,
                Some("ZWEAT605E"),
                "org.zowe.apiml.security.query.invalidAccessTokenBody",
                "The request body is not valid",
                "Use a valid body in the request. Format of a message: `{validity: int , scopes: [string]}`.",
                Client,
                false,
            ),
            E::PatNoScopes => d(
                S::BAD_REQUEST,
                Some("ZWEAT606E"),
                "org.zowe.apiml.security.token.accessTokenBodyMissingScopes",
                "The request body is not valid",
                "Provide a list of services for which this token will be valid",
                Client,
                false,
            ),
            E::RevokeBodyInvalid => d(
                S::BAD_REQUEST,
                Some("ZWEAT607E"),
                "org.zowe.apiml.security.query.invalidRevokeRequestBody",
                "The request body is not valid",
                "Use a valid body in the request. Format of a message: {userId: string, (optional)timestamp: long} or {serviceId: string, (optional)timestamp: long}.",
                Client,
                false,
            ),
            E::RevokeTimestampInFuture(_) => d(
                S::BAD_REQUEST,
                Some("ZWEAT607E"),
                "org.zowe.apiml.security.query.invalidRevokeRequestBody",
                "The timestamp of the revoke request is later than now: a rule covers tokens issued up to a moment that has passed",
                "Leave out the timestamp (it then means now) or send epoch milliseconds no later than now.",
                Client,
                false,
            ),
            E::Forbidden(_) => d(
                S::FORBIDDEN,
                Some("ZWEAT403E"),
                "org.zowe.apiml.security.forbidden",
                "The service has accepted the authentication of the user but the user does not have access rights to the resource.",
                "Contact your security administrator to give you access.",
                Client,
                false,
            ),
            E::AuthServiceUnavailable { .. } => d(
                S::SERVICE_UNAVAILABLE,
                Some("ZWEAG104E"),
                "org.zowe.apiml.security.serviceUnavailable",
                "The authentication service is not available.",
                "Make sure that the authentication service is running and is accessible by the URL provided in the message.",
                Upstream,
                true,
            ),
            E::NotReady(_) => d(
                S::SERVICE_UNAVAILABLE,
                Some("ZWEAO503E"),
                "org.zowe.apiml.common.serviceUnavailable",
                "The service is not ready to handle the request, it is being initialized or waiting for another service to start.",
                "Repeat the request later. Please contact support for further assistance.",
                Upstream,
                true,
            ),
            E::NotFound => d(S::NOT_FOUND, Some("ZWEAO404E"), "org.zowe.apiml.common.notFound", "", "", Client, false),
            E::BadRequest(_) => d(
                S::BAD_REQUEST,
                Some("ZWEAO400E"),
                "org.zowe.apiml.common.badRequest",
                "A value in the request is missing or contains an invalid value.",
                "Fix the request and try again.",
                Client,
                false,
            ),
            E::Unauthorized => d(
                S::UNAUTHORIZED,
                Some("ZWEAO402E"),
                "org.zowe.apiml.common.unauthorized",
                "The accessed resource requires authentication. The request is missing valid authentication credentials or the token expired.",
                "Review the product documentation for more details about acceptable authentication. Verify that your credentials are valid and contact security administrator to obtain valid credentials.",
                Client,
                false,
            ),
            E::GatewayTimeout(_) | E::Idle(_) => d(
                S::GATEWAY_TIMEOUT,
                Some("ZWEAG510E"),
                "org.zowe.apiml.gateway.responseStatusError",
                "The service did not respond properly.",
                "Verify that the target service is healthy.",
                Upstream,
                false,
            ),
            E::BadGateway(_) => d(
                S::BAD_GATEWAY,
                Some("ZWEAG510E"),
                "org.zowe.apiml.gateway.responseStatusError",
                "The service did not respond properly.",
                "Verify that the target service is healthy.",
                Upstream,
                true,
            ),
            E::Internal(_) => {
                d(S::INTERNAL_SERVER_ERROR, Some("ZWEAO500E"), "org.zowe.apiml.common.internalServerError", "", "", Internal, false)
            }
        }
    }
}

#[derive(Serialize)]
struct Messages {
    messages: [Message; 1],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Message {
    message_type: &'static str,
    message_number: &'static str,
    message_content: String,
    #[serde(skip_serializing_if = "str::is_empty")]
    message_reason: &'static str,
    #[serde(skip_serializing_if = "str::is_empty")]
    message_action: &'static str,
    message_key: &'static str,
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        let d = self.describe();
        if d.origin != Origin::Client {
            tracing::warn!(error = %self, "request failed");
        }
        let mut resp = match d.number {
            Some(number) => {
                let body = Messages {
                    messages: [Message {
                        message_type: "ERROR",
                        message_number: number,
                        message_content: self.to_string(),
                        message_reason: d.reason,
                        message_action: d.action,
                        message_key: d.key,
                    }],
                };
                (d.status, axum::Json(body)).into_response()
            }
            None => d.status.into_response(),
        };
        if d.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"Realm\""));
        }
        if let GatewayError::TooManyAttempts(secs) = self
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        resp
    }
}
