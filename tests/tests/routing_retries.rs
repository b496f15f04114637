//! Retries and instance health (issue 5) through real processes: a gateway, its caching service,
//! and API service instances that fail on demand (`tests/fixtures/flaky_upstream.py`, Python
//! standard library only: a 503, or a TCP reset before any byte of an answer) and record every
//! request they receive, so each test sees exactly which instances a request reached.
//!
//! A failed connect moves to the next instance for any method; a 503 or a reset only for
//! idempotent methods, and never more than `routing.retries` times. An instance that failed is
//! ejected for `routing.ejection`, doubled per consecutive failure and forgotten after a success;
//! active health checks (`healthCheckRelativeUrl`) take an instance out and put it back.
//!
//! Each request carries a unique marker (`?n=`), which is how a test tells its own request apart
//! in an instance's record. Timing claims hold however slow the machine is: the gateway ejects an
//! instance only after the failing request was sent, so "no traffic while ejected" is asserted
//! for requests answered before `sent + ejection` of that request, and nothing later.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use plexgate_tests::assert_eventually;
use plexgate_tests::cluster::{Cluster, ClusterSetup};
use plexgate_tests::process::Proc;
use serde_json::{Value, json};

/// Longest wait for anything that should happen at once (debug build, busy 2-core machine).
const PATIENCE: Duration = Duration::from_secs(30);
/// The path a test request reaches on an instance, before its `?n=` marker.
const TARGET: &str = "/api/v1/thing";

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/flaky_upstream.py")
}

fn python3_available() -> bool {
    plexgate_tests::python3_available("the routing retry tests")
}

/// A caching service and one gateway (not started yet) with `routing: {<routing>}`.
fn cluster(routing: &str) -> Cluster {
    let gateway_yaml = format!("    routing: {{{routing}}}\n");
    Cluster::start(ClusterSetup { gateways: 1, start_gateways: 0, gateway_yaml, ..ClusterSetup::default() })
}

/// Service `service` (no authentication) over the instances on `ports`, routed at `api/v1` to
/// `/api/v1`, with the fixture's health endpoint as `healthCheckRelativeUrl` if `health_check`.
fn definition(service: &str, ports: &[u16], health_check: bool) -> String {
    let urls: Vec<String> = ports.iter().map(|p| format!("https://127.0.0.1:{p}/")).collect();
    let check = if health_check { "    healthCheckRelativeUrl: /application/health\n" } else { "" };
    format!(
        "services:\n  - serviceId: {service}\n    instanceBaseUrls: [{}]\n{check}    routes:\n      - gatewayUrl: api/v1\n        serviceRelativeUrl: /api/v1\n    authentication:\n      scheme: bypass\n",
        urls.join(", ")
    )
}

/// One `flaky_upstream.py` process.
struct Upstream {
    id: String,
    port: u16,
    _proc: Proc,
}

impl Upstream {
    /// Starts it with the cluster's server certificate, answering routed requests per `mode`
    /// (`ok`, `503` or `reset`), and waits until it listens.
    fn start(c: &Cluster, id: &str, mode: &str) -> Upstream {
        let (cert, key) = c.ws.server_identity();
        let mut cmd = Command::new("python3");
        cmd.arg("-u").arg(fixture()).arg("--cert").arg(cert).arg("--key").arg(key).args(["--id", id, "--mode", mode]);
        let name = format!("upstream-{id}");
        let proc = Proc::spawn(&name, cmd, &c.ws.path().join(format!("{name}.log")));
        assert_eventually!(Duration::from_secs(10), proc.logs().contains("listening on 127.0.0.1:"), "{name} listening\n{}", proc.logs());
        let logs = proc.logs();
        let port =
            logs.split("listening on 127.0.0.1:").nth(1).and_then(|r| r.lines().next()).and_then(|p| p.trim().parse().ok()).expect("port");
        Upstream { id: id.to_owned(), port, _proc: proc }
    }

