//! Verified-token cache: an RS256 verification costs tens of microseconds, a hash lookup
//! well under one. Keyed by the token's revocation hash (salted SHA-512, computed once per
//! request anyway; the token itself is never kept), bounded in size, each entry expiring at
//! the token's `exp`, and dropped when a revocation event names the token (or, for user and
//! scope rules, all of them).

use std::collections::HashMap;
use std::sync::Mutex;

use super::{Claims, Kind, now_secs};

/// The cache key: the token's revocation hash.
pub type TokenHash = String;

/// The cache.
pub struct VerifiedCache {
    entries: Mutex<HashMap<(TokenHash, bool), Claims>>,
    capacity: usize,
}

impl VerifiedCache {
    /// A cache of at most `capacity` entries (0 disables it).
    pub fn new(capacity: usize) -> VerifiedCache {
        VerifiedCache { entries: Mutex::new(HashMap::new()), capacity }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(TokenHash, bool), Claims>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The claims of a token verified before as `kind`, if still unexpired.
    pub fn get(&self, hash: &TokenHash, kind: Kind) -> Option<Claims> {
        let key = (hash.clone(), kind == Kind::Pat);
        let mut entries = self.lock();
        match entries.get(&key) {
            Some(c) if c.exp > now_secs() => Some(c.clone()),
            Some(_) => {
                entries.remove(&key);
                None
            }
            None => None,
        }
    }

    /// Remembers a verified token.
    pub fn insert(&self, hash: TokenHash, kind: Kind, claims: Claims) {
        if self.capacity == 0 {
            return;
        }
        let mut entries = self.lock();
        if entries.len() >= self.capacity {
            let now = now_secs();
            entries.retain(|_, c| c.exp > now);
            if entries.len() >= self.capacity {
                // Still full of live tokens: start over rather than track recency on the hot path.
                entries.clear();
            }
        }
        entries.insert((hash, kind == Kind::Pat), claims);
    }

    /// Forgets one token.
    pub fn remove(&self, hash: &TokenHash) {
        let mut entries = self.lock();
        entries.remove(&(hash.clone(), false));
        entries.remove(&(hash.clone(), true));
    }

    /// Forgets every token (a user or scope rule changed).
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
