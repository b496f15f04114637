//! Zowe's Node.js onboarding enabler, unchanged from npm (`@zowe/apiml-onboarding-enabler-nodejs`,
//! which `.ci/run` installs), onboards a small Node.js service (`tests/node/`) with plexgate's
//! discovery: a whole site (caching service, two gateways, a discovery service on each
//! haInstance, the distributor) routes it through the distributor and both gateways; its
//! `unregisterFromEureka()` on SIGTERM removes it; after a SIGKILL its lease runs out; and
//! the loss of the discovery service and gateway that took its registration costs no request.
//!
//! The enabler's configuration (`tests/node/service-configuration.yml`) asks for a 4 s lease
//! renewed every second, so the lease-expiry case takes seconds, not Eureka's default 90.

use std::time::{Duration, Instant};

use plexgate_tests::assert_eventually;
use plexgate_tests::cluster::{Cluster, ClusterSetup};
use plexgate_tests::distributor::Dist;
use plexgate_tests::eureka::{Accept, Eureka};
use plexgate_tests::nodejs::{NodeService, enabler};
use plexgate_tests::process::Proc;
use serde_json::Value;

/// The lease the service asks for (`leaseInfo.durationInSecs`).
const LEASE: Duration = Duration::from_secs(4);
/// How soon every gateway must follow a registration or deregistration (issue 15).
const FOLLOW: Duration = Duration::from_secs(1);
const APP: &str = "HELLO";
const GREETING: &str = "/hello/api/v1/greeting";

/// A client that opens a new connection for every request (so each request through the
/// distributor is placed anew, as a new client would be).
fn fresh_client(c: &Cluster) -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .tls_backend_preconfigured(plexgate_tests::https::tls_config(&c.ws.ca(), None))
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(3))
        .build()
        .expect("client")
}

/// `(status, body as JSON)` of `GET url`; status 0 for a transport error.
fn get(http: &reqwest::blocking::Client, url: &str) -> (u16, Value) {
    match http.get(url).send() {
        Ok(r) => {
            let s = r.status().as_u16();
            (s, r.json().unwrap_or(Value::Null))
        }
        Err(e) => (0, Value::String(e.to_string())),
    }
}

fn greets(http: &reqwest::blocking::Client, url: &str) -> bool {
    let (s, v) = get(http, url);
    s == 200 && v["greeting"].as_str().is_some_and(|g| g.contains("Node.js enabler"))
}

/// Whether `url` answers as a gateway does for a service nobody serves: 404 ZWEAO404E.
fn unrouted(http: &reqwest::blocking::Client, url: &str) -> bool {
    let (s, v) = get(http, url);
    s == 404 && v["messages"][0]["messageNumber"] == "ZWEAO404E"
}

struct Site {
    c: Cluster,
    dist: Dist,
    http: reqwest::blocking::Client,
    svc: NodeService,
    /// Eureka clients of discovery g1 and g2 (with the service's certificate).
    eureka: Vec<Eureka>,
}

impl Site {
    fn start() -> Site {
        let mut c = Cluster::start(ClusterSetup { gateways: 2, start_gateways: 2, discovery: true, ..ClusterSetup::default() });
        c.start_discovery(0);
        c.start_discovery(1);
        let base = std::fs::read_to_string(&c.config).expect("cluster zowe.yaml");
        let dist = Dist::start(
            &c.ws,
            &base,
            "dist",
            "    method: hotStandby\n    healthCheck: {interval: 100ms, timeout: 2s, unhealthyThreshold: 1, healthyThreshold: 2}\n",
        );
        dist.wait_state("g1", "up", Duration::from_secs(10));
        dist.wait_state("g2", "up", Duration::from_secs(10));
        // The service's own certificate (server and client), from the workspace's CA.
        let (cert, key) = plexgate_tests::certs::issue_service(&c.ws, "hello-service", "hello-service");
        let svc = NodeService {
            service_id: "hello".to_owned(),
            port: plexgate_tests::free_port(),
            eureka_urls: c.discovery_ports.iter().map(|p| format!("https://127.0.0.1:{p}/eureka/apps/")).collect(),
            heartbeat_ms: 1000,
            renewal_secs: 1,
            lease_secs: LEASE.as_secs() as u32,
            cert: cert.clone(),
            key: key.clone(),
            ca: c.ws.ca(),
        };
        let eureka = (0..2).map(|i| c.eureka(i, Some((&cert, &key)))).collect();
        let http = fresh_client(&c);
        Site { c, dist, http, svc, eureka }
    }

