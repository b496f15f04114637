//! `storage.mode: replicated` under failure: three real replicas (haInstances r1..r3) of one
//! Raft group; a leader SIGKILLed or SIGSTOPped under writes, all three SIGKILLed, peers of
//! another cluster. Every acknowledged write must survive, and writes must resume.

use std::time::{Duration, Instant};

use plexgate_tests::replicated::Group;
use plexgate_tests::{Workspace, assert_eventually};
use serde_json::{Value, json};

/// `POST /cache-list/invalidTokens {key}` through replica `i`: whether it was acknowledged.
fn revoke(ws: &Workspace, g: &Group, i: usize, key: &str) -> bool {
    ws.client()
        .post(format!("https://127.0.0.1:{}/cachingservice/api/v1/cache-list/invalidTokens", g.ports[i]))
        .json(&json!({"key": key, "value": "1"}))
        .timeout(Duration::from_secs(10))
        .send()
        .is_ok_and(|r| r.status() == 201)
}

/// The `invalidTokens` map as replica `i` answers it (a linearizable read).
fn tokens(ws: &Workspace, g: &Group, i: usize) -> Option<Vec<String>> {
    let r = ws
        .client()
        .get(format!("https://127.0.0.1:{}/cachingservice/api/v1/cache-list/invalidTokens", g.ports[i]))
        .timeout(Duration::from_secs(10))
        .send()
        .ok()?;
    if r.status() != 200 {
        return None;
    }
    let v: Value = r.json().ok()?;
    Some(v.as_object()?.keys().cloned().collect())
}

/// Writes through `via` for `total`, with `fault` done once `at` has passed; returns the
/// acknowledged keys and the longest pause between two acknowledgements.
fn writes_across(ws: &Workspace, g: &Group, via: usize, total: Duration, at: Duration, mut fault: impl FnMut()) -> (Vec<String>, Duration) {
    let start = Instant::now();
    let (mut acked, mut last_ack, mut longest, mut faulted, mut i) = (Vec::new(), Instant::now(), Duration::ZERO, false, 0);
    while start.elapsed() < total {
        if !faulted && start.elapsed() >= at {
            fault();
            faulted = true;
        }
        let key = format!("t{i}");
        i += 1;
        if revoke(ws, g, via, &key) {
            longest = longest.max(last_ack.elapsed());
            last_ack = Instant::now();
            acked.push(key);
        }
    }
    // No acknowledgement since the last one counts as a pause too.
    (acked, longest.max(last_ack.elapsed()))
}

fn missing(acked: &[String], have: &[String]) -> Vec<String> {
    acked.iter().filter(|k| !have.contains(k)).cloned().collect()
}

#[test]
fn a_leader_killed_under_writes_loses_no_acknowledged_write_and_comes_back() {
    let ws = Workspace::with_certs();
    let mut g = Group::start(&ws, 3, "", "");
    let leader = g.leader(&ws).expect("a leader");
    let via = (leader + 1) % 3;
    let proc = g.procs[leader].as_ref().expect("leader running");
    let (acked, pause) = writes_across(&ws, &g, via, Duration::from_secs(6), Duration::from_secs(1), || proc.signal("KILL"));
    g.procs[leader] = None;
    println!(
        "leader r{} SIGKILLed: writes through r{} resumed after {pause:?} (longest pause between acknowledgements), {} acknowledged",
        leader + 1,
        via + 1,
        acked.len()
    );
    assert!(pause < Duration::from_secs(3), "writes paused {pause:?} after the leader was killed\n{}", g.logs());
    assert!(acked.len() > 20, "{} writes acknowledged", acked.len());
    assert_eventually!(Duration::from_secs(10), g.leader(&ws).is_some(), "a new leader among the two left");
    for i in (0..3).filter(|i| *i != leader) {
        let have = tokens(&ws, &g, i).expect("read through a survivor");
        assert_eq!(missing(&acked, &have), Vec::<String>::new(), "acknowledged writes missing on r{}", i + 1);
    }
    // The killed replica comes back and catches up.
    g.spawn(&ws, leader);
    g.wait_all_healthy(&ws);
    let have = tokens(&ws, &g, leader).expect("read through the restarted replica");
    assert_eq!(missing(&acked, &have), Vec::<String>::new(), "the restarted replica caught up");
}