    /// `PUT /fixture/<what>` (`mode/503`, `health/down`, ...), straight to the instance.
    fn set(&self, c: &Cluster, what: &str) {
        let r = c.http.put(format!("https://127.0.0.1:{}/fixture/{what}", self.port)).send().expect("fixture control");
        assert_eq!(r.status(), 204, "{} {what}", self.id);
    }

    /// What it has received so far.
    fn record(&self, c: &Cluster) -> Value {
        c.http.get(format!("https://127.0.0.1:{}/fixture/requests", self.port)).send().and_then(|r| r.json()).expect("fixture record")
    }

    /// Routed requests received so far.
    fn count(&self, c: &Cluster) -> usize {
        self.record(c)["requests"].as_array().map_or(0, Vec::len)
    }

    /// How many times the request with marker `n` reached it.
    fn saw(&self, c: &Cluster, n: u64) -> usize {
        let target = format!("{TARGET}?n={n}");
        self.record(c)["requests"].as_array().map_or(0, |rs| rs.iter().filter(|r| r["target"] == target.as_str()).count())
    }

    /// Health checks it answered UP, and DOWN.
    fn checks(&self, c: &Cluster) -> (u64, u64) {
        let r = self.record(c);
        (r["healthChecks"]["up"].as_u64().unwrap_or(0), r["healthChecks"]["down"].as_u64().unwrap_or(0))
    }
}

/// One request through the gateway and what came back.
#[derive(Debug)]
struct Answer {
    /// Its marker.
    n: u64,
    /// When it was sent, and when the answer was in.
    sent: Instant,
    done: Instant,
    status: u16,
    /// The JSON body (`Null` when there is none).
    body: Value,
}

/// Sends `method` `/<service>/api/v1/thing?n=<fresh marker>` to the gateway (with a small body,
/// sent with its length, for methods that carry one: a body the gateway may replay).
fn request(c: &Cluster, method: &str, service: &str) -> Answer {
    static MARKER: AtomicU64 = AtomicU64::new(1);
    let n = MARKER.fetch_add(1, Ordering::Relaxed);
    let mut req = c.http.request(method.parse().expect("method"), c.url(0, &format!("/{service}{TARGET}?n={n}")));
    if matches!(method, "POST" | "PUT" | "PATCH") {
        req = req.body("payload");
    }
    let sent = Instant::now();
    let r = req.send().unwrap_or_else(|e| panic!("{method} {service}: {e}"));
    let status = r.status().as_u16();
    let body = r.json().unwrap_or(Value::Null);
    Answer { n, sent, done: Instant::now(), status, body }
}

/// Sends `method` requests until one reaches `bad`; every one before it must have been answered
/// 200 by another instance (round-robin puts `bad` first every other request once it is not
/// ejected). Returns the one that reached it.
fn until_it_meets(c: &Cluster, bad: &Upstream, method: &str, service: &str) -> Answer {
    let mut hit = None;
    assert_eventually!(
        PATIENCE,
        {
            let a = request(c, method, service);
            if bad.saw(c, a.n) > 0 {
                hit = Some(a);
                true
            } else {
                assert_eq!(a.status, 200, "{method} {service} while {} was not tried: {a:?}", bad.id);
                false
            }
        },
        "a {method} request of {service} reaches {}",
        bad.id
    );
    hit.expect("the request that reached it")
}

/// GETs `service` until `instance` receives a request again, asserting that every GET is
/// answered 200 and that `instance` receives none answered before `not_before`. Returns that
/// request and the ones before it, which all went elsewhere.
fn until_back(c: &Cluster, instance: &Upstream, service: &str, not_before: Instant) -> (Answer, Vec<Answer>) {
    let before = instance.count(c);
    let mut elsewhere = Vec::new();
    let mut back = None;
    assert_eventually!(
        PATIENCE + not_before.saturating_duration_since(Instant::now()),
        {
            let a = request(c, "GET", service);
            assert_eq!(a.status, 200, "every GET of {service} is answered: {a:?}");
            if instance.count(c) > before {
                assert!(
                    a.done > not_before,
                    "{} got request {} {:?} before its ejection could have ended",
                    instance.id,
                    a.n,
                    not_before.saturating_duration_since(a.done)
                );
                back = Some(a);
                true
            } else {
                elsewhere.push(a);
                false
            }
        },
        "{} gets traffic of {service} again",
        instance.id
    );
    (back.expect("the request that reached it"), elsewhere)
}

