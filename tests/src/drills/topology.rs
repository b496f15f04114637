//! The whole HA topology as real processes from one `zowe.yaml`: a distributor on the
//! virtual address, N gateways (haInstances `g1`..`gN`, `g1` preferred), one caching service
//! (haInstance `cache`, gateway disabled there) and two instances of the sample service
//! routed at `/sample/api/v1/**` with `zoweJwt`, every one on a free port.
//!
//! Every process is started with `plexgate <component> -c zowe.yaml [--ha-instance ID]`; a
//! process that is restarted gets a new log file (`gateway-g1.2.log`), and every log is
//! printed if the drill panics. For the network-cut drill the processes run in network
//! namespaces ([`Net`]): then the gateways are reached at their instance hostnames over veth
//! links, and the test's own clients live in the control namespace with the distributor.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use reqwest::blocking::Client;
use serde_json::Value;

use super::load::{Connections, Load, LoadSpec};
use super::netns::{Link, NetNs};
use crate::cluster::{PASSWORD, sample_definition, token_from};
use crate::process::Proc;
use crate::{Workspace, assert_eventually, free_port, plexgate_bin};

/// The routed endpoint the drills load: the sample service's `hello` through a gateway.
pub const HELLO: &str = "/sample/api/v1/hello";

/// Health checks every 100 ms; two failures mark a target down, two successes up.
pub const FAST_HEALTH: &str = "{interval: 100ms, timeout: 500ms, unhealthyThreshold: 2, healthyThreshold: 2}";

/// Where a process runs and the host name it is reached at.
#[derive(Debug, Clone)]
pub struct Place {
    /// Its network namespace (`None`: the test's own).
    pub netns: Option<String>,
    /// Its instance hostname (what it binds and what others connect to).
    pub host: String,
}

impl Place {
    /// 127.0.0.1 in the test's own namespace.
    pub fn local() -> Place {
        Place { netns: None, host: "127.0.0.1".to_owned() }
    }
}

/// Namespaces and the link a topology runs across (deleted after its processes stopped).
pub struct Net {
    /// Every namespace.
    pub namespaces: Vec<NetNs>,
    /// The link the drill cuts.
    pub link: Link,
    /// The namespace of the distributor and of the test's clients.
    pub control: String,
}

/// How to build a topology.
pub struct TopologySetup {
    /// Gateways `g1`..`gN`.
    pub gateways: usize,
    /// `components.distributor.method`.
    pub method: String,
    /// `components.distributor.autoSwitchBack`.
    pub auto_switch_back: bool,
    /// `components.distributor.healthCheck` (flow YAML).
    pub health_check: String,
    /// `components.caching-service.storage` (flow YAML).
    pub storage: String,
    /// `components.gateway.shutdown.grace`.
    pub grace: String,
    /// Extra YAML lines under `components.gateway` (indented 4 spaces).
    pub gateway_yaml: String,
    /// Per gateway: where it runs (default: all local).
    pub gateway_places: Vec<Place>,
    /// Where the caching service runs.
    pub caching_place: Place,
    /// Namespaces; with them the certificates are generated for the configured host names.
    pub net: Option<Net>,
}

impl Default for TopologySetup {
    fn default() -> TopologySetup {
        TopologySetup {
            gateways: 2,
            method: "hotStandby".to_owned(),
            auto_switch_back: true,
            health_check: FAST_HEALTH.to_owned(),
            storage: "{mode: durable}".to_owned(),
            grace: "2s".to_owned(),
            gateway_yaml: String::new(),
            gateway_places: Vec::new(),
            caching_place: Place::local(),
            net: None,
        }
    }
}

/// One sample-service process slot.
pub struct SampleSlot {
    /// Its namespace.
    pub netns: Option<String>,
    /// Its index (instance id `sample-<index+1>`).
    pub index: usize,
    /// The running process.
    pub proc: Option<Proc>,
}

