//! The distributor as a real process: in front of real gateway processes for the methods
//! and failover (the health check is the gateways' own HTTPS health endpoint), and in front
//! of small real backends for its own limits (idle timeout, thousands of connections, PROXY
//! headers, drain). Every connection is a real TCP + TLS connection through the virtual
//! address; the `instance` in the health answer tells which target it reached.

use std::collections::BTreeMap;
use std::io::Read;
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use plexgate_tests::cluster::{Cluster, ClusterSetup, sample_definition};
use plexgate_tests::distributor::{
    Backend, Conn, Dist, HoldServer, NO_GATEWAYS_YAML, instance_via, spread, timed_instance_via, tls_client,
};
use plexgate_tests::{Workspace, assert_eventually};

/// Checks every 100 ms; one failure marks a target down, two successes up again. A generous
/// timeout: a killed or draining target fails at once, and a debug gateway on a busy machine
/// may take a while over one handshake.
const FAST_HEALTH: &str = "    healthCheck: {interval: 100ms, timeout: 2s, unhealthyThreshold: 1, healthyThreshold: 2}\n";

fn cluster() -> (Cluster, String) {
    let c = Cluster::start(ClusterSetup::default());
    let base = std::fs::read_to_string(&c.config).expect("cluster zowe.yaml");
    (c, base)
}

fn counts(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
}

#[test]
fn hot_standby_fails_over_and_switches_back_only_with_auto_switch_back() {
    let (mut c, base) = cluster();
    let tls = tls_client(&c.ws);
    let back = Dist::start(&c.ws, &base, "dist-back", &format!("    method: hotStandby\n    autoSwitchBack: true\n{FAST_HEALTH}"));
    let stay = Dist::start(&c.ws, &base, "dist-stay", &format!("    method: hotStandby\n    autoSwitchBack: false\n{FAST_HEALTH}"));
    for d in [&back, &stay] {
        d.wait_state("g1", "up", Duration::from_secs(5));
        d.wait_state("g2", "up", Duration::from_secs(5));
        assert_eq!(spread(d.port, &tls, 20), (counts(&[("g1", 20)]), vec![]), "all new connections on the preferred target");
    }

    // The preferred gateway dies: every new connection still succeeds, on the backup.
    c.gateways[0] = None;
    let killed = Instant::now();
    for d in [&back, &stay] {
        assert_eq!(spread(d.port, &tls, 50), (counts(&[("g2", 50)]), vec![]));
        d.wait_state("g1", "down", Duration::from_secs(3));
    }
    eprintln!("g1 down in both distributors {:?} after the kill", killed.elapsed());
    let mut on_backup = Conn::open(back.port, &tls).expect("connection during the outage");
    assert_eq!(on_backup.instance().unwrap(), "g2");

    // It comes back: with autoSwitchBack new connections return to it, without they stay.
    // The open connection is used while g1 restarts, so the gateway's keep-alive limit on idle
    // connections does not close it meanwhile.
    c.spawn_gateway(0);
    let restarted = Instant::now();
    assert_eventually!(
        Duration::from_secs(30),
        {
            assert_eq!(on_backup.instance().unwrap(), "g2", "an existing connection is not moved");
            instance_via(back.port, &tls).as_deref() == Ok("g1")
        },
        "autoSwitchBack: back to g1\n{}",
        back.proc.logs()
    );
    eprintln!("autoSwitchBack: new connections on g1 {:?} after its restart began", restarted.elapsed());
    assert_eq!(spread(back.port, &tls, 20), (counts(&[("g1", 20)]), vec![]));
    assert_eq!(on_backup.instance().unwrap(), "g2", "an existing connection is not moved by the switch");
    assert_eq!(back.status().unwrap()["current"], "g1");

    stay.wait_state("g1", "up", Duration::from_secs(5));
    assert_eq!(spread(stay.port, &tls, 50), (counts(&[("g2", 50)]), vec![]), "without autoSwitchBack new connections stay on the backup");
    assert_eq!(stay.status().unwrap()["current"], "g2");
}

