//! Unit tests of the selection methods, on targets whose state the tests set directly.

use std::sync::Arc;
use std::time::Duration;

use plexgate_config::{HealthCheckConfig, Method, Role, TargetConfig};

use super::Selector;
use crate::target::Target;

fn targets(spec: &[(&str, Role, u32)]) -> Vec<Arc<Target>> {
    spec.iter()
        .map(|(name, role, weight)| {
            Arc::new(Target::new(TargetConfig {
                name: (*name).to_owned(),
                host: "127.0.0.1".to_owned(),
                port: 1,
                role: *role,
                weight: *weight,
            }))
        })
        .collect()
}

fn thresholds() -> HealthCheckConfig {
    HealthCheckConfig {
        interval: Duration::from_millis(100),
        timeout: Duration::from_millis(100),
        path: "/".to_owned(),
        unhealthy_threshold: 2,
        healthy_threshold: 2,
        close_sessions_when_unreachable: true,
    }
}

fn standby() -> Vec<Arc<Target>> {
    // Listed out of rank order on purpose: rank decides, not list position.
    targets(&[("b2", Role::Backup { rank: 2 }, 1), ("p", Role::Preferred, 1), ("b1", Role::Backup { rank: 1 }, 1)])
}

fn names(t: &[Arc<Target>], order: &[usize]) -> Vec<String> {
    order.iter().map(|&i| t[i].name().to_owned()).collect()
}

#[test]
fn hot_standby_prefers_the_preferred_then_backups_by_rank() {
    let t = standby();
    let s = Selector::new(Method::HotStandby, true, &t);
    assert_eq!(names(&t, &s.select(&t)), ["p", "b1", "b2"]);
    t[1].connect_failed("refused");
    assert_eq!(names(&t, &s.select(&t)), ["b1", "b2", "p"], "a suspect target is tried last");
    t[2].record_check(false, "503 DRAINING".to_owned(), &thresholds());
    assert_eq!(names(&t, &s.select(&t)), ["b2", "p", "b1"]);
}

#[test]
fn auto_switch_back_returns_to_the_preferred_once_it_is_healthy() {
    let t = standby();
    let s = Selector::new(Method::HotStandby, true, &t);
    t[1].connect_failed("refused");
    s.connected(2);
    t[1].record_check(true, "200".to_owned(), &thresholds());
    assert_eq!(names(&t, &s.select(&t))[0], "p");
}

#[test]
fn without_auto_switch_back_the_backup_keeps_new_connections_until_it_fails() {
    let t = standby();
    let s = Selector::new(Method::HotStandby, false, &t);
    s.connected(1);
    t[1].connect_failed("refused");
    let order = s.select(&t);
    assert_eq!(names(&t, &order)[0], "b1");
    s.connected(order[0]);
    t[1].record_check(true, "200".to_owned(), &thresholds());
    assert_eq!(names(&t, &s.select(&t)), ["b1", "p", "b2"], "stays on the backup, preferred next");
    assert_eq!(s.current(&t), Some(2));
    t[2].connect_failed("refused");
    assert_eq!(names(&t, &s.select(&t))[0], "p", "the backup failed: back to the best healthy one");
}

#[test]
fn round_robin_takes_healthy_targets_in_turn() {
    let t = targets(&[("a", Role::Preferred, 1), ("b", Role::Backup { rank: 1 }, 1), ("c", Role::Backup { rank: 2 }, 1)]);
    let s = Selector::new(Method::RoundRobin, true, &t);
    let firsts: Vec<String> = (0..6).map(|_| names(&t, &s.select(&t))[0].clone()).collect();
    assert_eq!(firsts, ["a", "b", "c", "a", "b", "c"]);
    t[1].connect_failed("refused");
    let firsts: Vec<String> = (0..4).map(|_| names(&t, &s.select(&t))[0].clone()).collect();
    assert!(!firsts.contains(&"b".to_owned()) && firsts.contains(&"a".to_owned()) && firsts.contains(&"c".to_owned()), "{firsts:?}");
    assert_eq!(s.select(&t).len(), 3, "every target once, the suspect one last");
}

#[test]
fn weighted_is_smooth_and_exact_over_a_cycle() {
    let t = targets(&[("a", Role::Preferred, 5), ("b", Role::Backup { rank: 1 }, 1), ("c", Role::Backup { rank: 2 }, 1)]);
    let s = Selector::new(Method::Weighted, true, &t);
    let firsts: Vec<String> = (0..7).map(|_| names(&t, &s.select(&t))[0].clone()).collect();
    assert_eq!(firsts, ["a", "a", "b", "a", "c", "a", "a"]);
    let order = s.select(&t);
    assert_eq!(order.len(), 3);
}

#[test]
fn weighted_skips_zero_weights_and_down_targets() {
    let t = targets(&[("a", Role::Preferred, 3), ("b", Role::Backup { rank: 1 }, 1), ("z", Role::Backup { rank: 2 }, 0)]);
    let s = Selector::new(Method::Weighted, true, &t);
    let mut counts = [0; 3];
    for _ in 0..400 {
        counts[s.select(&t)[0]] += 1;
    }
    assert_eq!(counts, [300, 100, 0]);
    t[0].connect_failed("refused");
    assert_eq!(names(&t, &s.select(&t)), ["b", "z", "a"]);
}

#[test]
fn least_connections_picks_the_target_with_fewest_open_connections() {
    let t = targets(&[("a", Role::Preferred, 1), ("b", Role::Backup { rank: 1 }, 1)]);
    let s = Selector::new(Method::LeastConnections, true, &t);
    let mut held = Vec::new();
    for _ in 0..4 {
        let first = s.select(&t)[0];
        held.push(t[first].try_acquire(0).expect("no limit"));
    }
    assert_eq!((t[0].active(), t[1].active()), (2, 2), "ties are shared");
    held.retain(|g| g.target().name() != "b");
    assert_eq!(names(&t, &s.select(&t))[0], "b");
    assert_eq!(names(&t, &s.select(&t))[0], "b", "still fewer on b");
}

#[test]
fn a_target_at_its_connection_limit_refuses_a_reservation() {
    let t = targets(&[("a", Role::Preferred, 1)]);
    let first = t[0].try_acquire(1);
    assert!(first.is_some());
    assert!(t[0].try_acquire(1).is_none());
    drop(first);
    assert!(t[0].try_acquire(1).is_some());
}
