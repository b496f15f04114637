//! A whole authentication topology as real processes: one caching service and N gateways
//! (haInstances `g1`..`gN`) sharing one workspace, certificates and users file, and with
//! `discovery` on, a discovery service (Eureka) per haInstance, started on demand.

use std::time::Duration;

use reqwest::blocking::{Client, Response};

use crate::process::Proc;
use crate::{Workspace, assert_eventually, free_port};

/// Users every cluster has: `alice` (admin) and `bob`, passwords [`PASSWORD`].
pub const PASSWORD: &str = "correct horse battery staple";

/// How to build a cluster.
pub struct ClusterSetup {
    /// Gateways to define (all started unless `start_gateways` is smaller).
    pub gateways: usize,
    /// How many of them to start now.
    pub start_gateways: usize,
    /// Storage of the caching service.
    pub storage: &'static str,
    /// Extra YAML under `components.gateway` (indented 4 spaces).
    pub gateway_yaml: String,
    /// Whether every haInstance has a discovery service (`components.discovery.enabled`, a
    /// port of its own); none is started until [`Cluster::start_discovery`].
    pub discovery: bool,
}

impl Default for ClusterSetup {
    fn default() -> Self {
        ClusterSetup { gateways: 2, start_gateways: 2, storage: "inMemory", gateway_yaml: String::new(), discovery: false }
    }
}

/// The running cluster.
pub struct Cluster {
    /// The caching service.
    pub caching: Option<Proc>,
    /// Gateways by index (`None` when not running).
    pub gateways: Vec<Option<Proc>>,
    /// Gateway ports by index.
    pub ports: Vec<u16>,
    /// Ports of the gateways' admin listeners (health details, metrics) by index.
    pub admin_ports: Vec<u16>,
    /// The caching service's port.
    pub caching_port: u16,
    /// Discovery services by index (`None` when not running).
    pub discoveries: Vec<Option<Proc>>,
    /// Their ports by index (empty without `discovery`).
    pub discovery_ports: Vec<u16>,
    /// The configuration file.
    pub config: std::path::PathBuf,
    /// An HTTPS client trusting the workspace CA (no client certificate).
    pub http: Client,
    /// The shared workspace. Last, so it is dropped (deleted) after the processes, which
    /// print their logs from it when a test fails.
    pub ws: Workspace,
}

impl Cluster {
    /// Starts the caching service and the gateways, and waits until every started gateway is UP.
    pub fn start(setup: ClusterSetup) -> Cluster {
        let ws = Workspace::with_certs();
        let caching_port = free_port();
        let ports: Vec<u16> = (0..setup.gateways).map(|_| free_port()).collect();
        let admin_ports: Vec<u16> = (0..setup.gateways).map(|_| free_port()).collect();
        let discovery_ports: Vec<u16> = if setup.discovery { (0..setup.gateways).map(|_| free_port()).collect() } else { Vec::new() };
        let discovery = if setup.discovery { "  discovery:\n    enabled: true\n" } else { "" };
        // Quick drains by default, so tests that stop gateways do not wait for the production grace.
        let shutdown = if setup.gateway_yaml.contains("shutdown:") { "" } else { "    shutdown: {grace: 300ms, timeout: 5s}\n" };
        let mut yaml = format!(
            "zowe:\n  externalDomains: [127.0.0.1]\n  workspaceDirectory: workspace\ncomponents:\n  gateway:\n    apiml: {{security: {{auth: {{provider: users-file}}}}}}\n{shutdown}{}{discovery}  caching-service:\n    port: {caching_port}\n    storage: {{mode: {}}}\n    changeFeed: {{heartbeat: 200ms}}\n  distributor: {{enabled: false}}\nhaInstances:\n",
            setup.gateway_yaml, setup.storage
        );
        for (i, p) in ports.iter().enumerate() {
            let cs = if i == 0 { "" } else { ", caching-service: {enabled: false}" };
            let admin = admin_ports[i];
            let ds = discovery_ports.get(i).map(|d| format!(", discovery: {{port: {d}}}")).unwrap_or_default();
            yaml.push_str(&format!(
                "  g{}:\n    hostname: 127.0.0.1\n    components: {{gateway: {{port: {p}, admin: {{port: {admin}}}}}{cs}{ds}}}\n",
                i + 1
            ));
        }
        let config = ws.write("zowe.yaml", &yaml);
        let run = ws.run(&["users", "add", "alice", "--admin", "-c", "zowe.yaml"], &format!("{PASSWORD}\n"));
        assert_eq!(run.code(), 0, "{}", run.stderr());
        ws.run(&["users", "add", "bob", "-c", "zowe.yaml"], &format!("{PASSWORD}\n")).expect_code(0);
        let http = crate::https::client(&ws.ca(), None);
        let mut c = Cluster {
            ws,
            caching: None,
            gateways: (0..setup.gateways).map(|_| None).collect(),
            ports,
            admin_ports,
            caching_port,
            discoveries: discovery_ports.iter().map(|_| None).collect(),
            discovery_ports,
            config,
            http,
        };
        c.start_caching();
        for i in 0..setup.start_gateways {
            c.start_gateway(i);
        }
        c
    }

