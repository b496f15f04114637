//! Failed-login limits over a sliding window, first per (user, client address), then with
//! higher ceilings per user and per address.
//!
//! A limit per user alone is a lockout switch: anyone who knows a name can keep its owner
//! out. So the tight limit counts one user's failures from one address (a password guesser
//! is stopped there), and the per-user and per-address ceilings are high enough that
//! reaching them takes many addresses (a distributed attack on one user) or many names (a
//! spray from one address), not a few wrong passwords. Behind the distributor the address is
//! the client's only with PROXY protocol on (see `proxy_protocol`).

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use plexgate_config::RateLimitConfig;

/// Keys tracked per table before the ones whose failures aged out are dropped.
const MAX_TRACKED: usize = 100_000;

/// Failure times per key, within the window.
struct Table<K>(Mutex<HashMap<K, VecDeque<Instant>>>);

impl<K: Hash + Eq> Table<K> {
    fn new() -> Table<K> {
        Table(Mutex::new(HashMap::new()))
    }

    /// `Err(seconds until the oldest failure leaves the window)` when `key` has `limit` failures.
    fn check(&self, key: &K, limit: u32, window: Duration, now: Instant) -> Result<(), u64> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let Some(q) = map.get_mut(key) else { return Ok(()) };
        while q.front().is_some_and(|t| now.duration_since(*t) >= window) {
            q.pop_front();
        }
        if q.len() < limit as usize {
            return Ok(());
        }
        Err(q.front().map(|t| window.saturating_sub(now.duration_since(*t)).as_secs().max(1)).unwrap_or(1))
    }

    fn record(&self, key: K, window: Duration, now: Instant) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        // Bound memory under a spray of names or addresses: forget keys that aged out.
        if map.len() > MAX_TRACKED {
            map.retain(|_, q| q.back().is_some_and(|t| now.duration_since(*t) < window));
        }
        map.entry(key).or_default().push_back(now);
    }

    fn clear(&self, key: &K) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
    }
}

/// Counts failures; refuses attempts past a limit until the window moves on.
pub struct LoginLimiter {
    config: RateLimitConfig,
    pairs: Table<(String, IpAddr)>,
    users: Table<String>,
    addresses: Table<IpAddr>,
}

impl LoginLimiter {
    /// A limiter with these limits.
    pub fn new(config: RateLimitConfig) -> LoginLimiter {
        LoginLimiter { config, pairs: Table::new(), users: Table::new(), addresses: Table::new() }
    }

    /// `Err(seconds to wait)` when `user` from `address`, `user` from anywhere, or anyone
    /// from `address` has used up its failures.
    pub fn check(&self, user: &str, address: IpAddr) -> Result<(), u64> {
        let (now, window, c) = (Instant::now(), self.config.window, &self.config);
        let user = user.to_lowercase();
        self.pairs.check(&(user.clone(), address), c.max_failures_per_user_and_address, window, now)?;
        self.users.check(&user, c.max_failures_per_user, window, now)?;
        self.addresses.check(&address, c.max_failures_per_address, window, now)
    }

    /// Records a failed login.
    pub fn failed(&self, user: &str, address: IpAddr) {
        let (now, window) = (Instant::now(), self.config.window);
        let user = user.to_lowercase();
        self.pairs.record((user.clone(), address), window, now);
        self.users.record(user, window, now);
        self.addresses.record(address, window, now);
    }

    /// A successful login clears the failures of the user from that address (the user's own
    /// and the address's ceilings keep counting: they may be someone else's failures).
    pub fn succeeded(&self, user: &str, address: IpAddr) {
        self.pairs.clear(&(user.to_lowercase(), address));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(pair: u32, user: u32, address: u32) -> LoginLimiter {
        LoginLimiter::new(RateLimitConfig {
            max_failures_per_user_and_address: pair,
            max_failures_per_user: user,
            max_failures_per_address: address,
            window: Duration::from_secs(60),
        })
    }

    #[test]
    fn one_address_cannot_lock_a_user_out_of_another() {
        let l = limiter(2, 10, 10);
        let (a, b): (IpAddr, IpAddr) = ("127.0.0.1".parse().unwrap(), "127.0.0.2".parse().unwrap());
        l.failed("Alice", a);
        assert!(l.check("alice", a).is_ok());
        l.failed("alice", a);
        assert!(l.check("ALICE", a).is_err(), "user and address limit");
        assert!(l.check("alice", b).is_ok(), "another address is not locked out");
        l.succeeded("alice", a);
        assert!(l.check("alice", a).is_ok());
    }

    #[test]
    fn ceilings_per_user_and_per_address() {
        let l = limiter(5, 3, 4);
        for i in 0..3 {
            l.failed("bob", format!("10.0.0.{i}").parse().unwrap());
        }
        assert!(l.check("bob", "10.0.0.9".parse().unwrap()).is_err(), "user ceiling from any address");
        let c: IpAddr = "10.1.1.1".parse().unwrap();
        for i in 0..4 {
            l.failed(&format!("user{i}"), c);
        }
        assert!(l.check("dave", c).is_err(), "address ceiling for any user");
        assert!(l.check("dave", "10.1.1.2".parse().unwrap()).is_ok());
    }
}
