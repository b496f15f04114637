//! The distributor's one error type: what can stop it from starting or serving. Per-connection
//! trouble (a target refusing, a client going away) is not an error of the distributor: it is
//! logged, counted and handled where it happens.

/// Everything that can go wrong when the distributor starts or serves.
#[derive(Debug, thiserror::Error)]
pub enum DistributorError {
    /// The configuration cannot be run (disabled, no targets, bad TLS material).
    #[error("distributor configuration: {0}")]
    Config(String),
    /// A listener could not be opened.
    #[error("cannot listen on {address}: {source}")]
    Listen {
        /// Where.
        address: String,
        /// Why.
        source: std::io::Error,
    },
    /// A forwarding thread could not be started.
    #[error("cannot start a forwarding thread: {0}")]
    Thread(std::io::Error),
    /// The admin listener's status could not be read (`plexgate status`).
    #[error("admin listener {address}: {message}")]
    Admin {
        /// The admin listener asked.
        address: String,
        /// What went wrong.
        message: String,
    },
}
