//! The discovery crate's one error type; [`DiscoveryError::status`] decides the HTTP status
//! of each refusal, and nowhere else does.

/// Everything a discovery call can be refused for.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DiscoveryError {
    /// The body is not JSON or XML, or not an `instance` object.
    #[error("the body is not a Eureka instance: {0}")]
    BadBody(String),
    /// A field is missing or holds a value it cannot.
    #[error("instance field `{field}`: {why}")]
    BadField {
        /// The field, in Eureka's spelling (`securePort`, `metadata.apiml.routes.api.gatewayUrl`).
        field: String,
        /// What is wrong with it.
        why: String,
    },
    /// The body's `app` is not the application named in the path.
    #[error("the instance names app `{body}` but was sent to /eureka/apps/{path}")]
    AppMismatch {
        /// The app in the path.
        path: String,
        /// The app in the body.
        body: String,
    },
    /// The body is larger than the endpoint takes.
    #[error("the body is larger than {0} bytes")]
    TooLarge(usize),
    /// A query parameter is missing or wrong (`status?value=`).
    #[error("query parameter {0}")]
    BadQuery(String),
    /// No such application or instance: a heartbeat answered so makes the client register again.
    #[error("{0} is not registered")]
    NotFound(String),
    /// `components.discovery.maxInstances` instances are registered already.
    #[error("{0} instances are registered, the most components.discovery.maxInstances allows")]
    Full(usize),
    /// No client certificate: Eureka calls need the service's own.
    #[error("a client certificate trusted by the truststore is required for /eureka")]
    NoCertificate,
    /// The caching service, where registrations live, did not take or give them.
    #[error("the registry's store is unavailable: {0}")]
    Unavailable(String),
    /// The server cannot start (TLS material, port in use, no caching service).
    #[error("{0}")]
    Startup(String),
}

impl DiscoveryError {
    /// The HTTP status Eureka's clients expect for this refusal.
    pub fn status(&self) -> u16 {
        match self {
            DiscoveryError::BadBody(_)
            | DiscoveryError::BadField { .. }
            | DiscoveryError::AppMismatch { .. }
            | DiscoveryError::BadQuery(_) => 400,
            DiscoveryError::TooLarge(_) => 413,
            DiscoveryError::NoCertificate => 403,
            DiscoveryError::NotFound(_) => 404,
            DiscoveryError::Full(_) => 507,
            DiscoveryError::Unavailable(_) | DiscoveryError::Startup(_) => 503,
        }
    }

    pub(crate) fn field(field: impl Into<String>, why: impl Into<String>) -> Self {
        DiscoveryError::BadField { field: field.into(), why: why.into() }
    }
}
