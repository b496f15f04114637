//! Failed-login limits that cannot be used to lock anyone out (issue 11, item 10), through the
//! distributor with PROXY protocol, so the gateways see each client's own address; and the
//! northbound port that says no more than UP/DOWN/DRAINING.

use std::net::IpAddr;
use std::time::Duration;

use plexgate_tests::assert_eventually;
use plexgate_tests::cluster::{Cluster, ClusterSetup, PASSWORD};
use plexgate_tests::distributor::Dist;
use reqwest::blocking::Client;
use serde_json::Value;

/// Two gateways with PROXY protocol behind a distributor that sends it.
fn topology() -> (Cluster, Dist) {
    let mut c =
        Cluster::start(ClusterSetup { start_gateways: 0, gateway_yaml: "    proxyProtocol: true\n".to_owned(), ..ClusterSetup::default() });
    c.spawn_gateway(0);
    c.spawn_gateway(1);
    let base = std::fs::read_to_string(&c.config).unwrap();
    let d = Dist::start(
        &c.ws,
        &base,
        "dist",
        "    proxyProtocol: true\n    healthCheck: {interval: 100ms, timeout: 500ms, unhealthyThreshold: 1, healthyThreshold: 1}\n",
    );
    // Both gateways UP and both targets up in the distributor's view: a gateway the
    // distributor still counts down is tried as a last resort, so one gateway answering UP
    // through it said nothing of the other (which then answered DOWN, its view not loaded yet).
    assert_eventually!(
        Duration::from_secs(30),
        d.status().is_some_and(|s| s["targets"].as_array().is_some_and(|t| t.iter().all(|t| t["state"] == "up"))),
        "gateways UP through the distributor\n{:?}\n{}\n{}",
        d.status(),
        d.proc.logs(),
        c.all_logs()
    );
    (c, d)
}

/// A client whose connections come from `source` (a loopback address).
fn client_from(c: &Cluster, source: &str) -> Client {
    Client::builder()
        .tls_backend_preconfigured(plexgate_tests::https::tls_config(&c.ws.ca(), None))
        .local_address(source.parse::<IpAddr>().unwrap())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

fn login(client: &Client, d: &Dist, user: &str, password: &str) -> reqwest::blocking::Response {
    client.post(format!("https://127.0.0.1:{}/gateway/api/v1/auth/login", d.port)).basic_auth(user, Some(password)).send().unwrap()
}

#[test]
fn one_address_hammering_a_user_does_not_lock_the_user_out_from_another() {
    let (c, d) = topology();
    let attacker = client_from(&c, "127.0.0.2");
    let statuses: Vec<u16> = (0..12).map(|_| login(&attacker, &d, "alice", "wrong").status().as_u16()).collect();
    assert!(statuses[..5].iter().all(|s| *s == 401), "{statuses:?}");
    assert!(statuses[5..].iter().all(|s| *s == 429), "the guesser is stopped: {statuses:?}");
    let limited = login(&attacker, &d, "alice", PASSWORD);
    assert_eq!(limited.status(), 429, "even the right password, from the guessing address");
    assert!(limited.headers().contains_key("retry-after"));
    // The user, from her own address, logs in as the contract says (204 with the cookie).
    let user = client_from(&c, "127.0.0.3");
    let r = login(&user, &d, "alice", PASSWORD);
    assert_eq!(r.status(), 204, "{}", c.all_logs());
    assert!(plexgate_tests::cluster::token_from(&r).is_some());
}

#[test]
fn a_spray_of_names_from_one_address_does_not_lock_out_another() {
    let (c, d) = topology();
    let sprayer = client_from(&c, "127.0.0.2");
    for i in 0..100 {
        assert_eq!(login(&sprayer, &d, &format!("nobody-{i}"), "wrong").status(), 401, "failure {i}");
    }
    assert_eq!(login(&sprayer, &d, "nobody-else", "wrong").status(), 429, "the sprayer is stopped");
    assert_eq!(login(&client_from(&c, "127.0.0.3"), &d, "bob", PASSWORD).status(), 204, "{}", c.all_logs());
}

#[test]
fn metrics_and_health_details_are_on_the_admin_listener_only() {
    let (c, d) = topology();
    let outside = client_from(&c, "127.0.0.2");
    let north = |path: &str| outside.get(format!("https://127.0.0.1:{}{path}", d.port)).send().unwrap();
    assert_eq!(north("/application/metrics").status(), 404);
    let health: Value = north("/application/health").json().unwrap();
    assert_eq!(health["status"], "UP");
    let text = health.to_string();
    assert!(
        health.get("components").is_none() && !text.contains("cachingservice") && !text.contains(&c.caching_port.to_string()),
        "{health}"
    );
    // The admin listener (plain HTTP on loopback) has both.
    let details: Value = reqwest::blocking::get(c.admin_url(0, "/application/health")).unwrap().json().unwrap();
    assert_eq!(details["components"]["revocationView"]["status"], "UP", "{details}");
    assert!(details["components"]["cachingService"]["details"]["url"].as_str().is_some(), "{details}");
    let _ = login(&outside, &d, "alice", PASSWORD);
    assert_eventually!(
        Duration::from_secs(10),
        (0..2).any(|i| c.metrics(i).contains("plexgate_gateway_logins_total{result=\"success\"}")),
        "metrics on the admin listener"
    );
}
