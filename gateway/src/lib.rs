//! plexgate's gateway: login, logout, query, JWK sets and Personal Access Tokens, valid on
//! every gateway of the installation.
//!
//! - [`tokens`]: RS256 login tokens and PATs signed with the shared key, verified locally
//!   (with every hostile-input check) and remembered in a verified-token cache.
//! - [`revocation`]: logouts and revocations written to the caching service and honoured by
//!   every gateway through a local view kept current by the change feed.
//! - [`auth`]: password checks (`users-file`, `zosmf`) behind one trait, with failed-login limits.
//! - [`api`]: the endpoints, with Zowe's statuses, cookies and error bodies ([`error`]).
//! - [`routing`]: static service definitions, load balancing with health checks and retries,
//!   and forwarding to API services.
//! - [`server`]: HTTPS with HTTP/1.1 and HTTP/2, and the drain on SIGTERM.
//! - [`workers`]: the thread-per-core serving threads.
//! - [`access_log`]: one line per routed request.

pub mod access_log;
pub mod api;
pub mod auth;
pub mod error;
pub mod metrics;
pub mod periodic;
pub mod proxy_protocol;
pub mod revocation;
pub mod routing;
pub mod server;
pub mod state;
pub mod tokens;
pub mod workers;

pub use error::GatewayError;
pub use server::{GatewayServer, LISTEN_BACKLOG};