#[test]
fn a_failed_connect_falls_through_to_the_next_target_before_any_health_check_notices() {
    let (mut c, base) = cluster();
    let tls = tls_client(&c.ws);
    // Checks so rare that none runs during the test after the first ones.
    let d = Dist::start(&c.ws, &base, "dist", "    method: hotStandby\n    healthCheck: {interval: 1h, timeout: 1s}\n");
    d.wait_state("g1", "up", Duration::from_secs(5));
    d.wait_state("g2", "up", Duration::from_secs(5));
    c.gateways[0] = None;
    assert_eq!(spread(d.port, &tls, 200), (counts(&[("g2", 200)]), vec![]), "no client sees a refused connection");
    let g1 = d.target("g1");
    assert_eq!(g1["state"], "suspect", "marked by the failed connect: {g1}");
    assert_eq!(g1["last_check"]["ok"], true, "the active check has not run since: {g1}");
    assert!(d.metrics().contains("plexgate_distributor_connect_failures_total{target=\"g1\"} 1"), "{}", d.metrics());
}

#[test]
fn a_draining_gateway_gets_no_new_connections_while_it_still_accepts() {
    let mut c =
        Cluster::start(ClusterSetup { gateway_yaml: "    shutdown: {grace: 30s, timeout: 35s}\n".to_owned(), ..ClusterSetup::default() });
    let base = std::fs::read_to_string(&c.config).expect("cluster zowe.yaml");
    let tls = tls_client(&c.ws);
    let d = Dist::start(&c.ws, &base, "dist", &format!("    method: hotStandby\n{FAST_HEALTH}"));
    d.wait_state("g1", "up", Duration::from_secs(5));
    let mut before = Conn::open(d.port, &tls).expect("connect");
    assert_eq!(before.instance().unwrap(), "g1");
    c.gateways[0].as_ref().expect("g1").signal("TERM");
    d.wait_state("g1", "down", Duration::from_secs(2));
    assert_eq!(d.target("g1")["last_check"]["detail"], "503 DRAINING");
    assert_eq!(spread(d.port, &tls, 20), (counts(&[("g2", 20)]), vec![]), "new connections avoid the draining gateway");
    assert!(c.gateways[0].as_mut().expect("g1").is_running(), "g1 was still in its grace period");
    assert!(before.get("/application/health", false).is_ok(), "the open connection still reaches g1 during its grace");
}