    fn instance_id(&self) -> String {
        format!("127.0.0.1:hello:{}", self.svc.port)
    }

    fn gateway(&self, i: usize) -> String {
        self.c.url(i, GREETING)
    }

    fn distributor(&self) -> String {
        format!("https://127.0.0.1:{}{GREETING}", self.dist.port)
    }

    /// Starts the Node.js service and waits until the enabler says it registered; then until
    /// every gateway routes it (within [`FOLLOW`]) and the distributor does.
    fn start_service(&self, name: &str) -> Proc {
        let (node, index) = enabler().expect("checked by the test");
        let proc = self.svc.spawn(&self.c.ws, &node, &index, name);
        assert_eventually!(
            Duration::from_secs(20),
            proc.logs().contains("registered with eureka: "),
            "the enabler registers\n{}\n{}",
            proc.logs(),
            self.c.all_logs()
        );
        let registered = Instant::now();
        let mut times = [None, None];
        assert_eventually!(
            FOLLOW,
            {
                for (i, t) in times.iter_mut().enumerate() {
                    if t.is_none() && greets(&self.http, &self.gateway(i)) {
                        *t = Some(registered.elapsed());
                    }
                }
                times.iter().all(Option::is_some)
            },
            "both gateways route the registered service: {times:?}\n{}",
            proc.logs()
        );
        println!("{name}: the enabler's registration routed by gateway g1 after {:?}, g2 after {:?}", times[0], times[1]);
        assert!(greets(&self.http, &self.distributor()), "routed through the distributor");
        proc
    }
}

