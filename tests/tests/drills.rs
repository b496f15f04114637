//! HA drills (issue 7): the whole topology as real processes, load through the distributor
//! at a fixed rate (open model), one fault at a known time, the figures reported
//! (`$PLEXGATE_DRILL_REPORT`, see `plexgate_tests::drills::report`) and the bound asserted.

use std::time::{Duration, Instant};

use plexgate_tests::assert_eventually;
use plexgate_tests::drills::load::Connections;
use plexgate_tests::drills::report::{Report, ms};
use plexgate_tests::drills::serial;
use plexgate_tests::drills::topology::{Topology, TopologySetup};

/// Lets the load run for `d` (the load generator is what the drill measures meanwhile; this
/// stands for "steady state before/after the fault", not for a condition).
fn steady(d: Duration) {
    let until = Instant::now() + d;
    while Instant::now() < until {
        std::thread::park_timeout(until - Instant::now());
    }
}

#[test]
fn drill_1_rolling_restart_of_every_gateway_loses_no_request() {
    let _serial = serial();
    let mut t = Topology::start(TopologySetup { gateways: 3, method: "roundRobin".to_owned(), ..TopologySetup::default() });
    let token = t.login("alice");
    let fresh = t.load("fresh", 100, Connections::Fresh, &token);
    let pooled = t.load("keep-alive", 50, Connections::KeepAlive, &token);
    let h2 = t.load("h2", 25, Connections::Http2, &token);
    steady(Duration::from_secs(2));
    let fault = fresh.mark("fault");
    let (_, _) = (pooled.mark("fault"), h2.mark("fault"));
    let mut drains = Vec::new();
    for i in 0..3 {
        let name = Topology::name(i);
        let term = Instant::now();
        t.signal_gateway(i, "TERM");
        t.wait_state(&name, "down", Duration::from_secs(2));
        let down = term.elapsed();
        let code = t.wait_gateway_exit(i, Duration::from_secs(20));
        assert_eq!(code, Some(0), "{name} exits 0 after its drain");
        let exited = term.elapsed();
        t.spawn_gateway(i);
        t.wait_gateway_up(i, Duration::from_secs(30));
        t.wait_state(&name, "up", Duration::from_secs(10));
        let before = t.totals()[&name];
        assert_eventually!(Duration::from_secs(5), t.totals()[&name] > before, "{name} takes connections again");
        drains.push(format!("{name}: down in the distributor {}, exited {}, back {}", ms(down), ms(exited), ms(term.elapsed())));
    }
    let recovered = fresh.mark("recovered");
    let _ = (pooled.mark("recovered"), h2.mark("recovered"));
    steady(Duration::from_secs(2));
    let runs = [fresh.stop(), pooled.stop(), h2.stop()];

    let mut r = Report::new("drill_1", "rolling restart of 3 gateways (SIGTERM, drain, exit, restart) under roundRobin", "0 failed requests");
    let streams: Vec<_> = runs.iter().map(|run| r.stream(run, fault, recovered)).collect();
    for d in &drains {
        r.figure("gateway", d);
    }
    r.emit();
    for (s, run) in streams.iter().zip(&runs) {
        for f in run.failures().iter().take(20) {
            eprintln!("{}: failed #{} at {} ({}): {:?}", s.name, f.seq, ms(f.intended), ms(f.latency()), f.outcome);
        }
    }
    for s in &streams {
        assert_eq!(s.failed_total(), 0, "stream {}: {:?}", s.name, s.failed);
    }
}