#[test]
fn a_thousand_new_connections_see_no_failure_while_the_preferred_gateway_is_killed_three_times() {
    let (mut c, base) = cluster();
    let tls = tls_client(&c.ws);
    let d = Dist::start(&c.ws, &base, "dist", &format!("    method: hotStandby\n{FAST_HEALTH}"));
    d.wait_state("g1", "up", Duration::from_secs(5));
    d.wait_state("g2", "up", Duration::from_secs(5));
    let (n, clients) = (1000, 2);
    let started = Instant::now();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let mut kills: Vec<(Instant, Instant)> = Vec::new();
    // Per connection: begun, first byte from the gateway, ended, outcome.
    type Record = (Instant, Option<Instant>, Instant, Result<String, String>);
    let records: Vec<Record> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..clients)
            .map(|_| {
                s.spawn(|| {
                    let mut out = Vec::new();
                    while !stop.load(Ordering::SeqCst) {
                        next.fetch_add(1, Ordering::SeqCst);
                        let begun = Instant::now();
                        let (result, first) = timed_instance_via(d.port, &tls);
                        out.push((begun, first, Instant::now(), result));
                    }
                    out
                })
            })
            .collect();
        for k in 1..=3 {
            assert_eventually!(Duration::from_secs(40), next.load(Ordering::SeqCst) >= k * n / 4, "{} connections made", k * n / 4);
            let before = Instant::now();
            c.gateways[0] = None; // SIGKILL, reaped
            kills.push((before, Instant::now()));
            c.spawn_gateway(0);
            d.wait_state("g1", "up", Duration::from_secs(30));
            let total = d.target("g1")["total"].as_u64().unwrap_or(0);
            assert_eventually!(
                Duration::from_secs(10),
                d.target("g1")["total"].as_u64().unwrap_or(0) > total,
                "g1 takes connections again"
            );
        }
        assert_eventually!(Duration::from_secs(40), next.load(Ordering::SeqCst) >= n, "{n} connections made");
        stop.store(true, Ordering::SeqCst);
        workers.into_iter().flat_map(|w| w.join().expect("client thread")).collect()
    });
    let failed: Vec<&Record> = records.iter().filter(|r| r.3.is_err()).collect();
    // A connection that had already heard from the gateway when it was killed (its TLS
    // session lives in the dead process) cannot be saved by an L4 distributor; every other
    // one must not notice the kill.
    let heard_before_kill = |r: &Record| kills.iter().any(|(k0, k1)| r.1.is_some_and(|f| f <= *k1) && r.2 >= *k0);
    let in_flight = records.iter().filter(|r| heard_before_kill(r)).count();
    let new_failed: Vec<&&Record> = failed.iter().filter(|r| !heard_before_kill(r)).collect();
    let by: BTreeMap<String, usize> = records.iter().filter_map(|r| r.3.as_ref().ok()).fold(BTreeMap::new(), |mut m, i| {
        *m.entry(i.clone()).or_insert(0) += 1;
        m
    });
    eprintln!(
        "{} connections in {:?} across 3 SIGKILLs of g1: {} failed ({} of them new connections); {} had heard from g1 when it was killed; answered by {by:?}",
        records.len(),
        started.elapsed(),
        failed.len(),
        new_failed.len(),
        in_flight
    );
    for r in failed.iter().take(10) {
        eprintln!("failed: {:?} (heard from the gateway: {})", r.3, r.1.is_some());
    }
    assert!(records.len() >= n);
    assert!(by.get("g1").copied().unwrap_or(0) > 0 && by.get("g2").copied().unwrap_or(0) > 0, "{by:?}");
    assert!(
        new_failed.is_empty(),
        "{} new connections failed across the kills: {:?}",
        new_failed.len(),
        new_failed.iter().map(|r| &r.3).collect::<Vec<_>>()
    );
    assert!(failed.len() <= in_flight, "{} failed, {in_flight} in flight at the kills", failed.len());
    let replays: Vec<String> =
        d.metrics().lines().filter(|l| l.starts_with("plexgate_distributor_replayed_total")).map(str::to_owned).collect();
    eprintln!("connections replayed on the next target: {replays:?}");
}

/// A cluster of two gateways routing `/sample/api/v1/**` to one sample-service instance,
/// the gateways with a short grace and a long shutdown timeout.
fn draining_cluster() -> (Cluster, plexgate_tests::cluster::Sample, String) {
    let mut c = Cluster::start(ClusterSetup {
        start_gateways: 0,
        gateway_yaml: "    shutdown: {grace: 500ms, timeout: 30s}\n".to_owned(),
        ..ClusterSetup::default()
    });
    let a = c.start_sample("a");
    c.define("sample.yml", &sample_definition("sample", &[a.port], "bypass"));
    c.start_gateway(0);
    c.start_gateway(1);
    let base = std::fs::read_to_string(&c.config).expect("cluster zowe.yaml");
    (c, a, base)
}

