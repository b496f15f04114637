//! Background chores that run every so often for as long as their owner lives.

use std::future::Future;
use std::sync::{Arc, Weak};
use std::time::Duration;

/// Runs `chore(owner)` every `interval` (first after one interval) until `owner` is dropped;
/// a late tick is delayed, not bunched.
pub fn every<T, F, Fut>(interval: Duration, owner: Weak<T>, chore: F)
where
    T: Send + Sync + 'static,
    F: Fn(Arc<T>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let Some(owner) = owner.upgrade() else { return };
            chore(owner).await;
        }
    });
}
