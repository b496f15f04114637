//! plexgate's discovery service (Eureka's REST API, issue 15) through a Eureka client written
//! in the test (`plexgate_tests::eureka`): every call Zowe's enablers and Eureka's clients
//! make, with its status and body, in JSON and XML; registrations shared by two discovery
//! instances through the caching service; leases that run out; hostile input refused with a
//! 400 and nothing stored; and only callers with a trusted client certificate served.
//!
//! The real Node.js enabler against the whole site is in `discovery_nodejs.rs`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use plexgate_tests::assert_eventually;
use plexgate_tests::cluster::{Cluster, ClusterSetup};
use plexgate_tests::eureka::{self, Accept, Eureka, Reply, find_instance, one_or_many, registration, registration_xml};
use serde_json::{Value, json};

/// A caching service and `n` discovery instances (no gateway: these tests speak to
/// discovery only), and a service certificate to call them with.
fn site(n: usize) -> (Cluster, (PathBuf, PathBuf)) {
    let mut c = Cluster::start(ClusterSetup { gateways: n, start_gateways: 0, discovery: true, ..ClusterSetup::default() });
    for i in 0..n {
        c.start_discovery(i);
    }
    let id = plexgate_tests::certs::issue_service(&c.ws, "svc", "test-service");
    (c, id)
}

fn client(c: &Cluster, i: usize, id: &(PathBuf, PathBuf)) -> Eureka {
    c.eureka(i, Some((&id.0, &id.1)))
}

/// A 400 whose JSON body names `field`.
#[track_caller]
fn refused(r: &Reply, field: &str, what: &str) {
    assert_eq!(r.status, 400, "{what}: {r:?}");
    let body = r.json();
    assert!(field.is_empty() || body.to_string().contains(field), "{what}: the error names `{field}`: {body}");
}

#[track_caller]
fn status(r: Reply, want: u16, what: &str) -> Reply {
    assert_eq!(r.status, want, "{what}: {r:?}");
    r
}