#[test]
fn a_long_download_and_a_websocket_survive_the_drain_of_their_gateway() {
    let (c, _a, base) = draining_cluster();
    let tls = tls_client(&c.ws);
    let d = Dist::start(&c.ws, &base, "dist", &format!("    method: hotStandby\n{FAST_HEALTH}"));
    d.wait_state("g1", "up", Duration::from_secs(5));
    d.wait_state("g2", "up", Duration::from_secs(5));
    // A download of 128 KiB that pauses 10 s after its first 64 KiB.
    let mut download = Conn::open(d.port, &tls).expect("connect");
    download.set_read_timeout(Duration::from_secs(30)).unwrap();
    download.send(b"GET /sample/api/v1/download?bytes=131072&stallMs=10000 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let head = download.read_head().expect("download head");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    download.read_bytes(64 * 1024).expect("the first 64 KiB");
    let started = Instant::now();
    // A WebSocket, echoing text messages.
    let mut ws = Conn::open(d.port, &tls).expect("connect");
    let head = ws.upgrade_websocket("/sample/api/v1/ws", None).expect("101");
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert_eq!(ws.ws_echo("before").unwrap(), "a: before");

    c.gateways[0].as_ref().expect("g1").signal("TERM");
    d.wait_state("g1", "down", Duration::from_secs(3));
    // Past the grace g1's listener is closed: the distributor's checks are refused.
    assert_eventually!(Duration::from_secs(5), TcpStream::connect(("127.0.0.1", c.ports[0])).is_err(), "g1 closed its listener");
    let refused = failed_checks(&d, "g1");
    assert_eventually!(Duration::from_secs(5), failed_checks(&d, "g1") >= refused + 3, "more checks of g1 ran");
    let detail = d.target("g1")["last_check"]["detail"].as_str().unwrap_or_default().to_owned();
    assert!(detail.contains("refused"), "{detail}");
    assert_eq!(ws.ws_echo("during").expect("the WebSocket survives the drain"), "a: during");
    let rest = download.read_bytes(64 * 1024).expect("the download completes");
    assert!(rest.iter().all(|&b| b == b'x'));
    let took = started.elapsed();
    eprintln!("the download completed {took:?} after it paused; the WebSocket echoed during the drain");
    assert!(took >= Duration::from_secs(8), "the download paused ~10 s: {took:?}");
    assert!(!d.metrics().contains("plexgate_distributor_unreachable_closed_total"), "{}", d.metrics());
}

/// 2000 short-lived TLS connections through `d`, each asking its gateway's name; asserts
/// every one succeeded and each gateway's share is within 5% of `shares`.
fn assert_spread(d: &Dist, tls: &std::sync::Arc<rustls::ClientConfig>, shares: &[(&str, f64)]) {
    let n = 2000;
    let started = Instant::now();
    let (got, errors) = spread(d.port, tls, n);
    eprintln!("{n} TLS connections in {:?}: {got:?}", started.elapsed());
    assert!(errors.is_empty(), "{errors:?}");
    for (g, share) in shares {
        let expected = share * n as f64;
        let count = got.get(*g).copied().unwrap_or(0) as f64;
        assert!((count - expected).abs() <= 0.05 * expected, "{g}: {count} of {n}, expected {expected} ± 5%: {got:?}");
    }
    let total: u64 = d.status().unwrap()["targets"].as_array().unwrap().iter().map(|t| t["total"].as_u64().unwrap()).sum();
    assert_eq!(total, n as u64, "the status counts every forwarded connection");
}

#[test]
fn round_robin_spreads_connections_evenly() {
    let (c, base) = cluster();
    let d = Dist::start(&c.ws, &base, "dist", &format!("    method: roundRobin\n{FAST_HEALTH}"));
    d.wait_state("g2", "up", Duration::from_secs(5));
    assert_spread(&d, &tls_client(&c.ws), &[("g1", 0.5), ("g2", 0.5)]);
}

#[test]
fn weighted_spreads_connections_in_proportion_to_the_weights() {
    let (c, base) = cluster();
    let weights = "    method: weighted\n    targets:\n      - {instance: g1, weight: 3}\n      - {instance: g2, weight: 1}\n";
    let d = Dist::start(&c.ws, &base, "dist", &format!("{weights}{FAST_HEALTH}"));
    d.wait_state("g2", "up", Duration::from_secs(5));
    assert_spread(&d, &tls_client(&c.ws), &[("g1", 0.75), ("g2", 0.25)]);
}

#[test]
fn least_connections_sends_new_connections_to_the_least_busy_gateway() {
    let (c, base) = cluster();
    let tls = tls_client(&c.ws);
    let d = Dist::start(&c.ws, &base, "dist", &format!("    method: leastConnections\n{FAST_HEALTH}"));
    d.wait_state("g2", "up", Duration::from_secs(5));
    let mut held: Vec<(String, Conn)> = (0..4)
        .map(|_| {
            let mut conn = Conn::open(d.port, &tls).expect("connect");
            (conn.instance().expect("instance"), conn)
        })
        .collect();
    let on = |held: &[(String, Conn)], g: &str| held.iter().filter(|(i, _)| i == g).count();
    assert_eq!((on(&held, "g1"), on(&held, "g2")), (2, 2));
    // Close both long-lived connections on g2: the next two go there, where round-robin
    // would split them.
    held.retain(|(i, _)| i != "g2");
    assert_eventually!(Duration::from_secs(5), d.target("g2")["active"] == 0, "g2's connections closed: {}", d.target("g2"));
    for _ in 0..2 {
        let mut conn = Conn::open(d.port, &tls).expect("connect");
        let i = conn.instance().expect("instance");
        assert_eq!(i, "g2");
        held.push((i, conn));
    }
    assert_eq!((d.target("g1")["active"].as_u64(), d.target("g2")["active"].as_u64()), (Some(2), Some(2)));
}

#[test]
fn a_target_that_accepts_but_never_answers_its_health_check_is_marked_down() {
    let ws = Workspace::with_certs();
    let tls = tls_client(&ws);
    let hold = HoldServer::spawn();
    let backend = Backend::spawn(&ws, "b1", false);
    let hung = format!("127.0.0.1:{}", hold.port);
    let section = format!(
        "    method: roundRobin\n    targets:\n      - address: {hung}\n      - address: {}\n    healthCheck: {{interval: 100ms, timeout: 300ms, unhealthyThreshold: 2, healthyThreshold: 1}}\n",
        backend.address()
    );
    let d = Dist::start(&ws, NO_GATEWAYS_YAML, "dist", &section);
    d.wait_state(&hung, "down", Duration::from_secs(5));
    let t = d.target(&hung);
    assert_eq!(t["last_check"]["ok"], false);
    assert_eq!(t["last_check"]["detail"], "no answer within 300ms", "{t}");
    assert_eq!(spread(d.port, &tls, 20), (counts(&[("b1", 20)]), vec![]), "no new connection goes to the hung target");

    let run = ws.run(&["status", "-c", "dist.yaml"], "").expect_code(0);
    let out = run.stdout();
    assert!(out.contains("method roundRobin") && out.contains("TARGET") && out.contains("LAST CHECK"), "{out}");
    let row = |name: &str| out.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("no row for {name}:\n{out}")).to_owned();
    assert!(row(&hung).contains("DOWN") && row(&hung).contains("no answer within 300ms"), "{out}");
    assert!(row(&backend.address()).contains(" UP ") && row(&backend.address()).contains(" 20 "), "{out}");
    eprintln!("{out}");
}

