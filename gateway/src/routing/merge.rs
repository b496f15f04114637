//! The routing table as static definitions merged with registered instances.
//!
//! - A serviceId with a static definition and registrations has the instances of both; the
//!   definition's settings (routes, scheme, timeouts, stickiness) win, and its instances
//!   never leave through a missing heartbeat. A registered instance whose id is one of the
//!   definition's is the same instance: the static one stays, the registration adds nothing.
//! - A serviceId only registered takes its settings from the `apiml.*` metadata of its newest
//!   registration (UP ones first); registrations that disagree on routes are logged once.
//! - Only UP registrations get requests; the others are parked (listed, never candidates).
//! - Every instance of the previous table with the same service, id, base URL, origin and
//!   health URL is reused, so its health, ejection and metric handles survive the rebuild.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use super::definitions::{RouteDef, Scheme, ServiceDef};
use super::dynamic::{Registered, Registrations};
use super::registry::{Instance, Origin, Parked, Registry, Service};

/// Most notes remembered; past it they are forgotten (and may be logged once more).
const MAX_NOTES: usize = 1_000;

/// What has been logged already, so a rebuild per heartbeat storm does not repeat it.
#[derive(Debug, Default)]
pub struct Notes(HashSet<String>);

impl Notes {
    /// Logs `note` at warn level the first time it is seen.
    fn once(&mut self, note: String) {
        if self.0.len() >= MAX_NOTES {
            self.0.clear();
        }
        if !self.0.contains(&note) {
            tracing::warn!("{note}");
            self.0.insert(note);
        }
    }
}

/// Builds the table from `statics` and `registrations`, reusing `previous`'s instances.
pub fn merge(statics: &[ServiceDef], registrations: &Registrations, previous: &Registry, notes: &mut Notes) -> Registry {
    let reuse = previous.instances_by_id();
    let instance = |service_id: &str, id: String, base: &http::Uri, origin: Origin, health_url: Option<http::Uri>| {
        match reuse.get(&(service_id, id.as_str())) {
            Some(i) if i.base == *base && i.origin == origin && i.health_url == health_url => Arc::clone(i),
            _ => Arc::new(Instance::new(service_id, id, base.clone(), origin, health_url)),
        }
    };
    let mut registered: BTreeMap<&str, Vec<&Registered>> = BTreeMap::new();
    for r in registrations.all() {
        registered.entry(r.service_id.as_str()).or_default().push(r);
    }
    let mut services = Vec::new();
    for def in statics {
        let origin = Origin::Static { file: def.file.clone() };
        let mut instances: Vec<Arc<Instance>> = def
            .instances
            .iter()
            .map(|base| instance(&def.service_id, static_id(&def.service_id, base), base, origin.clone(), None))
            .collect();
        let mut parked = Vec::new();
        for r in registered.remove(def.service_id.as_str()).unwrap_or_default() {
            if instances.iter().any(|i| i.id.eq_ignore_ascii_case(&r.instance_id)) {
                notes.once(format!(
                    "registration {} names instance {} of the static definition of {} ({}): the static instance is used",
                    r.key,
                    r.instance_id,
                    def.service_id,
                    def.file.display()
                ));
                continue;
            }
            let i = instance(&def.service_id, r.instance_id.clone(), &r.base, Origin::Eureka { key: r.key.clone() }, r.health_url.clone());
            if r.up() { instances.push(i) } else { parked.push(Parked { instance: i, status: r.status }) }
        }
        services.push(Service::new(def.clone(), instances, parked));
    }
    for (service_id, mut regs) in registered {
        // The newest UP registration speaks for the service; key order breaks ties, so every
        // gateway picks the same one.
        regs.sort_by(|a, b| (b.up(), b.registered_ms, &b.key).cmp(&(a.up(), a.registered_ms, &a.key)));
        let chosen = regs[0];
        for other in &regs[1..] {
            if other.settings.routes != chosen.settings.routes {
                notes.once(format!(
                    "registrations of {service_id} disagree on routes: {} (newest) is used, {} differs",
                    chosen.key, other.key
                ));
            }
        }
        let (mut instances, mut parked) = (Vec::new(), Vec::new());
        for r in &regs {
            let i = instance(service_id, r.instance_id.clone(), &r.base, Origin::Eureka { key: r.key.clone() }, r.health_url.clone());
            if r.up() { instances.push(i) } else { parked.push(Parked { instance: i, status: r.status }) }
        }
        // Registration order would shift with every new registration; key order is stable.
        instances.sort_by(|a, b| a.id.cmp(&b.id));
        services.push(Service::new(registered_def(service_id, chosen), instances, parked));
    }
    Registry::from_services(services)
}

/// The id of a static instance: `host:serviceId:port`, as Eureka names instances.
pub fn static_id(service_id: &str, base: &http::Uri) -> String {
    let host = base.host().unwrap_or("");
    let port = base.port_u16().unwrap_or(if base.scheme_str() == Some("http") { 80 } else { 443 });
    format!("{host}:{service_id}:{port}")
}

/// The definition of a service only registered, from its chosen registration's metadata.
fn registered_def(service_id: &str, r: &Registered) -> ServiceDef {
    let m = &r.settings;
    ServiceDef {
        service_id: service_id.to_owned(),
        title: m.title.clone(),
        description: m.description.clone(),
        instances: Vec::new(),
        health_check: None,
        routes: m.routes.iter().map(|r| RouteDef { gateway_url: r.gateway_url.clone(), service_relative_url: r.service_url.clone() }).collect(),
        // The metadata reader accepts only the schemes the gateway implements.
        scheme: match m.scheme.as_str() {
            "zoweJwt" => Scheme::ZoweJwt,
            "x509" => Scheme::X509,
            _ => Scheme::Bypass,
        },
        sticky_by_user: m.sticky_by_user,
        read_timeout: m.read_timeout,
        connect_timeout: m.connect_timeout,
        idle_timeout: None,
        file: PathBuf::new(),
    }
}