#[test]
fn registers_renews_reads_and_deregisters_in_json_and_xml() {
    let (c, id) = site(1);
    let e = client(&c, 0, &id);
    let json_id = "127.0.0.1:jsonsvc:10001";
    let t0 = Instant::now();
    let r = status(e.register_json("JSONSVC", &registration("JSONSVC", json_id, 10001, 90, &[])), 204, "register JSON");
    assert!(r.body.is_empty(), "204 has no body: {r:?}");
    println!("register (JSON) answered in {:?}", t0.elapsed());

    // Reads: JSON without Accept and with it, the same document.
    let apps = status(e.apps(Accept::Default), 200, "GET /eureka/apps");
    assert!(apps.content_type.starts_with("application/json"), "JSON by default: {apps:?}");
    let doc = apps.json();
    // The same registry (`versions__delta` may move on meanwhile, as the feed's revision does).
    let again = status(e.apps(Accept::Json), 200, "GET apps JSON").json();
    assert_eq!(again["applications"]["application"], doc["applications"]["application"]);
    assert_eq!(again["applications"]["apps__hashcode"], doc["applications"]["apps__hashcode"]);
    let i = find_instance(&doc, json_id).unwrap_or_else(|| panic!("registered instance listed: {doc}"));
    assert_eq!(i["app"], "JSONSVC");
    assert_eq!(i["status"], "UP");
    assert_eq!(i["hostName"], "127.0.0.1");
    assert_eq!(i["securePort"]["$"].to_string().trim_matches('"'), "10001");
    assert_eq!(i["securePort"]["@enabled"], "true");
    assert_eq!(i["vipAddress"], "jsonsvc");
    assert_eq!(i["metadata"]["apiml.routes.api_v1.gatewayUrl"], "api/v1");
    assert_eq!(i["metadata"]["apiml.routes.api_v1.serviceUrl"], "/jsonsvc/api/v1");
    assert_eq!(i["metadata"]["apiml.service.title"], "Test service jsonsvc");
    assert_eq!(i["dataCenterInfo"]["name"], "MyOwn");
    assert_eq!(i["leaseInfo"]["durationInSecs"].to_string().trim_matches('"'), "90");
    assert!(doc["applications"]["apps__hashcode"].as_str().is_some_and(|h| h.contains("UP_1_")), "{doc}");
    assert!(doc["applications"]["versions__delta"].is_string() || doc["applications"]["versions__delta"].is_number(), "{doc}");
    // The Node.js enabler fetches the registry as `GET /eureka/apps/` (trailing slash).
    let slash = e.request(reqwest::Method::GET, "/apps/").expect("GET /eureka/apps/");
    assert_eq!(slash.status, 200, "GET /eureka/apps/ (as eureka-js-client asks): {slash:?}");
    assert!(eureka::instances(&slash.json()).iter().any(|(_, i)| i == json_id), "{slash:?}");

    let app = status(e.app("JSONSVC", Accept::Json), 200, "GET app").json();
    assert_eq!(app["application"]["name"], "JSONSVC", "{app}");
    assert_eq!(one_or_many(&app["application"]["instance"])[0]["instanceId"], json_id, "{app}");
    let one = status(e.instance("JSONSVC", json_id, Accept::Json), 200, "GET instance").json();
    assert_eq!(one["instance"]["instanceId"], json_id, "{one}");
    assert_eq!(one["instance"], *i, "the instance reads the same alone and in the registry");

    // Register as Eureka's Java client does, in XML (a second app).
    let xml_id = "127.0.0.1:xmlsvc:10002";
    let r = status(e.register_xml("XMLSVC", &registration_xml("XMLSVC", xml_id, 10002, 90)), 204, "register XML");
    assert!(r.body.is_empty(), "{r:?}");
    let from_xml = status(e.instance("XMLSVC", xml_id, Accept::Json), 200, "GET XML-registered instance").json();
    assert_eq!(from_xml["instance"]["metadata"]["apiml.routes.api_v1.gatewayUrl"], "api/v1", "XStream's `__` is `_`: {from_xml}");
    assert_eq!(from_xml["instance"]["metadata"]["apiml.service.title"], "Java & XML <xmlsvc>", "entities read: {from_xml}");
    assert_eq!(from_xml["instance"]["securePort"]["@enabled"], "true", "{from_xml}");

    // XML reads agree with JSON reads, instance by instance.
    let xml = status(e.apps(Accept::Xml), 200, "GET apps XML");
    assert!(xml.content_type.contains("xml"), "{xml:?}");
    let root = xml.xml();
    assert_eq!(root.name, "applications", "{xml:?}");
    let json_doc = e.apps(Accept::Json).json();
    assert_eq!(root.text_of("apps__hashcode"), json_doc["applications"]["apps__hashcode"].as_str().unwrap(), "{xml:?}");
    let mut seen = 0;
    for app in root.all("application") {
        for inst in app.all("instance") {
            let xid = inst.text_of("instanceId");
            let j = find_instance(&json_doc, &xid).unwrap_or_else(|| panic!("{xid} in JSON too: {json_doc}"));
            assert_eq!(eureka::summary_of_xml(inst), eureka::summary_of_json(j), "XML and JSON of {xid}");
            assert_eq!(app.text_of("name"), j["app"].as_str().unwrap());
            seen += 1;
        }
    }
    assert_eq!(seen, 2, "both instances in XML: {xml:?}");
    let app_xml = status(e.app("XMLSVC", Accept::Xml), 200, "GET app XML").xml();
    assert_eq!((app_xml.name.as_str(), app_xml.text_of("name")), ("application", "XMLSVC".to_owned()), "{app_xml:?}");
    let inst_xml = status(e.instance("JSONSVC", json_id, Accept::Xml), 200, "GET instance XML").xml();
    assert_eq!(inst_xml.name, "instance");
    assert_eq!(eureka::summary_of_xml(&inst_xml), eureka::summary_of_json(i));

    // The delta: what changed lately, with the whole registry's hashcode (clients compare it).
    let delta = status(e.delta(Accept::Json), 200, "GET delta").json();
    assert!(find_instance(&delta, xml_id).is_some(), "a fresh registration is in the delta: {delta}");
    assert_eq!(delta["applications"]["apps__hashcode"], json_doc["applications"]["apps__hashcode"], "{delta}");
    let delta_xml = status(e.delta(Accept::Xml), 200, "GET delta XML").xml();
    assert_eq!(delta_xml.name, "applications");

    // Heartbeats: as the Node.js enabler (no query) and the Java client (status, lastDirtyTimestamp).
    let before = one["instance"]["leaseInfo"]["lastRenewalTimestamp"].as_u64().unwrap_or(0);
    assert_eventually!(
        Duration::from_secs(3),
        {
            status(e.heartbeat("JSONSVC", json_id), 200, "heartbeat");
            let now = e.instance("JSONSVC", json_id, Accept::Json).json();
            now["instance"]["leaseInfo"]["lastRenewalTimestamp"].as_u64().unwrap_or(0) > before
        },
        "a heartbeat moves lastRenewalTimestamp"
    );
    let dirty = from_xml["instance"]["lastDirtyTimestamp"].as_str().unwrap_or("0").to_owned();
    status(e.heartbeat_query("XMLSVC", xml_id, &[("status", "UP"), ("lastDirtyTimestamp", &dirty)]), 200, "Java heartbeat");
    // The Node.js enabler keeps the app's case from its configuration in every path.
    status(e.heartbeat("jsonsvc", json_id), 200, "heartbeat with the app in lower case");

    // Deregistration: gone everywhere, and a second one is a 404.
    status(e.deregister("XMLSVC", xml_id), 200, "deregister");
    status(e.instance("XMLSVC", xml_id, Accept::Json), 404, "GET deregistered instance");
    status(e.app("XMLSVC", Accept::Json), 404, "GET app with no instance left");
    assert!(!e.lists("XMLSVC", xml_id), "deregistered: {:?}", e.listed());
    status(e.deregister("XMLSVC", xml_id), 404, "deregister again");
    status(e.app("NOSUCHAPP", Accept::Json), 404, "unknown app");
    status(e.instance("JSONSVC", "127.0.0.1:jsonsvc:1", Accept::Json), 404, "unknown instance");

    // Heartbeat of an unknown instance: 404, on which a client registers again; then 200.
    status(e.heartbeat("XMLSVC", xml_id), 404, "heartbeat of a deregistered instance");
    status(e.register_xml("XMLSVC", &registration_xml("XMLSVC", xml_id, 10002, 90)), 204, "register again");
    status(e.heartbeat("XMLSVC", xml_id), 200, "heartbeat after registering again");
    assert!(e.lists("XMLSVC", xml_id));
    // A re-registration of a live instance replaces it (204), keeping one instance.
    let changed = registration("JSONSVC", json_id, 10001, 90, &[("apiml.service.description", "second registration")]);
    status(e.register_json("JSONSVC", &changed), 204, "register a live instance again");
    let app = e.app("JSONSVC", Accept::Json).json();
    let list = one_or_many(&app["application"]["instance"]);
    assert_eq!(list.len(), 1, "{app}");
    assert_eq!(list[0]["metadata"]["apiml.service.description"], "second registration");
}