/// The running topology.
pub struct Topology {
    /// The shared workspace (`zowe.yaml`, certificates, users, logs).
    pub ws: Workspace,
    /// The distributor.
    pub distributor: Option<Proc>,
    /// The virtual address's port (127.0.0.1 in the control namespace).
    pub port: u16,
    /// The distributor's admin port.
    pub admin_port: u16,
    /// Gateways by index (`None` while stopped).
    pub gateways: Vec<Option<Proc>>,
    /// Gateway ports by index.
    pub gateway_ports: Vec<u16>,
    /// Where each gateway runs.
    pub gateway_places: Vec<Place>,
    /// The caching service.
    pub caching: Option<Proc>,
    /// The caching service's port.
    pub caching_port: u16,
    /// Where the caching service runs.
    pub caching_place: Place,
    /// Sample-service processes (one set per namespace a gateway runs in).
    pub samples: Vec<SampleSlot>,
    /// The sample-service ports (the same in every namespace).
    pub sample_ports: Vec<u16>,
    /// HTTPS client trusting the workspace CA, in the control namespace.
    pub http: Client,
    /// The same with the gateways' client certificate (the caching service's REST API).
    pub cert_http: Client,
    admin: Client,
    generations: BTreeMap<String, usize>,
    retired: Vec<Proc>,
    /// The namespaces, if any (dropped after every process).
    pub net: Option<Net>,
}

impl Topology {
    /// Writes the configuration, starts everything and waits until every gateway is UP and
    /// the distributor sees every target up.
    pub fn start(mut setup: TopologySetup) -> Topology {
        let net = setup.net.take();
        let ws = if net.is_some() { Workspace::new() } else { Workspace::with_certs() };
        let places: Vec<Place> = (0..setup.gateways).map(|i| setup.gateway_places.get(i).cloned().unwrap_or_else(Place::local)).collect();
        let (port, admin_port, caching_port) = (free_port(), free_port(), free_port());
        let gateway_ports: Vec<u16> = (0..setup.gateways).map(|_| free_port()).collect();
        let sample_ports = vec![free_port(), free_port()];
        let mut yaml = format!(
            "zowe:\n  externalDomains: [127.0.0.1]\n  externalPort: {port}\n  workspaceDirectory: workspace\ncomponents:\n  gateway:\n    apiml: {{security: {{auth: {{provider: users-file}}}}}}\n    shutdown: {{grace: {grace}, timeout: 10s}}\n    routing: {{healthCheckInterval: 500ms, connectTimeout: 1s, ejection: 500ms}}\n{gateway_yaml}  caching-service:\n    enabled: false\n    port: {caching_port}\n    storage: {storage}\n    changeFeed: {{heartbeat: 200ms}}\n  distributor:\n    enabled: true\n    address: 127.0.0.1\n    port: {port}\n    method: {method}\n    autoSwitchBack: {asb}\n    healthCheck: {health}\n    drainTimeout: 2s\n    admin: {{port: {admin_port}}}\nhaInstances:\n  cache:\n    hostname: {chost}\n    components: {{gateway: {{enabled: false}}, caching-service: {{enabled: true}}}}\n",
            grace = setup.grace,
            gateway_yaml = setup.gateway_yaml,
            storage = setup.storage,
            method = setup.method,
            asb = setup.auto_switch_back,
            health = setup.health_check,
            chost = setup.caching_place.host,
        );
        for (i, (p, place)) in gateway_ports.iter().zip(&places).enumerate() {
            yaml.push_str(&format!("  g{}:\n    hostname: {}\n    components: {{gateway: {{port: {p}}}}}\n", i + 1, place.host));
        }
        ws.write("zowe.yaml", &yaml);
        ws.write("workspace/api-mediation/api-defs/sample.yml", &sample_definition("sample", &sample_ports, "zoweJwt"));
        if net.is_some() {
            // Certificates whose names include every instance hostname of this file.
            ws.run(&["init", "certificate", "-c", "zowe.yaml"], "").expect_code(0);
        }
        ws.run(&["users", "add", "alice", "--admin", "-c", "zowe.yaml"], &format!("{PASSWORD}\n")).expect_code(0);
        ws.run(&["users", "add", "bob", "-c", "zowe.yaml"], &format!("{PASSWORD}\n")).expect_code(0);

        let control = net.as_ref().map(|n| n.control.clone());
        let in_control = |f: &(dyn Fn() -> Client + Sync)| -> Client {
            match net.as_ref().and_then(|n| n.namespaces.iter().find(|ns| Some(&ns.name) == control.as_ref())) {
                Some(ns) => ns.run(f),
                None => f(),
            }
        };
        let http = in_control(&|| crate::https::client(&ws.ca(), None));
        let cert_http = in_control(&|| ws.client());
        let admin = in_control(&|| Client::builder().timeout(Duration::from_secs(2)).build().expect("admin client"));
        let mut namespaces: Vec<Option<String>> = places.iter().map(|p| p.netns.clone()).collect();
        namespaces.dedup();
        let samples = namespaces
            .iter()
            .flat_map(|ns| (0..sample_ports.len()).map(move |index| SampleSlot { netns: ns.clone(), index, proc: None }))
            .collect();
        let mut t = Topology {
            ws,
            distributor: None,
            port,
            admin_port,
            gateways: (0..setup.gateways).map(|_| None).collect(),
            gateway_ports,
            gateway_places: places,
            caching: None,
            caching_port,
            caching_place: setup.caching_place,
            samples,
            sample_ports,
            http,
            cert_http,
            admin,
            generations: BTreeMap::new(),
            retired: Vec::new(),
            net,
        };
        t.start_caching();
        for s in 0..t.samples.len() {
            t.spawn_sample_slot(s);
        }
        t.wait_samples_listening();
        for i in 0..setup.gateways {
            t.spawn_gateway(i);
        }
        for i in 0..setup.gateways {
            t.wait_gateway_up(i, Duration::from_secs(30));
        }
        let control = t.net.as_ref().map(|n| n.control.clone());
        let dist = t.spawn("distributor", control.as_deref(), &["distributor", "-c", "zowe.yaml"]);
        t.distributor = Some(dist);
        for i in 0..setup.gateways {
            t.wait_state(&Topology::name(i), "up", Duration::from_secs(20));
        }
        t
    }