    /// Starts (or restarts) the caching service and waits until it is healthy.
    pub fn start_caching(&mut self) {
        let proc = self.ws.spawn("caching-service", &["caching-service", "-c", "zowe.yaml", "--ha-instance", "g1"]);
        let url = format!("https://127.0.0.1:{}/application/health", self.caching_port);
        assert_eventually!(
            Duration::from_secs(20),
            self.http.get(&url).send().is_ok_and(|r| r.status() == 200),
            "caching service healthy\n{}",
            proc.logs()
        );
        self.caching = Some(proc);
    }

    /// Starts gateway `i` (0-based) without waiting.
    pub fn spawn_gateway(&mut self, i: usize) {
        self.spawn_gateway_with(i, &[]);
    }

    /// Starts gateway `i` with `env` added to its environment, without waiting.
    pub fn spawn_gateway_with(&mut self, i: usize, env: &[(&str, &str)]) {
        let name = format!("gateway-g{}", i + 1);
        let mut cmd = self.ws.plexgate(&["gateway", "-c", "zowe.yaml", "--ha-instance", &format!("g{}", i + 1)]);
        cmd.envs(env.iter().copied());
        self.gateways[i] = Some(Proc::spawn(&name, cmd, &self.ws.path().join(format!("{name}.log"))));
    }

    /// Starts gateway `i` and waits until it reports UP.
    pub fn start_gateway(&mut self, i: usize) {
        self.start_gateway_with(i, &[]);
    }

    /// Starts gateway `i` with `env` added to its environment, and waits until it reports UP.
    pub fn start_gateway_with(&mut self, i: usize, env: &[(&str, &str)]) {
        self.spawn_gateway_with(i, env);
        let url = self.url(i, "/application/health");
        assert_eventually!(
            Duration::from_secs(20),
            self.http.get(&url).send().is_ok_and(|r| r.status() == 200),
            "gateway {i} UP\n{}",
            self.gateways[i].as_ref().map(Proc::logs).unwrap_or_default()
        );
    }

