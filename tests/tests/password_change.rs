//! Password change at login (`POST /gateway/api/v1/auth/login` with `newPassword`), as Zowe
//! documents it: the provider changes the password, the answer is a login's (204 and a token
//! every gateway accepts); a change that cannot be made for any reason is a login's 401
//! ZWEAG120E, and a provider that is down is 503 ZWEAG104E. With the users file, every gateway
//! of the host sees the new file; with z/OSMF (the Python stand-in of `gateway_zosmf.rs`), the
//! change is z/OSMF's. Neither password ever reaches a log.

use std::time::Duration;

use plexgate_config::users::UsersFile;
use plexgate_tests::cluster::{Cluster, ClusterSetup, PASSWORD, token_from};
use plexgate_tests::process::Proc;
use plexgate_tests::zosmf::{self, Zosmf, ZosmfSetup, python3_available};
use reqwest::blocking::Response;
use serde_json::{Value, json};

/// Bob's password after the change.
const NEW_PASSWORD: &str = "N3w-passw0rd-for-bob";
/// A wrong old password.
const WRONG: &str = "Wr0ng-old-passw0rd";

/// `(status, messageNumber)` of a response.
fn outcome(r: Response) -> (u16, String) {
    let status = r.status().as_u16();
    let body: Value = r.json().unwrap_or(Value::Null);
    (status, body["messages"][0]["messageNumber"].as_str().unwrap_or("").to_owned())
}

fn failed_login() -> (u16, String) {
    (401, "ZWEAG120E".to_owned())
}

/// A JSON login on gateway `i`, with `newPassword` when `new` is given.
fn login_json(c: &Cluster, i: usize, user: &str, password: &str, new: Option<&str>) -> Response {
    let mut body = json!({"username": user, "password": password});
    if let Some(new) = new {
        body["newPassword"] = json!(new);
    }
    c.http.post(c.auth(i, "/login")).json(&body).send().expect("login request")
}

/// A basic-auth login on gateway `i`.
fn login_basic(c: &Cluster, i: usize, user: &str, password: &str) -> Response {
    c.http.post(c.auth(i, "/login")).basic_auth(user, Some(password)).send().expect("login request")
}

/// Starts gateway `i` of the cluster with debug logs (so the secrecy check covers them too),
/// and waits until it is UP.
fn start_gateway(c: &mut Cluster, i: usize) {
    c.start_gateway_with(i, &[("PLEXGATE_LOG", "debug")]);
}

/// Panics if any process of the cluster (or `more`) logged one of `secrets`.
fn assert_not_logged(c: &Cluster, more: &[&Proc], secrets: &[&str]) {
    let mut logs = c.all_logs();
    for p in more {
        logs.push_str(&p.logs());
    }
    assert!(logs.contains("password changed"), "the change is logged (without secrets)\n{logs}");
    for s in secrets {
        assert!(!logs.contains(s), "a password is in the logs: {s}\n{logs}");
    }
}

