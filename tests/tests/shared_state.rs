//! Revocations that can never be undone, lost or split: each test is one way shared state
//! broke before (a user lifting an administrator's rule, a restarted inMemory store, a lost
//! salt, a full store, eviction inside the leeway), run against real gateway and caching
//! service processes.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use plexgate_tests::assert_eventually;
use plexgate_tests::cluster::{Cluster, ClusterSetup, PASSWORD};
use reqwest::blocking::Response;
use serde_json::{Value, json};

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

/// `POST /access-token/validate`: its status.
fn validate(c: &Cluster, i: usize, pat: &str, service: &str) -> u16 {
    c.http.post(c.auth(i, "/access-token/validate")).json(&json!({"token": pat, "serviceId": service})).send().unwrap().status().as_u16()
}

/// `DELETE <path>` with a JSON body and basic auth of `user`.
fn delete_as(c: &Cluster, i: usize, user: &str, path: &str, body: Value) -> Response {
    c.http.delete(c.auth(i, path)).basic_auth(user, Some(PASSWORD)).json(&body).send().unwrap()
}

fn logout(c: &Cluster, i: usize, token: &str) -> u16 {
    c.http.post(c.auth(i, "/logout")).header("Cookie", format!("apimlAuthenticationToken={token}")).send().unwrap().status().as_u16()
}

/// `https://127.0.0.1:<caching service>/cachingservice/api/v1<path>`.
fn cache_api(c: &Cluster, path: &str) -> String {
    format!("https://127.0.0.1:{}/cachingservice/api/v1{path}", c.caching_port)
}

/// The salt the gateways share, as the caching service holds it (the workspace's client
/// certificate is the gateways').
fn stored_salt(c: &Cluster) -> Option<String> {
    let r = c.ws.client().get(cache_api(c, "/cache/salt")).send().ok()?;
    (r.status() == 200).then(|| r.json::<Value>().ok()?["value"].as_str().map(str::to_owned)).flatten()
}

/// A logout on gateway `a` is honoured by gateway `b` within 5 s, and the other way round.
fn logouts_cross(c: &Cluster, a: usize, b: usize) {
    for (from, to) in [(a, b), (b, a)] {
        let token = c.login(to, "bob", PASSWORD);
        assert_eq!(c.query(to, &token).status(), 200);
        assert_eq!(logout(c, from, &token), 204, "logout on gateway {from}");
        assert_eventually!(
            Duration::from_secs(5),
            c.query(to, &token).status() == 401,
            "a logout on gateway {from} honoured by gateway {to}\n{}",
            c.all_logs()
        );
    }
}

#[test]
fn a_user_cannot_lift_an_administrators_revocation() {
    let c = Cluster::start(ClusterSetup::default());
    let pat = c.generate_pat(0, "bob", &["svc"]);
    assert_eq!(validate(&c, 0, &pat, "svc"), 204);
    // The administrator revokes every token of bob issued until now.
    assert_eq!(
        delete_as(&c, 0, "alice", "/access-token/revoke/tokens/user", json!({"userId": "bob", "timestamp": now_ms()})).status(),
        204
    );
    assert_eventually!(Duration::from_secs(5), validate(&c, 1, &pat, "svc") == 401, "the rule reaches gateway 2");
    // bob answers with an early timestamp of his own: accepted, and it lifts nothing.
    for i in [0, 1] {
        assert_eq!(delete_as(&c, i, "bob", "/access-token/revoke/tokens", json!({"timestamp": 1})).status(), 204);
    }
    // Give any wrongly lowered rule the time to travel; the PAT stays revoked on both gateways.
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while std::time::Instant::now() < deadline {
        for i in [0, 1] {
            assert_eq!(validate(&c, i, &pat, "svc"), 401, "the administrator's rule was lowered on gateway {i}");
        }
    }
    // The store holds the administrator's rule, not bob's.
    let users: Value = c.ws.client().get(cache_api(&c, "/cache-list/invalidUsers")).send().unwrap().json().unwrap();
    let rules: Vec<u64> = users.as_object().unwrap().values().map(|v| v.as_str().unwrap().parse().unwrap()).collect();
    assert!(rules.len() == 1 && rules[0] > 1_000_000, "{users}");
    // A timestamp in the future is refused, with Zowe's message for a bad revoke body.
    let future = delete_as(&c, 0, "bob", "/access-token/revoke/tokens", json!({"timestamp": now_ms() + 3_600_000}));
    assert_eq!(future.status(), 400);
    let body: Value = future.json().unwrap();
    assert_eq!(body["messages"][0]["messageNumber"], "ZWEAT607E", "{body}");
    assert!(body["messages"][0]["messageContent"].as_str().unwrap().contains("future"), "{body}");
    let admin_future =
        delete_as(&c, 0, "alice", "/access-token/revoke/tokens/scope", json!({"serviceId": "svc", "timestamp": u64::MAX / 2}));
    assert_eq!(admin_future.status(), 400);
}

#[test]
fn an_in_memory_restart_neither_stops_revocations_nor_loses_the_salt() {
    let mut c = Cluster::start(ClusterSetup { gateways: 3, start_gateways: 2, ..ClusterSetup::default() });
    // Revisions before the restart, so the gateways' views stand well ahead of the new store.
    for _ in 0..5 {
        let t = c.login(0, "bob", PASSWORD);
        assert_eq!(logout(&c, 0, &t), 204);
    }
    let salt = stored_salt(&c).expect("the gateways made a salt");
    let mut old = c.caching.take().unwrap();
    old.kill();
    c.start_caching();
    // The running gateways notice the new store and give it back the salt they hash with.
    assert_eventually!(Duration::from_secs(10), stored_salt(&c).as_deref() == Some(salt.as_str()), "the salt restored\n{}", c.all_logs());
    logouts_cross(&c, 0, 1);
    // A gateway started after the loss reads the same salt: its logouts match everyone's.
    c.start_gateway(2);
    logouts_cross(&c, 0, 2);
    logouts_cross(&c, 1, 2);
}