#[test]
fn the_nodejs_enabler_onboards_a_service_that_every_gateway_routes_until_it_leaves() {
    let Some(_) = enabler() else { return };
    let mut site = Site::start();
    let iid = site.instance_id();

    // 1. Registered through the first discovery URL, routed everywhere.
    let mut node = site.start_service("node-hello-1");
    let (_, v) = get(&site.http, &site.distributor());
    assert_eq!(v["instanceId"], iid.as_str(), "{v}");
    for i in 0..2 {
        let list: Value = site.c.http.get(site.c.url(i, "/gateway/api/v1/services")).send().unwrap().json().unwrap();
        let hello = list.as_array().unwrap().iter().find(|s| s["serviceId"] == "hello").unwrap_or_else(|| panic!("hello listed: {list}"));
        let inst = &hello["instances"][0];
        assert_eq!((inst["origin"].as_str(), inst["instanceId"].as_str()), (Some("eureka"), Some(iid.as_str())), "{hello}");
        assert!(site.eureka[i].lists(APP, &iid), "discovery g{} lists it: {:?}", i + 1, site.eureka[i].listed());
    }
    // Its heartbeats arrive (the lease is renewed), and the enabler's registry fetches
    // (GET /eureka/apps/) and renewals (PUT) all succeed: it logs none of its failure lines.
    let renewed = |e: &Eureka| {
        let v = e.instance(APP, &iid, Accept::Json).json();
        let l = &v["instance"]["leaseInfo"];
        (l["lastRenewalTimestamp"].as_u64().unwrap_or(0), l["registrationTimestamp"].as_u64().unwrap_or(0))
    };
    assert_eventually!(
        Duration::from_secs(5),
        {
            let (last, first) = renewed(&site.eureka[1]);
            last >= first + 2500
        },
        "heartbeats renew the lease: {:?}",
        renewed(&site.eureka[1])
    );
    let logs = node.logs();
    for failure in ["FAILED", "Error fetching registry", "Unable to retrieve", "Error starting the Eureka Client"] {
        assert!(!logs.contains(failure), "the enabler logged `{failure}`:\n{logs}");
    }

    // 2. SIGTERM: the service calls unregisterFromEureka() and exits; gone everywhere.
    node.signal("TERM");
    let stopped = Instant::now();
    assert_eventually!(Duration::from_secs(5), node.logs().contains("de-registered with eureka: "), "deregistered\n{}", node.logs());
    assert_eq!(node.wait_exit(Duration::from_secs(10)), Some(0), "{}", node.logs());
    assert_eventually!(
        Duration::from_secs(2),
        unrouted(&site.http, &site.gateway(0)) && unrouted(&site.http, &site.gateway(1)),
        "both gateways stop routing after the deregistration: {:?} {:?}",
        get(&site.http, &site.gateway(0)),
        get(&site.http, &site.gateway(1))
    );
    println!("SIGTERM -> unregisterFromEureka -> no route on either gateway after {:?}", stopped.elapsed());
    assert!(unrouted(&site.http, &site.distributor()));
    assert!(!site.eureka[0].lists(APP, &iid) && !site.eureka[1].lists(APP, &iid));

    // 3. Started again, then SIGKILL: no deregistration; the lease runs out.
    let mut node = site.start_service("node-hello-2");
    node.kill();
    let killed = Instant::now();
    assert!(site.eureka[1].lists(APP, &iid), "still registered right after SIGKILL (its lease runs)");
    let mut gone = [None, None];
    assert_eventually!(
        LEASE + Duration::from_secs(2),
        {
            for (i, g) in gone.iter_mut().enumerate() {
                if g.is_none() && !site.eureka[i].lists(APP, &iid) {
                    *g = Some(killed.elapsed());
                }
            }
            gone.iter().all(Option::is_some)
        },
        "the lease of the killed service runs out on both discovery instances: {gone:?}"
    );
    println!("SIGKILL: the {LEASE:?} lease ran out, gone from discovery g1 after {:?}, g2 after {:?}", gone[0], gone[1]);
    assert!(gone.iter().flatten().all(|g| *g >= LEASE - Duration::from_secs(1)), "removed by the lease, not before: {gone:?}");
    assert_eventually!(
        FOLLOW,
        unrouted(&site.http, &site.gateway(0)) && unrouted(&site.http, &site.gateway(1)),
        "the expired instance is routed by neither gateway"
    );
    println!("SIGKILL: no route on either gateway after {:?}", killed.elapsed());

    // 4. Started again; kill -9 the discovery service and the gateway of the haInstance that
    //    took the registration (g1, the first URL): the service stays routed through g2 and
    //    the distributor, past several leases, as the enabler's heartbeats move to g2.
    let mut node = site.start_service("node-hello-3");
    site.c.discoveries[0].as_mut().expect("discovery g1").kill();
    site.c.gateways[0].as_mut().expect("gateway g1").kill();
    let t = Instant::now();
    let mut requests = 0;
    while t.elapsed() < LEASE * 3 {
        for url in [site.gateway(1), site.distributor()] {
            let (s, v) = get(&site.http, &url);
            assert!(s == 200 && v["instanceId"] == iid.as_str(), "{url} after {:?}: {s} {v}\n{}", t.elapsed(), node.logs());
            requests += 1;
        }
        std::thread::park_timeout(Duration::from_millis(100));
    }
    println!(
        "kill -9 of discovery g1 and gateway g1: {requests} requests through g2 and the distributor over {:?}, none failed",
        t.elapsed()
    );
    let d1 = format!("https://127.0.0.1:{}/eureka/apps/", site.c.discovery_ports[0]);
    assert!(node.logs().contains(&format!("Eureka request failed to endpoint {d1}")), "the enabler moved to g2\n{}", node.logs());
    assert!(site.eureka[1].lists(APP, &iid), "renewed through discovery g2");
    // Its SIGTERM deregisters through g2 now.
    node.signal("TERM");
    let stopped = Instant::now();
    assert_eventually!(Duration::from_secs(5), node.logs().contains("de-registered with eureka: "), "deregistered\n{}", node.logs());
    assert_eventually!(Duration::from_secs(2), unrouted(&site.http, &site.gateway(1)), "g2 stops routing it");
    println!("SIGTERM with g1 dead: no route on g2 after {:?}", stopped.elapsed());
    assert_eq!(node.wait_exit(Duration::from_secs(10)), Some(0), "{}", node.logs());
}