#[test]
fn users_file_change_on_one_gateway_holds_on_every_gateway() {
    let mut c = Cluster::start(ClusterSetup { start_gateways: 0, ..ClusterSetup::default() });
    for i in 0..2 {
        start_gateway(&mut c, i);
    }
    let users = c.ws.path().join("workspace/users.yaml");
    let original = std::fs::read(&users).unwrap();
    let original_file = UsersFile::read(&users).unwrap();

    // Refused changes: a login's 401, and the file untouched.
    let refused =
        [(WRONG, NEW_PASSWORD, "wrong old password"), (PASSWORD, "", "empty new password"), (PASSWORD, PASSWORD, "the same password")];
    for (old, new, what) in refused {
        let r = login_json(&c, 0, "bob", old, Some(new));
        assert!(r.headers().contains_key("www-authenticate"), "{what}");
        assert_eq!(outcome(r), failed_login(), "{what}");
    }
    assert_eq!(outcome(login_json(&c, 0, "nobody", PASSWORD, Some(NEW_PASSWORD))), failed_login(), "unknown user");
    // Unreadable bodies stay 400 ZWEAG121E.
    for body in [r#"{"username":"bob","password":"#, r#"{"username":"bob","password":"x","newPassword":5}"#] {
        let r = c.http.post(c.auth(0, "/login")).header("content-type", "application/json").body(body).send().unwrap();
        assert_eq!(outcome(r), (400, "ZWEAG121E".to_owned()), "{body}");
    }
    // Basic auth has no new-password field: a body beside it changes nothing.
    let r = c
        .http
        .post(c.auth(0, "/login"))
        .basic_auth("bob", Some(PASSWORD))
        .json(&json!({"username": "bob", "password": PASSWORD, "newPassword": NEW_PASSWORD}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(std::fs::read(&users).unwrap(), original, "nothing changed");

    // The change on g1: a login's answer, with a token for bob that g2 accepts.
    let r = login_json(&c, 0, "bob", PASSWORD, Some(NEW_PASSWORD));
    assert_eq!(r.status(), 204, "{}", c.all_logs());
    let cookie = r.headers().get("set-cookie").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    assert!(cookie.contains("HttpOnly") && cookie.contains("Secure") && cookie.contains("SameSite=Strict"), "{cookie}");
    let token = token_from(&r).expect("apimlAuthenticationToken cookie");
    let q = c.query(1, &token);
    assert_eq!(q.status(), 200);
    assert_eq!(q.json::<Value>().unwrap()["userId"], "bob");

    // Every gateway: the old password is refused, the new one logs in (g2 read the new file).
    for i in 0..2 {
        assert_eq!(outcome(login_basic(&c, i, "bob", PASSWORD)), failed_login(), "old password, basic, gateway {i}");
        assert_eq!(outcome(login_json(&c, i, "bob", PASSWORD, None)), failed_login(), "old password, JSON, gateway {i}");
        assert_eq!(login_basic(&c, i, "bob", NEW_PASSWORD).status(), 204, "new password, gateway {i}");
        assert_eq!(login_basic(&c, i, "alice", PASSWORD).status(), 204, "alice untouched, gateway {i}");
    }
    // A change back through g2 works the same way.
    assert_eq!(login_json(&c, 1, "bob", NEW_PASSWORD, Some(PASSWORD)).status(), 204);
    assert_eq!(login_basic(&c, 0, "bob", PASSWORD).status(), 204);
    assert_eq!(outcome(login_basic(&c, 0, "bob", NEW_PASSWORD)), failed_login());

    // The file: still only hashes, still 0600, alice's entry as it was.
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&users).unwrap().permissions().mode() & 0o777, 0o600);
    let text = std::fs::read_to_string(&users).unwrap();
    assert!(!text.contains(NEW_PASSWORD) && !text.contains(PASSWORD), "{text}");
    let now = UsersFile::read(&users).unwrap();
    assert_eq!(now.find("alice"), original_file.find("alice"), "alice unchanged");
    let (bob, original_bob) = (now.find("bob").unwrap(), original_file.find("bob").unwrap());
    assert_eq!((bob.name.as_str(), bob.admin), ("bob", false));
    assert!(bob.hash.starts_with("$argon2id$") && bob.hash != original_bob.hash, "a new Argon2id hash: {}", bob.hash);

    assert_not_logged(&c, &[], &[PASSWORD, NEW_PASSWORD, WRONG]);
}

/// The z/OSMF user the stand-in knows.
const ZOSMF_USER: &str = "ibmuser";
/// Its password at the start (not the stand-in's default `sys1`: a distinctive string makes
/// the check that it is never logged meaningful).
const ZOSMF_PASSWORD: &str = "Zosmf-0ld-Pass";
/// The z/OSMF user's password after the change.
const ZOSMF_NEW_PASSWORD: &str = "N3wZosmfPass";

