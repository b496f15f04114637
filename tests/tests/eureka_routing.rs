//! Every gateway routes what is registered through Eureka discovery, following the caching
//! service's `eurekaRegistrations` map through the change feed: registrations are written
//! here straight into the map, as the discovery server writes them (with the gateways' client
//! certificate, key `APP/instanceId`, value `Record::to_stored()`), and two gateways must
//! follow every change within 1 s.

use std::time::{Duration, Instant, SystemTime};

use plexgate_discovery::{Instance, Record, Status};
use plexgate_tests::assert_eventually;
use plexgate_tests::cluster::{Cluster, ClusterSetup, sample_definition};
use serde_json::{Value, json};

/// How soon every gateway must follow a change (the design's bound).
const BOUND: Duration = Duration::from_secs(1);

fn now_ms() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_millis() as u64
}

/// A registration of `app` on the sample service at `port`, routed at `api/v1`.
fn record(app: &str, port: u16, status: Option<Status>) -> Record {
    let id = format!("127.0.0.1:{}:{port}", app.to_lowercase());
    let body = json!({"instance": {
        "instanceId": id, "app": app, "hostName": "127.0.0.1", "ipAddr": "127.0.0.1", "status": "UP",
        "vipAddress": app.to_lowercase(), "securePort": {"$": port, "@enabled": "true"}, "port": {"$": 0, "@enabled": "false"},
        "healthCheckUrl": format!("https://127.0.0.1:{port}/application/health"),
        "leaseInfo": {"renewalIntervalInSecs": 30, "durationInSecs": 90},
        "metadata": {"apiml.routes.api_v1.gatewayUrl": "api/v1", "apiml.routes.api_v1.serviceUrl": "/sample/api/v1",
            "apiml.service.title": format!("Registered {app}")}}});
    let mut r = Record::registered(Instance::from_registration(app, &body).expect("registration"), None, now_ms());
    r.overridden = status;
    r
}

/// Removes a registration, as discovery does on a deregistration or a lease expiry.
fn delete(c: &Cluster, key: &str) {
    let url = format!(
        "https://127.0.0.1:{}/cachingservice/api/v1/cache-list/{}/{}",
        c.caching_port,
        plexgate_discovery::registry::MAP,
        plexgate_tests::https::encode(key)
    );
    let r = c.ws.client().delete(url).send().expect("remove the registration");
    assert_eq!(r.status(), 204, "{:?}", r.text());
}

fn put(c: &Cluster, key: &str, value: &str) {
    let url = format!("https://127.0.0.1:{}/cachingservice/api/v1/cache-list/{}", c.caching_port, plexgate_discovery::registry::MAP);
    let r = c.ws.client().post(url).json(&json!({"key": key, "value": value})).send().expect("write the registration");
    assert_eq!(r.status(), 201, "{:?}", r.text());
}

/// The status and the answering instance (or the Zowe message number) of `path` on gateway `i`.
fn get(c: &Cluster, i: usize, path: &str) -> (u16, String) {
    match c.http.get(c.url(i, path)).timeout(Duration::from_secs(2)).send() {
        Ok(r) => {
            let status = r.status().as_u16();
            let v: Value = r.json().unwrap_or(Value::Null);
            let who = v["instance"].as_str().or(v["messages"][0]["messageNumber"].as_str()).unwrap_or("").to_owned();
            (status, who)
        }
        Err(e) => (0, e.to_string()),
    }
}

