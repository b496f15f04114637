//! Eureka-compatible discovery: what Zowe's onboarding enablers (Java and Node.js) send when
//! they register a service, what Eureka clients read back, and the endpoint that serves both.
//!
//! Rooms: [`instance`] (the registration, its checks and its Eureka rendering), [`xml`]
//! (Eureka's XML read into and written from the same JSON shape, so one parser serves both
//! wire formats), [`metadata`] (the `apiml.*` metadata keys: routes, title, authentication,
//! timeouts), [`registry`] (a registration with its lease and status override, as stored in
//! the caching service, and Eureka's `applications` document), [`store`] (registrations kept
//! in the caching service and read from its feed), [`expiry`] (leases timed and expired once),
//! [`api`] (the `/eureka` REST calls), [`server`] (HTTPS with client certificates), [`error`]
//! (every refusal, with its status decided in one place).

pub mod api;
pub mod error;
pub mod expiry;
pub mod instance;
pub mod metadata;
pub mod registry;
pub mod server;
pub mod store;
pub mod xml;

pub use error::DiscoveryError;
pub use instance::{Instance, Lease, Port, Status, Times};
pub use metadata::{ApimlMetadata, Route};
pub use registry::Record;
pub use server::Discovery;
pub use store::Registrations;
