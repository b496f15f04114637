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

/// A replica's node id as the group derives it from its haInstance id (SHA-256, first 8 bytes).
fn node_id(instance: &str) -> u64 {
    use sha2::Digest;
    u64::from_be_bytes(sha2::Sha256::digest(instance.as_bytes())[..8].try_into().unwrap())
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

/// `POST /cache {key}` (a create, which a second application would answer 409) through
/// replica `i`: its status, or 0 when no answer came.
fn create(c: &reqwest::blocking::Client, g: &Group, i: usize, key: &str) -> u16 {
    c.post(format!("https://127.0.0.1:{}/cachingservice/api/v1/cache", g.ports[i]))
        .header("X-CS-Service-ID", "svc")
        .json(&json!({"key": key, "value": "once"}))
        .timeout(Duration::from_secs(15))
        .send()
        .map_or(0, |r| r.status().as_u16())
}

#[test]
fn a_forwarded_write_whose_answer_is_lost_is_applied_exactly_once() {
    let ws = Workspace::with_certs();
    // Room for every create a fast machine makes in 12 s (the default quota, 2,500 per
    // caller, answered 507 on one).
    let g = Group::start(&ws, 3, "", "      size: 1000000\n");
    let next = std::sync::atomic::AtomicUsize::new(0);
    // Three times: creates through a follower, eight at a time, while the leader hangs. The
    // creates in flight at the SIGSTOP may be committed with their answers lost: the follower
    // must propose them again without applying them twice (a 409) or giving up (a 503).
    for round in 0..3 {
        assert_eventually!(Duration::from_secs(15), g.leader(&ws).is_some(), "a leader\n{}", g.logs());
        let leader = g.leader(&ws).unwrap();
        let via = (leader + 1) % 3;
        let (start, before) = (Instant::now(), next.load(std::sync::atomic::Ordering::Relaxed));
        std::thread::scope(|s| {
            for _ in 0..8 {
                let (ws, g, next) = (&ws, &g, &next);
                s.spawn(move || {
                    let c = ws.client();
                    while start.elapsed() < Duration::from_secs(4) {
                        let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let status = create(&c, g, via, &format!("k{k}"));
                        assert_eq!(status, 201, "round {round}: create k{k} through r{} answered {status}\n{}", via + 1, g.logs());
                    }
                });
            }
            // Mid-stream: once the writers are well under way.
            assert_eventually!(Duration::from_secs(10), next.load(std::sync::atomic::Ordering::Relaxed) >= before + 40, "writes under way");
            g.procs[leader].as_ref().unwrap().signal("STOP");
        });
        g.procs[leader].as_ref().unwrap().signal("CONT");
        g.wait_all_healthy(&ws);
    }
    let made = next.load(std::sync::atomic::Ordering::Relaxed);
    for i in 0..3 {
        let all: Value = ws
            .client()
            .get(format!("https://127.0.0.1:{}/cachingservice/api/v1/cache", g.ports[i]))
            .header("X-CS-Service-ID", "svc")
            .send()
            .unwrap()
            .json()
            .unwrap();
        assert_eq!(all.as_object().unwrap().len(), made, "r{} holds every create once", i + 1);
    }
    println!("{made} creates through followers across three hung leaders: every one answered 201, each stored once");
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
    // Join requests: only a replica's certificate, and only a well-formed one.
    let join_url = format!("https://127.0.0.1:{}/cachingservice/raft/v1/join", g.ports[0]);
    let join = |client: &reqwest::blocking::Client, body: Value| {
        client.post(&join_url).header("x-plexgate-cluster", cluster).json(&body).send().unwrap().status()
    };
    let intruder = json!({"instance": "intruder", "id": 1, "address": "127.0.0.1:1"});
    assert_eq!(join(&ws.client(), intruder.clone()), 403, "a gateway's certificate may not join");
    assert_eq!(join(&replica_cert, intruder), 400, "an id that is not the instance's");
    for address in ["nohost", "127.0.0.1:0", "127.0.0.1:99999", "a/b:1", ":7"] {
        assert_eq!(join(&replica_cert, json!({"instance": "x", "id": node_id("x"), "address": address})), 400, "{address}");
    }
    let malformed = replica_cert.post(&join_url).header("x-plexgate-cluster", cluster).body("{not json").send().unwrap();
    assert!(malformed.status().is_client_error(), "{}", malformed.status());
    // The unauthorised vote changed nothing: the group still takes writes.
    assert!(revoke(&ws, &g, 2, "after-the-refusals"));
    let members: Value =
        ws.client().get(format!("https://127.0.0.1:{}/cachingservice/raft/v1/members", g.ports[0])).send().unwrap().json().unwrap();
    assert_eq!(members["voters"].as_array().unwrap().len(), 3, "no join took effect: {members}");
}

/// Two gateways and three replicas (the third haInstance runs only a caching service).
struct Site {
    replicas: Vec<Option<plexgate_tests::process::Proc>>,
    replica_ports: Vec<u16>,
    gateways: Vec<plexgate_tests::process::Proc>,
    gateway_ports: Vec<u16>,
    http: reqwest::blocking::Client,
    _sample: plexgate_tests::process::Proc,
    // Last: deleted after the processes print their logs from it.
    ws: Workspace,
}

const PASSWORD: &str = "correct horse battery staple";

impl Site {
    fn start() -> Site {
        use plexgate_tests::free_port;
        let ws = Workspace::with_certs();
        let (g, c): (Vec<u16>, Vec<u16>) = ((0..2).map(|_| free_port()).collect(), (0..3).map(|_| free_port()).collect());
        let yaml = format!(
            "zowe:\n  externalDomains: [127.0.0.1]\n  workspaceDirectory: workspace\ncomponents:\n  gateway:\n    apiml: {{security: {{auth: {{provider: users-file}}}}}}\n    revocation: {{stalenessBound: 3s}}\n    admin: {{enabled: false}}\n    shutdown: {{grace: 300ms, timeout: 5s}}\n  caching-service:\n    changeFeed: {{heartbeat: 200ms}}\n    storage: {{mode: replicated}}\n  distributor: {{enabled: false}}\nhaInstances:\n  g1:\n    hostname: 127.0.0.1\n    components: {{gateway: {{port: {}}}, caching-service: {{port: {}}}}}\n  g2:\n    hostname: 127.0.0.1\n    components: {{gateway: {{port: {}}}, caching-service: {{port: {}}}}}\n  w3:\n    hostname: 127.0.0.1\n    components: {{gateway: {{enabled: false}}, caching-service: {{port: {}}}}}\n",
            g[0], c[0], g[1], c[1], c[2]
        );
        ws.write("zowe.yaml", &yaml);
        ws.run(&["users", "add", "alice", "-c", "zowe.yaml"], &format!("{PASSWORD}\n")).expect_code(0);
        let http = plexgate_tests::https::client(&ws.ca(), None);
        // An API service routed by both gateways, so the load includes routed requests.
        let sample_port = free_port();
        let sample = ws.spawn("sample", &["sample-service", "-c", "zowe.yaml", "--port", &sample_port.to_string(), "--id", "s1"]);
        ws.write("workspace/api-mediation/api-defs/svc.yml", &plexgate_tests::cluster::sample_definition("svc", &[sample_port], "zoweJwt"));
        assert_eventually!(
            Duration::from_secs(20),
            http.get(format!("https://127.0.0.1:{sample_port}/application/health")).send().is_ok_and(|r| r.status() == 200),
            "sample service up"
        );
        let ids = ["g1", "g2", "w3"];
        let replicas = ids
            .iter()
            .map(|id| Some(ws.spawn(&format!("caching-{id}"), &["caching-service", "-c", "zowe.yaml", "--ha-instance", id])))
            .collect();
        let gateways =
            ids[..2].iter().map(|id| ws.spawn(&format!("gateway-{id}"), &["gateway", "-c", "zowe.yaml", "--ha-instance", id])).collect();
        let site = Site { ws, replicas, replica_ports: c, gateways, gateway_ports: g, http, _sample: sample };
        for port in site.gateway_ports.clone() {
            assert_eventually!(
                Duration::from_secs(30),
                site.http.get(format!("https://127.0.0.1:{port}/application/health")).send().is_ok_and(|r| r.status() == 200),
                "gateway {port} UP\n{}",
                site.logs()
            );
        }
        site
    }

    fn logs(&self) -> String {
        self.replicas.iter().flatten().chain(self.gateways.iter()).map(|p| p.logs()).collect()
    }

    fn auth(&self, i: usize, path: &str) -> String {
        format!("https://127.0.0.1:{}/gateway/api/v1/auth{path}", self.gateway_ports[i])
    }

    fn login(&self, i: usize) -> Option<String> {
        let r = self.http.post(self.auth(i, "/login")).basic_auth("alice", Some(PASSWORD)).send().ok()?;
        if r.status() != 204 {
            return None;
        }
        plexgate_tests::cluster::token_from(&r)
    }

    fn query(&self, i: usize, token: &str) -> u16 {
        self.http.get(self.auth(i, "/query")).bearer_auth(token).timeout(Duration::from_secs(10)).send().map_or(0, |r| r.status().as_u16())
    }

    /// A routed request with `token` through gateway `i`.
    fn routed(&self, i: usize, token: &str) -> u16 {
        let url = format!("https://127.0.0.1:{}/svc/api/v1/hello", self.gateway_ports[i]);
        self.http.get(url).bearer_auth(token).timeout(Duration::from_secs(10)).send().map_or(0, |r| r.status().as_u16())
    }

    /// A PAT for `svc` from gateway `i`.
    fn pat(&self, i: usize) -> Option<String> {
        let r = self
            .http
            .post(self.auth(i, "/access-token/generate"))
            .basic_auth("alice", Some(PASSWORD))
            .json(&json!({"validity": 1, "scopes": ["svc"]}))
            .send()
            .ok()?;
        (r.status() == 200).then(|| r.text().ok()).flatten()
    }

    /// `DELETE /access-token/revoke` of `pat` on gateway `i`: its status.
    fn revoke_pat(&self, i: usize, pat: &str) -> u16 {
        let r = self.http.delete(self.auth(i, "/access-token/revoke")).json(&json!({"token": pat})).timeout(Duration::from_secs(15)).send();
        r.map_or(0, |r| r.status().as_u16())
    }

    fn logout(&self, i: usize, token: &str) -> u16 {
        let r = self
            .http
            .post(self.auth(i, "/logout"))
            .header("Cookie", format!("apimlAuthenticationToken={token}"))
            .timeout(Duration::from_secs(15))
            .send();
        r.map_or(0, |r| r.status().as_u16())
    }

    /// The replica leading now, from the members endpoint of any replica that answers.
    fn leader(&self) -> Option<usize> {
        let group = Group { procs: Vec::new(), ports: self.replica_ports.clone(), config: std::path::PathBuf::new() };
        (0..3).filter(|i| self.replicas[*i].is_some()).find(|i| group.role(&self.ws, *i).as_deref() == Some("Leader"))
    }
}

#[test]
fn gateways_keep_serving_and_honour_every_logout_when_the_leader_is_killed() {
    let mut site = Site::start();
    let steady = site.login(0).expect("login");
    assert_eventually!(Duration::from_secs(10), site.leader().is_some(), "a leader\n{}", site.logs());
    let leader = site.leader().unwrap();
    let (mut queries, mut failed_queries, mut logouts, mut failed_logouts, mut pats) = (0, 0, Vec::new(), 0, Vec::<String>::new());
    let mut slowest_logout = Duration::ZERO;
    let start = Instant::now();
    let mut killed = false;
    let mut k = 0;
    while start.elapsed() < Duration::from_secs(8) {
        if !killed && start.elapsed() > Duration::from_secs(2) {
            site.replicas[leader].as_ref().unwrap().signal("KILL");
            killed = true;
        }
        // Authenticated calls with a valid token on both gateways: a token check and a
        // routed request each.
        for i in [0, 1] {
            queries += 2;
            if site.query(i, &steady) != 200 {
                failed_queries += 1;
            }
            if site.routed(i, &steady) != 200 {
                failed_queries += 1;
            }
        }
        // A PAT generated on one gateway, revoked on the other.
        if k % 4 == 0 {
            match site.pat(k % 2) {
                Some(p) if site.revoke_pat((k + 1) % 2, &p) == 204 => pats.push(p),
                _ => failed_logouts += 1,
            }
        }
        // A login on one gateway, its logout on the other.
        k += 1;
        if let Some(t) = site.login(k % 2) {
            let sent = Instant::now();
            if site.logout((k + 1) % 2, &t) == 204 {
                slowest_logout = slowest_logout.max(sent.elapsed());
                logouts.push(t);
            } else {
                failed_logouts += 1;
            }
        }
    }
    site.replicas[leader] = None;
    println!(
        "leader replica {} SIGKILLed under load: {failed_queries} of {queries} token checks and routed requests failed, {} logouts and {} PAT revokes acknowledged ({failed_logouts} failed), slowest logout {slowest_logout:?}",
        leader + 1,
        logouts.len(),
        pats.len()
    );
    assert_eq!(failed_queries, 0, "token checks failed while the leader died\n{}", site.logs());
    assert_eq!(failed_logouts, 0, "logouts failed while the leader died\n{}", site.logs());
    assert!(slowest_logout < Duration::from_secs(5), "a logout took {slowest_logout:?}");
    // Every acknowledged logout is honoured by both gateways.
    for t in &logouts {
        for i in [0, 1] {
            assert_eventually!(Duration::from_secs(2), site.query(i, t) == 401, "gateway {i} honours an acknowledged logout");
        }
    }
    for p in &pats {
        for i in [0, 1] {
            assert_eventually!(Duration::from_secs(2), site.routed(i, p) == 401, "gateway {i} honours an acknowledged PAT revoke");
        }
    }
}

#[test]
fn a_durable_store_is_imported_once_into_a_new_group() {
    let ws = Workspace::with_certs();
    // Before: one caching service (haInstance r1) on its durable store.
    let port = plexgate_tests::free_port();
    ws.write(
        "zowe-durable.yaml",
        &format!("zowe:\n  externalDomains: [127.0.0.1]\n  workspaceDirectory: workspace\ncomponents:\n  gateway:\n    enabled: false\n  caching-service:\n    storage: {{mode: durable}}\n  distributor: {{enabled: false}}\nhaInstances:\n  r1:\n    hostname: 127.0.0.1\n    components: {{caching-service: {{port: {port}}}}}\n"),
    );
    let mut old = ws.spawn("durable", &["caching-service", "-c", "zowe-durable.yaml", "--ha-instance", "r1"]);
    let c = ws.client();
    let api = |p: u16, path: &str| format!("https://127.0.0.1:{p}/cachingservice/api/v1{path}");
    assert_eventually!(Duration::from_secs(20), c.get(api(port, "/cache")).send().is_ok_and(|r| r.status() == 200), "durable store up");
    assert_eq!(c.post(api(port, "/cache")).json(&json!({"key": "salt", "value": "s4lt"})).send().unwrap().status(), 201);
    for i in 0..20 {
        let r = c
            .post(api(port, "/cache-list/invalidTokens"))
            .json(&json!({"key": format!("pat{i}"), "value": "4102444800000"}))
            .send()
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    assert_eq!(
        c.post(api(port, "/cache-list/invalidUsers")).json(&json!({"key": "alice", "value": "1700000000000"})).send().unwrap().status(),
        201
    );
    old.signal("TERM");
    assert!(old.wait_exit(Duration::from_secs(20)).is_some());
    // After: the same workspace, three replicas; r1 finds its old store and imports it.
    let g = Group::start(&ws, 3, "", "");
    for i in 0..3 {
        assert_eventually!(
            Duration::from_secs(20),
            tokens(&ws, &g, i).is_some_and(|t| t.len() == 20),
            "r{} has the imported revocations\n{}",
            i + 1,
            g.logs()
        );
        let salt: Value = c.get(api(g.ports[i], "/cache/salt")).send().unwrap().json().unwrap();
        assert_eq!(salt["value"], "s4lt");
        let users: Value = c.get(api(g.ports[i], "/cache-list/invalidUsers")).send().unwrap().json().unwrap();
        assert_eq!(users["alice"], "1700000000000");
    }
    assert!(ws.path().join("workspace/caching-service/r1.redb.imported").exists(), "the import is recorded");
}

#[test]
fn members_shows_the_group_and_a_replica_that_is_down() {
    let ws = Workspace::with_certs();
    let mut g = Group::start(&ws, 3, "", "");
    assert_eventually!(Duration::from_secs(10), g.leader(&ws).is_some(), "a leader");
    let run = ws.run(&["caching-service", "members", "-c", "zowe-replicated.yaml"], "").expect_code(0);
    let out = run.stdout();
    assert_eq!(out.matches("Leader").count(), 1, "{out}");
    assert_eq!(out.matches("Follower").count(), 2, "{out}");
    assert!(out.contains("3 of 3 replicas answer; a majority is 2"), "{out}");
    for r in ["r1", "r2", "r3"] {
        assert!(out.contains(r), "{out}");
    }
    let follower = (g.leader(&ws).unwrap() + 1) % 3;
    g.procs[follower].as_mut().unwrap().kill();
    g.procs[follower] = None;
    let out = ws.run(&["caching-service", "members", "-c", "zowe-replicated.yaml"], "").expect_code(0).stdout();
    assert!(out.contains("DOWN") && out.contains("2 of 3 replicas answer"), "{out}");
}

/// The voters the members endpoint of replica `i` reports.
fn voters(ws: &Workspace, g: &Group, i: usize) -> Option<usize> {
    let v: Value = ws.client().get(format!("https://127.0.0.1:{}/cachingservice/raft/v1/members", g.ports[i])).send().ok()?.json().ok()?;
    Some(v["voters"].as_array()?.len())
}

#[test]
fn a_replica_added_to_the_configuration_joins_and_one_removed_leaves() {
    let ws = Workspace::with_certs();
    let mut g = Group::start(&ws, 3, "", "");
    assert!(revoke(&ws, &g, 0, "before-r4"));
    // r4 joins the file and starts; the three go on running on the old file.
    g.ports.push(plexgate_tests::free_port());
    g.procs.push(None);
    g.config = Group::write_config(&ws, &g.ports, "", "");
    g.spawn(&ws, 3);
    let joined = Instant::now();
    assert_eventually!(
        Duration::from_secs(30),
        voters(&ws, &g, 3) == Some(4) && (0..3).all(|i| voters(&ws, &g, i) == Some(4)),
        "r4 is a voter, as every replica sees it\n{}",
        g.logs()
    );
    println!("r4 started on the new file joined the running group (as a voter) in {:?}", joined.elapsed());
    assert!(revoke(&ws, &g, 3, "through-r4"), "a write through the new replica");
    let have = tokens(&ws, &g, 3).expect("read through r4");
    assert!(have.contains(&"before-r4".to_owned()) && have.contains(&"through-r4".to_owned()), "{have:?}");
    // A restart of the joined replica is no removal: it stays a voter throughout.
    g.restart(&ws, 3);
    assert_eventually!(Duration::from_secs(30), g.health(&ws, 3).is_some_and(|(s, _)| s == 200), "r4 back\n{}", g.logs());
    assert_eq!(voters(&ws, &g, 0), Some(4), "r4 restarted is still a member");
    // And out again: the file names three, the three restart onto it (r4 still running, so a
    // majority of four is up throughout), then r4 stops and is removed.
    g.config = Group::write_config(&ws, &g.ports[..3], "", "");
    let leader = g.leader(&ws).expect("leader");
    for i in (0..3).filter(|i| *i != leader).chain([leader]) {
        g.restart(&ws, i);
        assert_eventually!(Duration::from_secs(30), g.health(&ws, i).is_some_and(|(s, _)| s == 200), "r{} back\n{}", i + 1, g.logs());
    }
    assert_eq!(voters(&ws, &g, 0), Some(4), "r4, running, is not removed");
    if let Some(mut p) = g.procs[3].take() {
        p.kill();
    }
    let stopped = Instant::now();
    assert_eventually!(Duration::from_secs(40), (0..3).all(|i| voters(&ws, &g, i) == Some(3)), "r4 removed\n{}", g.logs());
    println!("r4 stopped was removed from the group in {:?}", stopped.elapsed());
    assert!(revoke(&ws, &g, 1, "after-r4"), "the three go on");
}

/// Load through both gateways for `total` while replica `victim` is SIGSTOPped (from 1 s on):
/// token checks must all pass, logouts all be acknowledged and honoured by the other
/// gateway; returns (checks, logouts, slowest logout, slowest propagation).
fn hung_replica(site: &Site, victim: usize, total: Duration) -> (usize, usize, Duration, Duration) {
    let steady = site.login(0).expect("login");
    let (mut checks, mut logouts, mut slowest_logout, mut slowest_propagation) = (0, 0, Duration::ZERO, Duration::ZERO);
    let start = Instant::now();
    let mut stopped = false;
    let mut k = 0;
    while start.elapsed() < total {
        if !stopped && start.elapsed() > Duration::from_secs(1) {
            site.replicas[victim].as_ref().unwrap().signal("STOP");
            stopped = true;
        }
        for i in [0, 1] {
            checks += 2;
            let s = site.routed(i, &steady);
            assert_eq!(s, 200, "a routed request on gateway {i} answered {s} while replica {} hung ({:?} in)", victim + 1, start.elapsed());
            let s = site.query(i, &steady);
            assert_eq!(
                s,
                200,
                "a token check on gateway {i} answered {s} while replica {} hung ({:?} in)\n{}",
                victim + 1,
                start.elapsed(),
                site.logs()
            );
        }
        k += 1;
        let (a, b) = (k % 2, (k + 1) % 2);
        let Some(t) = site.login(a) else { panic!("login on gateway {a} failed while replica {} hung", victim + 1) };
        let sent = Instant::now();
        assert_eq!(site.logout(b, &t), 204, "logout on gateway {b} while replica {} hung\n{}", victim + 1, site.logs());
        let acked = Instant::now();
        slowest_logout = slowest_logout.max(acked - sent);
        logouts += 1;
        assert_eventually!(Duration::from_secs(5), site.query(a, &t) == 401, "gateway {a} honours the logout");
        slowest_propagation = slowest_propagation.max(acked.elapsed());
    }
    site.replicas[victim].as_ref().unwrap().signal("CONT");
    (checks, logouts, slowest_logout, slowest_propagation)
}

#[test]
fn a_hung_leader_or_follower_costs_no_token_check_and_no_logout() {
    let site = Site::start();
    assert_eventually!(Duration::from_secs(10), site.leader().is_some(), "a leader\n{}", site.logs());
    let leader = site.leader().unwrap();
    let (checks, logouts, slowest, propagation) = hung_replica(&site, leader, Duration::from_secs(61));
    println!(
        "leader replica {} SIGSTOPped for 60 s: {checks} token checks and {logouts} logouts, none failed; slowest logout {slowest:?}; slowest propagation to the other gateway {propagation:?}",
        leader + 1
    );
    assert!(propagation < Duration::from_secs(1), "a logout took {propagation:?} to reach the other gateway");
    assert_eventually!(
        Duration::from_secs(15),
        site.leader().is_some_and(|l| l != leader) || site.leader().is_some(),
        "a leader after the resume"
    );
    let follower = (0..3).find(|i| Some(*i) != site.leader()).unwrap();
    let (checks, logouts, slowest, propagation) = hung_replica(&site, follower, Duration::from_secs(61));
    println!(
        "follower replica {} SIGSTOPped for 60 s: {checks} token checks and {logouts} logouts, none failed; slowest logout {slowest:?}; slowest propagation {propagation:?}",
        follower + 1
    );
    assert!(propagation < Duration::from_secs(1), "a logout took {propagation:?} to reach the other gateway");
}

#[test]
fn a_replica_down_through_100000_changes_rejoins_by_snapshot_and_its_feed_resumes() {
    let ws = Workspace::with_certs();
    let mut g = Group::start(&ws, 3, "", "");
    let leader = g.leader(&ws).expect("a leader");
    let down = (leader + 1) % 3;
    // A gateway-like subscriber of the replica that will go down: its epoch and revision.
    let ports = g.ports.clone();
    let feed_url = |i: usize, q: &str| format!("https://127.0.0.1:{}/cachingservice/api/v1/feed?maps=invalidTokens{q}", ports[i]);
    let first_line = |url: String| -> Value {
        use std::io::BufRead;
        let r = ws.client().get(url).timeout(Duration::from_secs(60)).send().unwrap();
        let mut line = String::new();
        std::io::BufReader::new(r).read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap()
    };
    assert!(revoke(&ws, &g, leader, "first"));
    let snap = first_line(feed_url(down, ""));
    let (epoch, rev) = (snap["epoch"].as_str().unwrap().to_owned(), snap["revision"].as_u64().unwrap());
    g.procs[down].as_mut().unwrap().kill();
    g.procs[down] = None;
    // Past the leader's snapshot interval (10,000 entries; 1,000 kept in the log), so the
    // replica cannot catch up from the log: 100,000 changes through the two left, 32 at a time.
    const CHANGES: usize = 100_000;
    let started = Instant::now();
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for w in 0..32 {
            let (ws, g, next) = (&ws, &g, &next);
            s.spawn(move || {
                let c = ws.client();
                let via = if w % 2 == 0 { leader } else { (down + 1) % 3 };
                loop {
                    let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if k >= CHANGES {
                        return;
                    }
                    let r = c
                        .post(format!("https://127.0.0.1:{}/cachingservice/api/v1/cache-list/invalidTokens", g.ports[via]))
                        .json(&json!({"key": format!("c{k}"), "value": "1"}))
                        .send()
                        .unwrap();
                    assert_eq!(r.status(), 201, "change {k}");
                }
            });
        }
    });
    println!("{CHANGES} changes through two replicas in {:?}", started.elapsed());
    // Where a gateway following the leader now stands.
    let latest = first_line(feed_url(leader, ""));
    let latest_rev = latest["revision"].as_u64().unwrap();
    // Back: far behind the leader's compacted log, it installs a snapshot. Meanwhile a gateway
    // failing over to it with the revision it has must never be handed a state behind that
    // revision (it would forget the revocations in between): the replica answers once it has
    // caught up, or sends the gateway elsewhere.
    g.spawn(&ws, down);
    let resume = feed_url(down, &format!("&since={latest_rev}&epoch={epoch}"));
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut refused, mut answered) = (0, None);
    while Instant::now() < deadline && answered.is_none() {
        match ws.client().get(&resume).timeout(Duration::from_secs(10)).send() {
            Ok(r) if r.status() == 200 => {
                use std::io::BufRead;
                let mut line = String::new();
                std::io::BufReader::new(r).read_line(&mut line).unwrap();
                match serde_json::from_str::<Value>(&line) {
                    // The replica ends the feed with its reason (not in contact, behind).
                    Ok(v) if v["type"] != "error" => answered = Some(v),
                    _ => refused += 1,
                }
            }
            _ => refused += 1,
        }
    }
    let first = answered.expect("the rejoining replica serves the feed within 60 s");
    println!("the rejoining replica answered a resume at revision {latest_rev} after {refused} refusals: {}", first["type"]);
    assert!(
        first["revision"].as_u64().is_some_and(|r| r >= latest_rev),
        "a gateway at revision {latest_rev} resuming on the rejoining replica was sent {} at revision {} ({refused} attempts refused first)",
        first["type"],
        first["revision"]
    );
    g.wait_all_healthy(&ws);
    assert_eventually!(
        Duration::from_secs(60),
        tokens(&ws, &g, down).is_some_and(|t| t.len() == CHANGES + 1),
        "the rejoined replica has every change\n{}",
        g.procs[down].as_ref().map(|p| p.logs()).unwrap_or_default()
    );
    assert!(g.procs[down].as_ref().unwrap().logs().contains("snapshot installed"), "it caught up by a snapshot");
    // A subscriber resumes on it with the revision it had: same epoch, so it is served
    // (changes or a fresh snapshot), and it ends at the group's latest state.
    let resumed = first_line(feed_url(down, &format!("&since={rev}&epoch={epoch}")));
    assert!(resumed["type"] == "change" || resumed["type"] == "snapshot", "{resumed}");
    let now = first_line(feed_url(down, ""));
    assert_eq!(now["epoch"], epoch.as_str(), "the group's epoch is the same on the rejoined replica");
    assert_eq!(now["maps"]["invalidTokens"].as_object().unwrap().len(), CHANGES + 1);
}