/// Asserts a Zowe error body with `status` and `number`.
fn assert_zowe_error(a: &Answer, status: u16, number: &str) {
    assert_eq!(a.status, status, "{a:?}");
    assert_eq!(a.body["messages"][0]["messageNumber"], number, "{a:?}");
}

/// The gateway's view of one instance (`/gateway/api/v1/services`): status and requests sent.
fn instance_view(c: &Cluster, service: &str, port: u16) -> Value {
    let list: Value = c.http.get(c.url(0, "/gateway/api/v1/services")).send().and_then(|r| r.json()).expect("service list");
    let id = format!("127.0.0.1:{service}:{port}");
    list.as_array()
        .and_then(|s| s.iter().find(|s| s["serviceId"] == service))
        .and_then(|s| s["instances"].as_array())
        .and_then(|is| is.iter().find(|i| i["instanceId"] == id.as_str()))
        .cloned()
        .unwrap_or_else(|| panic!("instance {id} in {list}"))
}

/// Who answered `n` sequential GETs of `service`: (answers by `a`, answers by `b`).
fn split(c: &Cluster, service: &str, n: usize, a: &Upstream, b: &Upstream) -> (usize, usize) {
    let who: Vec<String> = (0..n)
        .map(|_| {
            let x = request(c, "GET", service);
            assert_eq!(x.status, 200, "{x:?}");
            x.body["instance"].as_str().unwrap_or("").to_owned()
        })
        .collect();
    (who.iter().filter(|w| **w == a.id).count(), who.iter().filter(|w| **w == b.id).count())
}

#[test]
fn an_idempotent_request_that_meets_a_503_or_a_reset_is_answered_by_the_next_instance() {
    if !python3_available() {
        return;
    }
    // A short ejection: each method below needs the failing instance tried first again.
    let mut c = cluster("ejection: 100ms");
    let good = Upstream::start(&c, "good", "ok");
    let unavailable = Upstream::start(&c, "unavailable", "503");
    let resets = Upstream::start(&c, "resets", "reset");
    c.define("s503.yml", &definition("s503", &[unavailable.port, good.port], false));
    c.define("sreset.yml", &definition("sreset", &[resets.port, good.port], false));
    c.start_gateway(0);
    for (service, bad) in [("s503", &unavailable), ("sreset", &resets)] {
        for method in ["GET", "HEAD", "PUT", "DELETE", "OPTIONS"] {
            let a = until_it_meets(&c, bad, method, service);
            assert_eq!(a.status, 200, "{method} that met {} is answered by the next instance: {a:?}", bad.id);
            if method != "HEAD" {
                assert_eq!(a.body, json!({"instance": "good", "method": method, "target": format!("{TARGET}?n={}", a.n)}));
            }
            assert_eq!(bad.saw(&c, a.n), 1, "{method}: one attempt on {}", bad.id);
            assert_eq!(good.saw(&c, a.n), 1, "{method}: then one on good");
        }
    }
}

