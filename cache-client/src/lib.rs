//! plexgate's typed client of the caching service (issue 3): failover between caching-service
//! URLs, mutual TLS with the gateway's client certificate, and the local revocation view kept
//! current from the change feed. Not built yet; nothing depends on it so far.