#[test]
fn status_overrides_and_metadata_updates() {
    let (c, id) = site(1);
    let e = client(&c, 0, &id);
    let iid = "127.0.0.1:ovr:10003";
    status(e.register_json("OVR", &registration("OVR", iid, 10003, 90, &[])), 204, "register");
    let get = || e.instance("OVR", iid, Accept::Json).json()["instance"].clone();

    status(e.set_status("OVR", iid, "OUT_OF_SERVICE"), 200, "override OUT_OF_SERVICE");
    let i = get();
    assert_eq!((i["status"].as_str(), i["overriddenStatus"].as_str()), (Some("OUT_OF_SERVICE"), Some("OUT_OF_SERVICE")), "{i}");
    assert!(e.apps(Accept::Json).json()["applications"]["apps__hashcode"].as_str().unwrap().contains("OUT_OF_SERVICE_1_"));
    // A heartbeat (the instance still says UP) does not lift the override.
    status(e.heartbeat_query("OVR", iid, &[("status", "UP")]), 200, "heartbeat while overridden");
    assert_eq!(get()["status"], "OUT_OF_SERVICE");
    // Nor does registering again.
    status(e.register_json("OVR", &registration("OVR", iid, 10003, 90, &[])), 204, "register while overridden");
    assert_eq!(get()["status"], "OUT_OF_SERVICE", "Eureka keeps an override across a re-registration");
    refused(&e.set_status("OVR", iid, "MAYBE"), "", "a status that is none");
    assert_eq!(get()["status"], "OUT_OF_SERVICE", "a refused override changes nothing");
    status(e.set_status("OVR", "127.0.0.1:ovr:1", "OUT_OF_SERVICE"), 404, "override of an unknown instance");
    status(e.clear_status("OVR", iid), 200, "override removed");
    let i = get();
    assert_eq!(i["status"], "UP", "back to what the instance says: {i}");
    assert_ne!(i["overriddenStatus"], "OUT_OF_SERVICE", "{i}");
    status(e.set_status("OVR", iid, "DOWN"), 200, "override DOWN");
    assert_eq!(get()["status"], "DOWN");
    status(e.clear_status("OVR", iid), 200, "override removed again");
    status(e.clear_status("OVR", "127.0.0.1:ovr:1"), 404, "removing the override of an unknown instance");

    // Metadata: keys set, the others kept; a key that breaks the routes is refused whole.
    status(e.put_metadata("OVR", iid, &[("apiml.service.title", "Renamed"), ("custom.key", "v1")]), 200, "metadata put");
    let m = get()["metadata"].clone();
    assert_eq!((m["apiml.service.title"].as_str(), m["custom.key"].as_str()), (Some("Renamed"), Some("v1")), "{m}");
    assert_eq!(m["apiml.routes.api_v1.gatewayUrl"], "api/v1", "other keys kept: {m}");
    let r = e.put_metadata("OVR", iid, &[("apiml.routes.api_v1.gatewayUrl", "a/../b")]);
    refused(&r, "gatewayUrl", "metadata that breaks a route");
    assert_eq!(get()["metadata"], m, "a refused metadata update stores nothing");
    status(e.put_metadata("OVR", "127.0.0.1:ovr:1", &[("k", "v")]), 404, "metadata of an unknown instance");
}