#[test]
fn a_post_that_meets_a_503_or_a_reset_is_not_retried_but_one_that_meets_a_refused_connect_is() {
    if !python3_available() {
        return;
    }
    let mut c = cluster("ejection: 100ms");
    let good = Upstream::start(&c, "good", "ok");
    let unavailable = Upstream::start(&c, "unavailable", "503");
    let resets = Upstream::start(&c, "resets", "reset");
    let dead = plexgate_tests::free_port();
    c.define("p503.yml", &definition("p503", &[unavailable.port, good.port], false));
    c.define("preset.yml", &definition("preset", &[resets.port, good.port], false));
    c.define("pdead.yml", &definition("pdead", &[dead, good.port], false));
    c.start_gateway(0);
    // The bodies are small and sent with their length: the gateway could replay them (the
    // refused connect below shows it does), so it is the method alone that stops the retry.
    for method in ["POST", "PATCH"] {
        // The instance's own 503 is the answer.
        let a = until_it_meets(&c, &unavailable, method, "p503");
        assert_eq!(a.status, 503, "{a:?}");
        assert_eq!(a.body, json!({"instance": "unavailable", "status": 503}), "the instance's answer, passed on");
        assert_eq!(unavailable.saw(&c, a.n), 1);
        assert_eq!(good.saw(&c, a.n), 0, "{method} answered 503 was not sent to another instance");
        // A reset before any answer: the gateway cannot know whether the instance acted on it.
        let a = until_it_meets(&c, &resets, method, "preset");
        assert_zowe_error(&a, 502, "ZWEAG510E");
        assert_eq!(resets.saw(&c, a.n), 1);
        assert_eq!(good.saw(&c, a.n), 0, "{method} that met a reset was not sent to another instance");
    }
    // A refused connect: nothing reached the instance, so any method goes to the next one.
    let tried = instance_view(&c, "pdead", dead)["requests"].as_u64().unwrap_or(0);
    let mut hit = None;
    assert_eventually!(
        PATIENCE,
        {
            let a = request(&c, "POST", "pdead");
            assert_eq!(a.status, 200, "{a:?}");
            assert_eq!(good.saw(&c, a.n), 1, "{a:?}");
            let first_on_dead = instance_view(&c, "pdead", dead)["requests"].as_u64().unwrap_or(0) > tried;
            if first_on_dead {
                hit = Some(a);
            }
            first_on_dead
        },
        "a POST is tried on the dead instance"
    );
    let a = hit.expect("the POST that met the refused connect");
    assert_eq!(a.body["instance"], "good", "{a:?}");
    assert_eq!(a.body["method"], "POST", "{a:?}");
}

#[test]
fn retries_stop_at_the_budget_and_the_client_gets_the_last_failure() {
    if !python3_available() {
        return;
    }
    // One retry (not the default two): of four failing instances, two get each request.
    let mut c = cluster("retries: 1");
    let all: Vec<Upstream> = (0..4).map(|i| Upstream::start(&c, &format!("f{i}"), "503")).collect();
    let ports: Vec<u16> = all.iter().map(|u| u.port).collect();
    let dead: Vec<u16> = (0..4).map(|_| plexgate_tests::free_port()).collect();
    c.define("budget.yml", &definition("budget", &ports, false));
    c.define("deadbudget.yml", &definition("deadbudget", &dead, false));
    c.start_gateway(0);
    let reached = |n: u64| -> Vec<usize> {
        let counts: Vec<usize> = all.iter().map(|u| u.saw(&c, n)).collect();
        assert!(counts.iter().all(|k| *k <= 1), "no instance twice: {counts:?}");
        (0..all.len()).filter(|i| counts[*i] == 1).collect()
    };

    // All answer 503: two attempts, then the second instance's own 503 goes to the client.
    let a = request(&c, "GET", "budget");
    let tried = reached(a.n);
    assert_eq!(tried.len(), 2, "retries: 1 is two attempts: {tried:?}");
    assert_eq!(a.status, 503, "{a:?}");
    // Round-robin tries consecutive instances (in definition order, wrapping): the second
    // attempt is the one whose predecessor was the first.
    let last = *tried.iter().find(|i| tried.contains(&((*i + all.len() - 1) % all.len()))).expect("two consecutive instances");
    assert_eq!(a.body, json!({"instance": all[last].id, "status": 503}), "the last attempt's answer, passed on");

    // All reset: two attempts again (two of the instances are ejected now, but an ejected
    // instance is still a last resort, and the budget is the same), then a 502.
    for u in &all {
        u.set(&c, "mode/reset");
    }
    let a = request(&c, "GET", "budget");
    assert_eq!(reached(a.n).len(), 2, "two attempts");
    assert_zowe_error(&a, 502, "ZWEAG510E");

    // All refuse the connect: two attempts (the gateway's own count), then a 503 of its own.
    let a = request(&c, "GET", "deadbudget");
    assert_zowe_error(&a, 503, "ZWEAO503E");
    let attempts: u64 = dead.iter().map(|p| instance_view(&c, "deadbudget", *p)["requests"].as_u64().unwrap_or(0)).sum();
    assert_eq!(attempts, 2, "two connects tried");
}

