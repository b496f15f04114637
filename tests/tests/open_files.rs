//! A gateway under a low open-files limit (issue 14): past the connections its descriptors hold
//! it stops accepting, so the next client waits in the accept queue and is served when a
//! connection closes, instead of being accepted and failing half-way with EMFILE.

use std::process::Command;
use std::sync::mpsc::{RecvTimeoutError, channel};
use std::time::Duration;

use plexgate_tests::assert_eventually;
use plexgate_tests::cluster::{Cluster, ClusterSetup};
use plexgate_tests::distributor::{Conn, tls_client};
use plexgate_tests::process::Proc;

/// Descriptors the gateway may open: the limit's reserve (256) and room for 22 connections.
const NOFILE: u32 = 300;

#[test]
fn past_its_descriptors_the_gateway_queues_new_clients_and_serves_them_when_one_closes() {
    let mut c = Cluster::start(ClusterSetup { gateways: 1, start_gateways: 0, ..ClusterSetup::default() });
    // prlimit (util-linux, on every Debian) runs the gateway under a hard limit of NOFILE.
    let inner = c.ws.plexgate(&["gateway", "-c", "zowe.yaml", "--ha-instance", "g1"]);
    let mut cmd = Command::new("prlimit");
    cmd.arg(format!("--nofile={NOFILE}:{NOFILE}")).arg("--").arg(inner.get_program()).args(inner.get_args());
    cmd.current_dir(c.ws.path());
    for (k, v) in inner.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    c.gateways[0] = Some(Proc::spawn("gateway-g1", cmd, &c.ws.path().join("gateway-g1.log")));
    // A client of its own, dropped before counting, so its pooled connections free their slots.
    let probe = plexgate_tests::https::client(&c.ws.ca(), None);
    assert_eventually!(
        Duration::from_secs(30),
        probe.get(c.url(0, "/application/health")).send().is_ok_and(|r| r.status() == 200),
        "gateway UP under prlimit\n{}",
        c.all_logs()
    );
    drop(probe);
    let logs = c.all_logs();
    assert!(logs.contains("max_connections=22"), "the gateway says what its limit holds:\n{logs}");

    // Open connections, each proven served, until one is not: that one waits in the queue.
    let tls = tls_client(&c.ws);
    let port = c.ports[0];
    let mut served = Vec::new();
    let waiting = loop {
        let (tx, rx) = channel();
        let tls = tls.clone();
        std::thread::spawn(move || {
            let _ = tx.send(Conn::open(port, &tls).and_then(|mut conn| conn.instance().map(|i| (i, conn))));
        });
        match rx.recv_timeout(Duration::from_secs(3)) {
            Ok(r) => served.push(r.expect("a connection below the limit is served")),
            Err(RecvTimeoutError::Timeout) => break rx,
            Err(e) => panic!("{e}"),
        }
        assert!(served.len() <= 22, "more connections than the open-files limit holds were accepted");
    };
    // One slot may still be the probe's, if the gateway has not yet seen it close.
    assert!(served.len() >= 21, "only {} connections before the limit", served.len());
    assert!(served.iter().all(|(i, _)| i == "g1"));
    drop(served.pop());
    let (instance, _conn) = waiting.recv_timeout(Duration::from_secs(10)).expect("served once a connection closed").expect("TLS and GET");
    assert_eq!(instance, "g1");
    let logs = c.all_logs();
    assert!(!logs.contains("accept failed") && !logs.contains("Too many open files"), "no EMFILE:\n{logs}");
}