#[test]
fn a_registration_on_one_discovery_instance_is_read_on_the_other_within_a_second() {
    let (c, id) = site(2);
    let (a, b) = (client(&c, 0, &id), client(&c, 1, &id));
    let mut worst = Duration::ZERO;
    for n in 0..3 {
        let iid = format!("127.0.0.1:shared:{}", 11000 + n);
        let t = Instant::now();
        status(a.register_json("SHARED", &registration("SHARED", &iid, 11000 + n, 90, &[])), 204, "register on A");
        assert_eventually!(Duration::from_secs(1), b.lists("SHARED", &iid), "registered on A, listed by B: {:?}", b.listed());
        let seen = t.elapsed();
        println!("registration {n} on discovery A listed by discovery B after {seen:?}");
        worst = worst.max(seen);
        // B renews it and overrides its status; A sees both.
        status(b.heartbeat("SHARED", &iid), 200, "heartbeat on B of A's registration");
        status(b.set_status("SHARED", &iid, "OUT_OF_SERVICE"), 200, "override on B");
        assert_eventually!(
            Duration::from_secs(1),
            a.instance("SHARED", &iid, Accept::Json).json()["instance"]["status"] == "OUT_OF_SERVICE",
            "B's override read on A"
        );
        let t = Instant::now();
        status(b.deregister("SHARED", &iid), 200, "deregister on B");
        assert_eventually!(Duration::from_secs(1), !a.lists("SHARED", &iid), "deregistered on B, gone from A");
        println!("deregistration {n} on discovery B gone from discovery A after {:?}", t.elapsed());
        status(a.heartbeat("SHARED", &iid), 404, "A's heartbeat after B's deregistration");
    }
    println!("worst registration propagation A -> B: {worst:?}");
}