/// `routing.ejection` of the ejection test.
const EJECTION: Duration = Duration::from_millis(1500);

#[test]
fn a_failed_instance_is_ejected_doubled_per_failure_and_back_in_full_after_a_success() {
    if !python3_available() {
        return;
    }
    // No health check on this service: what happens here is passive health alone.
    let mut c = cluster(&format!("ejection: {}ms", EJECTION.as_millis()));
    let a = Upstream::start(&c, "a", "503");
    let b = Upstream::start(&c, "b", "ok");
    c.define("ejected.yml", &definition("ejected", &[a.port, b.port], false));
    c.start_gateway(0);

    // First failure: the GET is answered by b, and a gets nothing for the ejection time.
    let fail1 = until_it_meets(&c, &a, "GET", "ejected");
    assert_eq!(fail1.body["instance"], "b", "{fail1:?}");
    let listed = instance_view(&c, "ejected", a.port);
    if Instant::now() < fail1.sent + EJECTION {
        assert_eq!(listed["status"], "DOWN", "the gateway lists it as DOWN while ejected");
    }
    let (fail2, elsewhere) = until_back(&c, &a, "ejected", fail1.sent + EJECTION);
    let within = elsewhere.iter().filter(|x| x.done < fail1.sent + EJECTION).count();
    assert!(within >= 4, "{within} requests during the first ejection, all to b (round-robin would have sent every other one to a)");

    // Back after the ejection, a still fails: ejected again, for twice as long. Healthy from now
    // on, it still gets nothing until that doubled ejection ends.
    assert_eq!(fail2.body["instance"], "b", "the GET that met a second time is answered by b: {fail2:?}");
    a.set(&c, "mode/ok");
    let (back, elsewhere) = until_back(&c, &a, "ejected", fail2.sent + 2 * EJECTION);
    // A request sent after fail2.done + EJECTION finds a undoubled ejection over; two consecutive
    // ones cover both round-robin positions, so one of them would have started with a.
    let beyond_single = elsewhere.iter().filter(|x| x.sent > fail2.done + EJECTION && x.done < fail2.sent + 2 * EJECTION).count();
    assert!(beyond_single >= 2, "{beyond_single} requests after a single ejection and within the doubled one, all to b");
    assert_eq!(back.body["instance"], "a", "healthy again, it answers: {back:?}");

    // One success and it is back in full: its round-robin share at once (there is no slow
    // start), and its failure count forgotten.
    assert_eq!(split(&c, "ejected", 10, &a, &b), (5, 5), "round-robin between a and b again");
    a.set(&c, "mode/503");
    let fail3 = until_it_meets(&c, &a, "GET", "ejected");
    assert_eq!(fail3.body["instance"], "b", "{fail3:?}");
    let (again, _) = until_back(&c, &a, "ejected", fail3.sent + EJECTION);
    // Had the two earlier failures still counted, this third one would eject for 4 x EJECTION.
    let out = again.done.duration_since(fail3.sent);
    println!(
        "requests kept off a: {within} in the first ejection, {beyond_single} past a single one in the second; back {out:?} after a third"
    );
    assert!(out < 4 * EJECTION, "back after {out:?}: one ejection of {EJECTION:?} after a success, not a fourfold one");
}