#[test]
fn a_client_that_sends_nothing_is_closed_after_the_idle_timeout() {
    let ws = Workspace::with_certs();
    let tls = tls_client(&ws);
    let backend = Backend::spawn(&ws, "b1", false);
    let section = format!("    targets: [{{address: {}}}]\n    idleTimeout: 500ms\n{FAST_HEALTH}", backend.address());
    let d = Dist::start(&ws, NO_GATEWAYS_YAML, "dist", &section);

    let mut silent = TcpStream::connect(("127.0.0.1", d.port)).expect("connect");
    silent.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 16];
    let read = silent.read(&mut buf);
    let took = started.elapsed();
    assert!(matches!(read, Ok(0)) || read.as_ref().is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset), "{read:?}");
    assert!(took >= Duration::from_millis(450) && took < Duration::from_secs(3), "closed after {took:?}");

    // A connection in use for longer than the idle timeout is not cut.
    let mut busy = Conn::open(d.port, &tls).expect("connect");
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(1500) {
        assert_eq!(busy.instance().expect("request on a busy connection"), "b1");
    }
    assert!(d.metrics().contains("plexgate_distributor_idle_closed_total 1"), "{}", d.metrics());
}

#[test]
fn five_thousand_idle_connections_are_held_without_errors() {
    let ws = Workspace::with_certs();
    let tls = tls_client(&ws);
    let backend = Backend::spawn(&ws, "b1", false);
    let d = Dist::start(&ws, NO_GATEWAYS_YAML, "dist", &format!("    targets: [{{address: {}}}]\n{FAST_HEALTH}", backend.address()));
    let n = 5000;
    let started = Instant::now();
    let conns: Vec<TcpStream> =
        (0..n).map(|i| TcpStream::connect(("127.0.0.1", d.port)).unwrap_or_else(|e| panic!("connection {i}: {e}"))).collect();
    eprintln!("{n} connections accepted by the kernel in {:?}", started.elapsed());
    assert_eventually!(
        Duration::from_secs(20),
        d.status().unwrap()["active"] == n && d.target(&backend.address())["active"] == n && backend.accepted.load(Ordering::SeqCst) > n,
        "{n} forwarded: {}",
        d.status().unwrap()
    );
    eprintln!("{n} connections forwarded to the target in {:?}", started.elapsed());
    for (i, c) in conns.iter().enumerate() {
        c.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 1];
        let r = (&*c).read(&mut buf);
        assert!(r.as_ref().is_err_and(|e| e.kind() == std::io::ErrorKind::WouldBlock), "connection {i} still open and silent: {r:?}");
    }
    assert_eq!(instance_via(d.port, &tls).as_deref(), Ok("b1"), "still serving new connections");
    drop(conns);
    assert_eventually!(Duration::from_secs(10), d.status().unwrap()["active"] == 0, "all closed: {}", d.status().unwrap());
    assert!(!d.proc.logs().contains("accept failed"), "{}", d.proc.logs());
}

