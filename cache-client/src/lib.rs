//! The gateways' typed client of the caching service.
//!
//! - [`CacheClient`]: the REST API with failover across every configured caching-service URL,
//!   mutual TLS with the gateway's client certificate, per-call timeouts and bounded retries,
//!   and typed errors ([`ClientError`]).
//! - [`MapView`]: a local, always-current copy of chosen maps (revocations, sticky routes)
//!   fed by the caching service's change feed, so a request never waits on the network. Its
//!   staleness is observable; it resumes from its last revision after a reconnect.

mod client;
mod error;
mod view;

pub use client::{CacheClient, ClientOptions, Entry};
pub use error::ClientError;
pub use view::{MapChange, MapView, ViewStatus};
