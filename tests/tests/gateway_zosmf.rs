//! The `zosmf` authentication provider against a real HTTPS upstream process
//! (`tests/fixtures/zosmf_upstream.py`, Python standard library only): a good password logs in,
//! a bad one is a 401, and a z/OSMF that is gone or stuck is a 503 ZWEAG104E, never a 401, and
//! within the configured timeout. When z/OSMF comes back, logins work again without a restart.

use std::time::{Duration, Instant};

use plexgate_tests::cluster::{Cluster, ClusterSetup, PASSWORD, token_from};
use plexgate_tests::zosmf::{self, Zosmf, ZosmfSetup, python3_available};
use reqwest::blocking::Response;
use serde_json::Value;

/// The z/OSMF user the fixture knows.
const ZOSMF_USER: &str = "ibmuser";
/// Its password.
const ZOSMF_PASSWORD: &str = "sys1";
/// `zOSMF.timeout` of the gateways under test.
const ZOSMF_TIMEOUT: Duration = Duration::from_secs(1);
/// What a login may take beyond the timeout before the gateway answers (debug build, 2 cores).
const MARGIN: Duration = Duration::from_millis(2500);

fn start_zosmf_gateway(c: &mut Cluster, i: usize, port: u16) {
    zosmf::start_gateway(c, i, port, ZOSMF_TIMEOUT, &[]);
}

fn login(c: &Cluster, i: usize, user: &str, password: &str) -> Response {
    c.http.post(c.auth(i, "/login")).basic_auth(user, Some(password)).send().expect("login request")
}

/// `(status, messageNumber)` of a response.
fn outcome(r: Response) -> (u16, String) {
    let status = r.status().as_u16();
    let body: Value = r.json().unwrap_or(Value::Null);
    (status, body["messages"][0]["messageNumber"].as_str().unwrap_or("").to_owned())
}

#[test]
fn zosmf_decides_passwords_and_its_outages_are_503_not_401() {
    if !python3_available() {
        return;
    }
    let mut c = Cluster::start(ClusterSetup { gateways: 2, start_gateways: 0, ..ClusterSetup::default() });
    let mut zosmf = Zosmf::start(&c, "zosmf", ZosmfSetup::default());
    let port = zosmf.port;
    for i in 0..2 {
        start_zosmf_gateway(&mut c, i, port);
    }

    // A valid z/OSMF password: 204 and the cookie, a token every gateway accepts.
    let r = login(&c, 0, ZOSMF_USER, ZOSMF_PASSWORD);
    assert_eq!(r.status(), 204, "{}", c.all_logs());
    let cookie = r.headers().get("set-cookie").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    assert!(cookie.contains("HttpOnly") && cookie.contains("Secure"), "{cookie}");
    let token = token_from(&r).expect("apimlAuthenticationToken cookie");
    for i in 0..2 {
        let q = c.query(i, &token);
        assert_eq!(q.status(), 200, "query on gateway {i}");
        assert_eq!(q.json::<Value>().unwrap()["userId"], ZOSMF_USER);
    }
    assert!(zosmf.proc.logs().contains("\"POST /zosmf/services/authenticate HTTP/1.1\" 200"), "{}", zosmf.proc.logs());

    // A bad password is z/OSMF's 401, passed on as ZWEAG120E; the users file no longer counts.
    for i in 0..2 {
        assert_eq!(outcome(login(&c, i, ZOSMF_USER, "wrong")), (401, "ZWEAG120E".to_owned()), "bad password on gateway {i}");
        assert_eq!(outcome(login(&c, i, "alice", PASSWORD)), (401, "ZWEAG120E".to_owned()), "users-file password on gateway {i}");
    }
    assert!(zosmf.proc.logs().contains("\"POST /zosmf/services/authenticate HTTP/1.1\" 401"), "{}", zosmf.proc.logs());

    // z/OSMF gone: the user is not told their password is wrong.
    zosmf.proc.kill();
    for i in 0..2 {
        assert_eq!(outcome(login(&c, i, ZOSMF_USER, ZOSMF_PASSWORD)), (503, "ZWEAG104E".to_owned()), "z/OSMF down, gateway {i}");
    }
    // Tokens already issued do not depend on z/OSMF.
    assert_eq!(c.query(1, &token).status(), 200);

    // z/OSMF up but stuck on the same port: 503 once the timeout has passed, not before, not much after.
    let hung = Zosmf::start(&c, "zosmf-hung", ZosmfSetup { port, hang: true, ..ZosmfSetup::default() });
    for i in 0..2 {
        let start = Instant::now();
        let result = outcome(login(&c, i, ZOSMF_USER, ZOSMF_PASSWORD));
        let took = start.elapsed();
        assert_eq!(result, (503, "ZWEAG104E".to_owned()), "z/OSMF hanging, gateway {i}");
        assert!(took >= ZOSMF_TIMEOUT - Duration::from_millis(100), "answered after {took:?}, before the {ZOSMF_TIMEOUT:?} timeout");
        assert!(took <= ZOSMF_TIMEOUT + MARGIN, "answered after {took:?}, timeout {ZOSMF_TIMEOUT:?}");
    }
    assert!(hung.proc.logs().contains("hanging on POST /zosmf/services/authenticate"), "{}", hung.proc.logs());
    drop(hung);

    // z/OSMF back: logins work again on both gateways without restarting them.
    let _back = Zosmf::start(&c, "zosmf-back", ZosmfSetup { port, ..ZosmfSetup::default() });
    for i in 0..2 {
        assert_eq!(login(&c, i, ZOSMF_USER, ZOSMF_PASSWORD).status(), 204, "z/OSMF back, gateway {i}");
    }
}
