//! Eureka-compatible discovery: what Zowe's onboarding enablers (Java and Node.js) send when
//! they register a service, and what Eureka clients read back.
//!
//! Rooms: [`instance`] (the registration, its checks and its Eureka rendering), [`xml`]
//! (Eureka's XML read into and written from the same JSON shape, so one parser serves both
//! wire formats), [`metadata`] (the `apiml.*` metadata keys: routes, title, authentication,
//! timeouts), [`registry`] (a registration with its lease and status override, as stored in
//! the caching service, and Eureka's `applications` document), [`error`] (every refusal, with its status decided in one place).

pub mod error;
pub mod instance;
pub mod metadata;
pub mod registry;
pub mod xml;

pub use error::DiscoveryError;
pub use instance::{Instance, Lease, Port, Status, Times};
pub use metadata::{ApimlMetadata, Route};
pub use registry::Record;
