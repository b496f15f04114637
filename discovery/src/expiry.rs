//! Lease expiry, decided once and recorded in the store.
//!
//! Every discovery instance sweeps four times a second. A lease is timed on this instance's
//! monotonic clock from the moment it last saw the registration's value change (a renewal
//! anywhere rewrites the value, and every instance sees that through the feed), so no two
//! hosts' wall clocks are compared. A registration unchanged for longer than its lease's
//! `durationInSecs` is removed with a compare-and-delete on the value this instance saw: if a
//! renewal reached the store meanwhile through another instance, the store keeps it. The
//! removal is a change in the feed like any other, so the gateways drop the instance when the
//! store records it, not each by its own clock. Several sweepers deciding the same expiry are
//! harmless: the first removes it, the others find it gone.
//!
//! A discovery instance that starts (or restarts) gives every registration it finds a full
//! lease, since it cannot know when the others last saw a renewal.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::registry::{MAP, Record};
use crate::store::Registrations;

/// How often the sweeper looks. A lease is timed from the sweep that first saw its value, so
/// an instance is removed up to two intervals after its lease ran out: at 1 s a 3 s lease
/// took 5 s; at 250 ms the bound is lease + 0.5 s (plus the store's write), and a sweep of
/// the local view costs next to nothing.
pub const SWEEP_INTERVAL: Duration = Duration::from_millis(250);

/// When this instance last saw each registration's value change.
#[derive(Default)]
pub struct Leases {
    seen: HashMap<String, (String, Instant)>,
}

impl Leases {
    /// Takes in the registrations as of `now`; returns those whose lease ran out, with the
    /// value the decision was taken on.
    pub fn expired(&mut self, current: HashMap<String, String>, now: Instant) -> Vec<(String, String)> {
        self.seen.retain(|k, _| current.contains_key(k));
        let mut out = Vec::new();
        for (k, v) in current {
            let since = match self.seen.get(&k) {
                Some((seen, at)) if *seen == v => *at,
                _ => {
                    self.seen.insert(k.clone(), (v.clone(), now));
                    now
                }
            };
            // A value that does not read has no lease to time; it stays for an operator to see.
            let Ok(record) = Record::from_stored(&v) else { continue };
            if now.duration_since(since) > Duration::from_secs(u64::from(record.instance.lease.duration_secs)) {
                out.push((k, v));
            }
        }
        out
    }
}

/// Sweeps forever.
pub async fn sweep(registrations: Arc<Registrations>) {
    let mut leases = Leases::default();
    let mut tick = tokio::time::interval(SWEEP_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if !registrations.view().is_loaded() {
            continue;
        }
        for (k, v) in leases.expired(registrations.view().entries(MAP), Instant::now()) {
            match registrations.expire(&k, &v).await {
                Ok(true) => tracing::info!(instance = %k, "lease expired without a renewal: instance removed"),
                Ok(false) => tracing::debug!(instance = %k, "lease expiry not needed: renewed or removed meanwhile"),
                Err(e) => tracing::warn!(instance = %k, error = %e, "lease expiry could not be recorded; trying again"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::instance::Instance;
    use serde_json::json;

    fn stored(renewed: u64) -> String {
        let body = json!({"instance": {"instanceId": "h:a:1", "app": "A", "hostName": "h", "securePort": {"$": 1, "@enabled": "true"},
            "leaseInfo": {"renewalIntervalInSecs": 1, "durationInSecs": 3}}});
        let mut r = Record::registered(Instance::from_registration("a", &body).unwrap(), None, 0);
        r.times.renewed_ms = renewed;
        r.to_stored()
    }

    #[test]
    fn a_lease_runs_from_the_last_change_seen_and_a_renewal_restarts_it() {
        let mut leases = Leases::default();
        let t0 = Instant::now();
        let map = |v: &str| HashMap::from([("A/h:a:1".to_owned(), v.to_owned())]);
        assert!(leases.expired(map(&stored(1)), t0).is_empty());
        assert!(leases.expired(map(&stored(1)), t0 + Duration::from_secs(3)).is_empty(), "not past the 3 s yet");
        // A renewal (a new value) 2.5 s in: the lease starts again from then.
        assert!(leases.expired(map(&stored(2)), t0 + Duration::from_millis(2500)).is_empty());
        assert!(leases.expired(map(&stored(2)), t0 + Duration::from_millis(5400)).is_empty());
        let out = leases.expired(map(&stored(2)), t0 + Duration::from_millis(5600));
        assert_eq!(out, vec![("A/h:a:1".to_owned(), stored(2))], "expired on the value last seen");
        // Gone from the map: forgotten.
        assert!(leases.expired(HashMap::new(), t0 + Duration::from_secs(9)).is_empty());
        assert!(leases.seen.is_empty());
    }
}
