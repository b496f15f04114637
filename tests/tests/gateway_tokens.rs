//! Token verification through the real HTTP API of running gateways: every way a login token or
//! a Personal Access Token can be forged, broken or misused is refused, each forged with the
//! gateway's real signing key so that only the one property under test is wrong (and the same
//! forging without a fault is shown to be accepted, so the forging itself is right). Then a key
//! rotation by configuration and rolling restart that logs nobody out.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Validation};
use plexgate_tests::Workspace;
use plexgate_tests::cluster::{Cluster, ClusterSetup, PASSWORD};
use plexgate_tests::forge::{self, Forger, b64, login_claims, now, pat_claims, sign, sign_raw, unb64, unsigned};
use serde_json::{Value, json};

/// The leeway the gateways run with (the default).
const LEEWAY: u64 = 30;
/// Tokens longer than this are refused unread.
const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// The service PATs are scoped to in these tests.
const SERVICE: &str = "sample";

const INVALID: &str = "ZWEAG130E";
const EXPIRED: &str = "ZWEAT100E";
const PAT_INVALID: &str = "ZWEAG102E";
const PAT_EXPIRED: &str = "ZWEAG103E";

/// One token and what the gateway must answer for it.
struct Case {
    name: String,
    token: String,
    status: u16,
    /// Expected `messageNumber`; empty for an answer without a body.
    number: &'static str,
}

fn case(name: impl Into<String>, token: impl Into<String>, status: u16, number: &'static str) -> Case {
    Case { name: name.into(), token: token.into(), status, number }
}

/// What a response said: status, messageNumber, messageKey, whether `WWW-Authenticate` was sent,
/// and the body.
struct Answer {
    status: u16,
    number: String,
    key: String,
    www_authenticate: bool,
    body: Value,
}

fn answer(r: reqwest::blocking::Response) -> Answer {
    let status = r.status().as_u16();
    let www_authenticate = r.headers().contains_key("www-authenticate");
    let body: Value = r.json().unwrap_or(Value::Null);
    let message = &body["messages"][0];
    Answer {
        status,
        number: message["messageNumber"].as_str().unwrap_or("").to_owned(),
        key: message["messageKey"].as_str().unwrap_or("").to_owned(),
        www_authenticate,
        body,
    }
}

/// The message key Zowe CLI reads for a number.
fn key_of(number: &str) -> &'static str {
    match number {
        INVALID => "org.zowe.apiml.security.query.invalidToken",
        EXPIRED => "org.zowe.apiml.security.expiredToken",
        PAT_INVALID => "org.zowe.apiml.zaas.security.invalidToken",
        PAT_EXPIRED => "org.zowe.apiml.zaas.security.expiredToken",
        _ => "",
    }
}

/// Whether `a` is what `c` expects; `None` when it is, else what differs.
fn mismatch(c: &Case, a: &Answer, expected_user: Option<&str>) -> Option<String> {
    let mut wrong = Vec::new();
    if a.status != c.status {
        wrong.push(format!("status {} (expected {})", a.status, c.status));
    }
    if a.number != c.number {
        wrong.push(format!("messageNumber `{}` (expected `{}`)", a.number, c.number));
    }
    if !c.number.is_empty() && a.key != key_of(c.number) {
        wrong.push(format!("messageKey `{}` (expected `{}`)", a.key, key_of(c.number)));
    }
    if c.status == 401 && !a.www_authenticate {
        wrong.push("no WWW-Authenticate header on a 401".to_owned());
    }
    if let Some(user) = expected_user
        && a.body["userId"] != user
    {
        wrong.push(format!("userId {} (expected {user})", a.body["userId"]));
    }
    (!wrong.is_empty()).then(|| format!("{}: {}", c.name, wrong.join(", ")))
}

/// Panics listing every case that was answered wrongly.
fn report(failures: Vec<String>, what: &str) {
    assert!(failures.is_empty(), "{} of the {what} cases were answered wrongly:\n  {}", failures.len(), failures.join("\n  "));
}