#[test]
fn active_health_checks_take_an_instance_out_and_a_restarted_one_back_at_once() {
    if !python3_available() {
        return;
    }
    // A passive ejection far longer than the test, so only the active checks can end it.
    let ejection = Duration::from_secs(120);
    let mut c = cluster(&format!("healthCheckInterval: 200ms, ejection: {}ms", ejection.as_millis()));
    let a = Upstream::start(&c, "a", "ok");
    let b = Upstream::start(&c, "b", "ok");
    c.define("checked.yml", &definition("checked", &[a.port, b.port], true));
    c.start_gateway(0);
    let start = Instant::now();
    assert_eq!(split(&c, "checked", 10, &a, &b), (5, 5), "both in rotation");

    // Its health endpoint says DOWN: out of rotation, although it would still answer.
    a.set(&c, "health/down");
    assert_eventually!(PATIENCE, instance_view(&c, "checked", a.port)["status"] == "DOWN", "a listed DOWN");
    let before = a.count(&c);
    assert_eq!(split(&c, "checked", 10, &a, &b), (0, 10), "all to b");
    assert_eq!(a.count(&c), before, "a got nothing while its health check failed");
    // UP again: back in rotation with its full share.
    a.set(&c, "health/up");
    assert_eventually!(PATIENCE, instance_view(&c, "checked", a.port)["status"] == "UP", "a listed UP");
    assert_eq!(split(&c, "checked", 10, &a, &b), (5, 5), "both in rotation again");

    // Requests fail while its health endpoint stays UP: it serves out its (long) ejection; the
    // checks that keep passing do not end it.
    a.set(&c, "mode/503");
    let fail = until_it_meets(&c, &a, "GET", "checked");
    assert_eq!(fail.body["instance"], "b", "{fail:?}");
    let (up, _) = a.checks(&c);
    assert_eventually!(PATIENCE, a.checks(&c).0 >= up + 3, "three more passing health checks of a");
    let before = a.count(&c);
    assert_eq!(split(&c, "checked", 10, &a, &b), (0, 10), "all to b while a is ejected");
    assert_eq!(a.count(&c), before);
    assert_eq!(instance_view(&c, "checked", a.port)["status"], "DOWN");

    // A restart: seen DOWN, then UP again. The instance is back at once, ejection or not.
    a.set(&c, "mode/ok");
    a.set(&c, "health/down");
    let (_, down) = a.checks(&c);
    // Two DOWN answers: the gateway took in the first before it sent the second.
    assert_eventually!(PATIENCE, a.checks(&c).1 >= down + 2, "a checked DOWN");
    a.set(&c, "health/up");
    assert_eventually!(
        PATIENCE,
        request(&c, "GET", "checked").body["instance"] == "a",
        "the restarted instance gets traffic again before its ejection ends"
    );
    assert!(start.elapsed() < ejection, "all within the ejection time, or this proved nothing");
    assert_eq!(split(&c, "checked", 10, &a, &b), (5, 5), "both in rotation again");
}

#[test]
fn the_ejection_still_doubles_when_passing_health_checks_run_between_failures() {
    if !python3_available() {
        return;
    }
    let interval = Duration::from_millis(200);
    let mut c = cluster(&format!("healthCheckInterval: {}ms, ejection: {}ms", interval.as_millis(), EJECTION.as_millis()));
    // Its health endpoint stays UP while every request fails: the case passive ejection is for.
    let a = Upstream::start(&c, "a", "503");
    let b = Upstream::start(&c, "b", "ok");
    c.define("doubling.yml", &definition("doubling", &[a.port, b.port], true));
    c.start_gateway(0);
    let fail1 = until_it_meets(&c, &a, "GET", "doubling");
    assert_eq!(fail1.body["instance"], "b", "{fail1:?}");
    // No traffic while checks keep passing until after the first ejection has run out: checks
    // start at least one interval apart, so check `up + k` starts past `fail1.done + EJECTION`,
    // and check `up + k + 1` starts only after the gateway took in the answer to it.
    let (up, _) = a.checks(&c);
    let k = (EJECTION.as_millis() / interval.as_millis()) as u64 + 2;
    assert_eventually!(PATIENCE, a.checks(&c).0 > up + k, "{k} more passing health checks of a");
    // The second failure in a row, with no success in between: twice the ejection.
    let fail2 = until_it_meets(&c, &a, "GET", "doubling");
    assert_eq!(fail2.body["instance"], "b", "{fail2:?}");
    let (_, elsewhere) = until_back(&c, &a, "doubling", fail2.sent + 2 * EJECTION);
    assert!(elsewhere.iter().all(|x| x.body["instance"] == b.id.as_str()));
}