/// Asks the stand-in itself whether `password` authenticates `ZOSMF_USER`.
fn zosmf_accepts(c: &Cluster, port: u16, password: &str) -> bool {
    let r = c
        .http
        .post(format!("https://127.0.0.1:{port}/zosmf/services/authenticate"))
        .basic_auth(ZOSMF_USER, Some(password))
        .header("X-CSRF-ZOSMF-HEADER", "true")
        .send()
        .expect("z/OSMF request");
    r.status() == 200
}

#[test]
fn zosmf_changes_the_password_and_its_outage_is_503() {
    if !python3_available() {
        return;
    }
    let mut c = Cluster::start(ClusterSetup { start_gateways: 0, ..ClusterSetup::default() });
    let Zosmf { proc: mut zosmf, port } =
        Zosmf::start(&c, "zosmf", ZosmfSetup { user: Some((ZOSMF_USER, ZOSMF_PASSWORD)), ..ZosmfSetup::default() });
    for i in 0..2 {
        // Debug logs, so the secrecy check covers them too.
        zosmf::start_gateway(&mut c, i, port, Duration::from_secs(1), &[("PLEXGATE_LOG", "debug")]);
    }

    // z/OSMF refuses: a wrong old password (its 401), a new one its rules refuse (its 400).
    assert_eq!(outcome(login_json(&c, 0, ZOSMF_USER, WRONG, Some(ZOSMF_NEW_PASSWORD))), failed_login(), "wrong old password");
    assert_eq!(outcome(login_json(&c, 0, ZOSMF_USER, ZOSMF_PASSWORD, Some("abc"))), failed_login(), "refused by z/OSMF's rules");
    let logs = zosmf.logs();
    assert!(logs.contains("\"PUT /zosmf/services/authenticate HTTP/1.1\" 401"), "{logs}");
    assert!(logs.contains("\"PUT /zosmf/services/authenticate HTTP/1.1\" 400"), "{logs}");
    assert!(zosmf_accepts(&c, port, ZOSMF_PASSWORD), "nothing changed yet");

    // The change through g1: 204 and a token g2 accepts; z/OSMF now knows only the new password.
    let r = login_json(&c, 0, ZOSMF_USER, ZOSMF_PASSWORD, Some(ZOSMF_NEW_PASSWORD));
    assert_eq!(r.status(), 204, "{}\n{}", c.all_logs(), zosmf.logs());
    let token = token_from(&r).expect("apimlAuthenticationToken cookie");
    let q = c.query(1, &token);
    assert_eq!(q.status(), 200);
    assert_eq!(q.json::<Value>().unwrap()["userId"], ZOSMF_USER);
    assert!(zosmf.logs().contains("\"PUT /zosmf/services/authenticate HTTP/1.1\" 200"), "{}", zosmf.logs());
    assert!(zosmf_accepts(&c, port, ZOSMF_NEW_PASSWORD) && !zosmf_accepts(&c, port, ZOSMF_PASSWORD), "z/OSMF has the new password");
    for i in 0..2 {
        assert_eq!(outcome(login_basic(&c, i, ZOSMF_USER, ZOSMF_PASSWORD)), failed_login(), "old password, gateway {i}");
        assert_eq!(login_basic(&c, i, ZOSMF_USER, ZOSMF_NEW_PASSWORD).status(), 204, "new password, gateway {i}");
    }
    assert_not_logged(&c, &[&zosmf], &[ZOSMF_PASSWORD, ZOSMF_NEW_PASSWORD, WRONG]);

    // z/OSMF gone: the change is not the user's fault, so 503, never 401.
    zosmf.kill();
    for i in 0..2 {
        let r = login_json(&c, i, ZOSMF_USER, ZOSMF_NEW_PASSWORD, Some("An0ther-passw0rd"));
        assert_eq!(outcome(r), (503, "ZWEAG104E".to_owned()), "z/OSMF down, gateway {i}");
    }
    assert_eq!(c.query(1, &token).status(), 200, "issued tokens do not depend on z/OSMF");
}