#[test]
fn bad_input_is_refused_with_400_naming_the_field_and_nothing_is_stored() {
    let (c, id) = site(1);
    let e = client(&c, 0, &id);
    let good = "127.0.0.1:good:10004";
    status(e.register_json("GOOD", &registration("GOOD", good, 10004, 90, &[])), 204, "register the good one");
    let before = e.apps(Accept::Json).json();

    let base = || registration("BADS", "127.0.0.1:bads:10005", 10005, 90, &[]);
    let with = |field: &str, value: Value| {
        let mut b = base();
        b["instance"][field] = value;
        b.to_string()
    };
    let no_routes = {
        let mut b = base();
        let m = b["instance"]["metadata"].as_object_mut().unwrap();
        m.retain(|k, _| !k.starts_with("apiml.routes."));
        b.to_string()
    };
    let bad_route = {
        let mut b = base();
        b["instance"]["metadata"]["apiml.routes.api_v1.gatewayUrl"] = json!("a/../b");
        b.to_string()
    };
    let json = "application/json";
    let xml = "application/xml";
    let cases: Vec<(&str, &str, String, &str)> = vec![
        ("malformed JSON", json, "{\"instance\": {\"app\": \"BADS\",".to_owned(), ""),
        ("JSON that is no object", json, "[1, 2]".to_owned(), ""),
        ("malformed XML", xml, "<instance><app>BADS</app><hostName>127.0.0.1</instance>".to_owned(), ""),
        (
            "XML with a DTD entity",
            xml,
            registration_xml("BADS", "127.0.0.1:bads:10005", 10005, 90)
                .replace("<instance>", "<!DOCTYPE instance [<!ENTITY e \"boom\">]><instance>")
                .replace("<countryId>1</countryId>", "<countryId>&e;</countryId>"),
            "",
        ),
        ("body app is not the path's", json, with("app", json!("OTHER")), "app"),
        ("XML app is not the path's", xml, registration_xml("OTHER", "127.0.0.1:bads:10005", 10005, 90), "app"),
        ("instance id with a slash", json, with("instanceId", json!("127.0.0.1/bads:10005")), "instanceId"),
        ("instance id ..", json, with("instanceId", json!("..")), "instanceId"),
        ("instance id climbing", json, with("instanceId", json!("../../etc/passwd")), "instanceId"),
        ("instance id with a newline", json, with("instanceId", json!("bads\nX-Injected: 1")), "instanceId"),
        ("instance id with NUL", json, with("instanceId", json!("bads\u{0}x")), "instanceId"),
        ("instance id with an escaped slash", json, with("instanceId", json!("bads%2F..%2Fx")), "instanceId"),
        ("instance id with escaped dots", json, with("instanceId", json!("%2e%2e")), "instanceId"),
        ("status that is none", json, with("status", json!("MAYBE")), "status"),
        ("host name with a space", json, with("hostName", json!("evil host")), "hostName"),
        ("gatewayUrl a/../b", json, bad_route, "gatewayUrl"),
        ("no route at all", json, no_routes, "apiml.routes"),
    ];
    for (what, ct, body, field) in &cases {
        let r = e.register_raw("BADS", ct, body.clone());
        refused(&r, field, what);
    }
    // A live instance registered again with a broken body stays as it was.
    let mut broken = registration("GOOD", good, 10004, 90, &[("apiml.service.title", "changed")]);
    broken["instance"]["metadata"]["apiml.routes.api_v1.serviceUrl"] = json!("/x?y=1");
    refused(&e.register_json("GOOD", &broken), "serviceUrl", "re-registration with a broken serviceUrl");
    // Path tricks, sent raw (a client library would normalise them): never served, never a 5xx.
    let ident = (id.0.as_path(), id.1.as_path());
    for (method, path) in [
        ("PUT", format!("/eureka/apps/GOOD/..%2F..%2Fapps%2FGOOD%2F{good}")),
        ("PUT", "/eureka/apps/GOOD/%2e%2e".to_owned()),
        ("DELETE", "/eureka/apps/GOOD/%2E%2E%2FGOOD".to_owned()),
        ("DELETE", "/eureka/apps/GOOD/x%00y".to_owned()),
        ("POST", "/eureka/apps/BA%2FDS".to_owned()),
        ("PUT", format!("/eureka/apps/GOOD/{good}/status?value=OUT%0AOF")),
    ] {
        let body = if method == "POST" { base().to_string() } else { String::new() };
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let answer = eureka::raw_request(&c.ws.ca(), ident, c.discovery_ports[0], req.as_bytes());
        assert!(answer.starts_with("HTTP/1.1 400") || answer.starts_with("HTTP/1.1 404"), "{method} {path}: {answer}");
    }

    // Nothing of it was stored: the registry reads exactly as before.
    status(e.app("BADS", Accept::Json), 404, "nothing stored for BADS");
    status(e.app("OTHER", Accept::Json), 404, "nothing stored for OTHER");
    let after = e.apps(Accept::Json).json();
    assert_eq!(eureka::instances(&after), eureka::instances(&before), "{after}");
    let g = find_instance(&after, good).unwrap();
    assert_eq!(g["metadata"], find_instance(&before, good).unwrap()["metadata"], "the good instance untouched");
    assert_eq!(g["status"], "UP");
    status(e.heartbeat("GOOD", good), 200, "the good instance still renews");
}