/// Resident memory of a process, in bytes (VmRSS).
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

#[test]
fn idle_keep_alive_connections_hold_no_forwarding_buffers() {
    let ws = Workspace::with_certs();
    let tls = tls_client(&ws);
    let backend = Backend::spawn(&ws, "b1", false);
    let d = Dist::start(&ws, NO_GATEWAYS_YAML, "dist", &format!("    targets: [{{address: {}}}]\n{FAST_HEALTH}", backend.address()));
    // Warm up (runtime threads, TLS-free paths, allocator arenas) before the baseline.
    for _ in 0..50 {
        assert_eq!(instance_via(d.port, &tls).as_deref(), Ok("b1"));
    }
    let before = rss(d.proc.pid());
    // Established connections that answered once and now sit idle, as keep-alive clients do.
    let n = 500;
    let mut conns = Vec::with_capacity(n);
    for i in 0..n {
        let mut c = Conn::open(d.port, &tls).unwrap_or_else(|e| panic!("connection {i}: {e}"));
        assert_eq!(c.instance().unwrap_or_else(|e| panic!("request on connection {i}: {e}")), "b1");
        conns.push(c);
    }
    assert_eventually!(Duration::from_secs(10), d.status().unwrap()["active"] == n, "{n} open: {}", d.status().unwrap());
    let per = rss(d.proc.pid()).saturating_sub(before) / n as u64;
    println!(
        "distributor: {n} idle keep-alive connections cost {per} bytes each (RSS {} -> {} KiB)",
        before / 1024,
        rss(d.proc.pid()) / 1024
    );
    // tokio's copy keeps two 16 KiB buffers per connection for its whole life; a connection
    // that moves nothing should hold no buffer (its task, sockets and bookkeeping only).
    assert!(per < 12 * 1024, "{per} bytes per idle connection");
    // And they still work.
    for c in conns.iter_mut().step_by(97) {
        assert_eq!(c.instance().unwrap(), "b1");
    }
}

#[test]
fn connection_limits_in_total_and_per_target_are_enforced() {
    let ws = Workspace::with_certs();
    let tls = tls_client(&ws);
    let (b1, b2) = (Backend::spawn(&ws, "b1", false), Backend::spawn(&ws, "b2", false));
    let section = format!(
        "    targets: [{{address: {}}}, {{address: {}}}]\n    maxConnections: 2\n    maxConnectionsPerTarget: 1\n{FAST_HEALTH}",
        b1.address(),
        b2.address()
    );
    let d = Dist::start(&ws, NO_GATEWAYS_YAML, "dist", &section);
    let mut first = Conn::open(d.port, &tls).expect("first");
    assert_eq!(first.instance().unwrap(), "b1");
    let mut second = Conn::open(d.port, &tls).expect("second");
    assert_eq!(second.instance().unwrap(), "b2", "b1 is at its own limit");
    // Over maxConnections the client waits in the accept queue (as under HAProxy's maxconn):
    // neither served nor closed until a connection closes, then served.
    let (port, tls3) = (d.port, tls.clone());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(Conn::open(port, &tls3).and_then(|mut c| c.instance().map(|i| (i, c))));
    });
    assert!(
        matches!(rx.recv_timeout(Duration::from_millis(700)), Err(std::sync::mpsc::RecvTimeoutError::Timeout)),
        "over maxConnections: the third client waits"
    );
    assert_eq!(d.status().unwrap()["active"], 2, "{}", d.status().unwrap());
    drop(first);
    let third = rx.recv_timeout(Duration::from_secs(10)).expect("served once a connection closed");
    let (instance, _third) = third.expect("the third connection");
    assert_eq!(instance, "b1");
    assert_eq!(second.instance().unwrap(), "b2");
    assert_eq!(d.status().unwrap()["active"], 2, "{}", d.status().unwrap());
}

