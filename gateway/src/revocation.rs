//! Revocations, HA-correct: written to the caching service, read from a local view that the
//! change feed keeps current, so no request waits on the network in the steady state.
//!
//! Data is stored as Zowe stores it: caching-service maps `invalidTokens`, `invalidUsers` and
//! `invalidScopes`, each id as lower-case hex SHA-512(salt || value), the salt under cache key
//! `salt` (created by the first gateway that needs it; every gateway then reads the same one).
//!
//! Invariants:
//! - A rule (user or scope) only rises: it is written as an atomic maximum in the store
//!   (`merge=max`), so neither a user's own call with an early timestamp nor a gateway with a
//!   slow clock can lift an administrator's revocation.
//! - The salt lives in the gateways' own namespace, which the caching service never evicts
//!   and never counts. When the view's store changes epoch (an inMemory restart, a flushed
//!   Redis), the salt is read again before the next use; a store without one gets back the
//!   salt this gateway remembers (so the revocations gateways record right after such a loss
//!   still match), and only a gateway that never knew one makes a new one.
//! - Expired revocations and old rules are evicted in the background, never before `exp` plus
//!   the verification leeway (the caching service applies it), so a revoked token is never
//!   valid again while any gateway would still accept it.
//!
//! Which state decides a request: the view while it is loaded and fresher than the staleness
//! bound; past the bound (feed down), the caching service itself, asked per request; when
//! that fails too, the gateway answers 503 rather than guess (never a misleading 401).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use plexgate_cache_client::{CacheClient, ClientError, MapChange, MapView};
use serde_json::json;
use sha2::{Digest, Sha512};

use crate::error::GatewayError;
use crate::tokens::{Claims, Kind, Verified, VerifiedCache};

/// Map of revoked tokens: hash(token) -> `{"tokenValue","issuedAt","expiresAt"}`.
pub const INVALID_TOKENS: &str = "invalidTokens";
/// Map of user rules: hash(user) -> epoch millis; tokens of the user issued at or before are revoked.
pub const INVALID_USERS: &str = "invalidUsers";
/// Map of scope rules: hash(serviceId) -> epoch millis; PATs for the service issued at or before are revoked.
pub const INVALID_SCOPES: &str = "invalidScopes";
/// Cache key of the shared salt.
pub const SALT_KEY: &str = "salt";

/// A revocation rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Every token of a user.
    User,
    /// Every PAT for a service.
    Scope,
}

impl Rule {
    /// The map the rule lives in.
    pub fn map(self) -> &'static str {
        match self {
            Rule::User => INVALID_USERS,
            Rule::Scope => INVALID_SCOPES,
        }
    }

    /// The field of the request body naming the id.
    pub fn field(self) -> &'static str {
        match self {
            Rule::User => "userId",
            Rule::Scope => "serviceId",
        }
    }
}

/// What one decision reads: present keys and their values.
trait Lookup {
    fn get(&self, map: &str, key: &str) -> Option<String>;
    fn contains(&self, map: &str, key: &str) -> bool {
        self.get(map, key).is_some()
    }
}

impl Lookup for MapView {
    fn get(&self, map: &str, key: &str) -> Option<String> {
        MapView::get(self, map, key)
    }
    fn contains(&self, map: &str, key: &str) -> bool {
        MapView::contains(self, map, key)
    }
}

impl Lookup for BTreeMap<String, BTreeMap<String, String>> {
    fn get(&self, map: &str, key: &str) -> Option<String> {
        BTreeMap::get(self, map).and_then(|m| m.get(key)).cloned()
    }
}

/// The salt as this gateway knows it.
#[derive(Default)]
struct Salt {
    /// The last value read or made (kept after a store loss, to give back).
    value: Option<String>,
    /// Whether `value` was read from the store the view follows now.
    current: bool,
}

/// The gateway's revocation state.
pub struct Revocations {
    client: CacheClient,
    view: MapView,
    salt: RwLock<Salt>,
    staleness_bound: Duration,
    cache: Arc<VerifiedCache>,
}

