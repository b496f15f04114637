//! The caching service's contract, one suite run against every storage back end
//! (`inMemory`, `durable`, `redis`), so the back ends cannot drift. Real processes, real TLS,
//! real client certificates, a real Redis.

use std::io::{BufRead, BufReader};
use std::time::Duration;

use plexgate_tests::caching::{CachingService, Setup};
use plexgate_tests::https::{client, encode};
use plexgate_tests::{Workspace, assert_eventually};
use reqwest::blocking::Client;
use serde_json::{Value, json};

fn zowe_error(resp: reqwest::blocking::Response, status: u16, number: &str) -> Value {
    assert_eq!(resp.status().as_u16(), status);
    let body: Value = resp.json().expect("JSON error body");
    assert_eq!(body["messages"][0]["messageNumber"], number, "{body}");
    assert!(body["messages"][0]["messageContent"].as_str().is_some_and(|c| !c.is_empty()), "{body}");
    body
}

fn post(c: &Client, cs: &CachingService, path: &str, body: Value) -> reqwest::blocking::Response {
    c.post(cs.api(path)).json(&body).send().unwrap()
}

fn case_crud(cs: &CachingService) {
    let c = cs.ws.client();
    assert_eq!(post(&c, cs, "/cache", json!({"key": "k1", "value": "v1"})).status(), 201);
    zowe_error(post(&c, cs, "/cache", json!({"key": "k1", "value": "other"})), 409, "ZWECS133E");
    let got: Value = c.get(cs.api("/cache/k1")).send().unwrap().json().unwrap();
    assert_eq!(got["key"], "k1");
    assert_eq!(got["value"], "v1");
    assert!(got["created"].as_str().unwrap().parse::<u64>().unwrap() > 1_600_000_000_000, "{got}");
    assert_eq!(c.put(cs.api("/cache")).json(&json!({"key": "k1", "value": "v2"})).send().unwrap().status(), 204);
    zowe_error(c.put(cs.api("/cache")).json(&json!({"key": "nope", "value": "x"})).send().unwrap(), 404, "ZWECS131E");
    assert_eq!(post(&c, cs, "/cache", json!({"key": "k2", "value": "w"})).status(), 201);
    let all: Value = c.get(cs.api("/cache")).send().unwrap().json().unwrap();
    assert_eq!(all["k1"]["value"], "v2");
    assert_eq!(all["k2"]["value"], "w");
    assert_eq!(all.as_object().unwrap().len(), 2);
    assert_eq!(c.delete(cs.api("/cache/k1")).send().unwrap().status(), 204);
    zowe_error(c.delete(cs.api("/cache/k1")).send().unwrap(), 404, "ZWECS131E");
    zowe_error(c.get(cs.api("/cache/k1")).send().unwrap(), 404, "ZWECS131E");
    assert_eq!(c.delete(cs.api("/cache")).send().unwrap().status(), 200);
    let all: Value = c.get(cs.api("/cache")).send().unwrap().json().unwrap();
    assert_eq!(all, json!({}));
}

fn case_utf8_keys_round_trip(cs: &CachingService) {
    let c = cs.ws.client();
    for key in ["a/b/c", "with space", "emoji 😀🚀", "ünïcödé:{}%?#&=", "a..b", ".hidden", "x\ty"] {
        let value = format!("value of {key} ✓ \"quoted\"");
        assert_eq!(post(&c, cs, "/cache", json!({"key": key, "value": value})).status(), 201, "{key}");
        let got: Value = c.get(cs.api(&format!("/cache/{}", encode(key)))).send().unwrap().json().unwrap();
        assert_eq!(got["key"], key);
        assert_eq!(got["value"], value);
        assert_eq!(c.delete(cs.api(&format!("/cache/{}", encode(key)))).send().unwrap().status(), 204, "{key}");
    }
}

fn case_maps(cs: &CachingService) {
    let c = cs.ws.client();
    assert_eq!(post(&c, cs, "/cache-list/invalidTokens", json!({"key": "t1", "value": "1"})).status(), 201);
    assert_eq!(post(&c, cs, "/cache-list/invalidTokens", json!({"key": "t1", "value": "2"})).status(), 201, "duplicate key overwrites");
    assert_eq!(post(&c, cs, "/cache-list/invalidUsers", json!({"key": "u1", "value": "5"})).status(), 201);
    let m: Value = c.get(cs.api("/cache-list/invalidTokens")).send().unwrap().json().unwrap();
    assert_eq!(m, json!({"t1": "2"}));
    let all: Value = c.get(cs.api("/cache-list")).send().unwrap().json().unwrap();
    assert_eq!(all, json!({"invalidTokens": {"t1": "2"}, "invalidUsers": {"u1": "5"}}));
    let unknown = c.get(cs.api("/cache-list/noSuchMap")).send().unwrap();
    assert_eq!(unknown.status(), 200, "an unknown map is empty, as in Zowe");
    assert_eq!(unknown.json::<Value>().unwrap(), json!({}));
}