    /// `https://127.0.0.1:<port of gateway i><path>`.
    pub fn url(&self, i: usize, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.ports[i])
    }

    /// `http://127.0.0.1:<admin port of gateway i><path>` (plain HTTP, loopback).
    pub fn admin_url(&self, i: usize, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.admin_ports[i])
    }

    /// The Prometheus text of gateway `i`, from its admin listener.
    pub fn metrics(&self, i: usize) -> String {
        reqwest::blocking::get(self.admin_url(i, "/application/metrics")).and_then(|r| r.text()).unwrap_or_default()
    }

    /// `https://...<gateway i>/gateway/api/v1/auth<path>`.
    pub fn auth(&self, i: usize, path: &str) -> String {
        self.url(i, &format!("/gateway/api/v1/auth{path}"))
    }

    /// Logs in on gateway `i` with basic auth; the token from the cookie.
    pub fn login(&self, i: usize, user: &str, password: &str) -> String {
        let r = self.http.post(self.auth(i, "/login")).basic_auth(user, Some(password)).send().expect("login request");
        assert_eq!(r.status(), 204, "login of {user} on gateway {i}");
        token_from(&r).expect("apimlAuthenticationToken cookie")
    }

    /// A PAT of `user` (password [`PASSWORD`]) for `scopes`, from `POST /access-token/generate`
    /// on gateway `i`.
    pub fn generate_pat(&self, i: usize, user: &str, scopes: &[&str]) -> String {
        let r = self
            .http
            .post(self.auth(i, "/access-token/generate"))
            .basic_auth(user, Some(PASSWORD))
            .json(&serde_json::json!({"validity": 1, "scopes": scopes}))
            .send()
            .expect("generate");
        assert_eq!(r.status(), 200, "generate a PAT");
        r.text().expect("PAT")
    }

    /// `GET /query` with the token as Bearer.
    pub fn query(&self, i: usize, token: &str) -> Response {
        self.http.get(self.auth(i, "/query")).bearer_auth(token).send().expect("query request")
    }

    /// Starts the discovery service of haInstance `g<i+1>` and waits until its health
    /// endpoint (no client certificate needed there) answers 200.
    pub fn start_discovery(&mut self, i: usize) {
        let name = format!("discovery-g{}", i + 1);
        let proc = self.ws.spawn(&name, &["discovery", "-c", "zowe.yaml", "--ha-instance", &format!("g{}", i + 1)]);
        let url = format!("https://127.0.0.1:{}/application/health", self.discovery_ports[i]);
        assert_eventually!(
            Duration::from_secs(20),
            self.http.get(&url).send().is_ok_and(|r| r.status() == 200),
            "discovery {name} healthy\n{}",
            proc.logs()
        );
        self.discoveries[i] = Some(proc);
    }

    /// A Eureka client of discovery service `i` presenting `identity` (a service's certificate).
    pub fn eureka(&self, i: usize, identity: Option<(&std::path::Path, &std::path::Path)>) -> crate::eureka::Eureka {
        crate::eureka::Eureka::new(self.discovery_ports[i], &self.ws.ca(), identity)
    }

    /// Everything every process logged so far.
    pub fn all_logs(&self) -> String {
        let mut s = String::new();
        for p in self.caching.iter().chain(self.gateways.iter().flatten()).chain(self.discoveries.iter().flatten()) {
            s.push_str(&p.logs());
        }
        s
    }
}

/// The `apimlAuthenticationToken` of a login response.
pub fn token_from(r: &Response) -> Option<String> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("apimlAuthenticationToken=").map(|rest| rest.split(';').next().unwrap_or("").to_owned()))
}

/// A `plexgate sample-service` instance on a free port.
pub struct Sample {
    /// Its port.
    pub port: u16,
    /// Its instance id.
    pub id: String,
    /// The process.
    pub proc: Proc,
}

impl Cluster {
    /// Starts a sample service instance (HTTPS with the workspace certificates) and waits until it answers.
    pub fn start_sample(&self, id: &str) -> Sample {
        self.start_sample_on(id, free_port())
    }

    /// Starts a sample service instance on `port`.
    pub fn start_sample_on(&self, id: &str, port: u16) -> Sample {
        let proc = self.ws.spawn(&format!("sample-{id}"), &["sample-service", "-c", "zowe.yaml", "--port", &port.to_string(), "--id", id]);
        let url = format!("https://127.0.0.1:{port}/application/health");
        assert_eventually!(
            Duration::from_secs(20),
            self.http.get(&url).send().is_ok_and(|r| r.status() == 200),
            "sample {id} up\n{}",
            proc.logs()
        );
        Sample { port, id: id.to_owned(), proc }
    }

    /// Writes a static definition file into the default definitions directory.
    pub fn define(&self, file: &str, yaml: &str) {
        self.ws.write(&format!("workspace/api-mediation/api-defs/{file}"), yaml);
    }
}

/// A definition of service `id` over `ports`, routed at `api/v1` to `/sample/api/v1`.
pub fn sample_definition(id: &str, ports: &[u16], scheme: &str) -> String {
    let urls: Vec<String> = ports.iter().map(|p| format!("https://127.0.0.1:{p}/")).collect();
    format!(
        "services:\n  - serviceId: {id}\n    title: Sample {id}\n    instanceBaseUrls: [{}]\n    healthCheckRelativeUrl: /application/health\n    routes:\n      - gatewayUrl: api/v1\n        serviceRelativeUrl: /sample/api/v1\n    authentication:\n      scheme: {scheme}\n",
        urls.join(", ")
    )
}