#[test]
fn calls_without_a_trusted_client_certificate_are_refused() {
    let (c, id) = site(1);
    let port = c.discovery_ports[0];
    // Health needs no certificate (the distributor and operators check it so).
    let health = c.http.get(format!("https://127.0.0.1:{port}/application/health")).send().expect("health without a certificate");
    assert_eq!(health.status(), 200);
    let trusted = client(&c, 0, &id);
    status(trusted.register_json("CERTS", &registration("CERTS", "127.0.0.1:certs:1", 10006, 90, &[])), 204, "with a trusted one");

    let untrusted = plexgate_tests::certs::issue_untrusted(&c.ws, "stranger");
    let callers: [(&str, Eureka); 2] = [
        ("no client certificate", c.eureka(0, None)),
        ("a certificate from an untrusted CA", c.eureka(0, Some((&untrusted.0, &untrusted.1)))),
    ];
    for (who, e) in &callers {
        let calls: Vec<(&str, Result<Reply, reqwest::Error>)> = vec![
            ("GET /eureka/apps", e.request(reqwest::Method::GET, "/apps")),
            ("GET /eureka/apps/CERTS", e.request(reqwest::Method::GET, "/apps/CERTS")),
            ("POST /eureka/apps/EVIL", e.try_register_json("EVIL", &registration("EVIL", "127.0.0.1:evil:1", 10007, 90, &[]))),
            ("DELETE /eureka/apps/CERTS/127.0.0.1:certs:1", e.request(reqwest::Method::DELETE, "/apps/CERTS/127.0.0.1:certs:1")),
            ("PUT /eureka/apps/CERTS/127.0.0.1:certs:1", e.request(reqwest::Method::PUT, "/apps/CERTS/127.0.0.1:certs:1")),
        ];
        for (call, outcome) in calls {
            match outcome {
                // A certificate that does not chain to the truststore fails the handshake
                // (rustls' alert UnknownCA), so nothing of the request is read.
                Err(err) => {
                    println!("{who}: {call}: refused in the handshake ({err:?})");
                    assert_ne!(*who, "no client certificate", "{call}: the handshake succeeds without a certificate (health needs none)");
                }
                // Without one the handshake succeeds (health is served so) and /eureka answers 403.
                Ok(r) => {
                    println!("{who}: {call}: {} {}", r.status, r.body);
                    assert_eq!(*who, "no client certificate", "{call}: an untrusted certificate must fail the handshake: {r:?}");
                    assert_eq!(r.status, 403, "{call}: {r:?}");
                    assert!(r.json()["message"].as_str().is_some_and(|m| m.contains("client certificate")), "{r:?}");
                }
            }
        }
    }
    // Nothing the refused callers sent was stored or removed.
    status(trusted.app("EVIL", Accept::Json), 404, "EVIL not stored");
    assert!(trusted.lists("CERTS", "127.0.0.1:certs:1"), "CERTS not deregistered: {:?}", trusted.listed());
}