/// `GET /query` with the token as Bearer, and again as the `apimlAuthenticationToken` cookie.
fn query_both_ways(c: &Cluster, i: usize, token: &str) -> [(&'static str, Answer); 2] {
    let url = c.auth(i, "/query");
    let bearer = c.http.get(&url).bearer_auth(token).send().expect("query request");
    let cookie = c.http.get(&url).header("cookie", format!("apimlAuthenticationToken={token}")).send().expect("query request");
    [("bearer", answer(bearer)), ("cookie", answer(cookie))]
}

/// `POST /access-token/validate` for `service`.
fn validate(c: &Cluster, i: usize, token: &str, service: &str) -> Answer {
    let body = json!({"token": token, "serviceId": service});
    answer(c.http.post(c.auth(i, "/access-token/validate")).json(&body).send().expect("validate request"))
}

/// The JWK set at `path` (`/keys/public/current` or `/keys/public/all`) of gateway `i`.
fn jwk_set(c: &Cluster, i: usize, path: &str) -> Vec<Value> {
    let r = c.http.get(c.auth(i, path)).send().expect("JWK set request");
    assert_eq!(r.status(), 200, "{path}");
    r.json::<Value>().expect("JWK set JSON")["keys"].as_array().expect("keys").clone()
}

fn kids(keys: &[Value]) -> BTreeSet<String> {
    keys.iter().map(|k| k["kid"].as_str().expect("kid").to_owned()).collect()
}

/// The one signing key's kid, as gateway `i` publishes it.
fn current_kid(c: &Cluster, i: usize) -> String {
    let keys = jwk_set(c, i, "/keys/public/current");
    assert_eq!(keys.len(), 1, "one current key: {keys:?}");
    keys[0]["kid"].as_str().expect("kid").to_owned()
}

fn with(mut v: Value, edit: impl FnOnce(&mut Value)) -> Value {
    edit(&mut v);
    v
}

/// `token` with part `i` (0 header, 1 claims, 2 signature) replaced.
fn replace_part(token: &str, i: usize, part: &str) -> String {
    let mut parts: Vec<&str> = token.split('.').collect();
    parts[i] = part;
    parts.join(".")
}

/// `token` with `junk` inserted in the middle of part `i`.
fn corrupt_part(token: &str, i: usize, junk: &str) -> String {
    let p = token.split('.').nth(i).expect("part");
    let mid = p.len() / 2;
    replace_part(token, i, &format!("{}{junk}{}", &p[..mid], &p[mid..]))
}

/// `token` with part `i` re-encoded in padded standard base64 (`+`, `/`, `=`): the same bytes,
/// in an encoding JWS does not allow.
fn standard_base64_part(token: &str, i: usize) -> String {
    use base64::Engine;
    let p = token.split('.').nth(i).expect("part");
    let std = base64::engine::general_purpose::STANDARD.encode(unb64(p));
    assert_ne!(std, p, "part {i} reads the same in both encodings");
    replace_part(token, i, &std)
}

/// `token` with one bit of its signature flipped.
fn flip_signature_bit(token: &str) -> String {
    let mut sig = unb64(token.split('.').nth(2).expect("signature"));
    let mid = sig.len() / 2;
    sig[mid] ^= 0x01;
    replace_part(token, 2, &b64(sig))
}

/// A correctly signed login token whose length is just at (`over` false) or just past the limit.
fn token_at_limit(f: &Forger, over: bool) -> String {
    let build = |pad: usize| with(login_claims("alice"), |c| c["pad"] = json!("x".repeat(pad)));
    let sig_len = f.token(&login_claims("alice")).split('.').nth(2).expect("signature").len();
    let len = |pad: usize| forge::signing_input(&f.header(), &build(pad)).len() + 1 + sig_len;
    // The largest padding that still fits.
    let (mut lo, mut hi) = (0, MAX_TOKEN_BYTES);
    while lo + 1 < hi {
        let mid = (lo + hi) / 2;
        if len(mid) <= MAX_TOKEN_BYTES { lo = mid } else { hi = mid }
    }
    let token = f.token(&build(if over { hi } else { lo }));
    if over {
        assert!(token.len() > MAX_TOKEN_BYTES && token.len() <= MAX_TOKEN_BYTES + 3, "{}", token.len());
    } else {
        assert!(token.len() <= MAX_TOKEN_BYTES && token.len() >= MAX_TOKEN_BYTES - 3, "{}", token.len());
    }
    token
}

/// Every key file a forger could get hold of in a cluster workspace.
struct Material {
    /// The gateway's signing key (its certificate key, the default).
    key: PathBuf,
    /// Its certificate.
    cert: PathBuf,
    /// Another RSA key with its certificate: the attacker's own.
    other_key: PathBuf,
    other_cert: PathBuf,
    /// An EC key.
    ec_key: PathBuf,
}

impl Material {
    fn of(ws: &Workspace) -> Material {
        let (cert, key) = ws.server_identity();
        let (_, ec_key) = ws.client_identity();
        Material { key, cert, other_key: ws.certs_dir().join("ca.key"), other_cert: ws.ca(), ec_key }
    }
}

/// Tokens an attacker can make without the signing key, or with it but wrongly, in the shape
/// of `claims` (a login token's or a PAT's). Each must be refused with `invalid`.
fn forgeries(f: &Forger, m: &Material, claims: &Value, invalid: &'static str) -> Vec<Case> {
    let kid = f.kid.clone();
    let good = f.token(claims);
    let other = forge::rsa_key(&m.other_key);
    let other_kid = forge::kid_of(&m.other_cert);
    let (other_n, other_e) = forge::rsa_components(&m.other_cert);
    let (n, e) = forge::rsa_components(&m.cert);
    let mut cases = Vec::new();
    let mut refuse = |name: &str, token: String| cases.push(case(name, token, 401, invalid));

    // No signature at all.
    for alg in ["none", "None", "NONE", "nOnE"] {
        refuse(&format!("alg {alg}, no signature"), unsigned(&json!({"alg": alg, "typ": "JWT", "kid": kid}), claims));
    }
    refuse(
        "alg none, the valid RS256 signature kept",
        replace_part(&good, 0, &b64(json!({"alg": "none", "typ": "JWT", "kid": kid}).to_string())),
    );
    refuse("no alg, validly signed", f.token_with_header(&json!({"typ": "JWT", "kid": kid}), claims));
    refuse(
        "unknown crit extension, validly signed",
        f.token_with_header(&json!({"alg": "RS256", "typ": "JWT", "kid": kid, "crit": ["urn:x:unknown"]}), claims),
    );
    refuse(
        "crit b64=false, validly signed",
        f.token_with_header(&json!({"alg": "RS256", "typ": "JWT", "kid": kid, "crit": ["b64"], "b64": false}), claims),
    );
    refuse("RS256 with an empty signature", format!("{}.", forge::signing_input(&f.header(), claims)));

    // Algorithm confusion: the public key as an HMAC secret, in every form it is published in.
    let cert_file = std::fs::read(&m.cert).expect("read certificate");
    let secrets: Vec<(&str, Vec<u8>)> = vec![
        ("public key PEM", forge::spki_pem(&m.cert).into_bytes()),
        ("public key PEM without the last newline", forge::spki_pem(&m.cert).trim_end().as_bytes().to_vec()),
        ("public key DER", forge::spki_der(&m.cert)),
        ("PKCS#1 public key DER", forge::rsa_public_key_der(&m.cert)),
        ("certificate PEM file", cert_file),
        ("JWK modulus", n.clone().into_bytes()),
        ("JWK", json!({"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256", "n": n, "e": e}).to_string().into_bytes()),
    ];
    for (what, secret) in &secrets {
        let hmac = EncodingKey::from_secret(secret);
        refuse(
            &format!("HS256 keyed with the {what}"),
            sign(&json!({"alg": "HS256", "typ": "JWT", "kid": kid}), claims, &hmac, Algorithm::HS256),
        );
    }
    let pem = EncodingKey::from_secret(forge::spki_pem(&m.cert).as_bytes());
    refuse("HS384 keyed with the public key PEM", sign(&json!({"alg": "HS384", "typ": "JWT", "kid": kid}), claims, &pem, Algorithm::HS384));
    refuse("HS512 keyed with the public key PEM", sign(&json!({"alg": "HS512", "typ": "JWT", "kid": kid}), claims, &pem, Algorithm::HS512));
    refuse("HS256 keyed with the public key PEM, no kid", sign(&json!({"alg": "HS256", "typ": "JWT"}), claims, &pem, Algorithm::HS256));

    // The right key, an algorithm other than RS256.
    for alg in [Algorithm::RS384, Algorithm::RS512, Algorithm::PS256, Algorithm::PS512] {
        let header = json!({"alg": format!("{alg:?}"), "typ": "JWT", "kid": kid});
        refuse(&format!("{alg:?} with the signing key"), sign(&header, claims, f.key(), alg));
    }
    let ec = EncodingKey::from_ec_pem(&std::fs::read(&m.ec_key).expect("read EC key")).expect("EC key");
    refuse("ES256 with another key", sign(&json!({"alg": "ES256", "typ": "JWT", "kid": kid}), claims, &ec, Algorithm::ES256));

    // Key ids.
    refuse("no kid", f.token_with_header(&json!({"alg": "RS256", "typ": "JWT"}), claims));
    refuse("empty kid", f.token_with_header(&json!({"alg": "RS256", "typ": "JWT", "kid": ""}), claims));
    refuse("unknown kid", f.token_with_header(&json!({"alg": "RS256", "typ": "JWT", "kid": "no-such-key"}), claims));
    let swapped: String =
        kid.chars().map(|c| if c.is_ascii_lowercase() { c.to_ascii_uppercase() } else { c.to_ascii_lowercase() }).collect();
    refuse("kid in other letter case", f.token_with_header(&json!({"alg": "RS256", "typ": "JWT", "kid": swapped}), claims));
    refuse("kid as a number", f.token_with_header(&json!({"alg": "RS256", "typ": "JWT", "kid": 1}), claims));
    refuse(
        "kid as a file path",
        f.token_with_header(&json!({"alg": "RS256", "typ": "JWT", "kid": "../../workspace/certificates/server.pem"}), claims),
    );
    refuse(
        "another key under its own kid",
        sign(&json!({"alg": "RS256", "typ": "JWT", "kid": other_kid}), claims, &other, Algorithm::RS256),
    );

    // Signatures.
    refuse("one signature bit flipped", flip_signature_bit(&good));
    refuse("signature truncated", good[..good.len() - 4].to_owned());
    refuse(
        "signature of another token",
        replace_part(&good, 2, f.token(&with(claims.clone(), |c| c["jti"] = json!(forge::jti()))).split('.').nth(2).expect("signature")),
    );
    refuse("another key under the gateway's kid", sign(&f.header(), claims, &other, Algorithm::RS256));
    let embedded = json!({"alg": "RS256", "typ": "JWT", "kid": kid, "jwk": {"kty": "RSA", "n": other_n, "e": other_e}});
    refuse("another key embedded as jwk", sign(&embedded, claims, &other, Algorithm::RS256));
    refuse(
        "another key named by jku",
        sign(&json!({"alg": "RS256", "typ": "JWT", "kid": kid, "jku": "https://127.0.0.1:1/keys"}), claims, &other, Algorithm::RS256),
    );
    let other_der = forge::x5c(&m.other_cert);
    refuse(
        "another key sent as x5c",
        sign(&json!({"alg": "RS256", "typ": "JWT", "kid": kid, "x5c": other_der}), claims, &other, Algorithm::RS256),
    );

    // Changed after signing.
    let other_user = if claims["sub"] == "bob" { "alice" } else { "bob" };
    refuse("sub changed after signing", replace_part(&good, 1, &b64(with(claims.clone(), |c| c["sub"] = json!(other_user)).to_string())));
    refuse(
        "exp moved on after signing",
        replace_part(&good, 1, &b64(with(claims.clone(), |c| c["exp"] = json!(now() + 365 * 86_400)).to_string())),
    );
    refuse("header changed after signing", replace_part(&good, 0, &b64(with(f.header(), |h| h["typ"] = json!("at+jwt")).to_string())));

    // Encoding and structure.
    // Parts whose length needs padding, so that the standard encoding always reads differently.
    let mut padded = claims.clone();
    while padded.to_string().len().is_multiple_of(3) {
        padded["jti"] = json!(format!("{}x", padded["jti"].as_str().expect("jti")));
    }
    let padded = f.token(&padded);
    for (i, part) in ["header", "claims", "signature"].iter().enumerate() {
        refuse(&format!("invalid base64 in the {part}"), corrupt_part(&good, i, "!*"));
        refuse(&format!("{part} in padded standard base64"), standard_base64_part(&padded, i));
    }
    refuse("header not JSON", sign_raw("{\"alg\":\"RS256\",", &claims.to_string(), f.key(), Algorithm::RS256));
    refuse("claims not JSON", sign_raw(&f.header().to_string(), "{\"sub\":", f.key(), Algorithm::RS256));
    refuse("claims a JSON array", sign_raw(&f.header().to_string(), "[1,2]", f.key(), Algorithm::RS256));
    let obj = claims.to_string();
    let dup = format!("{},\"sub\":\"{other_user}\"}}", &obj[..obj.len() - 1]);
    refuse("duplicate sub claim", sign_raw(&f.header().to_string(), &dup, f.key(), Algorithm::RS256));
    refuse("two parts", good.rsplit_once('.').expect("dot").0.to_owned());
    refuse("four parts", format!("{good}.{}", b64("x")));
    refuse("only dots", "..".to_owned());
    refuse("garbage", "this.is.garbage".to_owned());
    cases
}

/// Correctly signed tokens whose claims are wrong, in the shape of `claims`.
fn bad_claims(f: &Forger, claims: &Value, invalid: &'static str, expired: &'static str) -> Vec<Case> {
    let now = now();
    let t = |edit: &dyn Fn(&mut Value)| f.token(&with(claims.clone(), edit));
    let mut cases = vec![
        case("exp in the past beyond the leeway", t(&|c| c["exp"] = json!(now - LEEWAY - 90)), 401, expired),
        case(
            "exp long past",
            t(&|c| {
                c["iat"] = json!(now - 10 * 86_400);
                c["exp"] = json!(now - 9 * 86_400);
            }),
            401,
            expired,
        ),
        case("expired and a bad signature", flip_signature_bit(&t(&|c| c["exp"] = json!(now - LEEWAY - 90))), 401, invalid),
        case("iat in the future beyond the leeway", t(&|c| c["iat"] = json!(now + LEEWAY + 270)), 401, invalid),
        case("nbf in the future beyond the leeway", t(&|c| c["nbf"] = json!(now + LEEWAY + 270)), 401, invalid),
        case("iss evil", t(&|c| c["iss"] = json!("evil")), 401, invalid),
        case("iss empty", t(&|c| c["iss"] = json!("")), 401, invalid),
        case("iss in other letter case", t(&|c| c["iss"] = json!(c["iss"].as_str().expect("iss").to_lowercase())), 401, invalid),
        case("no iss", t(&|c| drop(c.as_object_mut().expect("object").remove("iss"))), 401, invalid),
        case("no exp", t(&|c| drop(c.as_object_mut().expect("object").remove("exp"))), 401, invalid),
        case("no iat", t(&|c| drop(c.as_object_mut().expect("object").remove("iat"))), 401, invalid),
        case("no sub", t(&|c| drop(c.as_object_mut().expect("object").remove("sub"))), 401, invalid),
        case("no jti", t(&|c| drop(c.as_object_mut().expect("object").remove("jti"))), 401, invalid),
        case("empty sub", t(&|c| c["sub"] = json!("")), 401, invalid),
        case("sub a number", t(&|c| c["sub"] = json!(42)), 401, invalid),
        case("exp a string", t(&|c| c["exp"] = json!((now + 3600).to_string())), 401, invalid),
        case("exp negative", t(&|c| c["exp"] = json!(-1)), 401, invalid),
        case("exp u64::MAX (overflow bait)", t(&|c| c["exp"] = json!(u64::MAX)), 401, invalid),
        case("exp far beyond the longest lifetime", t(&|c| c["exp"] = json!(now + 400 * 86_400)), 401, invalid),
    ];
    cases.push(case("a signed token over 8 KiB", token_at_limit(f, true), 401, invalid));
    cases
}

/// Correctly signed tokens that are right, some at the edge of the leeway: accepted with `ok`.
fn accepted(f: &Forger, claims: &Value, ok: u16) -> Vec<Case> {
    let now = now();
    let t = |edit: &dyn Fn(&mut Value)| f.token(&with(claims.clone(), edit));
    vec![
        case("the forgery without a fault", f.token(claims), ok, ""),
        case("exp just past, within the leeway", t(&|c| c["exp"] = json!(now - 5)), ok, ""),
        case("iat just ahead, within the leeway", t(&|c| c["iat"] = json!(now + 5)), ok, ""),
        case("nbf just ahead, within the leeway", t(&|c| c["nbf"] = json!(now + 5)), ok, ""),
        case("nbf in the past", t(&|c| c["nbf"] = json!(now - 60)), ok, ""),
    ]
}

#[test]
fn every_forged_or_broken_login_token_is_refused_by_query_on_every_gateway() {
    let c = Cluster::start(ClusterSetup::default());
    let m = Material::of(&c.ws);
    let kid = current_kid(&c, 0);
    assert_eq!(current_kid(&c, 1), kid, "both gateways sign with the shared key");
    assert_eq!(kid, forge::kid_of(&m.cert), "kid = base64url(SHA-256(SubjectPublicKeyInfo)) of the signing certificate");
    let f = Forger::new(&m.key, &kid);

    // What the gateway issues, and what the forger makes, look alike.
    let real = c.login(0, "alice", PASSWORD);
    let header = forge::part(&real, 0);
    assert_eq!((header["alg"].as_str(), header["kid"].as_str()), (Some("RS256"), Some(kid.as_str())), "{header}");
    let claims = forge::part(&real, 1);
    assert_eq!(claims["iss"], "APIML");
    let template = login_claims("alice");
    let shape = |v: &Value| v.as_object().map(|o| o.keys().cloned().collect::<BTreeSet<_>>()).unwrap_or_default();
    assert_eq!(shape(&claims), shape(&template), "forged claims have the issued token's claims: {claims}");

    let mut cases = vec![case("the token the gateway issued", real, 200, "")];
    cases.extend(accepted(&f, &template, 200));
    cases.push(case("a signed token just within 8 KiB", token_at_limit(&f, false), 200, ""));
    cases.extend(forgeries(&f, &m, &template, INVALID));
    cases.extend(bad_claims(&f, &template, INVALID, EXPIRED));
    // The right signature on the wrong kind of token: a PAT is no login token.
    cases.push(case("a forged PAT", f.token(&pat_claims("alice", &[SERVICE])), 401, INVALID));
    let pat = c.generate_pat(0, "alice", &[SERVICE]);
    cases.push(case("a PAT the gateway issued", pat, 401, INVALID));

    let mut failures = Vec::new();
    for k in &cases {
        let user = (k.status == 200).then(|| forge::part(&k.token, 1)["sub"].as_str().map(str::to_owned)).flatten();
        for i in 0..c.ports.len() {
            for (how, a) in query_both_ways(&c, i, &k.token) {
                if let Some(m) = mismatch(k, &a, user.as_deref()) {
                    failures.push(format!("gateway {i}, {how}: {m}"));
                }
            }
        }
    }
    report(failures, &format!("{} query", cases.len()));
}

#[test]
fn every_forged_or_broken_personal_access_token_is_refused_by_validate() {
    let c = Cluster::start(ClusterSetup { gateways: 1, start_gateways: 1, ..ClusterSetup::default() });
    let m = Material::of(&c.ws);
    let kid = current_kid(&c, 0);
    let f = Forger::new(&m.key, &kid);

    let real = c.generate_pat(0, "bob", &[SERVICE]);
    assert_eq!(forge::part(&real, 0)["kid"], kid.as_str());
    let claims = forge::part(&real, 1);
    let template = pat_claims("bob", &[SERVICE]);
    assert_eq!(
        (&claims["iss"], &claims["auth.prov"], &claims["scopes"]),
        (&template["iss"], &template["auth.prov"], &template["scopes"]),
        "{claims}"
    );

    let mut cases = vec![case("the PAT the gateway issued", real.clone(), 204, "")];
    cases.extend(accepted(&f, &template, 204));
    cases.extend(forgeries(&f, &m, &template, PAT_INVALID));
    cases.extend(bad_claims(&f, &template, PAT_INVALID, PAT_EXPIRED));
    cases.push(case(
        "scopes widened after signing",
        replace_part(&f.token(&template), 1, &b64(with(template.clone(), |c| c["scopes"] = json!([SERVICE, "other"])).to_string())),
        401,
        PAT_INVALID,
    ));
    // The right signature on the wrong kind of token: a login token is no PAT.
    cases.push(case("a login token the gateway issued", c.login(0, "bob", PASSWORD), 401, PAT_INVALID));
    cases.push(case("a forged login token", f.token(&login_claims("bob")), 401, PAT_INVALID));
    // Valid, but not for this service: Zowe's bare 401.
    cases.push(case("a PAT for another service", f.token(&pat_claims("bob", &["other"])), 401, ""));

    let mut failures = Vec::new();
    for k in &cases {
        if let Some(m) = mismatch(k, &validate(&c, 0, &k.token, SERVICE), None) {
            failures.push(m);
        }
    }
    // Service ids compare without letter case, as the scopes were stored.
    let upper = case("the issued PAT, service id in capitals", real.clone(), 204, "");
    if let Some(m) = mismatch(&upper, &validate(&c, 0, &real, &SERVICE.to_uppercase()), None) {
        failures.push(m);
    }
    report(failures, &format!("{} validate", cases.len() + 1));
}

/// The `jwt:` line of the gateway section in the cluster's zowe.yaml; replaced to reconfigure.
const JWT_DEFAULT: &str = "    jwt: {lifetime: 8h}\n";

/// Rewrites the `jwt:` line of zowe.yaml from `from` to `to` (both our own text).
fn set_jwt(c: &Cluster, from: &str, to: &str) {
    let text = std::fs::read_to_string(&c.config).expect("read zowe.yaml");
    assert_eq!(text.matches(from).count(), 1, "the jwt line once in zowe.yaml:\n{text}");
    std::fs::write(&c.config, text.replace(from, to)).expect("write zowe.yaml");
}

/// Stops gateway `i` as an operator would (SIGTERM, drain) and starts it again with the current file.
fn restart(c: &mut Cluster, i: usize) {
    let mut p = c.gateways[i].take().expect("gateway running");
    p.signal("TERM");
    assert!(p.wait_exit(Duration::from_secs(15)).is_some(), "gateway {i} did not stop on SIGTERM\n{}", p.logs());
    c.start_gateway(i);
}

/// Verifies `token` with the JWK of its kid from gateway `i`'s `keys/public/all`, as an API
/// service would.
fn verifies_with_published_key(c: &Cluster, i: usize, token: &str) -> bool {
    let kid = forge::part(token, 0)["kid"].as_str().expect("kid").to_owned();
    let keys = jwk_set(c, i, "/keys/public/all");
    let Some(jwk) = keys.iter().find(|k| k["kid"] == kid.as_str()) else { return false };
    let key = DecodingKey::from_rsa_components(jwk["n"].as_str().expect("n"), jwk["e"].as_str().expect("e")).expect("JWK");
    let mut v = Validation::new(Algorithm::RS256);
    v.set_issuer(&["APIML"]);
    jsonwebtoken::decode::<Value>(token, &key, &v).is_ok()
}

fn published(c: &Cluster, i: usize) -> (BTreeSet<String>, BTreeSet<String>) {
    (kids(&jwk_set(c, i, "/keys/public/all")), kids(&jwk_set(c, i, "/keys/public/current")))
}

fn set(kids: &[&str]) -> BTreeSet<String> {
    kids.iter().map(|k| (*k).to_owned()).collect()
}

#[test]
fn signing_key_rotation_by_config_and_rolling_restart_logs_nobody_out() {
    let mut c = Cluster::start(ClusterSetup { gateway_yaml: JWT_DEFAULT.to_owned(), ..ClusterSetup::default() });
    let (old_cert, _) = c.ws.server_identity();
    let old = forge::kid_of(&old_cert);
    assert_eq!(current_kid(&c, 0), old);
    let token_a = c.login(0, "alice", PASSWORD);
    assert_eq!(forge::part(&token_a, 0)["kid"], old.as_str());

    // A second key and certificate, as `plexgate init certificate` makes them, on the shared file system.
    let other = Workspace::new();
    other.run(&["init", "certificate"], "").expect_code(0);
    let (new_cert_src, new_key_src) = other.server_identity();
    let new_cert = c.ws.certs_dir().join("jwt-next.pem");
    std::fs::copy(&new_cert_src, &new_cert).expect("copy certificate");
    std::fs::copy(&new_key_src, c.ws.certs_dir().join("jwt-next.key")).expect("copy key");
    let new = forge::kid_of(&new_cert);
    assert_ne!(new, old);

    // Phase 1: every gateway learns the new certificate; the old key still signs.
    let phase1 = "    jwt: {lifetime: 8h, verificationCertificates: [workspace/certificates/jwt-next.pem]}\n";
    set_jwt(&c, JWT_DEFAULT, phase1);
    for i in 0..2 {
        restart(&mut c, i);
        assert_eq!(published(&c, i), (set(&[&old, &new]), set(&[&old])), "phase 1, gateway {i}");
        assert_eq!(c.query(i, &token_a).status(), 200, "token A after phase 1 on gateway {i}");
    }
    assert_eq!(forge::part(&c.login(1, "bob", PASSWORD), 0)["kid"], old.as_str(), "the old key still signs in phase 1");

    // Phase 2: the new key signs, the old certificate only verifies. Rolling: while gateway 1
    // still runs the phase-1 file, it already accepts what the restarted gateway 0 signs.
    let phase2 = "    jwt: {lifetime: 8h, signingKey: workspace/certificates/jwt-next.key, signingCertificate: workspace/certificates/jwt-next.pem, verificationCertificates: [workspace/certificates/server.pem]}\n";
    set_jwt(&c, phase1, phase2);
    restart(&mut c, 0);
    let token_b = c.login(0, "bob", PASSWORD);
    assert_eq!(forge::part(&token_b, 0)["kid"], new.as_str(), "a new login is signed by the new key");
    assert_eq!(c.query(1, &token_b).status(), 200, "the not yet restarted gateway accepts the new key's token");
    restart(&mut c, 1);
    assert_eq!(forge::part(&c.login(1, "alice", PASSWORD), 0)["kid"], new.as_str());
    for i in 0..2 {
        assert_eq!(c.query(i, &token_a).status(), 200, "token A (old key) after the switch on gateway {i}: nobody logged out");
        assert_eq!(c.query(i, &token_b).status(), 200, "token B (new key) on gateway {i}");
        assert_eq!(published(&c, i), (set(&[&old, &new]), set(&[&new])), "phase 2, gateway {i}");
        // What services see: the published keys really are the certificates' keys, and verify the tokens.
        let all = jwk_set(&c, i, "/keys/public/all");
        for (kid, cert) in [(&old, &old_cert), (&new, &new_cert)] {
            let jwk = all.iter().find(|k| k["kid"] == kid.as_str()).expect("published");
            assert_eq!(
                (jwk["n"].as_str().unwrap().to_owned(), jwk["e"].as_str().unwrap().to_owned()),
                forge::rsa_components(cert),
                "JWK {kid}"
            );
            assert_eq!((&jwk["kty"], &jwk["alg"]), (&json!("RSA"), &json!("RS256")));
        }
        assert!(
            verifies_with_published_key(&c, i, &token_a) && verifies_with_published_key(&c, i, &token_b),
            "JWK set of gateway {i} verifies both tokens"
        );
    }

    // Phase 3: the old key retired; its tokens end, the new key's live on.
    let phase3 = "    jwt: {lifetime: 8h, signingKey: workspace/certificates/jwt-next.key, signingCertificate: workspace/certificates/jwt-next.pem}\n";
    set_jwt(&c, phase2, phase3);
    for i in 0..2 {
        restart(&mut c, i);
    }
    for i in 0..2 {
        let a = answer(c.query(i, &token_a));
        assert_eq!((a.status, a.number.as_str()), (401, INVALID), "token A after its key was retired, gateway {i}");
        assert_eq!(c.query(i, &token_b).status(), 200, "token B after the old key was retired, gateway {i}");
        assert_eq!(published(&c, i), (set(&[&new]), set(&[&new])), "phase 3, gateway {i}");
    }
}