#[test]
fn a_log_of_large_values_is_compacted_by_size_long_before_the_entry_count() {
    let ws = Workspace::with_certs();
    let mut g = Group::start(&ws, 3, "", "");
    let leader = g.leader(&ws).expect("a leader");
    // 64 values of 700 KiB: about 45 MB of log in 64 entries, far below the 10,000-entry policy
    // but past the 32 MiB size bound.
    let value = "v".repeat(700 * 1024);
    let c = ws.client();
    for k in 0..64 {
        let r = c
            .post(format!("https://127.0.0.1:{}/cachingservice/api/v1/cache", g.ports[leader]))
            .json(&json!({"key": format!("big{k}"), "value": value}))
            .timeout(Duration::from_secs(30))
            .send()
            .unwrap();
        assert_eq!(r.status(), 201, "write {k}");
    }
    let purged = |i: usize| g.health(&ws, i).and_then(|(_, h)| h["components"]["storage"]["details"]["replica"]["purged"].as_u64());
    for i in 0..3 {
        assert_eventually!(
            Duration::from_secs(60),
            purged(i).is_some_and(|p| p >= 40),
            "replica r{} purged its log by size (purged up to {:?})\n{}",
            i + 1,
            purged(i),
            g.logs()
        );
    }
    println!("purged up to index {:?} on the three replicas", (0..3).map(purged).collect::<Vec<_>>());
    // Nothing was lost to the purge, and a restarted follower recovers from its snapshot.
    let follower = (leader + 1) % 3;
    g.procs[follower].as_mut().unwrap().kill();
    g.procs[follower] = None;
    g.spawn(&ws, follower);
    g.wait_all_healthy(&ws);
    for i in 0..3 {
        for k in [0, 63] {
            let r = c.get(format!("https://127.0.0.1:{}/cachingservice/api/v1/cache/big{k}", g.ports[i])).send().unwrap();
            assert_eq!(r.status(), 200, "big{k} on r{}", i + 1);
            assert_eq!(r.json::<Value>().unwrap()["value"].as_str().map(str::len), Some(value.len()));
        }
    }
}
