//! plexgate's caching service: Zowe's caching-service REST API over mutual TLS.
//!
//! - [`api`]: the endpoints of the contract, exact statuses and Zowe error bodies.
//! - [`identity`]: the caller's namespace from its client certificate (or, for trusted
//!   gateways, from `X-Certificate-DistinguishedName`), plus `X-CS-Service-ID`.
//! - [`storage`]: `inMemory`, `durable` (redb) and `redis` behind one trait.
//! - [`feed`]: the change feed the gateways follow to keep a local revocation view.

pub mod api;
pub mod error;
pub mod feed;
pub mod identity;
pub mod metrics;
pub mod server;
pub mod storage;

pub use error::CacheError;
pub use server::CachingService;
