//! The heart of the distributor: [`Selector::select`] turns the targets' states into an
//! ordered list of candidates for one new client connection. The first is the method's choice;
//! the others are fallbacks tried in order on the same client connection when a connect fails,
//! so failover needs no special case. Targets that take no new connections (down, suspect)
//! come last: they are tried only when every healthy one refused, because a connect attempt
//! costs little and a health check can be wrong.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use plexgate_config::{Method, Role};

use crate::target::Target;

/// Chooses targets per the configured method; keeps what the methods remember between
/// connections (the current hot-standby target, the round-robin position, smooth weights).
pub struct Selector {
    method: Method,
    auto_switch_back: bool,
    /// Target indices by hot-standby rank: the preferred one, then backups by rank.
    ranked: Vec<usize>,
    /// hotStandby: the target the last connection went to.
    current: Mutex<Option<usize>>,
    /// roundRobin position; leastConnections tie-break.
    next: AtomicUsize,
    /// weighted: the smooth weighted round-robin's current weights (nginx's algorithm).
    current_weights: Mutex<Vec<i64>>,
}

impl Selector {
    /// A selector over `targets` (in configuration order).
    pub fn new(method: Method, auto_switch_back: bool, targets: &[Arc<Target>]) -> Selector {
        let mut ranked: Vec<usize> = (0..targets.len()).collect();
        ranked.sort_by_key(|&i| match targets[i].config.role {
            Role::Preferred => 0,
            Role::Backup { rank } => u64::from(rank) + 1,
        });
        Selector {
            method,
            auto_switch_back,
            ranked,
            current: Mutex::new(None),
            next: AtomicUsize::new(0),
            current_weights: Mutex::new(vec![0; targets.len()]),
        }
    }

    /// The method.
    pub fn method(&self) -> Method {
        self.method
    }

    /// Candidates for one new connection, best first; every target appears once.
    pub fn select(&self, targets: &[Arc<Target>]) -> Vec<usize> {
        let healthy: Vec<usize> = self.ranked.iter().copied().filter(|&i| targets[i].takes_connections()).collect();
        let mut order = match self.method {
            Method::HotStandby => self.hot_standby(healthy),
            Method::RoundRobin => self.round_robin(healthy),
            Method::Weighted => self.weighted(healthy, targets),
            Method::LeastConnections => self.least_connections(healthy, targets),
        };
        order.extend(self.ranked.iter().copied().filter(|&i| !targets[i].takes_connections()));
        order
    }

    /// A connection was established to target `index`: hotStandby remembers it as current.
    pub fn connected(&self, index: usize) {
        if self.method == Method::HotStandby {
            *lock(&self.current) = Some(index);
        }
    }

    /// hotStandby: the target new connections go to now.
    pub fn current(&self, targets: &[Arc<Target>]) -> Option<usize> {
        if self.method != Method::HotStandby {
            return None;
        }
        let healthy: Vec<usize> = self.ranked.iter().copied().filter(|&i| targets[i].takes_connections()).collect();
        self.hot_standby(healthy).first().copied()
    }

    /// Preferred while healthy, else the best-ranked healthy backup. Without autoSwitchBack
    /// the current target keeps new connections while it is healthy, even when a better one
    /// has recovered.
    fn hot_standby(&self, mut healthy: Vec<usize>) -> Vec<usize> {
        if !self.auto_switch_back
            && let Some(current) = *lock(&self.current)
            && let Some(pos) = healthy.iter().position(|&i| i == current)
        {
            let c = healthy.remove(pos);
            healthy.insert(0, c);
        }
        healthy
    }

    fn round_robin(&self, mut healthy: Vec<usize>) -> Vec<usize> {
        if !healthy.is_empty() {
            healthy.sort_unstable();
            let start = self.next.fetch_add(1, Ordering::Relaxed) % healthy.len();
            healthy.rotate_left(start);
        }
        healthy
    }

    /// Smooth weighted round-robin: every pick adds each healthy target's weight to its
    /// current weight, takes the largest and subtracts the total from it. Shares are exact
    /// over every sum-of-weights picks and interleaved (5:1:1 gives a a b a c a a, not a a a a a b c).
    fn weighted(&self, mut healthy: Vec<usize>, targets: &[Arc<Target>]) -> Vec<usize> {
        let weight = |i: usize| i64::from(targets[i].config.weight);
        let mut cw = lock(&self.current_weights);
        let mut total = 0;
        let mut best: Option<usize> = None;
        for (i, w) in cw.iter_mut().enumerate() {
            if !healthy.contains(&i) || weight(i) == 0 {
                // Out of the rotation; start afresh when it comes back.
                *w = 0;
            }
        }
        for &i in &healthy {
            if weight(i) == 0 {
                continue;
            }
            cw[i] += weight(i);
            total += weight(i);
            if best.is_none_or(|b| cw[i] > cw[b]) {
                best = Some(i);
            }
        }
        if let Some(b) = best {
            cw[b] -= total;
        }
        drop(cw);
        healthy.sort_by_key(|&i| (Some(i) != best, std::cmp::Reverse(weight(i))));
        healthy
    }

    /// Fewest open connections first; ties are taken in turn so equal targets share.
    fn least_connections(&self, mut healthy: Vec<usize>, targets: &[Arc<Target>]) -> Vec<usize> {
        let n = targets.len().max(1);
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        healthy.sort_by_key(|&i| (targets[i].active(), (i + n - start) % n));
        healthy
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
#[path = "select_tests.rs"]
mod tests;