    /// The haInstance id of gateway `i`.
    pub fn name(i: usize) -> String {
        format!("g{}", i + 1)
    }

    fn command(&self, netns: Option<&str>, args: &[&str]) -> Command {
        let bin = plexgate_bin();
        let mut c = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(&bin);
                c
            }
            None => Command::new(&bin),
        };
        c.args(args).current_dir(self.ws.path());
        for (k, _) in std::env::vars() {
            if k.starts_with("PLEXGATE") {
                c.env_remove(k);
            }
        }
        c
    }

    /// Starts `plexgate <args>` as `name` in `netns`, logging to `<name>[.<n>].log`.
    fn spawn(&mut self, name: &str, netns: Option<&str>, args: &[&str]) -> Proc {
        let n = self.generations.entry(name.to_owned()).or_insert(0);
        *n += 1;
        let log = if *n == 1 { format!("{name}.log") } else { format!("{name}.{n}.log") };
        let cmd = self.command(netns, args);
        Proc::spawn(name, cmd, &self.ws.path().join(log))
    }

    fn retire(&mut self, p: Option<Proc>) {
        if let Some(p) = p {
            self.retired.push(p);
        }
    }

    /// `https://127.0.0.1:<virtual port><path>`: through the distributor.
    pub fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port)
    }

    /// `https://<host>:<port of gateway i><path>`: straight to gateway `i`.
    pub fn gateway_url(&self, i: usize, path: &str) -> String {
        format!("https://{}:{}{path}", self.gateway_places[i].host, self.gateway_ports[i])
    }

    /// `https://<caching service><path>`.
    pub fn caching_url(&self, path: &str) -> String {
        format!("https://{}:{}{path}", self.caching_place.host, self.caching_port)
    }

    /// The control namespace's file, for load generators.
    pub fn control_netns(&self) -> Option<std::path::PathBuf> {
        let net = self.net.as_ref()?;
        net.namespaces.iter().find(|n| n.name == net.control).map(NetNs::path)
    }

    /// A load of `rate` GETs of the routed `hello` with `token`, through the distributor.
    pub fn load(&self, name: &str, rate: u32, connections: Connections, token: &str) -> Load {
        Load::start(LoadSpec {
            name: name.to_owned(),
            url: self.url(HELLO),
            rate,
            bearer: Some(token.to_owned()),
            connections,
            timeout: Duration::from_secs(30),
            ca: self.ws.ca(),
            netns: self.control_netns(),
        })
    }

    /// Logs `user` in at `url` (a login endpoint); the token.
    fn login_at(&self, url: &str, user: &str) -> String {
        let r = self.http.post(url).basic_auth(user, Some(PASSWORD)).send().expect("login request");
        assert_eq!(r.status(), 204, "login of {user} at {url}");
        token_from(&r).expect("apimlAuthenticationToken cookie")
    }

    /// Logs `user` in through the distributor.
    pub fn login(&self, user: &str) -> String {
        self.login_at(&self.url("/gateway/api/v1/auth/login"), user)
    }

    /// Logs `user` in on gateway `i` directly.
    pub fn login_on(&self, i: usize, user: &str) -> String {
        self.login_at(&self.gateway_url(i, "/gateway/api/v1/auth/login"), user)
    }

    /// `GET /gateway/api/v1/auth/query` on gateway `i` with `token`: the status and the Zowe
    /// message number, if any (`None` status: no answer).
    pub fn query(&self, i: usize, token: &str) -> (Option<u16>, Option<String>) {
        match self.http.get(self.gateway_url(i, "/gateway/api/v1/auth/query")).bearer_auth(token).send() {
            Ok(r) => {
                let status = r.status().as_u16();
                let body: Value = r.json().unwrap_or(Value::Null);
                (Some(status), body["messages"][0]["messageNumber"].as_str().map(str::to_owned))
            }
            Err(_) => (None, None),
        }
    }

    /// Logs `token` out on gateway `i`; the status.
    pub fn logout_on(&self, i: usize, token: &str) -> u16 {
        self.http.post(self.gateway_url(i, "/gateway/api/v1/auth/logout")).bearer_auth(token).send().expect("logout").status().as_u16()
    }

    /// Gateway `i`'s health answer: status code and `status` field.
    pub fn gateway_health(&self, i: usize) -> Option<(u16, String)> {
        let r = self.http.get(self.gateway_url(i, "/application/health")).send().ok()?;
        let code = r.status().as_u16();
        let v: Value = r.json().ok()?;
        Some((code, v["status"].as_str().unwrap_or_default().to_owned()))
    }

    /// Starts gateway `i` without waiting.
    pub fn spawn_gateway(&mut self, i: usize) {
        let netns = self.gateway_places[i].netns.clone();
        let name = format!("gateway-{}", Topology::name(i));
        let p = self.spawn(&name, netns.as_deref(), &["gateway", "-c", "zowe.yaml", "--ha-instance", &Topology::name(i)]);
        let old = self.gateways[i].replace(p);
        self.retire(old);
    }

    /// Waits until gateway `i` answers UP.
    pub fn wait_gateway_up(&self, i: usize, timeout: Duration) {
        assert_eventually!(
            timeout,
            self.gateway_health(i).is_some_and(|(c, _)| c == 200),
            "gateway {} UP\n{}",
            Topology::name(i),
            self.gateways[i].as_ref().map(Proc::logs).unwrap_or_default()
        );
    }

    /// Sends `sig` to gateway `i`.
    pub fn signal_gateway(&self, i: usize, sig: &str) {
        self.gateways[i].as_ref().expect("gateway running").signal(sig);
    }

    /// Waits for gateway `i` to exit; its exit code.
    pub fn wait_gateway_exit(&mut self, i: usize, timeout: Duration) -> Option<i32> {
        let code = self.gateways[i].as_mut().expect("gateway running").wait_exit(timeout);
        if code.is_some() {
            let p = self.gateways[i].take();
            self.retire(p);
        }
        code
    }

    /// SIGKILLs gateway `i`.
    pub fn kill_gateway(&mut self, i: usize) {
        let mut p = self.gateways[i].take().expect("gateway running");
        p.kill();
        self.retire(Some(p));
    }

    /// The PID of gateway `i`.
    pub fn gateway_pid(&self, i: usize) -> u32 {
        self.gateways[i].as_ref().map(Proc::pid).unwrap_or(0)
    }

    /// Starts sample slot `s`.
    fn spawn_sample_slot(&mut self, s: usize) {
        let (netns, index) = (self.samples[s].netns.clone(), self.samples[s].index);
        let id = format!("sample-{}", index + 1);
        let name = match &netns {
            Some(ns) => format!("{id}-{ns}"),
            None => id.clone(),
        };
        let port = self.sample_ports[index].to_string();
        let p = self.spawn(&name, netns.as_deref(), &["sample-service", "-c", "zowe.yaml", "--port", &port, "--id", &id]);
        let old = self.samples[s].proc.replace(p);
        self.retire(old);
    }

    fn wait_samples_listening(&self) {
        for s in &self.samples {
            let p = s.proc.as_ref().expect("sample started");
            assert_eventually!(Duration::from_secs(20), p.logs().contains("sample service listening"), "sample up\n{}", p.logs());
        }
    }

    /// SIGKILLs sample instance `index` (in the test's own namespace).
    pub fn kill_sample(&mut self, index: usize) {
        let s = self.samples.iter().position(|s| s.index == index && s.netns.is_none()).expect("sample slot");
        let p = self.samples[s].proc.take();
        if let Some(mut p) = p {
            p.kill();
            self.retire(Some(p));
        }
    }

    /// Starts sample instance `index` again on its port and waits until it answers.
    pub fn start_sample(&mut self, index: usize) {
        let s = self.samples.iter().position(|s| s.index == index && s.netns.is_none()).expect("sample slot");
        self.spawn_sample_slot(s);
        let url = format!("https://127.0.0.1:{}/application/health", self.sample_ports[index]);
        assert_eventually!(Duration::from_secs(20), self.http.get(&url).send().is_ok_and(|r| r.status() == 200), "sample {index} answers");
    }

    /// Starts (or restarts) the caching service and waits until it is healthy.
    pub fn start_caching(&mut self) {
        let netns = self.caching_place.netns.clone();
        let p = self.spawn("caching-service", netns.as_deref(), &["caching-service", "-c", "zowe.yaml", "--ha-instance", "cache"]);
        let old = self.caching.replace(p);
        self.retire(old);
        let url = self.caching_url("/application/health");
        assert_eventually!(
            Duration::from_secs(30),
            self.http.get(&url).send().is_ok_and(|r| r.status() == 200),
            "caching service healthy\n{}",
            self.caching.as_ref().map(Proc::logs).unwrap_or_default()
        );
    }

    /// SIGKILLs the caching service.
    pub fn kill_caching(&mut self) {
        let mut p = self.caching.take().expect("caching service running");
        p.kill();
        self.retire(Some(p));
    }

    /// The entries of caching-service map `map` in the gateways' namespace.
    pub fn cache_map(&self, map: &str) -> BTreeMap<String, String> {
        let r = self.cert_http.get(self.caching_url(&format!("/cachingservice/api/v1/cache-list/{map}"))).send().expect("cache-list");
        if r.status() == 404 {
            return BTreeMap::new();
        }
        assert_eq!(r.status(), 200, "cache-list {map}");
        let v: Value = r.json().expect("map JSON");
        v.as_object()
            .map(|o| o.iter().map(|(k, v)| (k.clone(), v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string()))).collect())
            .unwrap_or_default()
    }

    /// The distributor's `GET /status`.
    pub fn status(&self) -> Option<Value> {
        let r = self.admin.get(format!("http://127.0.0.1:{}/status", self.admin_port)).send().ok()?;
        if r.status() != 200 {
            return None;
        }
        r.json().ok()
    }

    /// The status entry of target `name`.
    pub fn target(&self, name: &str) -> Value {
        let s = self.status().unwrap_or(Value::Null);
        s["targets"].as_array().and_then(|t| t.iter().find(|t| t["name"] == name).cloned()).unwrap_or(Value::Null)
    }

    /// The state of target `name` (`unverified`, `up`, `suspect`, `down`; empty if unknown).
    pub fn state(&self, name: &str) -> String {
        self.target(name)["state"].as_str().unwrap_or_default().to_owned()
    }

    /// Waits until target `name` is in `state`.
    pub fn wait_state(&self, name: &str, state: &str, timeout: Duration) {
        assert_eventually!(
            timeout,
            self.state(name) == state,
            "target {name} {state}: {}\n{}",
            self.target(name),
            self.distributor.as_ref().map(Proc::logs).unwrap_or_default()
        );
    }

    /// hotStandby: the target new connections go to now.
    pub fn current(&self) -> Option<String> {
        self.status().and_then(|s| s["current"].as_str().map(str::to_owned))
    }

    /// Connections forwarded so far, per target.
    pub fn totals(&self) -> BTreeMap<String, u64> {
        let s = self.status().unwrap_or(Value::Null);
        s["targets"]
            .as_array()
            .map(|t| t.iter().map(|t| (t["name"].as_str().unwrap_or_default().to_owned(), t["total"].as_u64().unwrap_or(0))).collect())
            .unwrap_or_default()
    }

    /// Every log written so far.
    pub fn all_logs(&self) -> String {
        let mut s = String::new();
        let mut names: Vec<_> = std::fs::read_dir(self.ws.path()).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
        names.sort();
        for p in names.into_iter().filter(|p| p.extension().is_some_and(|e| e == "log")) {
            s.push_str(&format!("--- {}\n{}", p.display(), std::fs::read_to_string(&p).unwrap_or_default()));
        }
        s
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        // The front door first, then the rest; the namespaces only after every process.
        drop(self.distributor.take());
        for g in &mut self.gateways {
            drop(g.take());
        }
        for s in &mut self.samples {
            drop(s.proc.take());
        }
        drop(self.caching.take());
        self.retired.clear();
        drop(self.net.take());
    }
}