#[test]
fn proxy_protocol_v2_tells_the_target_the_client_address() {
    let ws = Workspace::with_certs();
    let tls = tls_client(&ws);
    let backend = Backend::spawn(&ws, "b1", true);
    let d = Dist::start(
        &ws,
        NO_GATEWAYS_YAML,
        "dist",
        &format!("    targets: [{{address: {}}}]\n    proxyProtocol: true\n{FAST_HEALTH}", backend.address()),
    );
    d.wait_state(&backend.address(), "up", Duration::from_secs(5));
    let mut conn = Conn::open(d.port, &tls).expect("connect");
    assert_eq!(conn.instance().unwrap(), "b1");
    let client_port = conn.local_port();
    let headers = backend.proxy_headers.lock().unwrap().clone();
    assert!(headers.iter().any(|h| h[12..16] == [0x20, 0x00, 0, 0]), "health checks send LOCAL headers");
    let relayed: Vec<&Vec<u8>> = headers.iter().filter(|h| h[12] == 0x21).collect();
    assert_eq!(relayed.len(), 1, "{headers:?}");
    let h = relayed[0];
    assert_eq!(&h[13..16], &[0x11, 0, 12], "TCP over IPv4, 12 address bytes");
    assert_eq!(&h[16..24], &[127, 0, 0, 1, 127, 0, 0, 1]);
    assert_eq!(u16::from_be_bytes([h[24], h[25]]), client_port);
    assert_eq!(u16::from_be_bytes([h[26], h[27]]), d.port);
}

#[test]
fn sigterm_stops_accepting_lets_open_connections_finish_and_exits_0() {
    let ws = Workspace::with_certs();
    let tls = tls_client(&ws);
    let backend = Backend::spawn(&ws, "b1", false);
    let mut d = Dist::start(
        &ws,
        NO_GATEWAYS_YAML,
        "dist",
        &format!("    targets: [{{address: {}}}]\n    drainTimeout: 20s\n{FAST_HEALTH}", backend.address()),
    );
    let mut open = Conn::open(d.port, &tls).expect("connect");
    assert_eq!(open.instance().unwrap(), "b1");
    d.proc.signal("TERM");
    assert_eventually!(Duration::from_secs(5), TcpStream::connect(("127.0.0.1", d.port)).is_err(), "stops accepting");
    assert_eq!(d.status().unwrap()["draining"], true);
    assert_eq!(open.instance().unwrap(), "b1", "an open connection keeps working while draining");
    assert!(d.proc.is_running(), "waits for the open connection");
    drop(open);
    let closed = Instant::now();
    assert_eq!(d.proc.wait_exit(Duration::from_secs(5)), Some(0), "{}", d.proc.logs());
    eprintln!("exited {:?} after the last connection closed", closed.elapsed());
}

/// Checks of `target` that failed so far, from the distributor's metrics.
fn failed_checks(d: &Dist, target: &str) -> u64 {
    let series = format!("plexgate_distributor_health_check_duration_seconds_count{{target=\"{target}\",result=\"failed\"}} ");
    d.metrics().lines().find_map(|l| l.strip_prefix(&series).and_then(|v| v.parse().ok())).unwrap_or(0)
}