#[test]
fn a_lease_without_heartbeats_expires_on_every_discovery_instance() {
    let (c, id) = site(2);
    let (a, b) = (client(&c, 0, &id), client(&c, 1, &id));
    let lease = Duration::from_secs(3);
    let (silent, renewed) = ("127.0.0.1:lease:12001", "127.0.0.1:lease:12002");
    let t = Instant::now();
    status(a.register_json("LEASE", &registration("LEASE", silent, 12001, 3, &[])), 204, "register with a 3 s lease");
    status(a.register_json("LEASE", &registration("LEASE", renewed, 12002, 3, &[])), 204, "register a renewed one");
    assert_eventually!(Duration::from_secs(1), b.lists("LEASE", silent), "listed on B");
    let lease_info = b.instance("LEASE", silent, Accept::Json).json()["instance"]["leaseInfo"].clone();
    assert_eq!(lease_info["durationInSecs"].to_string().trim_matches('"'), "3", "{lease_info}");
    // `renewed` gets a heartbeat every second, alternately through A and B; `silent` none.
    let mut beats = 0;
    let mut gone = [None, None];
    while t.elapsed() < lease + Duration::from_secs(4) && gone.iter().any(Option::is_none) {
        let via = if beats % 2 == 0 { &a } else { &b };
        status(via.heartbeat("LEASE", renewed), 200, "heartbeat of the renewed instance");
        beats += 1;
        let next = Instant::now() + Duration::from_secs(1);
        while Instant::now() < next {
            for (k, e) in [&a, &b].into_iter().enumerate() {
                if gone[k].is_none() && !e.lists("LEASE", silent) {
                    gone[k] = Some(t.elapsed());
                }
            }
            std::thread::park_timeout(Duration::from_millis(50));
        }
    }
    println!("a 3 s lease without heartbeats: gone from A after {:?}, from B after {:?}", gone[0], gone[1]);
    for (k, g) in gone.iter().enumerate() {
        let g = g.unwrap_or_else(|| panic!("the silent instance still listed on discovery {k} after {:?}", t.elapsed()));
        assert!(g <= lease + Duration::from_secs(2), "expired within lease + 2 s on discovery {k}: {g:?}");
        assert!(g >= lease - Duration::from_millis(100), "not before its lease ran out on discovery {k}: {g:?}");
    }
    status(a.instance("LEASE", silent, Accept::Json), 404, "expired instance");
    status(b.heartbeat("LEASE", silent), 404, "the heartbeat of an expired instance (its client then registers again)");
    assert!(a.lists("LEASE", renewed) && b.lists("LEASE", renewed), "the renewed one stays: {:?}", a.listed());
}
