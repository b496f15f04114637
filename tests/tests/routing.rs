//! Routing to API services through real gateway and sample-service processes: the route
//! table, exact paths, forwarding headers, authentication schemes, load balancing, failover
//! (Zowe bug #3010), pinning, and the answers when nothing can serve (never a 500, #3878).

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use plexgate_tests::assert_eventually;
use plexgate_tests::cluster::{Cluster, ClusterSetup, PASSWORD, sample_definition};
use serde_json::{Value, json};

fn zowe_error(r: reqwest::blocking::Response, status: u16, number: &str) -> Value {
    assert_eq!(r.status().as_u16(), status);
    let body: Value = r.json().expect("Zowe error body");
    assert_eq!(body["messages"][0]["messageNumber"], number, "{body}");
    body
}

fn cluster(gateway_yaml: &str) -> Cluster {
    Cluster::start(ClusterSetup { gateways: 2, start_gateways: 0, gateway_yaml: gateway_yaml.to_owned(), ..ClusterSetup::default() })
}

#[test]
fn routes_round_robin_with_exact_paths_and_forwarding_headers() {
    let mut c = cluster("");
    let (a, b) = (c.start_sample("a"), c.start_sample("b"));
    c.define("sample.yml", &sample_definition("sample", &[a.port, b.port], "bypass"));
    c.start_gateway(0);
    let mut seen = std::collections::BTreeMap::new();
    for _ in 0..10 {
        let v: Value = c.http.get(c.url(0, "/sample/api/v1/hello")).send().unwrap().json().unwrap();
        *seen.entry(v["instance"].as_str().unwrap().to_owned()).or_insert(0) += 1;
    }
    assert_eq!(seen.values().copied().collect::<Vec<_>>(), [5, 5], "round-robin: {seen:?}");
    // The rest of the path and the query travel exactly, encoded as sent.
    let v: Value = c
        .http
        .post(c.url(0, "/sample/api/v1/echo/a%2Fb//c%20d?x=%2F&y=1+2"))
        .header("X-Certificate-DistinguishedName", "CN=forged")
        .header("X-Certificate-CommonName", "forged")
        .header("Connection", "X-Drop-Me")
        .header("X-Drop-Me", "1")
        .header("X-Forwarded-For", "10.9.9.9")
        .body("hello")
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(v["method"], "POST");
    assert_eq!(v["path"], "/sample/api/v1/echo/a%2Fb//c%20d");
    assert_eq!(v["query"], "x=%2F&y=1+2");
    assert_eq!(v["bodyLength"], 5);
    let h = &v["headers"];
    assert!(
        h.get("x-certificate-distinguishedname").is_none() && h.get("x-certificate-commonname").is_none(),
        "client X-Certificate-* stripped: {h}"
    );
    assert!(h.get("x-drop-me").is_none(), "headers named in Connection are hop-by-hop: {h}");
    assert_eq!(h["x-forwarded-for"], "10.9.9.9, 127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "https");
    assert_eq!(h["x-forwarded-host"], format!("127.0.0.1:{}", c.ports[0]));
    assert!(h["forwarded"].as_str().unwrap().starts_with("for=127.0.0.1;proto=https;host="), "{h}");
    // X-Forward-To names the service instead of the path.
    let v: Value = c.http.get(c.url(0, "/api/v1/hello")).header("X-Forward-To", "sample").send().unwrap().json().unwrap();
    assert_eq!(v["message"], "hello from the plexgate sample service");
    // The service list shows both instances with their health.
    let list: Value = c.http.get(c.url(0, "/gateway/api/v1/services")).send().unwrap().json().unwrap();
    assert_eq!(list[0]["serviceId"], "sample");
    assert_eq!(list[0]["status"], "UP");
    assert_eq!(list[0]["instances"].as_array().unwrap().len(), 2);
}

#[test]
fn paths_that_step_out_of_the_route_are_refused() {
    let mut c = cluster("");
    let a = c.start_sample("a");
    c.define("sample.yml", &sample_definition("sample", &[a.port], "bypass"));
    c.start_gateway(0);
    // Sent raw: an HTTP client library would normalise these paths before sending.
    for bad in [
        "/sample/api/v1/%2e%2e/%2e%2e/application/health",
        "/sample/api/v1/echo/%2E%2e/x",
        "/sample/api/v1/.%2e/secret",
        "/sample/api/v1/../../application/health",
    ] {
        let answer = plexgate_tests::https::raw_request(
            &c.ws.ca(),
            c.ports[0],
            format!("GET {bad} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").as_bytes(),
        );
        assert!(answer.starts_with("HTTP/1.1 400"), "{bad}: {answer}");
        assert!(answer.contains("ZWEAO400E"), "{bad}: {answer}");
    }
    zowe_error(c.http.get(c.url(0, "/nosuchservice/api/v1/x")).send().unwrap(), 404, "ZWEAO404E");
    zowe_error(c.http.get(c.url(0, "/sample/api/v2/hello")).send().unwrap(), 404, "ZWEAO404E");
    zowe_error(c.http.get(c.url(0, "/sample")).send().unwrap(), 404, "ZWEAO404E");
}

#[test]
fn zowe_jwt_requires_a_login_token_or_a_pat_for_the_service_and_passes_it_on() {
    let mut c = cluster("");
    let a = c.start_sample("a");
    c.define("sample.yml", &sample_definition("sample", &[a.port], "zoweJwt"));
    c.start_gateway(0);
    c.start_gateway(1);
    let url = c.url(1, "/sample/api/v1/hello");
    let r = c.http.get(&url).send().unwrap();
    assert_eq!(r.headers()["www-authenticate"], "Basic realm=\"Realm\"");
    zowe_error(r, 401, "ZWEAO402E");
    zowe_error(c.http.get(&url).bearer_auth("not.a.token").send().unwrap(), 401, "ZWEAO402E");
    let token = c.login(0, "alice", PASSWORD);
    let v: Value = c.http.get(&url).header("Cookie", format!("apimlAuthenticationToken={token}")).send().unwrap().json().unwrap();
    assert_eq!(v["user"], "alice");
    assert_eq!(v["headers"]["authorization"], format!("Bearer {token}"));
    assert!(v["headers"]["cookie"].as_str().unwrap().contains(&format!("apimlAuthenticationToken={token}")));
    // PATs: only for the services in their scopes; by header, cookie or Bearer.
    let pat = |scopes: Value| {
        c.http
            .post(c.auth(0, "/access-token/generate"))
            .basic_auth("bob", Some(PASSWORD))
            .json(&json!({"validity": 1, "scopes": scopes}))
            .send()
            .unwrap()
            .text()
            .unwrap()
    };
    let good = pat(json!(["sample"]));
    let other = pat(json!(["elsewhere"]));
    assert_eq!(c.http.get(&url).header("PRIVATE-TOKEN", &good).send().unwrap().json::<Value>().unwrap()["user"], "bob");
    assert_eq!(c.http.get(&url).header("Cookie", format!("personalAccessToken={good}")).send().unwrap().status(), 200);
    assert_eq!(c.http.get(&url).bearer_auth(&good).send().unwrap().status(), 200);
    zowe_error(c.http.get(&url).header("PRIVATE-TOKEN", &other).send().unwrap(), 401, "ZWEAO402E");
    // Logged out on g1: refused on g2 too.
    assert_eq!(c.http.post(c.auth(0, "/logout")).bearer_auth(&token).send().unwrap().status(), 204);
    assert_eventually!(
        Duration::from_secs(1),
        c.http.get(&url).bearer_auth(&token).send().unwrap().status() == 401,
        "logout honoured on routes"
    );
}

#[test]
fn a_killed_instance_costs_no_request_and_pinning_follows_the_instance() {
    let mut c = cluster("    routing: {healthCheckInterval: 200ms}\n");
    let a = c.start_sample("a");
    let mut b = c.start_sample("b");
    c.define("sample.yml", &sample_definition("sample", &[a.port, b.port], "bypass"));
    c.start_gateway(0);
    let url = c.url(0, "/sample/api/v1/hello");
    let pinned_b = format!("127.0.0.1:sample:{}", b.port);
    let v: Value = c.http.get(&url).header("X-InstanceId", &pinned_b).send().unwrap().json().unwrap();
    assert_eq!(v["instance"], "b");
    b.proc.kill();
    // Zowe bug #3010: every request must still succeed.
    let start = Instant::now();
    let mut failures = Vec::new();
    for i in 0..1000 {
        let r = c.http.get(&url).send().unwrap();
        if r.status() != 200 {
            failures.push((i, r.status().as_u16()));
        }
    }
    println!("1000 requests with one of two instances killed: {:?}, failures {failures:?}", start.elapsed());
    assert!(failures.is_empty(), "{failures:?}");
    // Pinned to the dead instance: a clear 503.
    let body = zowe_error(c.http.get(&url).header("X-InstanceId", &pinned_b).send().unwrap(), 503, "ZWEAO503E");
    assert!(body["messages"][0]["messageContent"].as_str().unwrap().contains(&pinned_b), "{body}");
    zowe_error(c.http.get(&url).header("X-InstanceId", "nohost:sample:1").send().unwrap(), 503, "ZWEAO503E");
}

#[test]
fn all_instances_down_is_a_503_never_a_500() {
    let mut c = cluster("");
    let dead = plexgate_tests::free_port();
    c.define("sample.yml", &sample_definition("sample", &[dead], "bypass"));
    c.start_gateway(0);
    for method in ["GET", "POST"] {
        let r = c.http.request(method.parse().unwrap(), c.url(0, "/sample/api/v1/hello")).send().unwrap();
        zowe_error(r, 503, "ZWEAO503E");
    }
}

#[test]
fn a_hanging_instance_is_a_504_and_a_garbage_answer_a_502() {
    let mut c = cluster("    routing: {responseTimeout: 1s, retries: 0}\n");
    // A plain-HTTP peer that answers garbage, and one that never answers.
    let garbage = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hang = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (gp, hp) = (garbage.local_addr().unwrap().port(), hang.local_addr().unwrap().port());
    std::thread::spawn(move || {
        for s in garbage.incoming() {
            let mut s = s.unwrap();
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = s.write_all(b"this is not HTTP\r\n\r\n");
        }
    });
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in hang.incoming() {
            held.push(s);
        }
    });
    let def = format!(
        "services:\n  - serviceId: garbage\n    instanceBaseUrls: [http://127.0.0.1:{gp}/]\n    routes: [{{gatewayUrl: api, serviceRelativeUrl: /}}]\n  - serviceId: hang\n    instanceBaseUrls: [http://127.0.0.1:{hp}/]\n    routes: [{{gatewayUrl: api, serviceRelativeUrl: /}}]\n"
    );
    c.define("peers.yml", &def);
    c.start_gateway(0);
    zowe_error(c.http.get(c.url(0, "/garbage/api/x")).send().unwrap(), 502, "ZWEAG510E");
    let start = Instant::now();
    zowe_error(c.http.get(c.url(0, "/hang/api/x")).send().unwrap(), 504, "ZWEAG510E");
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(5), "504 after the 1 s timeout, took {took:?}");
}