#[test]
fn remove_oldest_pressure_never_evicts_the_salt() {
    let mut c = Cluster::start(ClusterSetup {
        gateways: 2,
        start_gateways: 1,
        storage: "inMemory, size: 20, evictionStrategy: removeOldest",
        ..ClusterSetup::default()
    });
    assert_eventually!(Duration::from_secs(10), stored_salt(&c).is_some(), "gateway 1 made the salt");
    let salt = stored_salt(&c).unwrap();
    // Another caller (a service namespace of the same certificate) writes far past the size.
    let other = c.ws.client();
    for i in 0..60 {
        let r =
            other.post(cache_api(&c, "/cache")).header("X-CS-Service-ID", "filler").json(&json!({"key": format!("k{i}"), "value": "v"}));
        assert_eq!(r.send().unwrap().status(), 201, "removeOldest makes room");
    }
    assert_eq!(stored_salt(&c).as_deref(), Some(salt.as_str()), "the salt survived the pressure");
    // A gateway started now hashes with the same salt: a logout on either is honoured by both.
    c.start_gateway(1);
    logouts_cross(&c, 0, 1);
}

#[test]
fn a_store_filled_by_another_caller_still_takes_logouts() {
    let c = Cluster::start(ClusterSetup { storage: "inMemory, size: 20, evictionStrategy: reject", ..ClusterSetup::default() });
    assert_eventually!(Duration::from_secs(10), stored_salt(&c).is_some(), "the gateways made the salt");
    // Other callers fill the store until it refuses even a new caller's first entry.
    let other = c.ws.client();
    let mut full = false;
    for ns in 0..50 {
        let mut stored = 0;
        for k in 0..50 {
            let r = other
                .post(cache_api(&c, "/cache"))
                .header("X-CS-Service-ID", format!("filler-{ns}"))
                .json(&json!({"key": format!("k{k}"), "value": "v"}))
                .send()
                .unwrap();
            match r.status().as_u16() {
                201 => stored += 1,
                507 => break,
                s => panic!("filling the store: {s}"),
            }
        }
        if stored == 0 {
            full = true;
            break;
        }
    }
    assert!(full, "the store never answered 507");
    // Logouts and rules are still recorded, and honoured by both gateways.
    logouts_cross(&c, 0, 1);
    let pat = c.generate_pat(0, "bob", &["svc"]);
    assert_eq!(c.http.delete(c.auth(0, "/access-token/revoke")).json(&json!({"token": pat})).send().unwrap().status(), 204);
    assert_eventually!(Duration::from_secs(5), validate(&c, 1, &pat, "svc") == 401, "PAT revoke honoured by gateway 2");
}

/// The `exp` claim of a JWT, in epoch milliseconds.
fn exp_ms(token: &str) -> u64 {
    use base64::Engine;
    let payload = token.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    claims["exp"].as_u64().unwrap() * 1000
}

#[test]
fn a_revocation_outlives_expiry_by_the_leeway() {
    let c = Cluster::start(ClusterSetup { gateway_yaml: "    jwt: {lifetime: 3s, leeway: 20s}\n".to_owned(), ..ClusterSetup::default() });
    let token = c.login(0, "bob", PASSWORD);
    assert_eq!(logout(&c, 0, &token), 204);
    // Past its expiry, but within the leeway: verification still accepts the signature...
    let exp = exp_ms(&token);
    assert_eventually!(Duration::from_secs(10), now_ms() > exp + 1500, "the token expired");
    // ...so an administrator's eviction must keep its revocation.
    assert_eq!(c.http.delete(c.auth(0, "/access-token/evict")).basic_auth("alice", Some(PASSWORD)).send().unwrap().status(), 204);
    for i in [0, 1] {
        assert_eq!(c.query(i, &token).status(), 401, "gateway {i}: a revoked token within the leeway is valid again after eviction");
    }
}

#[test]
fn expired_revocations_are_evicted_in_the_background_after_the_leeway() {
    let c = Cluster::start(ClusterSetup {
        gateway_yaml: "    jwt: {lifetime: 2s, leeway: 3s}\n    revocation: {evictInterval: 300ms}\n".to_owned(),
        ..ClusterSetup::default()
    });
    let token = c.login(0, "bob", PASSWORD);
    assert_eq!(logout(&c, 0, &token), 204);
    let entries = || -> usize {
        let m: Value = c.ws.client().get(cache_api(&c, "/cache-list/invalidTokens")).send().unwrap().json().unwrap();
        m.as_object().map_or(0, |o| o.len())
    };
    // exp + leeway + the second the token check rounds to.
    let keep_until = exp_ms(&token) + 4000;
    // Kept while any gateway would still accept the token...
    while now_ms() + 500 < keep_until {
        assert_eq!(entries(), 1, "evicted before exp + leeway");
        assert_eq!(c.query(1, &token).status(), 401);
    }
    // ...and gone without anyone asking, soon after.
    assert_eventually!(Duration::from_secs(10), entries() == 0, "the expired revocation evicted in the background\n{}", c.all_logs());
    assert_eq!(c.query(1, &token).status(), 401, "expired now, beyond the leeway");
}
