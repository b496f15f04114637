//! The caching service's one error type. Status code, Zowe message number, key and texts of
//! every failure are decided here, in [`CacheError::describe`], and nowhere else. Numbers and
//! keys are Zowe's (caching-log-messages.yml) where Zowe has one for the case.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Everything that can go wrong in the caching service.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The request body is not what the endpoint takes.
    #[error("Payload is not valid: '{0}'.")]
    BadPayload(String),
    /// The request names no key.
    #[error("No cache key provided.")]
    KeyNotProvided,
    /// The key does not exist in the caller's namespace.
    #[error("Key '{0}' is not in the cache for the caller")]
    NotFound(String),
    /// `POST /cache` of a key that exists.
    #[error("Adding key '{0}' resulted in a collision in the cache.")]
    Conflict(String),
    /// A conditional removal (`ifValue`) of a key that holds another value now.
    #[error("Key '{0}' holds another value than the one the removal was conditional on.")]
    Changed(String),
    /// The store holds `storage.size` entries and the strategy is `reject` (or only map entries are left).
    #[error("Insufficient storage space limit.")]
    Full,
    /// A trusted gateway passed an empty caller identity.
    #[error("Missing header with certificate.")]
    NoIdentity,
    /// No client certificate, an untrusted one, or identity headers from a non-gateway certificate.
    #[error("The user is not authorized to the target resource: {0}")]
    Forbidden(&'static str),
    /// The body is over `maxRequestSize`.
    #[error("The payload is larger than {0} bytes.")]
    TooLarge(usize),
    /// The storage back end does not answer.
    #[error("Could not query the cache storage: '{0}'")]
    Unavailable(String),
    /// A request path that does not exist.
    #[error("No such endpoint: {0}")]
    NoRoute(String),
    /// A bug or an unexpected state.
    #[error("The request has failed: {0}")]
    Internal(String),
    /// The service cannot start (bad storage settings, TLS material, port in use).
    #[error("{0}")]
    Startup(String),
}

/// How a [`CacheError`] is answered.
pub struct Description {
    /// HTTP status.
    pub status: StatusCode,
    /// Zowe message number, with its type letter.
    pub number: &'static str,
    /// Zowe message key.
    pub key: &'static str,
    /// Why it happened.
    pub reason: &'static str,
    /// What to do about it.
    pub action: &'static str,
}

impl CacheError {
    /// Status, message number, key, reason and action: the one place they are decided.
    pub fn describe(&self) -> Description {
        let d = |status, number, key, reason, action| Description { status, number, key, reason, action };
        use StatusCode as S;
        match self {
            CacheError::BadPayload(_) => d(
                S::BAD_REQUEST,
                "ZWECS130E",
                "org.zowe.apiml.cache.invalidPayload",
                "The payload is not in valid JSON format.",
                "Provide a payload in JSON format.",
            ),
            CacheError::KeyNotProvided => d(
                S::BAD_REQUEST,
                "ZWECS132E",
                "org.zowe.apiml.cache.keyNotProvided",
                "No cache key was provided.",
                "Provide a key that is in the cache.",
            ),
            CacheError::NotFound(_) => d(
                S::NOT_FOUND,
                "ZWECS131E",
                "org.zowe.apiml.cache.keyNotInCache",
                "Cache does not contain the provided key.",
                "Add a key-value pair to the cache using the key or operate on an existing key in the cache.",
            ),
            CacheError::Conflict(_) => d(
                S::CONFLICT,
                "ZWECS133E",
                "org.zowe.apiml.cache.keyCollision",
                "Key is already in the cache.",
                "Update or delete the key, or add a different key.",
            ),
            CacheError::Changed(_) => d(
                S::PRECONDITION_FAILED,
                "ZWECS138E",
                "org.zowe.apiml.cache.valueChanged",
                "The entry changed since the value the removal was conditional on was read.",
                "Read the entry again and decide on its current value.",
            ),
            CacheError::Full => d(
                S::INSUFFICIENT_STORAGE,
                "ZWECS134E",
                "org.zowe.apiml.cache.insufficientStorage",
                "The storage space is full.",
                "Delete entries, raise components.caching-service.storage.size, or use evictionStrategy removeOldest.",
            ),
            CacheError::NoIdentity => d(
                S::UNAUTHORIZED,
                "ZWECS702W",
                "org.zowe.apiml.cache.missingCertificate",
                "Call executed without valid client certificate.",
                "Verify ssl context in client application.",
            ),
            CacheError::Forbidden(_) => d(
                S::FORBIDDEN,
                "ZWEAT403E",
                "org.zowe.apiml.security.forbidden",
                "The caller did not present a client certificate the caching service trusts for this request.",
                "Present a client certificate signed by a CA in the caching service's truststore.",
            ),
            CacheError::TooLarge(_) => d(
                S::PAYLOAD_TOO_LARGE,
                "ZWECS137E",
                "org.zowe.apiml.cache.payloadTooLarge",
                "The request body is over the configured limit.",
                "Send a smaller body, or raise components.caching-service.maxRequestSize.",
            ),
            CacheError::Unavailable(_) => d(
                S::SERVICE_UNAVAILABLE,
                "ZWECS152E",
                "org.zowe.apiml.cache.errorQueryingStorage",
                "There was an error querying the persistent storage.",
                "Check that your configured caching storage solution is functioning properly.",
            ),
            CacheError::NoRoute(_) => d(
                S::NOT_FOUND,
                "ZWEAO404E",
                "org.zowe.apiml.common.notFound",
                "The requested resource does not exist.",
                "Check the path of the request.",
            ),
            CacheError::Internal(_) | CacheError::Startup(_) => d(
                S::INTERNAL_SERVER_ERROR,
                "ZWEAM701E",
                "org.zowe.apiml.common.internalRequestError",
                "The request failed because of an internal error.",
                "Refer to specific exception details for troubleshooting. Create an issue with this message.",
            ),
        }
    }
}

/// Zowe's error body.
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
    message_reason: &'static str,
    message_action: &'static str,
    message_key: &'static str,
}

impl IntoResponse for CacheError {
    fn into_response(self) -> Response {
        let d = self.describe();
        if d.status.is_server_error() {
            tracing::warn!(error = %self, "caching service request failed");
        }
        let message_type = if d.number.ends_with('W') { "WARNING" } else { "ERROR" };
        let body = Messages {
            messages: [Message {
                message_type,
                message_number: d.number,
                message_content: self.to_string(),
                message_reason: d.reason,
                message_action: d.action,
                message_key: d.key,
            }],
        };
        let mut resp = (d.status, axum::Json(body)).into_response();
        if d.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"Realm\""));
        }
        resp
    }
}

macro_rules! storage_errors {
    ($($t:ty),*) => {$(
        impl From<$t> for CacheError {
            fn from(e: $t) -> Self {
                CacheError::Unavailable(e.to_string())
            }
        }
    )*};
}
storage_errors!(
    redb::Error,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::DatabaseError,
    redb::SetDurabilityError
);
