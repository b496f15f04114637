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

/// Verified tokens of one kind, by hash.
type Entries = HashMap<TokenHash, Claims>;

/// The cache.
pub struct VerifiedCache {
    /// Login tokens, then PATs: a lookup by `&str` needs no key to be built.
    entries: Mutex<[Entries; 2]>,
    capacity: usize,
}

fn slot(kind: Kind) -> usize {
    usize::from(kind == Kind::Pat)
}

impl VerifiedCache {
    /// A cache of at most `capacity` entries (0 disables it).
    pub fn new(capacity: usize) -> VerifiedCache {
        VerifiedCache { entries: Mutex::new([HashMap::new(), HashMap::new()]), capacity }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, [Entries; 2]> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The claims of a token verified before as `kind`, if still unexpired.
    pub fn get(&self, hash: &str, kind: Kind) -> Option<Claims> {
        let mut all = self.lock();
        let entries = &mut all[slot(kind)];
        match entries.get(hash) {
            Some(c) if c.exp > now_secs() => Some(c.clone()),
            Some(_) => {
                entries.remove(hash);
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
        let mut all = self.lock();
        if all[0].len() + all[1].len() >= self.capacity {
            let now = now_secs();
            all.iter_mut().for_each(|e| e.retain(|_, c| c.exp > now));
            if all[0].len() + all[1].len() >= self.capacity {
                // Still full of live tokens: start over rather than track recency on the hot path.
                all.iter_mut().for_each(HashMap::clear);
            }
        }
        all[slot(kind)].insert(hash, claims);
    }

    /// Forgets one token.
    pub fn remove(&self, hash: &str) {
        let mut all = self.lock();
        all.iter_mut().for_each(|e| {
            e.remove(hash);
        });
    }

    /// Forgets every token (a user or scope rule changed).
    pub fn clear(&self) {
        self.lock().iter_mut().for_each(HashMap::clear);
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        let all = self.lock();
        all[0].len() + all[1].len()
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