#[test]
fn connections_to_a_target_that_became_unreachable_are_closed_unless_configured_otherwise() {
    let ws = Workspace::with_certs();
    let tls = tls_client(&ws);
    let health = "    healthCheck: {interval: 100ms, timeout: 1s, unhealthyThreshold: 2, healthyThreshold: 1";
    for close in [true, false] {
        // A short accept queue, so that it can be filled: then a connect gets no answer at all.
        let mut backend = Backend::spawn_with_backlog(&ws, "b1", false, 1);
        let section = format!("    targets: [{{address: {}}}]\n{health}, closeSessionsWhenUnreachable: {close}}}\n", backend.address());
        let name = format!("dist-{close}");
        let d = Dist::start(&ws, NO_GATEWAYS_YAML, &name, &section);
        let target = backend.address();
        d.wait_state(&target, "up", Duration::from_secs(5));
        let mut open = Conn::open(d.port, &tls).expect("connect");
        assert_eq!(open.instance().unwrap(), "b1");
        // Connects to the backend now time out, as to a host that is gone or behind a dead
        // link; the open connection stays silent.
        backend.stop_accepting();
        d.wait_state(&target, "down", Duration::from_secs(10));
        let detail = d.target(&target)["last_check"]["detail"].as_str().unwrap_or_default().to_owned();
        assert!(detail.contains("no connection within"), "the check timed out: {detail}");
        let metric = format!("plexgate_distributor_unreachable_closed_total{{target=\"{target}\"}} 1");
        if close {
            assert_eventually!(Duration::from_secs(5), d.metrics().contains(&metric), "the open connection is closed\n{}", d.metrics());
            assert!(open.get("/application/health", false).is_err(), "the client sees its connection closed, and can reconnect elsewhere");
        } else {
            assert!(!d.metrics().contains("plexgate_distributor_unreachable_closed_total"), "{}", d.metrics());
            assert_eq!(open.instance().unwrap(), "b1", "with closeSessionsWhenUnreachable: false the connection is kept");
        }
    }
}

#[test]
fn a_target_that_refuses_new_connections_keeps_its_open_ones() {
    let ws = Workspace::with_certs();
    let tls = tls_client(&ws);
    let mut backend = Backend::spawn(&ws, "b1", false);
    let section = format!(
        "    targets: [{{address: {}}}]\n    healthCheck: {{interval: 100ms, timeout: 1s, unhealthyThreshold: 2, healthyThreshold: 1, closeSessionsWhenUnreachable: true}}\n",
        backend.address()
    );
    let d = Dist::start(&ws, NO_GATEWAYS_YAML, "dist", &section);
    let target = backend.address();
    d.wait_state(&target, "up", Duration::from_secs(5));
    let mut open = Conn::open(d.port, &tls).expect("connect");
    assert_eq!(open.instance().unwrap(), "b1");
    // A draining gateway past its grace: its listener is closed, its open requests are served.
    backend.stop_listening();
    d.wait_state(&target, "down", Duration::from_secs(10));
    let refused = failed_checks(&d, &target);
    assert_eventually!(Duration::from_secs(5), failed_checks(&d, &target) >= refused + 3, "more refused checks ran");
    let detail = d.target(&target)["last_check"]["detail"].as_str().unwrap_or_default().to_owned();
    assert!(detail.contains("refused"), "{detail}");
    assert_eq!(open.instance().expect("the open connection is kept: a refusal proves the host is alive"), "b1");
    assert!(!d.metrics().contains("plexgate_distributor_unreachable_closed_total"), "{}", d.metrics());
}

#[test]
fn a_target_named_by_host_name_is_resolved_in_the_background_not_per_connection() {
    let ws = Workspace::with_certs();
    let tls = tls_client(&ws);
    let backend = Backend::spawn(&ws, "b1", false);
    let target = format!("localhost:{}", backend.port);
    let d = Dist::start(&ws, NO_GATEWAYS_YAML, "dist", &format!("    targets: [{{address: \"{target}\"}}]\n{FAST_HEALTH}"));
    d.wait_state(&target, "up", Duration::from_secs(5));
    assert_eq!(spread(d.port, &tls, 200), (counts(&[("b1", 200)]), vec![]));
    let series = format!("plexgate_distributor_resolutions_total{{target=\"{target}\",result=\"ok\"}} ");
    let metrics = d.metrics();
    let lookups: u64 = metrics.lines().find_map(|l| l.strip_prefix(&series).and_then(|v| v.parse().ok())).unwrap_or(0);
    eprintln!("200 connections and their health checks through {target}: {lookups} lookups of the host name");
    // One at start, perhaps one more by the periodic resolver: not one per connection or check.
    assert!((1..=2).contains(&lookups), "{lookups} lookups:\n{metrics}");
}
