//! plexgate's caching service (issue 3): Zowe's caching-service REST API over mutual TLS,
//! storage back ends behind one trait, and a change feed for the gateways. Not built yet.
