//! Subject names compared and namespaced unambiguously (issue 11, item 7): a certificate
//! whose CN spells another DN (`plexgate-gateway, O=plexgate`) is not that DN, and
//! `X-CS-Service-ID` namespaces never equal the namespace of another DN.

use plexgate_tests::caching::CachingService;
use plexgate_tests::certs::issue_client;
use plexgate_tests::https::client;
use rcgen::DnType;
use reqwest::blocking::Client;
use serde_json::{Value, json};

/// The gateway client certificate's DN, as `plexgate init certificate` writes it.
const GATEWAY_DN: &str = "CN=plexgate-gateway, O=plexgate";

fn keys(c: &Client, cs: &CachingService, headers: &[(&str, &str)]) -> Value {
    let mut r = c.get(cs.api("/cache"));
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let resp = r.send().unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().unwrap()
}

fn put(c: &Client, cs: &CachingService, headers: &[(&str, &str)], key: &str) {
    let mut r = c.post(cs.api("/cache")).json(&json!({"key": key, "value": "secret"}));
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    assert_eq!(r.send().unwrap().status(), 201);
}

#[test]
fn a_common_name_spelling_the_gateways_dn_is_not_the_gateway() {
    let cs = CachingService::start("inMemory").unwrap();
    let gateway = cs.ws.client();
    put(&gateway, &cs, &[], "gateway-revocations");
    put(&gateway, &cs, &[("X-Certificate-DistinguishedName", "CN=victim, O=plexgate")], "victims-key");

    let (cert, key) = issue_client(&cs.ws, "impostor", &[(DnType::CommonName, "plexgate-gateway, O=plexgate")]);
    let impostor = client(&cs.ws.ca(), Some((&cert, &key)));
    assert_eq!(keys(&impostor, &cs, &[]), json!({}), "the impostor must not see the gateway's namespace ({GATEWAY_DN})");
    let passed = impostor.get(cs.api("/cache")).header("X-Certificate-DistinguishedName", "CN=victim, O=plexgate").send().unwrap();
    assert_eq!(passed.status(), 403, "the impostor is no trusted gateway: {}", passed.text().unwrap());
    // Its own namespace is its own, and the gateway's is untouched.
    put(&impostor, &cs, &[], "impostors-key");
    assert_eq!(keys(&gateway, &cs, &[]).as_object().unwrap().keys().collect::<Vec<_>>(), ["gateway-revocations"]);
}

#[test]
fn service_namespaces_never_equal_another_dns_namespace() {
    let cs = CachingService::start("inMemory").unwrap();
    let (cert, key) = issue_client(&cs.ws, "svc", &[(DnType::OrganizationName, "plexgate"), (DnType::CommonName, "svc")]);
    let svc = client(&cs.ws.ca(), Some((&cert, &key)));
    put(&svc, &cs, &[("X-CS-Service-ID", "x")], "svc-x-key");
    // A certificate whose CN spells `svc, O=plexgate, SERVICE=x`.
    let (cert, key) = issue_client(&cs.ws, "spelled", &[(DnType::CommonName, "svc, O=plexgate, SERVICE=x")]);
    let spelled = client(&cs.ws.ca(), Some((&cert, &key)));
    assert_eq!(keys(&spelled, &cs, &[]), json!({}));
    // A trusted gateway passing a DN that spells another caller's service namespace.
    let gateway = cs.ws.client();
    put(&gateway, &cs, &[("X-Certificate-DistinguishedName", "CN=u, O=plexgate"), ("X-CS-Service-ID", "x")], "u-x-key");
    for dn in ["CN=u, O=plexgate, SERVICE=x", "CN=u,O=plexgate,SERVICE=x"] {
        assert_eq!(keys(&gateway, &cs, &[("X-Certificate-DistinguishedName", dn)]), json!({}), "{dn}");
    }
    // The service namespace itself is still reachable, also with another spelling of the DN.
    let own = keys(&gateway, &cs, &[("X-Certificate-DistinguishedName", "cn=u,o=plexgate"), ("X-CS-Service-ID", "x")]);
    assert_eq!(own.as_object().unwrap().keys().collect::<Vec<_>>(), ["u-x-key"]);
}