/// `DELETE /cache-list/{map}/{key}`, plain and conditional on the value still held
/// (`{"ifValue"}`, 412 when it changed): what the discovery service expires leases with.
fn case_map_entry_removal(cs: &CachingService) {
    let c = cs.ws.client();
    let entry = |key: &str| cs.api(&format!("/cache-list/regs/{}", encode(key)));
    let map = || c.get(cs.api("/cache-list/regs")).send().unwrap().json::<Value>().unwrap();
    assert_eq!(post(&c, cs, "/cache-list/regs", json!({"key": "APP/h:app:1", "value": "renewed 2"})).status(), 201);
    assert_eq!(post(&c, cs, "/cache-list/regs", json!({"key": "other", "value": "x"})).status(), 201);
    // A decision taken on an older value does not remove the newer one.
    zowe_error(c.delete(entry("APP/h:app:1")).json(&json!({"ifValue": "renewed 1"})).send().unwrap(), 412, "ZWECS138E");
    assert_eq!(map(), json!({"APP/h:app:1": "renewed 2", "other": "x"}));
    assert_eq!(c.delete(entry("APP/h:app:1")).json(&json!({"ifValue": "renewed 2"})).send().unwrap().status(), 204);
    assert_eq!(map(), json!({"other": "x"}));
    zowe_error(c.delete(entry("APP/h:app:1")).json(&json!({"ifValue": "renewed 2"})).send().unwrap(), 404, "ZWECS131E");
    // Without a body: unconditional.
    assert_eq!(c.delete(entry("other")).send().unwrap().status(), 204);
    zowe_error(c.delete(entry("other")).send().unwrap(), 404, "ZWECS131E");
    assert_eq!(map(), json!({}));
    // A body that is no condition is refused, and removes nothing.
    assert_eq!(post(&c, cs, "/cache-list/regs", json!({"key": "k", "value": "v"})).status(), 201);
    for bad in ["{", "{\"ifValue\": 3}", "{\"value\": \"v\"}", "[]"] {
        let resp = c.delete(entry("k")).header("content-type", "application/json").body(bad).send().unwrap();
        zowe_error(resp, 400, "ZWECS130E");
    }
    assert_eq!(map(), json!({"k": "v"}));
}

