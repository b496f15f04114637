//! The cache-client's one error type.

/// What a call to the caching service can end in, besides success.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// The key is not there (404).
    #[error("not found")]
    NotFound,
    /// The key exists already (409).
    #[error("the key exists already")]
    Conflict,
    /// A conditional removal found another value (412).
    #[error("the entry holds another value")]
    Changed,
    /// The caching service's storage is full (507).
    #[error("the caching service's storage is full")]
    Full,
    /// No caching service answered (connection refused, timeout, 5xx from every URL).
    #[error("caching service unavailable: {0}")]
    Unavailable(String),
    /// The caching service refused the request (a 4xx other than the above).
    #[error("caching service refused the request: HTTP {status}: {message}")]
    Rejected {
        /// HTTP status.
        status: u16,
        /// Zowe's messageContent, or the body.
        message: String,
    },
    /// The client could not be set up (TLS material).
    #[error("cache client setup: {0}")]
    Setup(String),
}

impl ClientError {
    /// Whether trying another caching-service instance may help.
    pub fn is_retryable(&self) -> bool {
        matches!(self, ClientError::Unavailable(_))
    }
}