#[test]
fn sticky_sessions_are_shared_by_every_gateway_and_move_when_the_instance_dies() {
    let mut c = cluster("    routing: {healthCheckInterval: 200ms}\n");
    let mut a = c.start_sample("a");
    let mut b = c.start_sample("b");
    let def = sample_definition("sticky", &[a.port, b.port], "zoweJwt")
        + "    customMetadata:\n      apiml:\n        lb:\n          type: authentication\n";
    c.define("sticky.yml", &def);
    c.start_gateway(0);
    c.start_gateway(1);
    let token = c.login(0, "alice", PASSWORD);
    let hit = |i: usize| -> String {
        let v: Value = c.http.get(c.url(i, "/sticky/api/v1/hello")).bearer_auth(&token).send().unwrap().json().unwrap();
        v["instance"].as_str().unwrap().to_owned()
    };
    // The binding is written after the answer (never waiting on the caching service) and
    // reaches the other gateway through the feed in milliseconds; a request there before it
    // arrives may bind elsewhere, and the last binding written wins on every gateway. So: the
    // first request, then 20 alternating gateways land on one instance once it has settled.
    let one_instance = |hit: &dyn Fn(usize) -> String, n: usize| -> Option<String> {
        let seen: Vec<String> = (0..n).map(|k| hit(k % 2)).collect();
        seen.iter().all(|s| *s == seen[0]).then(|| seen[0].clone())
    };
    hit(0);
    assert_eventually!(Duration::from_secs(5), one_instance(&hit, 20).is_some(), "20 requests alternating gateways: one instance");
    let first = one_instance(&hit, 20).expect("still one instance");
    // Another user may land elsewhere, but stays wherever that is too.
    let bob = c.login(1, "bob", PASSWORD);
    let bob_hit = |i: usize| -> String {
        c.http.get(c.url(i, "/sticky/api/v1/hello")).bearer_auth(&bob).send().unwrap().json::<Value>().unwrap()["instance"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    bob_hit(1);
    assert_eventually!(Duration::from_secs(5), one_instance(&bob_hit, 6).is_some(), "bob alternating gateways: one instance");
    // Its instance dies: the user moves to the other one and stays there, on both gateways,
    // even after the first instance is back.
    let (dead_port, other) = if first == "a" { (a.port, "b") } else { (b.port, "a") };
    if first == "a" {
        a.proc.kill()
    } else {
        b.proc.kill()
    }
    let moved: Vec<String> = (0..10).map(|n| hit(n % 2)).collect();
    assert!(moved.iter().all(|s| s == other), "{moved:?}");
    let _back = c.start_sample_on(&first, dead_port);
    assert_eventually!(
        Duration::from_secs(5),
        c.http.get(c.url(0, "/gateway/api/v1/services")).send().unwrap().json::<Value>().unwrap().as_array().unwrap()[0]["instances"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["status"] == "UP"),
        "the instance is healthy again"
    );
    let after: Vec<String> = (0..10).map(|n| hit(n % 2)).collect();
    assert!(after.iter().all(|s| s == other), "stays on the new instance: {after:?}");
}

#[test]
fn sticky_requests_answer_promptly_while_the_caching_service_is_stopped() {
    let mut c = cluster("");
    let (a, b) = (c.start_sample("a"), c.start_sample("b"));
    let def = sample_definition("sticky", &[a.port, b.port], "zoweJwt")
        + "    customMetadata:\n      apiml:\n        lb:\n          type: authentication\n";
    c.define("sticky.yml", &def);
    c.start_gateway(0);
    let (alice, bob) = (c.login(0, "alice", PASSWORD), c.login(0, "bob", PASSWORD));
    // Hung, not dead: connections open, no answer (the sticky write's worst case).
    let caching = c.caching.as_ref().unwrap();
    caching.signal("STOP");
    let timed = |token: &str| -> (u16, String, Duration) {
        let start = Instant::now();
        let r = c.http.get(c.url(0, "/sticky/api/v1/hello")).bearer_auth(token).timeout(Duration::from_secs(20)).send().unwrap();
        let status = r.status().as_u16();
        let v: Value = r.json().unwrap_or(Value::Null);
        (status, v["instance"].as_str().unwrap_or("-").to_owned(), start.elapsed())
    };
    let mut seen = Vec::new();
    for token in [&alice, &bob] {
        let hits: Vec<(u16, String, Duration)> = (0..4).map(|_| timed(token)).collect();
        assert!(hits.iter().all(|(s, _, took)| *s == 200 && *took < Duration::from_secs(1)), "answered without waiting: {hits:?}");
        assert!(hits.iter().all(|(_, i, _)| *i == hits[0].1), "sticky on this gateway meanwhile: {hits:?}");
        seen.push(hits[0].1.clone());
    }
    caching.signal("CONT");
    // The write that hung is recorded once the caching service is back (in the background).
    let store = c.ws.client();
    let url = format!("https://127.0.0.1:{}/cachingservice/api/v1/cache-list/stickyRoutes", c.caching_port);
    assert_eventually!(
        Duration::from_secs(15),
        {
            timed(&alice);
            timed(&bob);
            store.get(&url).send().ok().and_then(|r| r.json::<Value>().ok()).is_some_and(|m| {
                // Instance ids end with the instance's port.
                let port = |sample: &str| if sample == "a" { a.port } else { b.port };
                let bound = |key: &str, sample: &str| {
                    m[key]
                        .as_str()
                        .and_then(|v| serde_json::from_str::<Value>(v).ok())
                        .is_some_and(|v| v["instance"].as_str().is_some_and(|i| i.ends_with(&format!(":{}", port(sample)))))
                };
                bound("sticky/alice", &seen[0]) && bound("sticky/bob", &seen[1])
            })
        },
        "both bindings stored after SIGCONT: {seen:?} {:?}",
        store.get(&url).send().ok().map(|r| r.text())
    );
}

#[test]
fn sighup_reloads_definitions_without_dropping_requests() {
    let mut c = cluster("");
    let a = c.start_sample("a");
    c.define("one.yml", &sample_definition("one", &[a.port], "bypass"));
    c.start_gateway(0);
    zowe_error(c.http.get(c.url(0, "/two/api/v1/hello")).send().unwrap(), 404, "ZWEAO404E");
    // A slow request is in flight across the reload.
    let slow_url = c.url(0, "/one/api/v1/slow?ms=1500");
    let http = c.http.clone();
    let slow = std::thread::spawn(move || http.get(slow_url).send().map(|r| r.status().as_u16()));
    c.define("two.yml", &sample_definition("two", &[a.port], "bypass"));
    c.gateways[0].as_ref().unwrap().signal("HUP");
    assert_eventually!(
        Duration::from_secs(10),
        c.http.get(c.url(0, "/two/api/v1/hello")).send().unwrap().status() == 200,
        "service two routed after SIGHUP"
    );
    assert_eq!(slow.join().unwrap().unwrap(), 200, "the request in flight finished");
    // A broken file on reload keeps the previous table.
    c.define("three.yml", "services:\n  - serviceId: three\n    instanceBaseUrls: [nonsense]\n    routes: [{gatewayUrl: api}]\n");
    c.gateways[0].as_ref().unwrap().signal("HUP");
    assert_eventually!(
        Duration::from_secs(10),
        c.gateways[0].as_ref().unwrap().logs().contains("definitions not reloaded"),
        "the bad reload is logged"
    );
    assert_eq!(c.http.get(c.url(0, "/two/api/v1/hello")).send().unwrap().status(), 200);
}

#[test]
fn x509_routes_pass_the_client_certificate_and_refuse_callers_without_one() {
    let mut c = cluster("");
    let a = c.start_sample("a");
    let def = sample_definition("certsvc", &[a.port], "x509")
        + &sample_definition("slowsvc", &[a.port], "bypass").replace("services:\n", "")
        + "    customMetadata:\n      apiml:\n        readTimeout: 500\n";
    c.define("x509.yml", &def);
    c.start_gateway(0);
    let url = c.url(0, "/certsvc/api/v1/echo");
    // Without a certificate, and with forged X-Certificate-* headers: refused.
    zowe_error(c.http.get(&url).header("X-Certificate-DistinguishedName", "CN=admin").send().unwrap(), 401, "ZWEAO402E");
    // With the workspace's client certificate (signed by the trusted CA).
    let v: Value = c.ws.client().get(&url).header("X-Certificate-CommonName", "forged").send().unwrap().json().unwrap();
    let h = &v["headers"];
    assert_eq!(h["x-certificate-distinguishedname"], "CN=plexgate-gateway, O=plexgate", "{h}");
    assert_eq!(h["x-certificate-commonname"], "plexgate-gateway", "{h}");
    assert!(h["x-certificate-public"].as_str().unwrap().len() > 200, "{h}");
    // A certificate from another CA does not even get through the handshake.
    let stranger = plexgate_tests::Workspace::new();
    stranger.run(&["init", "certificate"], "").expect_code(0);
    let (cert, key) = stranger.client_identity();
    assert!(plexgate_tests::https::client(&c.ws.ca(), Some((&cert, &key))).get(&url).send().is_err());
    // A service's own readTimeout (Zowe's customMetadata.apiml.readTimeout) beats the default.
    let start = Instant::now();
    zowe_error(c.http.get(c.url(0, "/slowsvc/api/v1/slow?ms=3000")).send().unwrap(), 504, "ZWEAG510E");
    assert!(start.elapsed() < Duration::from_millis(2500), "{:?}", start.elapsed());
}

#[test]
fn every_routed_request_has_an_id_an_access_log_line_and_metrics_per_service_and_instance() {
    let mut c = cluster("");
    let a = c.start_sample("a");
    c.define("sample.yml", &sample_definition("sample", &[a.port], "bypass"));
    c.start_gateway(0);
    // A sane id from the client travels to the instance and back.
    let r = c.http.get(c.url(0, "/sample/api/v1/echo/x")).header("X-Request-Id", "trace-42.a:b").send().unwrap();
    assert_eq!(r.headers()["x-request-id"], "trace-42.a:b");
    let v: Value = r.json().unwrap();
    assert_eq!(v["headers"]["x-request-id"], "trace-42.a:b", "{v}");
    // A hostile or oversized one is replaced by the gateway's own, which is unique per request.
    let mut ids = std::collections::BTreeSet::new();
    for bad in ["a b", "<script>", &"x".repeat(200), ""] {
        let r = c.http.get(c.url(0, "/sample/api/v1/hello")).header("X-Request-Id", bad).send().unwrap();
        let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
        assert!(id != bad && !id.is_empty() && id.len() <= 128, "{id}");
        assert!(ids.insert(id), "ids are unique");
    }
    // Errors get one too.
    let r = c.http.get(c.url(0, "/sample/no-such-route")).send().unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.headers().contains_key("x-request-id"));
    // One access-log line per request with who, where, what and how long (written in
    // batches, within 100 ms).
    let find = || c.gateways[0].as_ref().unwrap().logs().lines().find(|l| l.contains("id=trace-42.a:b")).map(str::to_owned);
    assert_eventually!(Duration::from_secs(5), find().is_some(), "the access log line of the request");
    let line = find().expect("the access log line of the request");
    let instance = format!("instance=\"127.0.0.1:sample:{}\"", a.port);
    for field in [
        "plexgate::access",
        "method=GET",
        "path=\"/sample/api/v1/echo/x\"",
        "service=\"sample\"",
        "route=\"api/v1\"",
        &instance,
        "attempts=1",
        "status=200",
        "upstream_millis=",
        "millis=",
    ] {
        assert!(line.contains(field), "{field} missing: {line}");
    }
    let metrics = c.metrics(0);
    assert!(metrics.contains("plexgate_gateway_routed_requests_total{service=\"sample\""), "{metrics}");
    assert!(metrics.contains("plexgate_gateway_routed_upstream_seconds_bucket{service=\"sample\""), "{metrics}");
}

#[test]
fn overlapping_routes_go_to_the_longest_matching_gateway_url_whatever_their_order_in_the_file() {
    let mut c = cluster("");
    let a = c.start_sample("a");
    // The shorter route first in the file: the longer one must still win for its paths.
    c.define(
        "overlap.yml",
        &format!(
            "services:\n  - serviceId: ov\n    instanceBaseUrls: [https://127.0.0.1:{}/]\n    routes:\n      - gatewayUrl: api\n        serviceRelativeUrl: /sample/api/v1/echo/short\n      - gatewayUrl: api/v1\n        serviceRelativeUrl: /sample/api/v1/echo/long\n",
            a.port
        ),
    );
    c.start_gateway(0);
    let path = |p: &str| -> String {
        let v: Value = c.http.get(c.url(0, p)).send().unwrap().json().unwrap();
        v["path"].as_str().unwrap().to_owned()
    };
    assert_eq!(path("/ov/api/v1/x"), "/sample/api/v1/echo/long/x");
    assert_eq!(path("/ov/api/v1"), "/sample/api/v1/echo/long");
    assert_eq!(path("/ov/api/v2/x"), "/sample/api/v1/echo/short/v2/x");
    // `api/v1x` is not under `api/v1`: a route matches whole segments only.
    assert_eq!(path("/ov/api/v1x"), "/sample/api/v1/echo/short/v1x");
}

#[test]
fn an_instance_whose_certificate_is_not_trusted_gets_no_request() {
    let mut c = cluster("");
    // A sample instance with certificates from another CA, in a workspace of its own.
    let stranger = plexgate_tests::Workspace::new();
    stranger.write(
        "zowe.yaml",
        "zowe:\n  workspaceDirectory: workspace\ncomponents:\n  gateway:\n    apiml: {security: {auth: {provider: users-file}}}\n",
    );
    stranger.run(&["init", "certificate", "-c", "zowe.yaml"], "").expect_code(0);
    let port = plexgate_tests::free_port();
    let rogue = stranger.spawn("sample-rogue", &["sample-service", "-c", "zowe.yaml", "--port", &port.to_string(), "--id", "rogue"]);
    assert_eventually!(Duration::from_secs(20), rogue.logs().contains("sample service listening"), "rogue sample up\n{}", rogue.logs());
    c.define("rogue.yml", &sample_definition("rogue", &[port], "bypass"));
    c.start_gateway(0);
    let r = c.http.get(c.url(0, "/rogue/api/v1/echo")).send().unwrap();
    let status = r.status().as_u16();
    let body: Value = r.json().unwrap();
    assert_eq!(status, 503, "{body}");
    // Had the gateway not verified the instance's certificate, the echo would have answered 200.
    assert_eq!(body["messages"][0]["messageNumber"], "ZWEAO503E", "{body}");
}

#[test]
fn services_get_http_1_1_unless_http2_is_enabled_then_http2_by_alpn() {
    for (yaml, expected) in [("", "HTTP/1.1"), ("    routing: {http2: true}\n", "HTTP/2.0")] {
        let mut c = cluster(yaml);
        let a = c.start_sample("a");
        c.define("sample.yml", &sample_definition("sample", &[a.port], "bypass"));
        c.start_gateway(0);
        for _ in 0..3 {
            let v: Value = c.http.post(c.url(0, "/sample/api/v1/echo")).body("x").send().unwrap().json().unwrap();
            assert_eq!(v["version"], expected, "routing {yaml:?}: {v}");
            assert_eq!(v["bodyLength"], 1);
        }
    }
}