#[test]
fn an_answer_head_over_the_limit_is_a_502_and_one_under_it_passes() {
    if !python3_available() {
        return;
    }
    let mut c = cluster("retries: 0");
    let a = Upstream::start(&c, "a", "head-32768");
    c.define("heads.yml", &definition("heads", &[a.port], false));
    c.start_gateway(0);
    // HTTP/1.1 to the gateway: an HTTP/2 client would itself refuse a 32 KiB head (h2's 16 KiB
    // default), which is not what is tested here.
    let mut tls = plexgate_tests::https::tls_config(&c.ws.ca(), None);
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let http = reqwest::blocking::Client::builder().tls_backend_preconfigured(tls).build().unwrap();
    // 32 KiB of header: under the 64 KiB limit, passed on whole.
    let r = http.get(c.url(0, &format!("/heads{TARGET}"))).send().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-padding"].len(), 32768);
    // 100 KiB: refused, not buffered; the client gets a Zowe error, not the head.
    a.set(&c, "mode/head-102400");
    let r = http.get(c.url(0, &format!("/heads{TARGET}"))).send().unwrap();
    assert_eq!(r.status(), 502);
    assert!(!r.headers().contains_key("x-padding"));
    let body: Value = r.json().unwrap();
    assert_eq!(body["messages"][0]["messageNumber"], "ZWEAG510E", "{body}");
}

/// The client ports (connections) the requests with markers `ns` reached `u` on, in order.
fn peers(c: &Cluster, u: &Upstream, ns: &[u64]) -> Vec<u64> {
    let record = u.record(c);
    let requests = record["requests"].as_array().expect("requests");
    ns.iter()
        .map(|n| {
            let target = format!("{TARGET}?n={n}");
            let seen: Vec<&Value> = requests.iter().filter(|r| r["target"] == target.as_str()).collect();
            assert_eq!(seen.len(), 1, "request {n} reached the instance once: {seen:?}");
            seen[0]["peer"].as_u64().expect("peer")
        })
        .collect()
}

#[test]
fn keep_alive_connections_to_an_instance_are_reused_and_one_it_closes_is_replaced_without_an_error() {
    if !python3_available() {
        return;
    }
    // No retries: a request the gateway sent on a connection the instance had closed would be
    // the client's error here, not hidden by a second attempt.
    let mut c = cluster("retries: 0");
    let a = Upstream::start(&c, "a", "ok");
    c.define("conns.yml", &definition("conns", &[a.port], false));
    c.start_gateway(0);
    // One client connection: its requests are served by one serving thread, which sends them
    // over the connection the previous answer gave back (a new one per request would mean the
    // connection was not given back when its answer's body ended).
    let answers: Vec<Answer> = (0..40).map(|_| request(&c, "GET", "conns")).collect();
    assert!(answers.iter().all(|r| r.status == 200), "{answers:?}");
    let mut used = peers(&c, &a, &answers.iter().map(|r| r.n).collect::<Vec<_>>());
    used.sort_unstable();
    used.dedup();
    assert!(used.len() <= 2, "40 requests one after the other took {} upstream connections: {used:?}", used.len());
    // Bodyless answers (HEAD) end at once and give their connection back too.
    let heads: Vec<Answer> = (0..10).map(|_| request(&c, "HEAD", "conns")).collect();
    assert!(heads.iter().all(|r| r.status == 200), "{heads:?}");
    let mut used = peers(&c, &a, &heads.iter().map(|r| r.n).collect::<Vec<_>>());
    used.sort_unstable();
    used.dedup();
    assert!(used.len() <= 2, "10 HEADs took {} upstream connections: {used:?}", used.len());
    // Now the instance closes each connection after its answer: every next request goes over a
    // new one and is answered, POSTs included, each reaching the instance exactly once.
    a.set(&c, "mode/close");
    for method in ["GET", "POST", "GET", "PUT", "POST", "GET", "DELETE", "POST"] {
        let r = request(&c, method, "conns");
        assert_eq!(r.status, 200, "{method} after the instance closed the previous connection: {r:?}");
        assert_eq!(r.body["method"], method, "{r:?}");
        assert_eq!(a.saw(&c, r.n), 1, "{method} reached the instance once");
    }
}