impl Revocations {
    /// Starts following the revocation maps; `cache` is emptied as revocations arrive. Every
    /// `evict_interval`, expired revocations and old rules are evicted. A feed silent for
    /// `feed_idle` is given up for the next caching service (a hung one sends nothing).
    pub fn start(
        client: CacheClient,
        staleness_bound: Duration,
        evict_interval: Duration,
        feed_idle: Duration,
        cache: Arc<VerifiedCache>,
    ) -> Arc<Revocations> {
        let idle = feed_idle;
        let view = MapView::start(client.clone(), &[INVALID_TOKENS, INVALID_USERS, INVALID_SCOPES], idle);
        let r = Arc::new(Revocations { client, view, salt: RwLock::new(Salt::default()), staleness_bound, cache });
        let mut changes = r.view.subscribe();
        let weak = Arc::downgrade(&r);
        tokio::spawn(async move {
            let mut epoch = None;
            loop {
                let change = changes.recv().await;
                let Some(r) = weak.upgrade() else { return };
                match change {
                    Ok(MapChange::Put { map, key, .. }) if map == INVALID_TOKENS => r.cache.remove(&key),
                    // A user or scope rule, a snapshot, or missed events: drop everything, it
                    // is only a cache (keyed by token hash, it cannot tell a user's tokens).
                    Ok(MapChange::Put { map, .. }) if map == INVALID_USERS || map == INVALID_SCOPES => r.cache.clear(),
                    Ok(MapChange::Reset) | Err(_) => {
                        let now = r.view.epoch();
                        if epoch.is_some() && now != epoch {
                            // Another store: its salt may be gone or another; read it again.
                            tracing::warn!(old = ?epoch, new = ?now, "revocation store changed epoch: the salt is read again");
                            r.lock_salt().current = false;
                            let again = r.clone();
                            tokio::spawn(async move { again.salt().await });
                        }
                        epoch = now;
                        r.cache.clear();
                    }
                    Ok(MapChange::Put { .. } | MapChange::Delete { .. }) => {}
                }
            }
        });
        crate::periodic::every(evict_interval, Arc::downgrade(&r), |r: Arc<Revocations>| async move {
            match r.evict().await {
                Ok(()) => tracing::debug!("expired revocations and old rules evicted"),
                Err(e) => tracing::warn!(error = %e, "background eviction of expired revocations failed; tried again later"),
            }
        });
        r
    }

    fn lock_salt(&self) -> std::sync::RwLockWriteGuard<'_, Salt> {
        self.salt.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the view has loaded its first snapshot.
    pub async fn wait_loaded(&self, timeout: Duration) -> bool {
        self.view.wait_loaded(timeout).await
    }

    /// How long the view is trusted without its feed.
    pub fn staleness_bound(&self) -> Duration {
        self.staleness_bound
    }

    /// State for the health endpoint.
    pub fn status(&self) -> plexgate_cache_client::ViewStatus {
        self.view.status()
    }

    /// The salt, if it has been read from the store the view follows.
    pub fn salt_if_known(&self) -> Option<String> {
        let s = self.salt.read().unwrap_or_else(|p| p.into_inner());
        if s.current { s.value.clone() } else { None }
    }

    /// The shared salt: read from the store (or created by the first gateway) once per store.
    pub async fn salt(&self) -> Result<String, GatewayError> {
        if let Some(s) = self.salt_if_known() {
            return Ok(s);
        }
        let remembered = self.salt.read().unwrap_or_else(|p| p.into_inner()).value.clone();
        let unavailable = |e: ClientError| GatewayError::NotReady(format!("the caching service holding revocations is unreachable ({e})"));
        let salt = match self.client.get(SALT_KEY).await {
            Ok(e) => e.value,
            Err(ClientError::NotFound) => {
                // The store lost it (or never had one): give back the one every running gateway
                // hashes with, so their records keep matching; only a first start makes one.
                let candidate = remembered.clone().unwrap_or_else(|| hex::encode(uuid::Uuid::new_v4().as_bytes()));
                match self.client.create(SALT_KEY, &candidate).await {
                    Ok(()) => {
                        if remembered.is_some() {
                            tracing::warn!(
                                "the revocation salt was missing from the caching service; the one this gateway knew is restored"
                            );
                        }
                        candidate
                    }
                    // Another gateway was first: use its salt.
                    Err(ClientError::Conflict) => self.client.get(SALT_KEY).await.map_err(unavailable)?.value,
                    Err(e) => return Err(unavailable(e)),
                }
            }
            Err(e) => return Err(unavailable(e)),
        };
        if remembered.as_ref().is_some_and(|r| *r != salt) {
            tracing::warn!(
                "the revocation salt in the caching service is not the one this gateway used: revocations recorded with the old one no longer match"
            );
        }
        *self.lock_salt() = Salt { value: Some(salt.clone()), current: true };
        Ok(salt)
    }

