//! Failed-login limits per user and per client address, over a sliding window.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use plexgate_config::RateLimitConfig;

/// Counts failures; refuses attempts past the limits until the window moves on.
pub struct LoginLimiter {
    config: RateLimitConfig,
    users: Mutex<HashMap<String, VecDeque<Instant>>>,
    addresses: Mutex<HashMap<IpAddr, VecDeque<Instant>>>,
}

fn prune(q: &mut VecDeque<Instant>, window: Duration, now: Instant) {
    while q.front().is_some_and(|t| now.duration_since(*t) >= window) {
        q.pop_front();
    }
}

impl LoginLimiter {
    /// A limiter with these limits.
    pub fn new(config: RateLimitConfig) -> LoginLimiter {
        LoginLimiter { config, users: Mutex::new(HashMap::new()), addresses: Mutex::new(HashMap::new()) }
    }

    /// `Err(seconds to wait)` when `user` or `address` has used up its failures.
    pub fn check(&self, user: &str, address: IpAddr) -> Result<(), u64> {
        let now = Instant::now();
        let window = self.config.window;
        let wait = |q: &VecDeque<Instant>| q.front().map(|t| window.saturating_sub(now.duration_since(*t)).as_secs().max(1)).unwrap_or(1);
        {
            let mut users = self.users.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(q) = users.get_mut(&user.to_lowercase()) {
                prune(q, window, now);
                if q.len() >= self.config.max_failures_per_user as usize {
                    return Err(wait(q));
                }
            }
        }
        let mut addresses = self.addresses.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(q) = addresses.get_mut(&address) {
            prune(q, window, now);
            if q.len() >= self.config.max_failures_per_address as usize {
                return Err(wait(q));
            }
        }
        Ok(())
    }

    /// Records a failed login.
    pub fn failed(&self, user: &str, address: IpAddr) {
        let now = Instant::now();
        let window = self.config.window;
        let mut users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        // Bound memory under a spray of user names: forget users whose failures have aged out.
        if users.len() > 100_000 {
            users.retain(|_, q| q.back().is_some_and(|t| now.duration_since(*t) < window));
        }
        users.entry(user.to_lowercase()).or_default().push_back(now);
        drop(users);
        let mut addresses = self.addresses.lock().unwrap_or_else(|p| p.into_inner());
        if addresses.len() > 100_000 {
            addresses.retain(|_, q| q.back().is_some_and(|t| now.duration_since(*t) < window));
        }
        addresses.entry(address).or_default().push_back(now);
    }

    /// A successful login clears the user's failures (not the address's).
    pub fn succeeded(&self, user: &str) {
        self.users.lock().unwrap_or_else(|p| p.into_inner()).remove(&user.to_lowercase());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_per_user_and_per_address() {
        let l =
            LoginLimiter::new(RateLimitConfig { max_failures_per_user: 2, max_failures_per_address: 3, window: Duration::from_secs(60) });
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        l.failed("Alice", a);
        assert!(l.check("alice", a).is_ok());
        l.failed("alice", b);
        assert!(l.check("ALICE", b).is_err(), "user limit applies from any address");
        assert!(l.check("bob", b).is_ok());
        l.failed("bob", a);
        l.failed("carol", a);
        assert!(l.check("dave", a).is_err(), "address limit applies to any user");
        l.succeeded("alice");
        assert!(l.check("alice", b).is_ok());
    }
}