fn case_evictions(cs: &CachingService) {
    let c = cs.ws.client();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    let day = 24 * 3600 * 1000u64;
    // Expired for longer than the gateways' verification leeway (30 s by default): evicted.
    post(&c, cs, "/cache-list/invalidTokens", json!({"key": "expired", "value": (now - 60_000).to_string()}));
    // Expired, but still within the leeway: a gateway would still accept the token, so its
    // revocation must stay.
    post(&c, cs, "/cache-list/invalidTokens", json!({"key": "within-leeway", "value": (now - 1000).to_string()}));
    post(&c, cs, "/cache-list/invalidTokens", json!({"key": "valid", "value": (now + day).to_string()}));
    post(
        &c,
        cs,
        "/cache-list/invalidTokens",
        json!({"key": "zowe-format", "value": r#"{"tokenValue":"h","issuedAt":[2020,1,1,0,0],"expiresAt":[2021,11,15,15,13,18]}"#}),
    );
    post(&c, cs, "/cache-list/invalidUsers", json!({"key": "old", "value": (now - 91 * day).to_string()}));
    post(&c, cs, "/cache-list/invalidUsers", json!({"key": "recent", "value": (now - 89 * day).to_string()}));
    assert_eq!(c.delete(cs.api("/cache-list/evict/tokens/invalidTokens")).send().unwrap().status(), 204);
    assert_eq!(c.delete(cs.api("/cache-list/evict/rules/invalidUsers")).send().unwrap().status(), 204);
    let all: Value = c.get(cs.api("/cache-list")).send().unwrap().json().unwrap();
    assert_eq!(all["invalidTokens"].as_object().unwrap().keys().collect::<Vec<_>>(), ["valid", "within-leeway"]);
    assert_eq!(all["invalidUsers"].as_object().unwrap().keys().collect::<Vec<_>>(), ["recent"]);
}

fn case_bad_input(cs: &CachingService) {
    let c = cs.ws.client();
    let raw = |body: &'static str| c.post(cs.api("/cache")).header("content-type", "application/json").body(body).send().unwrap();
    zowe_error(raw("{not json"), 400, "ZWECS130E");
    zowe_error(raw(""), 400, "ZWECS130E");
    zowe_error(raw("[1,2]"), 400, "ZWECS130E");
    zowe_error(raw(r#"{"key":"k","value":null}"#), 400, "ZWECS130E");
    zowe_error(raw(r#"{"key":"k","value":{"nested":1}}"#), 400, "ZWECS130E");
    zowe_error(raw(r#"{"key":"","value":"v"}"#), 400, "ZWECS132E");
    // Zowe's checkForInvalidPayload: a payload without key or without value is invalid.
    let no_key = zowe_error(raw(r#"{"value":"v"}"#), 400, "ZWECS130E");
    assert!(no_key.to_string().contains("No key provided"), "{no_key}");
    let no_value = zowe_error(raw(r#"{"key":"k"}"#), 400, "ZWECS130E");
    assert!(no_value.to_string().contains("No value provided in the payload"), "{no_value}");
    zowe_error(post(&c, cs, "/cache-list/m", json!({"key": "k"})), 400, "ZWECS130E");
    zowe_error(post(&c, cs, "/cache-list/m", json!({"value": "v"})), 400, "ZWECS130E");
    zowe_error(post(&c, cs, "/cache-list/m?merge=max", json!({"key": "k", "value": "not a number"})), 400, "ZWECS130E");
    zowe_error(post(&c, cs, "/cache-list/m?merge=sideways", json!({"key": "k", "value": "1"})), 400, "ZWECS130E");
    zowe_error(post(&c, cs, "/cache", json!({"key": "k".repeat(1025), "value": "v"})), 400, "ZWECS130E");
    let big = json!({"key": "big", "value": "x".repeat(2 * 1024 * 1024)});
    zowe_error(post(&c, cs, "/cache", big), 413, "ZWECS137E");
    zowe_error(post(&c, cs, "/cache-list/m", json!({"key": 5, "value": "v"})), 400, "ZWECS130E");
    let r = c.get(cs.url("/cachingservice/api/v1/nothing-here")).send().unwrap();
    assert_eq!(r.status(), 404);
    // Nothing of the above was stored.
    assert_eq!(c.get(cs.api("/cache")).send().unwrap().json::<Value>().unwrap(), json!({}));
    assert_eq!(c.get(cs.api("/cache-list")).send().unwrap().json::<Value>().unwrap(), json!({}));
}

fn case_namespaces_are_isolated(cs: &CachingService) {
    let a = cs.ws.client();
    let (cert, key) = cs.ws.server_identity();
    let b = client(&cs.ws.ca(), Some((&cert, &key)));
    assert_eq!(post(&a, cs, "/cache", json!({"key": "shared-name", "value": "A's"})).status(), 201);
    assert_eq!(post(&a, cs, "/cache-list/m", json!({"key": "k", "value": "A's"})).status(), 201);
    // B cannot read, list, overwrite or delete A's entries...
    zowe_error(b.get(cs.api("/cache/shared-name")).send().unwrap(), 404, "ZWECS131E");
    assert_eq!(b.get(cs.api("/cache")).send().unwrap().json::<Value>().unwrap(), json!({}));
    assert_eq!(b.get(cs.api("/cache-list")).send().unwrap().json::<Value>().unwrap(), json!({}));
    zowe_error(b.put(cs.api("/cache")).json(&json!({"key": "shared-name", "value": "B's"})).send().unwrap(), 404, "ZWECS131E");
    zowe_error(b.delete(cs.api("/cache/shared-name")).send().unwrap(), 404, "ZWECS131E");
    assert_eq!(b.delete(cs.api("/cache")).send().unwrap().status(), 200);
    // ...and its own key of the same name is its own.
    assert_eq!(post(&b, cs, "/cache", json!({"key": "shared-name", "value": "B's"})).status(), 201);
    let got: Value = a.get(cs.api("/cache/shared-name")).send().unwrap().json().unwrap();
    assert_eq!(got["value"], "A's");
    // X-CS-Service-ID is a namespace of its own within the caller's.
    let svc = a.get(cs.api("/cache/shared-name")).header("X-CS-Service-ID", "gateway").send().unwrap();
    zowe_error(svc, 404, "ZWECS131E");
    // A trusted gateway passes an end caller's identity: a namespace of that caller.
    let as_user = |r: reqwest::blocking::RequestBuilder| r.header("X-Certificate-DistinguishedName", "CN=USER1, O=example").send().unwrap();
    assert_eq!(as_user(a.post(cs.api("/cache")).json(&json!({"key": "mine", "value": "u"}))).status(), 201);
    assert_eq!(as_user(a.get(cs.api("/cache"))).json::<Value>().unwrap().as_object().unwrap().len(), 1);
    zowe_error(a.get(cs.api("/cache/mine")).send().unwrap(), 404, "ZWECS131E");
}

/// A POST in the namespace of service `svc` of the caller (counted against size and quota;
/// the gateway certificate's own namespace is not).
fn post_in(c: &Client, cs: &CachingService, svc: &str, path: &str, body: Value) -> reqwest::blocking::Response {
    c.post(cs.api(path)).header("X-CS-Service-ID", svc).json(&body).send().unwrap()
}

fn case_size_limit_reject(cs: &CachingService) {
    let c = cs.ws.client();
    let svc_post = |c: &Client, cs: &CachingService, path: &str, body: Value| post_in(c, cs, "svc", path, body);
    for i in 0..2 {
        assert_eq!(svc_post(&c, cs, "/cache", json!({"key": format!("k{i}"), "value": "v"})).status(), 201);
    }
    assert_eq!(svc_post(&c, cs, "/cache-list/m", json!({"key": "x", "value": "v"})).status(), 201);
    zowe_error(svc_post(&c, cs, "/cache", json!({"key": "k3", "value": "v"})), 507, "ZWECS134E");
    zowe_error(svc_post(&c, cs, "/cache-list/m", json!({"key": "y", "value": "v"})), 507, "ZWECS134E");
    assert_eq!(svc_post(&c, cs, "/cache-list/m", json!({"key": "x", "value": "overwrite is no new entry"})).status(), 201);
    assert_eq!(c.delete(cs.api("/cache/k0")).header("X-CS-Service-ID", "svc").send().unwrap().status(), 204);
    assert_eq!(svc_post(&c, cs, "/cache", json!({"key": "k3", "value": "v"})).status(), 201);
    // The gateways' own namespace (revocations, the salt) is never refused for room.
    assert_eq!(post(&c, cs, "/cache-list/invalidTokens", json!({"key": "t", "value": "1"})).status(), 201);
    assert_eq!(post(&c, cs, "/cache", json!({"key": "salt", "value": "s"})).status(), 201);
}

fn case_size_limit_remove_oldest(cs: &CachingService) {
    let c = cs.ws.client();
    // The gateways' own entries come first: the oldest, yet never evicted.
    assert_eq!(post(&c, cs, "/cache", json!({"key": "salt", "value": "s"})).status(), 201);
    let svc_post = |c: &Client, cs: &CachingService, path: &str, body: Value| post_in(c, cs, "svc", path, body);
    assert_eq!(svc_post(&c, cs, "/cache-list/m", json!({"key": "revocation", "value": "v"})).status(), 201);
    for i in 0..5 {
        assert_eq!(svc_post(&c, cs, "/cache", json!({"key": format!("k{i}"), "value": "v"})).status(), 201, "k{i}");
    }
    assert_eq!(get_value(&c, cs, None, "salt").as_deref(), Some("s"), "the gateways' salt is never evicted");
    let all: Value = c.get(cs.api("/cache")).header("X-CS-Service-ID", "svc").send().unwrap().json().unwrap();
    let mut keys: Vec<_> = all.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    assert_eq!(keys, ["k3", "k4"], "size 3: the oldest entries went");
    assert_eq!(
        c.get(cs.api("/cache-list/m")).header("X-CS-Service-ID", "svc").send().unwrap().json::<Value>().unwrap(),
        json!({"revocation": "v"}),
        "map entries are never evicted"
    );
}

/// The value of `key` in the caller's namespace (or its service `svc`'s), if present.
fn get_value(c: &Client, cs: &CachingService, svc: Option<&str>, key: &str) -> Option<String> {
    let mut req = c.get(cs.api(&format!("/cache/{key}")));
    if let Some(s) = svc {
        req = req.header("X-CS-Service-ID", s);
    }
    let r = req.send().unwrap();
    (r.status() == 200).then(|| r.json::<Value>().unwrap()["value"].as_str().unwrap().to_owned())
}

/// Size 6, two entries per namespace: one caller cannot take another's room, and the gateways'
/// own namespace is never refused.
fn case_namespace_quota(cs: &CachingService, strategy: &str) {
    let c = cs.ws.client();
    for svc in ["a", "b", "c"] {
        for i in 0..2 {
            assert_eq!(post_in(&c, cs, svc, "/cache", json!({"key": format!("k{i}"), "value": "v"})).status(), 201, "{svc} k{i}");
        }
    }
    if strategy == "reject" {
        // a is at its quota, and the store is full.
        zowe_error(post_in(&c, cs, "a", "/cache", json!({"key": "k2", "value": "v"})), 507, "ZWECS134E");
        zowe_error(post_in(&c, cs, "a", "/cache-list/m", json!({"key": "x", "value": "v"})), 507, "ZWECS134E");
        zowe_error(post_in(&c, cs, "d", "/cache", json!({"key": "k0", "value": "v"})), 507, "ZWECS134E");
        assert_eq!(c.delete(cs.api("/cache/k0")).header("X-CS-Service-ID", "b").send().unwrap().status(), 204);
        // b's freed room is b's and d's to take, not a's (a is at its quota).
        zowe_error(post_in(&c, cs, "a", "/cache", json!({"key": "k2", "value": "v"})), 507, "ZWECS134E");
        assert_eq!(post_in(&c, cs, "d", "/cache", json!({"key": "k0", "value": "v"})).status(), 201);
    } else {
        // a over its quota evicts a's own oldest entry, never another caller's.
        assert_eq!(post_in(&c, cs, "a", "/cache", json!({"key": "k2", "value": "v"})).status(), 201);
        assert_eq!(get_value(&c, cs, Some("a"), "k0"), None, "a's oldest went");
        assert_eq!(get_value(&c, cs, Some("a"), "k1").as_deref(), Some("v"));
        assert_eq!(get_value(&c, cs, Some("b"), "k0").as_deref(), Some("v"), "b keeps its entries");
    }
    // Whatever the others hold, the gateways' revocations and salt are written.
    for i in 0..10 {
        assert_eq!(post(&c, cs, "/cache-list/invalidTokens", json!({"key": format!("t{i}"), "value": "1"})).status(), 201);
    }
    assert_eq!(post(&c, cs, "/cache", json!({"key": "salt", "value": "s"})).status(), 201);
    let m: Value = c.get(cs.api("/cache-list/invalidTokens")).send().unwrap().json().unwrap();
    assert_eq!(m.as_object().unwrap().len(), 10);
}

/// `merge=max`: a stored revocation rule only rises, whatever order the writes come in.
fn case_rules_only_rise(cs: &CachingService) {
    let c = cs.ws.client();
    let rule = |v: &str| post(&c, cs, "/cache-list/invalidUsers?merge=max", json!({"key": "alice", "value": v})).status();
    let stored = || c.get(cs.api("/cache-list/invalidUsers")).send().unwrap().json::<Value>().unwrap()["alice"].clone();
    assert_eq!(rule("500"), 201);
    assert_eq!(stored(), "500");
    assert_eq!(rule("1"), 201, "a lower rule is accepted...");
    assert_eq!(stored(), "500", "...and changes nothing");
    assert_eq!(rule("900"), 201);
    assert_eq!(stored(), "900");
    // A plain write over a non-number, then max: the number wins.
    post(&c, cs, "/cache-list/invalidUsers", json!({"key": "bob", "value": "garbage"}));
    assert_eq!(post(&c, cs, "/cache-list/invalidUsers?merge=max", json!({"key": "bob", "value": "7"})).status(), 201);
    assert_eq!(c.get(cs.api("/cache-list/invalidUsers")).send().unwrap().json::<Value>().unwrap()["bob"], "7");
}

/// Reads feed lines from a streaming response.
struct Feed(BufReader<reqwest::blocking::Response>);

impl Feed {
    fn open(c: &Client, cs: &CachingService, query: &str) -> Feed {
        let resp = c.get(cs.api(&format!("/feed?{query}"))).timeout(Duration::from_secs(30)).send().unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "application/x-ndjson");
        Feed(BufReader::new(resp))
    }
    fn next(&mut self) -> Value {
        let mut line = String::new();
        self.0.read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
    }
    /// The next event that is not a heartbeat.
    fn next_event(&mut self) -> Value {
        loop {
            let v = self.next();
            if v["type"] != "heartbeat" {
                return v;
            }
        }
    }
}

fn case_change_feed(cs: &CachingService) {
    let c = cs.ws.client();
    // Token values without an expiry: eviction below must only take the expired one.
    post(&c, cs, "/cache-list/invalidTokens", json!({"key": "before", "value": "no expiry"}));
    post(&c, cs, "/cache-list/other", json!({"key": "ignored", "value": "1"}));
    let mut feed = Feed::open(&c, cs, "maps=invalidTokens,invalidUsers");
    let snap = feed.next();
    assert_eq!(snap["type"], "snapshot");
    assert_eq!(snap["maps"], json!({"invalidTokens": {"before": "no expiry"}, "invalidUsers": {}}));
    let r0 = snap["revision"].as_u64().unwrap();
    post(&c, cs, "/cache-list/other", json!({"key": "still-ignored", "value": "1"}));
    post(&c, cs, "/cache-list/invalidUsers", json!({"key": "u", "value": "7"}));
    post(&c, cs, "/cache-list/invalidTokens", json!({"key": "after", "value": "no expiry either"}));
    let e1 = feed.next_event();
    assert_eq!(
        (e1["type"].as_str(), e1["map"].as_str(), e1["op"].as_str(), e1["key"].as_str(), e1["value"].as_str()),
        (Some("change"), Some("invalidUsers"), Some("put"), Some("u"), Some("7"))
    );
    let e2 = feed.next_event();
    assert_eq!(e2["key"], "after");
    assert!(e2["revision"].as_u64().unwrap() > e1["revision"].as_u64().unwrap() && e1["revision"].as_u64().unwrap() > r0);
    // Another caller's changes never reach this feed.
    let (cert, key) = cs.ws.server_identity();
    let other = client(&cs.ws.ca(), Some((&cert, &key)));
    post(&other, cs, "/cache-list/invalidTokens", json!({"key": "someone-else", "value": "1"}));
    // Deletions travel too (eviction of an expired entry).
    post(&c, cs, "/cache-list/invalidTokens", json!({"key": "gone", "value": "1000"}));
    assert_eq!(feed.next_event()["key"], "gone");
    c.delete(cs.api("/cache-list/evict/tokens/invalidTokens")).send().unwrap();
    let del = feed.next_event();
    assert_eq!((del["op"].as_str(), del["key"].as_str()), (Some("delete"), Some("gone")));
    // An idle feed sends heartbeats.
    assert_eq!(feed.next()["type"], "heartbeat");
    // An idle feed sends heartbeats naming the store's epoch and latest revision.
    let beat = feed.next();
    assert_eq!((beat["type"].as_str(), beat["epoch"].as_str()), (Some("heartbeat"), snap["epoch"].as_str()));
    assert!(beat["revision"].as_u64().unwrap() >= del["revision"].as_u64().unwrap(), "{beat}");
    // Resuming from a revision of this store's epoch replays exactly what came after it,
    // without a snapshot.
    let epoch = snap["epoch"].as_str().expect("the snapshot names the store's epoch");
    let mut resumed = Feed::open(&c, cs, &format!("maps=invalidTokens&since={}&epoch={epoch}", e1["revision"]));
    let first = resumed.next_event();
    assert_eq!((first["type"].as_str(), first["key"].as_str()), (Some("change"), Some("after")));
    // A revision of another epoch, of no epoch, or ahead of the store gets a fresh snapshot.
    for query in [
        format!("maps=invalidTokens&since={}&epoch=another-store", e1["revision"]),
        format!("maps=invalidTokens&since={}", e1["revision"]),
        format!("maps=invalidTokens&since=999999999&epoch={epoch}"),
    ] {
        let first = Feed::open(&c, cs, &query).next();
        assert_eq!(first["type"], "snapshot", "{query}");
        assert_eq!(first["epoch"], epoch, "{query}");
    }
    // A bad request is refused.
    zowe_error(c.get(cs.api("/feed")).send().unwrap(), 400, "ZWECS130E");
}

fn case_health_and_metrics(cs: &CachingService) {
    let anonymous = client(&cs.ws.ca(), None);
    let h: Value = anonymous.get(cs.url("/application/health")).send().unwrap().json().unwrap();
    assert_eq!(h["status"], "UP");
    assert_eq!(h["components"]["storage"]["status"], "UP");
    let c = cs.ws.client();
    post_in(&c, cs, "svc", "/cache", json!({"key": "k", "value": "v"}));
    let text = anonymous.get(cs.url("/application/metrics")).send().unwrap().text().unwrap();
    assert!(text.contains("plexgate_caching_requests_total{"), "{text}");
    assert!(text.contains("status=\"201\""), "{text}");
    assert!(text.contains("plexgate_caching_request_duration_seconds_bucket"), "{text}");
    assert!(text.contains("plexgate_caching_storage_entries 1"), "{text}");
}

/// The same suite for every back end; `redis` (one server) and `redisSentinel` (master,
/// replica and Sentinel) skip outside CI when redis-server is missing.
macro_rules! contract_suite {
    ($($backend:ident => $mode:literal),* $(,)?) => {$(
        mod $backend {
            use super::*;
            fn start() -> Option<CachingService> { CachingService::start($mode) }
            fn start_sized(strategy: &str) -> Option<CachingService> {
                let storage = format!("      size: 3\n      sizePerNamespace: 3\n      evictionStrategy: {strategy}\n");
                CachingService::start_with(Setup { mode: $mode, storage: &storage, service: "" })
            }
            fn start_quota(strategy: &str) -> Option<CachingService> {
                let storage = format!("      size: 6\n      sizePerNamespace: 2\n      evictionStrategy: {strategy}\n");
                CachingService::start_with(Setup { mode: $mode, storage: &storage, service: "" })
            }
            #[test] fn crud() { if let Some(cs) = start() { case_crud(&cs) } }
            #[test] fn utf8_keys_round_trip() { if let Some(cs) = start() { case_utf8_keys_round_trip(&cs) } }
            #[test] fn maps() { if let Some(cs) = start() { case_maps(&cs) } }
            #[test] fn map_entry_removal() { if let Some(cs) = start() { case_map_entry_removal(&cs) } }
            #[test] fn evictions() { if let Some(cs) = start() { case_evictions(&cs) } }
            #[test] fn bad_input() { if let Some(cs) = start() { case_bad_input(&cs) } }
            #[test] fn namespaces_are_isolated() { if let Some(cs) = start() { case_namespaces_are_isolated(&cs) } }
            #[test] fn size_limit_reject() { if let Some(cs) = start_sized("reject") { case_size_limit_reject(&cs) } }
            #[test] fn size_limit_remove_oldest() { if let Some(cs) = start_sized("removeOldest") { case_size_limit_remove_oldest(&cs) } }
            #[test] fn change_feed() { if let Some(cs) = start() { case_change_feed(&cs) } }
            #[test] fn rules_only_rise() { if let Some(cs) = start() { case_rules_only_rise(&cs) } }
            #[test] fn namespace_quota_reject() { if let Some(cs) = start_quota("reject") { case_namespace_quota(&cs, "reject") } }
            #[test] fn namespace_quota_remove_oldest() { if let Some(cs) = start_quota("removeOldest") { case_namespace_quota(&cs, "removeOldest") } }
            #[test] fn health_and_metrics() { if let Some(cs) = start() { case_health_and_metrics(&cs) } }
        }
    )*};
}

contract_suite!(
    in_memory => "inMemory",
    durable => "durable",
    redis => "redis",
    redis_sentinel => "redisSentinel",
    replicated_leader => "replicatedLeader",
    replicated_follower => "replicatedFollower",
);

#[test]
fn no_or_untrusted_client_certificate_gets_403() {
    let cs = CachingService::start("inMemory").unwrap();
    let anonymous = client(&cs.ws.ca(), None);
    zowe_error(anonymous.get(cs.api("/cache")).send().unwrap(), 403, "ZWEAT403E");
    // A certificate from another CA (another installation's development CA).
    let stranger = Workspace::new();
    stranger.run(&["init", "certificate"], "").expect_code(0);
    let (cert, key) = stranger.client_identity();
    let foreign = client(&cs.ws.ca(), Some((&cert, &key)));
    zowe_error(foreign.get(cs.api("/cache")).send().unwrap(), 403, "ZWEAT403E");
    zowe_error(foreign.post(cs.api("/cache")).json(&json!({"key": "k", "value": "v"})).send().unwrap(), 403, "ZWEAT403E");
    assert_eq!(cs.ws.client().get(cs.api("/cache")).send().unwrap().json::<Value>().unwrap(), json!({}));
}

#[test]
fn identity_headers_from_a_non_gateway_certificate_are_refused() {
    let cs = CachingService::start_with(Setup {
        mode: "inMemory",
        storage: "",
        service: "    trustedGateways: [\"CN=some-other-gateway, O=plexgate\"]\n",
    })
    .unwrap();
    let c = cs.ws.client();
    let spoofed = c.get(cs.api("/cache")).header("X-Certificate-DistinguishedName", "CN=admin").send().unwrap();
    zowe_error(spoofed, 403, "ZWEAT403E");
    // Without the header the same certificate is an ordinary caller.
    assert_eq!(c.get(cs.api("/cache")).send().unwrap().status(), 200);
    // A trusted gateway naming nobody gets Zowe's 401 ZWECS702W.
    let cs2 = CachingService::start("inMemory").unwrap();
    let empty = cs2.ws.client().get(cs2.api("/cache")).header("X-Certificate-DistinguishedName", " ").send().unwrap();
    let body = zowe_error(empty, 401, "ZWECS702W");
    assert_eq!(body["messages"][0]["messageType"], "WARNING");
}

#[test]
fn durable_storage_survives_kill_9() {
    let mut cs = CachingService::start("durable").unwrap();
    let c = cs.ws.client();
    for i in 0..50 {
        assert_eq!(post(&c, &cs, "/cache", json!({"key": format!("key-{i}"), "value": format!("value-{i}")})).status(), 201);
        assert_eq!(post(&c, &cs, "/cache-list/invalidTokens", json!({"key": format!("t{i}"), "value": "1"})).status(), 201);
    }
    let mut feed = Feed::open(&c, &cs, "maps=invalidTokens");
    let snap = feed.next();
    let (rev_before, epoch) = (snap["revision"].as_u64().unwrap(), snap["epoch"].as_str().unwrap().to_owned());
    drop(feed);
    cs.kill_and_restart();
    let c = cs.ws.client();
    let all: Value = c.get(cs.api("/cache")).send().unwrap().json().unwrap();
    assert_eq!(all.as_object().unwrap().len(), 50);
    for i in 0..50 {
        assert_eq!(all[format!("key-{i}")]["value"], format!("value-{i}"));
    }
    let tokens: Value = c.get(cs.api("/cache-list/invalidTokens")).send().unwrap().json().unwrap();
    assert_eq!(tokens.as_object().unwrap().len(), 50);
    // The store keeps its epoch and its revisions keep counting up, so a subscriber can resume
    // across the restart.
    let mut feed = Feed::open(&c, &cs, &format!("maps=invalidTokens&since={rev_before}&epoch={epoch}"));
    post(&c, &cs, "/cache-list/invalidTokens", json!({"key": "after-restart", "value": "1"}));
    let e = feed.next_event();
    assert_eq!((e["type"].as_str(), e["key"].as_str()), (Some("change"), Some("after-restart")));
    assert_eq!(e["revision"].as_u64().unwrap(), rev_before + 1);
}

#[test]
fn infinispan_is_refused_at_start_with_the_modes_we_offer() {
    let ws = Workspace::with_certs();
    let port = plexgate_tests::free_port();
    let file = ws.write("zowe.yaml", &format!("components:\n  gateway: {{apiml: {{security: {{auth: {{provider: users-file}}}}}}}}\n  caching-service:\n    port: {port}\n    storage: {{mode: infinispan}}\n"));
    let mut p = ws.spawn("cs", &["caching-service", "-c", file.to_str().unwrap()]);
    let code = p.wait_exit(Duration::from_secs(20));
    assert_eq!(code, Some(1), "{}", p.logs());
    assert!(p.logs().contains("`infinispan`") && p.logs().contains("durable"), "{}", p.logs());
}

#[test]
fn redis_down_at_start_and_mid_run_answers_503_and_recovers() {
    if !plexgate_tests::redis::available() {
        return;
    }
    let ws = Workspace::with_certs();
    let redis_port = plexgate_tests::free_port();
    let port = plexgate_tests::free_port();
    let file = ws.write(
        "zowe.yaml",
        &format!(
            "zowe:\n  externalDomains: [127.0.0.1]\ncomponents:\n  gateway: {{apiml: {{security: {{auth: {{provider: users-file}}}}}}}}\n  caching-service:\n    port: {port}\n    storage:\n      mode: redis\n      redis: {{masterNodeUri: \"127.0.0.1:{redis_port}\", timeout: 1}}\n"
        ),
    );
    let p = ws.spawn("cs", &["caching-service", "-c", file.to_str().unwrap()]);
    let c = ws.client();
    let url = |path: &str| format!("https://127.0.0.1:{port}{path}");
    // Up, but not healthy, while Redis is down; API calls get a Zowe 503.
    assert_eventually!(
        Duration::from_secs(20),
        c.get(url("/application/health")).send().is_ok_and(|r| r.status() == 503),
        "health 503 while redis is down\n{}",
        p.logs()
    );
    zowe_error(c.get(url("/cachingservice/api/v1/cache")).send().unwrap(), 503, "ZWECS152E");
    // Redis comes up: recovered, no restart.
    let mut redis = plexgate_tests::redis::RedisServer::start_on(&ws, redis_port);
    assert_eventually!(
        Duration::from_secs(20),
        c.post(url("/cachingservice/api/v1/cache")).json(&json!({"key": "k", "value": "v"})).send().is_ok_and(|r| r.status() == 201),
        "write after redis started\n{}",
        p.logs()
    );
    // Redis dies mid-run: 503 with a Zowe body, then back when it returns.
    redis.kill();
    assert_eventually!(
        Duration::from_secs(20),
        c.get(url("/cachingservice/api/v1/cache/k")).send().is_ok_and(|r| r.status() == 503),
        "503 after redis died"
    );
    zowe_error(c.get(url("/cachingservice/api/v1/cache/k")).send().unwrap(), 503, "ZWECS152E");
    let _redis = plexgate_tests::redis::RedisServer::start_on(&ws, redis_port);
    assert_eventually!(
        Duration::from_secs(20),
        c.post(url("/cachingservice/api/v1/cache")).json(&json!({"key": "k2", "value": "v"})).send().is_ok_and(|r| r.status() == 201),
        "write after redis returned\n{}",
        p.logs()
    );
}
