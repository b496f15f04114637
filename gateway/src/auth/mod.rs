//! Checking a user name and password: providers behind one trait, chosen in config, and the
//! failed-login limits in front of them.

mod ratelimit;
mod users_file;
mod zosmf;

use async_trait::async_trait;

pub use ratelimit::LoginLimiter;
pub use users_file::UsersFileProvider;
pub use zosmf::ZosmfProvider;

/// Why a password check did not pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthFailure {
    /// Wrong user or password (the two are never told apart).
    BadCredentials,
    /// The checker is unreachable or broken: not the user's fault.
    Unavailable(String),
}

/// A password checker.
#[async_trait]
pub trait AuthProvider: Send + Sync + 'static {
    /// Checks `password` of `user`.
    async fn authenticate(&self, user: &str, password: &str) -> Result<(), AuthFailure>;
    /// Whether `user` is an admin by this provider's own records.
    fn is_admin(&self, user: &str) -> bool;
    /// A name for logs.
    fn name(&self) -> &'static str;
}