    /// The key of a user's or a scope's rule: [`Revocations::hash`] of the lower-cased id.
    pub fn rule_key(salt: &str, id: &str) -> String {
        Self::hash(salt, &id.to_lowercase())
    }

    /// The stored id of a token, user or service: hex SHA-512(salt || value).
    pub fn hash(salt: &str, value: &str) -> String {
        let mut h = Sha512::new();
        h.update(salt.as_bytes());
        h.update(value.as_bytes());
        hex::encode(h.finalize())
    }

    /// `Err(InvalidToken)` when the token (by its hash) or a rule revokes it; `Err(NotReady)`
    /// when revocation state cannot be known.
    pub async fn check(&self, token_hash: &str, verified: &Verified, kind: Kind, salt: &str) -> Result<bool, GatewayError> {
        let fresh = self.view.is_loaded() && self.view.staleness().is_some_and(|age| age <= self.staleness_bound);
        if fresh {
            return Ok(revoked(&self.view, token_hash, verified, kind, salt));
        }
        // The feed is down past the bound: ask the caching service itself.
        let maps = self.client.maps().await.map_err(|e| {
            GatewayError::NotReady(format!(
                "revocation state unknown: the change feed is down and the caching service does not answer ({e})"
            ))
        })?;
        Ok(revoked(&maps, token_hash, verified, kind, salt))
    }

    /// Revokes one token.
    pub async fn revoke_token(&self, token_hash: &str, claims: &Claims) -> Result<(), GatewayError> {
        let value =
            json!({"tokenValue": token_hash, "issuedAt": claims.iat.saturating_mul(1000), "expiresAt": claims.exp.saturating_mul(1000)})
                .to_string();
        self.write(INVALID_TOKENS, token_hash, &value).await?;
        self.cache.remove(token_hash);
        Ok(())
    }

    /// Revokes every token of a user (or every PAT for a service) issued at or before
    /// `at_millis`. The stored rule only rises: an earlier `at_millis` than the stored one
    /// changes nothing (decided atomically by the store).
    pub async fn revoke_rule(&self, rule: Rule, id: &str, at_millis: u64) -> Result<(), GatewayError> {
        let salt = self.salt().await?;
        let (map, key) = (rule.map(), Self::hash(&salt, &id.to_lowercase()));
        self.client
            .map_put_max(map, &key, at_millis)
            .await
            .map_err(|e| GatewayError::NotReady(format!("cannot record the revocation in the caching service ({e})")))?;
        // Honoured here at once, before the feed echoes the stored value back; never lowered.
        let known = self.view.get(map, &key).and_then(|v| v.trim().parse::<u64>().ok()).unwrap_or(0);
        self.view.apply_local(map, &key, &at_millis.max(known).to_string());
        self.cache.clear();
        Ok(())
    }

    /// Drops expired token entries and rules older than 90 days, in the caching service.
    pub async fn evict(&self) -> Result<(), GatewayError> {
        let err = |e: ClientError| GatewayError::NotReady(format!("the caching service holding revocations is unreachable ({e})"));
        self.client.evict_tokens(INVALID_TOKENS).await.map_err(err)?;
        self.client.evict_rules(INVALID_USERS).await.map_err(err)?;
        self.client.evict_rules(INVALID_SCOPES).await.map_err(err)
    }

    async fn write(&self, map: &str, key: &str, value: &str) -> Result<(), GatewayError> {
        self.client
            .map_put(map, key, value)
            .await
            .map_err(|e| GatewayError::NotReady(format!("cannot record the revocation in the caching service ({e})")))?;
        // Honoured here at once, before the feed echoes it back.
        self.view.apply_local(map, key, value);
        Ok(())
    }
}

/// The decision itself, on any state.
fn revoked(state: &impl Lookup, token_hash: &str, verified: &Verified, kind: Kind, salt: &str) -> bool {
    if state.contains(INVALID_TOKENS, token_hash) {
        return true;
    }
    let claims = &verified.claims;
    let issued_ms = claims.iat.saturating_mul(1000);
    let rule_covers =
        |map: &str, key: &str| state.get(map, key).and_then(|v| v.trim().parse::<u64>().ok()).is_some_and(|at| issued_ms <= at);
    // The user's key comes with the token (made under the same salt as `token_hash`).
    if rule_covers(INVALID_USERS, &verified.user_hash) {
        return true;
    }
    kind == Kind::Pat && claims.scopes.iter().flatten().any(|s| rule_covers(INVALID_SCOPES, &Revocations::rule_key(salt, s)))
}