/// Waits until `cond` holds on every gateway, at most [`BOUND`] from `start`; prints and
/// returns each gateway's time.
fn on_every_gateway(c: &Cluster, what: &str, start: Instant, mut cond: impl FnMut(usize) -> bool) -> Vec<Duration> {
    let mut seen: Vec<Option<Duration>> = vec![None; c.ports.len()];
    loop {
        for (i, slot) in seen.iter_mut().enumerate() {
            if slot.is_none() && cond(i) {
                *slot = Some(start.elapsed());
            }
        }
        if seen.iter().all(Option::is_some) {
            let times: Vec<Duration> = seen.into_iter().flatten().collect();
            println!("{what}: followed by the gateways after {times:?}");
            return times;
        }
        if start.elapsed() > BOUND {
            panic!("{what}: not followed by every gateway within {BOUND:?} ({seen:?})\n{}", c.all_logs());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn every_gateway_follows_registrations_within_a_second() {
    let mut c = Cluster::start(ClusterSetup { gateways: 2, start_gateways: 0, ..ClusterSetup::default() });
    let (dynamic, fixed, shared) = (c.start_sample("dyn-a"), c.start_sample("static-b"), c.start_sample("shared-a"));
    c.define("mixed.yml", &sample_definition("mixed", &[fixed.port], "bypass"));
    c.start_gateway(0);
    c.start_gateway(1);
    // Nothing registered yet.
    assert_eq!(get(&c, 0, "/dyn/api/v1/hello"), (404, "ZWEAO404E".to_owned()));

    // Registered: routed by both gateways.
    let up = record("DYN", dynamic.port, None);
    let start = Instant::now();
    put(&c, &up.key(), &up.to_stored());
    on_every_gateway(&c, "registration", start, |i| get(&c, i, "/dyn/api/v1/hello") == (200, "dyn-a".to_owned()));

    // The listing says where each instance came from.
    let list: Value = c.http.get(c.url(1, "/gateway/api/v1/services")).send().unwrap().json().unwrap();
    let dyn_service = list.as_array().unwrap().iter().find(|s| s["serviceId"] == "dyn").expect("dyn listed");
    assert_eq!(dyn_service["apiml"]["service"]["title"], "Registered DYN");
    let inst = &dyn_service["instances"][0];
    assert_eq!(
        (inst["origin"].as_str(), inst["eurekaStatus"].as_str(), inst["status"].as_str()),
        (Some("eureka"), Some("UP"), Some("UP")),
        "{inst}"
    );
    assert_eq!(inst["registrationKey"], up.key());
    let mixed = list.as_array().unwrap().iter().find(|s| s["serviceId"] == "mixed").expect("mixed listed");
    assert_eq!(mixed["instances"][0]["origin"], "static");
    assert!(mixed["instances"][0]["definitionFile"].as_str().unwrap().ends_with("mixed.yml"), "{mixed}");
    // The admin listener lists the same (what `plexgate status` reads).
    let admin: Value = reqwest::blocking::get(c.admin_url(0, "/application/services")).unwrap().json().unwrap();
    assert!(admin.as_array().unwrap().iter().any(|s| s["serviceId"] == "dyn"), "{admin}");
    let out = c.ws.run(&["status", "-c", "zowe.yaml"], "").expect_code(0).stdout();
    for gateway in ["g1", "g2"] {
        let row = |service: &str| out.lines().find(|l| l.starts_with(gateway) && l.contains(&format!(" {service} "))).map(str::to_owned);
        let dyn_row = row("dyn").unwrap_or_else(|| panic!("no dyn row of {gateway}:\n{out}"));
        assert!(dyn_row.contains(" eureka ") && dyn_row.contains(&up.key()) && dyn_row.contains(" UP "), "{out}");
        assert!(row("mixed").is_some_and(|r| r.contains(" static ") && r.contains("mixed.yml")), "{out}");
    }
    println!("{out}");

    // A heartbeat (a new renewal time only) changes nothing.
    let mut beat = up.clone();
    beat.times.renewed_ms += 30_000;
    // The gateways' registration views report the revision they applied (admin health).
    let applied = |i: usize| -> u64 {
        reqwest::blocking::get(c.admin_url(i, "/application/health"))
            .and_then(|r| r.json::<Value>())
            .ok()
            .and_then(|h| h["components"]["registrations"]["details"]["revision"].as_u64())
            .unwrap_or(0)
    };
    let before: Vec<u64> = (0..2).map(applied).collect();
    put(&c, &beat.key(), &beat.to_stored());
    assert_eventually!(BOUND, (0..2).all(|i| applied(i) > before[i]), "both gateways applied the heartbeat\n{}", c.all_logs());
    assert_eq!(get(&c, 1, "/dyn/api/v1/hello"), (200, "dyn-a".to_owned()));

    // Out of service: no instance is available (Zowe's 503), on both gateways.
    let out = record("DYN", dynamic.port, Some(Status::OutOfService));
    let start = Instant::now();
    put(&c, &out.key(), &out.to_stored());
    on_every_gateway(&c, "OUT_OF_SERVICE", start, |i| get(&c, i, "/dyn/api/v1/hello") == (503, "ZWEAO503E".to_owned()));
    let list: Value = c.http.get(c.url(0, "/gateway/api/v1/services")).send().unwrap().json().unwrap();
    let dyn_service = list.as_array().unwrap().iter().find(|s| s["serviceId"] == "dyn").expect("dyn still listed");
    assert_eq!(dyn_service["instances"][0]["eurekaStatus"], "OUT_OF_SERVICE", "{dyn_service}");
    assert_eq!(dyn_service["instances"][0]["status"], "DOWN");

    // Back UP.
    let start = Instant::now();
    put(&c, &up.key(), &up.to_stored());
    on_every_gateway(&c, "back UP", start, |i| get(&c, i, "/dyn/api/v1/hello") == (200, "dyn-a".to_owned()));

    // A registration under a statically defined serviceId adds its instance to the static one.
    let extra = record("MIXED", shared.port, None);
    let start = Instant::now();
    put(&c, &extra.key(), &extra.to_stored());
    on_every_gateway(&c, "registration beside a static definition", start, |i| {
        (0..4).any(|_| get(&c, i, "/mixed/api/v1/hello") == (200, "shared-a".to_owned()))
    });
    // Taken out of service: the static instance keeps answering, every request, throughout.
    let gone = record("MIXED", shared.port, Some(Status::Down));
    let start = Instant::now();
    put(&c, &gone.key(), &gone.to_stored());
    let mut answers = std::collections::BTreeSet::new();
    on_every_gateway(&c, "registered instance of a static service down", start, |i| {
        let answered: Vec<(u16, String)> = (0..4).map(|_| get(&c, i, "/mixed/api/v1/hello")).collect();
        answers.extend(answered.iter().filter(|a| a.0 != 200).cloned());
        answered.iter().all(|a| *a == (200, "static-b".to_owned()))
    });
    assert!(answers.is_empty(), "the static instance answered every request: {answers:?}");
    // Registered again, then deregistered (the key removed): the static instance stays.
    put(&c, &extra.key(), &extra.to_stored());
    on_every_gateway(&c, "registration beside a static definition again", Instant::now(), |i| {
        (0..4).any(|_| get(&c, i, "/mixed/api/v1/hello") == (200, "shared-a".to_owned()))
    });
    let start = Instant::now();
    delete(&c, &extra.key());
    on_every_gateway(&c, "registered instance of a static service removed", start, |i| {
        let answered: Vec<(u16, String)> = (0..4).map(|_| get(&c, i, "/mixed/api/v1/hello")).collect();
        answers.extend(answered.iter().filter(|a| a.0 != 200).cloned());
        answered.iter().all(|a| *a == (200, "static-b".to_owned()))
    });
    assert!(answers.is_empty(), "the static instance answered every request: {answers:?}");

    // A corrupt value is skipped with a warning; every other service still routes.
    put(&c, "CORRUPT/x", "{this is not a registration");
    put(&c, "DYN/someone-else", &up.to_stored());
    let other = record("OTHER", dynamic.port, None);
    let start = Instant::now();
    put(&c, &other.key(), &other.to_stored());
    on_every_gateway(&c, "a registration after a corrupt one", start, |i| get(&c, i, "/other/api/v1/hello") == (200, "dyn-a".to_owned()));
    for i in 0..2 {
        assert_eq!(get(&c, i, "/dyn/api/v1/hello"), (200, "dyn-a".to_owned()));
        assert_eq!(get(&c, i, "/mixed/api/v1/hello"), (200, "static-b".to_owned()));
    }
    let logs = c.gateways[0].as_ref().unwrap().logs();
    assert_eq!(logs.matches("registration skipped").count(), 2, "one warning per bad key\n{logs}");
    assert!(logs.contains("CORRUPT/x") && logs.contains("DYN/someone-else"), "{logs}");

    // SIGHUP reloads the static definitions; the registrations stay routed.
    c.define("later.yml", &sample_definition("later", &[fixed.port], "bypass"));
    c.gateways[0].as_ref().unwrap().signal("HUP");
    plexgate_tests::assert_eventually!(Duration::from_secs(5), get(&c, 0, "/later/api/v1/hello").0 == 200, "reloaded");
    assert_eq!(get(&c, 0, "/dyn/api/v1/hello"), (200, "dyn-a".to_owned()));
    assert_eq!(get(&c, 0, "/other/api/v1/hello"), (200, "dyn-a".to_owned()));

    // Deregistered (the key removed): the service is gone from every gateway.
    let start = Instant::now();
    delete(&c, &up.key());
    on_every_gateway(&c, "deregistration", start, |i| get(&c, i, "/dyn/api/v1/hello") == (404, "ZWEAO404E".to_owned()));
    assert_eq!(get(&c, 1, "/other/api/v1/hello"), (200, "dyn-a".to_owned()));
}
