//! Unit tests of the health state machine: thresholds, the unverified start, passive failures.

use std::time::Duration;

use plexgate_config::{HealthCheckConfig, Role, TargetConfig};

use super::{State, Target};

fn target() -> Target {
    Target::new(TargetConfig { name: "g1".to_owned(), host: "127.0.0.1".to_owned(), port: 1, role: Role::Preferred, weight: 1 })
}

fn thresholds(unhealthy: u32, healthy: u32) -> HealthCheckConfig {
    HealthCheckConfig {
        interval: Duration::from_millis(100),
        timeout: Duration::from_millis(100),
        path: "/".to_owned(),
        unhealthy_threshold: unhealthy,
        healthy_threshold: healthy,
        close_sessions_when_unreachable: true,
    }
}

#[test]
fn an_unverified_target_takes_connections_and_one_check_settles_it() {
    let t = target();
    assert_eq!(t.state(), State::Unverified);
    assert!(t.takes_connections());
    t.record_check(true, "200 UP".to_owned(), &thresholds(3, 3));
    assert_eq!(t.state(), State::Up);
    let t = target();
    t.record_check(false, "connect: refused".to_owned(), &thresholds(3, 3));
    assert_eq!(t.state(), State::Down, "nothing shows it ever worked");
    assert!(!t.takes_connections());
}

#[test]
fn thresholds_count_consecutive_results() {
    let t = target();
    let th = thresholds(2, 3);
    t.record_check(true, "200 UP".to_owned(), &th);
    t.record_check(false, "503 DRAINING".to_owned(), &th);
    t.record_check(true, "200 UP".to_owned(), &th);
    t.record_check(false, "503 DRAINING".to_owned(), &th);
    assert_eq!(t.state(), State::Up, "failures not in a row");
    t.record_check(false, "503 DRAINING".to_owned(), &th);
    assert_eq!(t.state(), State::Down);
    t.record_check(true, "200 UP".to_owned(), &th);
    t.record_check(true, "200 UP".to_owned(), &th);
    t.record_check(false, "503 DOWN".to_owned(), &th);
    t.record_check(true, "200 UP".to_owned(), &th);
    t.record_check(true, "200 UP".to_owned(), &th);
    assert_eq!(t.state(), State::Down, "successes not in a row");
    t.record_check(true, "200 UP".to_owned(), &th);
    assert_eq!(t.state(), State::Up);
    let status = t.status();
    assert_eq!(status.last_check.map(|c| (c.ok, c.detail)), Some((true, "200 UP".to_owned())));
}

#[test]
fn a_failed_connect_makes_a_target_suspect_until_the_next_check() {
    let th = thresholds(3, 3);
    let t = target();
    t.record_check(true, "200 UP".to_owned(), &th);
    t.connect_failed("connection refused");
    assert_eq!(t.state(), State::Suspect);
    assert!(!t.takes_connections());
    t.record_check(true, "200 UP".to_owned(), &th);
    assert_eq!(t.state(), State::Up, "one good check clears a suspicion");
    t.connect_failed("connection refused");
    t.record_check(false, "connect: refused".to_owned(), &th);
    assert_eq!(t.state(), State::Down, "one failed check confirms it");
    t.connect_failed("connection refused");
    assert_eq!(t.state(), State::Down, "a down target stays down");
}

#[test]
fn counters_follow_reservations_and_connects() {
    let t = std::sync::Arc::new(target());
    let mut g = t.try_acquire(0).expect("slot");
    assert_eq!((t.active(), t.status().total), (1, 0));
    g.connected();
    t.add_bytes_in(10);
    t.add_bytes_out(20);
    drop(g);
    let s = t.status();
    assert_eq!((s.active, s.total, s.bytes_in, s.bytes_out), (0, 1, 10, 20));
}

/// Whether `f` completes on its first poll.
fn ready_now(f: impl std::future::Future<Output = ()>) -> bool {
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    let mut f = std::pin::pin!(f);
    f.as_mut().poll(&mut cx).is_ready()
}

#[test]
fn a_close_issued_while_a_connection_is_still_connecting_is_not_missed() {
    let t = std::sync::Arc::new(target());
    // Reserved (connecting, or writing its PROXY header), not yet waiting for a close.
    let mut connecting = t.try_acquire(0).expect("slot");
    assert!(!ready_now(connecting.closing()), "nothing ordered yet");
    t.close_sessions();
    assert!(ready_now(connecting.closing()), "the close ordered before it waited is seen");
    // A connection reserved after the close is not closed by it.
    let mut later = t.try_acquire(0).expect("slot");
    assert!(!ready_now(later.closing()));
    drop(connecting);
    t.close_sessions();
    assert!(ready_now(later.closing()));
}
