//! A feed heartbeat proves the caching service is in step with its store: two caching
//! services share one Redis, one of them is cut off from it (its link frozen, as a hung
//! network: no reset, no refusal), and a revocation acknowledged through the other must still
//! reach the gateways that followed the cut-off one, within the staleness bound.

use std::time::{Duration, Instant};

use plexgate_tests::cluster::{PASSWORD, token_from};
use plexgate_tests::freeze::Freezer;
use plexgate_tests::process::Proc;
use plexgate_tests::redis::RedisServer;
use plexgate_tests::{Workspace, assert_eventually, free_port};

#[test]
fn a_caching_service_cut_off_from_redis_stops_vouching_for_its_gateways() {
    if !plexgate_tests::redis::available() {
        return;
    }
    let ws = Workspace::with_certs();
    let redis = RedisServer::start(&ws);
    let link = Freezer::start(redis.port);
    let (ga, gb, ca, cb) = (free_port(), free_port(), free_port(), free_port());
    // Both gateways list caching service `a` first, so both follow `a`'s feed.
    let yaml = format!(
        "zowe:\n  externalDomains: [127.0.0.1]\n  workspaceDirectory: workspace\ncomponents:\n  gateway:\n    apiml: {{security: {{auth: {{provider: users-file}}}}}}\n    revocation: {{stalenessBound: 2s}}\n    shutdown: {{grace: 300ms, timeout: 5s}}\n  caching-service:\n    storage:\n      mode: redis\n      redis: {{masterNodeUri: \"127.0.0.1:{}\", timeout: 1}}\n    changeFeed: {{heartbeat: 200ms}}\n  distributor: {{enabled: false}}\nhaInstances:\n  a:\n    hostname: 127.0.0.1\n    components:\n      gateway: {{port: {ga}}}\n      caching-service:\n        port: {ca}\n        storage: {{redis: {{masterNodeUri: \"127.0.0.1:{}\"}}}}\n  b:\n    hostname: 127.0.0.1\n    components:\n      gateway: {{port: {gb}}}\n      caching-service: {{port: {cb}}}\n",
        redis.port, link.port
    );
    ws.write("zowe.yaml", &yaml);
    ws.run(&["users", "add", "bob", "-c", "zowe.yaml"], &format!("{PASSWORD}\n")).expect_code(0);
    let http = plexgate_tests::https::client(&ws.ca(), None);
    let up = |port: u16, proc: &Proc| {
        assert_eventually!(
            Duration::from_secs(20),
            http.get(format!("https://127.0.0.1:{port}/application/health")).send().is_ok_and(|r| r.status() == 200),
            "{port} healthy\n{}",
            proc.logs()
        );
    };
    let procs: Vec<(u16, Proc)> = [("caching-service", "a", ca), ("caching-service", "b", cb), ("gateway", "a", ga), ("gateway", "b", gb)]
        .into_iter()
        .map(|(role, id, port)| {
            let p = ws.spawn(&format!("{role}-{id}"), &[role, "-c", "zowe.yaml", "--ha-instance", id]);
            up(port, &p);
            (port, p)
        })
        .collect();
    let logs = || procs.iter().map(|(_, p)| p.logs()).collect::<String>();
    let login = http.post(format!("https://127.0.0.1:{gb}/gateway/api/v1/auth/login")).basic_auth("bob", Some(PASSWORD)).send().unwrap();
    assert_eq!(login.status(), 204);
    let token = token_from(&login).unwrap();
    let query = |port: u16| {
        http.get(format!("https://127.0.0.1:{port}/gateway/api/v1/auth/query")).bearer_auth(&token).send().unwrap().status().as_u16()
    };
    assert_eq!(query(ga), 200);

    link.freeze();
    // The token is revoked through caching service `b` alone, as a gateway whose client
    // prefers `b` records a logout (stored as Zowe stores it: SHA-512 of salt and token).
    let gateway_cert = ws.client();
    let cs_b = |path: &str| format!("https://127.0.0.1:{cb}/cachingservice/api/v1{path}");
    let salt: serde_json::Value = gateway_cert.get(cs_b("/cache/salt")).send().unwrap().json().unwrap();
    let id = sha512_hex(salt["value"].as_str().unwrap(), &token);
    let revoke = gateway_cert
        .post(cs_b("/cache-list/invalidTokens"))
        .json(&serde_json::json!({"key": id, "value": "{\"tokenValue\":\"x\",\"expiresAt\":4102444800000}"}))
        .send()
        .unwrap();
    assert_eq!(revoke.status(), 201, "{}", logs());
    let acknowledged = Instant::now();
    // Gateway `a` followed the cut-off service: it must stop trusting that view (fail over, or
    // ask per request past the staleness bound) instead of accepting the revoked token.
    assert_eventually!(
        Duration::from_secs(12),
        query(ga) != 200,
        "gateway a still accepts a token revoked {:?} ago: the cut-off caching service kept vouching for its view\n{}",
        acknowledged.elapsed(),
        logs()
    );
    println!(
        "gateway a stopped accepting the revoked token {:?} after the logout was acknowledged (now {})",
        acknowledged.elapsed(),
        query(ga)
    );
    // From then on it never accepts it again, also once the link is back.
    link.thaw();
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        assert_ne!(query(ga), 200, "the revoked token accepted again");
    }
    assert_eventually!(Duration::from_secs(10), query(ga) == 401, "gateway a answers 401 once its view is current again\n{}", logs());
}

/// Lower-case hex SHA-512(salt || value): how gateways name a revoked token.
fn sha512_hex(salt: &str, value: &str) -> String {
    use sha2::{Digest, Sha512};
    let mut h = Sha512::new();
    h.update(salt.as_bytes());
    h.update(value.as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}