#[test]
fn a_stopped_leader_is_replaced_and_catches_up_when_it_resumes() {
    let ws = Workspace::with_certs();
    let g = Group::start(&ws, 3, "", "");
    let leader = g.leader(&ws).expect("a leader");
    let via = (leader + 1) % 3;
    let proc = g.procs[leader].as_ref().unwrap();
    let (acked, pause) = writes_across(&ws, &g, via, Duration::from_secs(6), Duration::from_secs(1), || proc.signal("STOP"));
    println!("leader r{} SIGSTOPped: writes through r{} resumed after {pause:?}, {} acknowledged", leader + 1, via + 1, acked.len());
    assert!(pause < Duration::from_secs(3), "writes paused {pause:?} while the leader hung\n{}", g.logs());
    proc.signal("CONT");
    // The old leader steps down, and its reads (linearizable) see every write made meanwhile.
    assert_eventually!(
        Duration::from_secs(15),
        tokens(&ws, &g, leader).is_some_and(|have| missing(&acked, &have).is_empty()),
        "the resumed replica has every acknowledged write\n{}",
        g.logs()
    );
    assert_ne!(g.role(&ws, leader).as_deref(), Some("Candidate"));
}

#[test]
fn every_acknowledged_entry_survives_sigkill_of_all_replicas() {
    let ws = Workspace::with_certs();
    let mut g = Group::start(&ws, 3, "", "");
    let c = ws.client();
    let mut acked = Vec::new();
    for i in 0..30 {
        let via = i % 3;
        assert!(revoke(&ws, &g, via, &format!("t{i}")), "write {i} through r{}", via + 1);
        acked.push(format!("t{i}"));
        let r = c
            .post(format!("https://127.0.0.1:{}/cachingservice/api/v1/cache", g.ports[via]))
            .header("X-CS-Service-ID", "svc")
            .json(&json!({"key": format!("k{i}"), "value": format!("v{i}")}))
            .send()
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    for p in g.procs.iter_mut().flatten() {
        p.kill();
    }
    for i in 0..3 {
        g.spawn(&ws, i);
    }
    g.wait_all_healthy(&ws);
    for i in 0..3 {
        assert_eq!(missing(&acked, &tokens(&ws, &g, i).unwrap()), Vec::<String>::new(), "r{}", i + 1);
        let all: Value = c
            .get(format!("https://127.0.0.1:{}/cachingservice/api/v1/cache", g.ports[i]))
            .header("X-CS-Service-ID", "svc")
            .send()
            .unwrap()
            .json()
            .unwrap();
        assert_eq!(all.as_object().unwrap().len(), 30, "r{}: {all}", i + 1);
    }
}

#[test]
fn peers_of_another_cluster_and_other_certificates_are_refused() {
    let ws = Workspace::with_certs();
    let g = Group::start(&ws, 3, "", "");
    let (cert, key) = ws.server_identity();
    let replica_cert = plexgate_tests::https::client(&ws.ca(), Some((&cert, &key)));
    let vote = json!({"vote": {"leader_id": {"term": 99, "node_id": 1}, "committed": false}, "last_log_id": null});
    let url = format!("https://127.0.0.1:{}/cachingservice/raft/v1/vote", g.ports[0]);
    let other = replica_cert.post(&url).header("x-plexgate-cluster", "someone-elses-cluster").json(&vote).send().unwrap();
    assert_eq!(other.status(), 403);
    assert!(other.text().unwrap().contains("someone-elses-cluster"));
    assert_eventually!(
        Duration::from_secs(5),
        g.logs().contains("a peer of another cluster refused")
            && g.logs().contains("someone-elses-cluster")
            && g.logs().contains("ours=plexgate-127.0.0.1-7554"),
        "both cluster ids logged"
    );
    // The gateways' certificate is trusted by the caching service, yet no replica.
    let cluster = "plexgate-127.0.0.1-7554";
    let gateway = ws.client().post(&url).header("x-plexgate-cluster", cluster).json(&vote).send().unwrap();
    assert_eq!(gateway.status(), 403);
    // The group as any replica shows it: three voters, one leader.
    let members: Value =
        ws.client().get(format!("https://127.0.0.1:{}/cachingservice/raft/v1/members", g.ports[1])).send().unwrap().json().unwrap();
    assert_eq!(members["cluster"], cluster, "{members}");
    assert_eq!(members["replicas"].as_array().unwrap().len(), 3, "{members}");
    assert!(members["replicas"].as_array().unwrap().iter().all(|r| r["voter"] == true), "{members}");
    assert!(members["leader"].is_string(), "{members}");
    // The unauthorised vote changed nothing: the group still takes writes.
    assert!(revoke(&ws, &g, 2, "after-the-refusals"));
}
