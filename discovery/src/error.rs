//! The discovery crate's one error type; [`DiscoveryError::status`] decides the HTTP status
//! of each refusal, and nowhere else does.

/// Everything a registration can be refused for.
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
}

impl DiscoveryError {
    /// The HTTP status Eureka's clients expect for this refusal.
    pub fn status(&self) -> u16 {
        match self {
            DiscoveryError::BadBody(_) | DiscoveryError::BadField { .. } | DiscoveryError::AppMismatch { .. } => 400,
        }
    }

    pub(crate) fn field(field: impl Into<String>, why: impl Into<String>) -> Self {
        DiscoveryError::BadField { field: field.into(), why: why.into() }
    }
}
