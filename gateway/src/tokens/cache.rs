//! Verified-token cache: an RS256 verification costs tens of microseconds, a hash lookup
//! well under one. Keyed by the token's revocation hash (salted SHA-512, computed once per
//! request anyway; the token itself is never kept), bounded in size, each entry expiring at
//! the token's `exp`, and dropped when a revocation event names the token (or, for user and
//! scope rules, all of them).
//!
//! Each entry also keeps the hash of its user's id under the same salt (what the user rules
//! are keyed by), so a cached request computes one SHA-512, not two. The key is made with the
//! same salt, so an entry found is never one whose user hash belongs to another salt. The map
//! is split in [`SHARDS`] locks by the key's first hex digit, so the workers do not queue on
//! one Mutex.

use std::collections::HashMap;
use std::sync::Mutex;

use super::{Claims, Kind, now_secs};

/// The cache key: the token's revocation hash.
pub type TokenHash = String;

/// Independent locks; the keys are hex digests, so their first digit spreads them evenly.
const SHARDS: usize = 16;

/// One verified token.
#[derive(Clone)]
pub struct Verified {
    /// Its claims.
    pub claims: Claims,
    /// The salted hash of `claims.sub` (lower case): the key of its user rule.
    pub user_hash: String,
}

/// Verified tokens of one kind, by hash.
type Entries = HashMap<TokenHash, Verified>;

/// The cache.
pub struct VerifiedCache {
    /// Per shard: login tokens, then PATs (a lookup by `&str` needs no key to be built).
    shards: Box<[Mutex<[Entries; 2]>]>,
    /// Entries per shard at most.
    per_shard: usize,
    capacity: usize,
}

fn slot(kind: Kind) -> usize {
    usize::from(kind == Kind::Pat)
}

impl VerifiedCache {
    /// A cache of at most `capacity` entries (0 disables it).
    pub fn new(capacity: usize) -> VerifiedCache {
        VerifiedCache {
            shards: (0..SHARDS).map(|_| Mutex::new([HashMap::new(), HashMap::new()])).collect(),
            // Never more than `capacity` in all (a tiny cache gets one entry per shard).
            per_shard: (capacity / SHARDS).max(1),
            capacity,
        }
    }

    fn lock(&self, hash: &str) -> std::sync::MutexGuard<'_, [Entries; 2]> {
        let shard = hash.as_bytes().first().map_or(0, |b| usize::from(*b) % SHARDS);
        self.shards[shard].lock().unwrap_or_else(|p| p.into_inner())
    }

    fn each(&self) -> impl Iterator<Item = std::sync::MutexGuard<'_, [Entries; 2]>> {
        self.shards.iter().map(|s| s.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// The claims of a token verified before as `kind`, if still unexpired.
    pub fn get(&self, hash: &str, kind: Kind) -> Option<Verified> {
        let mut all = self.lock(hash);
        let entries = &mut all[slot(kind)];
        match entries.get(hash) {
            Some(v) if v.claims.exp > now_secs() => Some(v.clone()),
            Some(_) => {
                entries.remove(hash);
                None
            }
            None => None,
        }
    }

    /// Remembers a verified token.
    pub fn insert(&self, hash: TokenHash, kind: Kind, verified: Verified) {
        if self.capacity == 0 {
            return;
        }
        let mut all = self.lock(&hash);
        if all[0].len() + all[1].len() >= self.per_shard {
            let now = now_secs();
            all.iter_mut().for_each(|e| e.retain(|_, v| v.claims.exp > now));
            if all[0].len() + all[1].len() >= self.per_shard {
                // Still full of live tokens: start over rather than track recency on the hot path.
                all.iter_mut().for_each(HashMap::clear);
            }
        }
        all[slot(kind)].insert(hash, verified);
    }

    /// Forgets one token.
    pub fn remove(&self, hash: &str) {
        self.lock(hash).iter_mut().for_each(|e| {
            e.remove(hash);
        });
    }

    /// Forgets every token (a user or scope rule changed).
    pub fn clear(&self) {
        self.each().for_each(|mut s| s.iter_mut().for_each(HashMap::clear));
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.each().map(|s| s[0].len() + s[1].len()).sum()
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
