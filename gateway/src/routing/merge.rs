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
    let instance = |service_id: &str, id: String, base: &http::Uri, origin: Origin, health_url: Option<http::Uri>| match reuse
        .get(&(service_id, id.as_str()))
    {
        Some(i) if i.base == *base && i.origin == origin && i.health_url == health_url => Arc::clone(i),
        _ => Arc::new(Instance::new(service_id, id, base.clone(), origin, health_url)),
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
        parked.sort_by(|a, b| a.instance.id.cmp(&b.instance.id));
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
        routes: m
            .routes
            .iter()
            .map(|r| RouteDef { gateway_url: r.gateway_url.clone(), service_relative_url: r.service_url.clone() })
            .collect(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::dynamic::stored_with;

    fn statics(port: u16) -> Vec<ServiceDef> {
        vec![ServiceDef {
            service_id: "sample".into(),
            title: "Static sample".into(),
            description: String::new(),
            instances: vec![format!("https://127.0.0.1:{port}/").parse().unwrap()],
            health_check: Some("/application/health".into()),
            routes: vec![RouteDef { gateway_url: "api/v1".into(), service_relative_url: "/sample/api/v1".into() }],
            scheme: Scheme::ZoweJwt,
            sticky_by_user: false,
            read_timeout: None,
            connect_timeout: None,
            idle_timeout: None,
            file: "defs/sample.yml".into(),
        }]
    }

    fn put(regs: &mut Registrations, app: &str, id: &str, port: u16, status: &str) {
        let (k, v) = stored_with(app, id, port, status, "api/v1", 1_000, 1_000);
        regs.put(&k, &v);
    }

    fn ids(s: &Service) -> Vec<&str> {
        s.instances.iter().map(|i| i.id.as_str()).collect()
    }

    #[test]
    fn a_shared_service_id_has_both_instance_sets_with_the_static_settings() {
        let mut regs = Registrations::default();
        put(&mut regs, "SAMPLE", "127.0.0.1:sample:2", 2, "UP");
        // The same id as the static instance: the static one is kept, once.
        put(&mut regs, "SAMPLE", "127.0.0.1:sample:1", 1, "UP");
        let r = merge(&statics(1), &regs, &Registry::default(), &mut Notes::default());
        let s = r.get("sample").unwrap();
        assert_eq!(ids(&s), ["127.0.0.1:sample:1", "127.0.0.1:sample:2"]);
        assert_eq!(s.instances[0].origin, Origin::Static { file: "defs/sample.yml".into() });
        assert_eq!(s.instances[1].origin, Origin::Eureka { key: "SAMPLE/127.0.0.1:sample:2".into() });
        assert_eq!(
            (s.def.scheme, s.def.title.as_str(), s.def.routes[0].service_relative_url.as_str()),
            (Scheme::ZoweJwt, "Static sample", "/sample/api/v1")
        );
        // Every registration gone: the static instance stays.
        let r = merge(&statics(1), &Registrations::default(), &r, &mut Notes::default());
        assert_eq!(ids(&r.get("sample").unwrap()), ["127.0.0.1:sample:1"]);
    }

    #[test]
    fn a_registered_service_takes_the_newest_registrations_settings_and_parks_what_is_not_up() {
        let mut regs = Registrations::default();
        let (k, v) = stored_with("HW", "h:hw:1", 1, "UP", "api/v1", 1_000, 1_000);
        regs.put(&k, &v);
        let (k, v) = stored_with("HW", "h:hw:2", 2, "UP", "api/v2", 2_000, 2_000);
        regs.put(&k, &v);
        put(&mut regs, "HW", "h:hw:3", 3, "OUT_OF_SERVICE");
        put(&mut regs, "HW", "h:hw:4", 4, "DOWN");
        let r = merge(&[], &regs, &Registry::default(), &mut Notes::default());
        let s = r.get("hw").unwrap();
        assert_eq!(s.def.routes[0].gateway_url, "api/v2", "the newest registration's routes");
        assert_eq!((s.def.title.as_str(), s.def.scheme), ("Registered", Scheme::Bypass));
        assert_eq!(ids(&s), ["h:hw:1", "h:hw:2"]);
        assert_eq!(
            s.parked.iter().map(|p| (p.instance.id.as_str(), p.status.as_str())).collect::<Vec<_>>(),
            [("h:hw:3", "OUT_OF_SERVICE"), ("h:hw:4", "DOWN")]
        );
        // Parked instances are never candidates, not even as a last resort.
        for i in &s.instances {
            i.failed(std::time::Duration::from_secs(60));
        }
        let c = s.candidates();
        assert_eq!(c.len(), 2);
        assert!(c.iter().all(|i| i.id != "h:hw:3" && i.id != "h:hw:4"));
        assert!(s.instance("h:hw:4").is_none());
        assert_eq!(s.instances[0].health_url.as_ref().unwrap().to_string(), "https://127.0.0.1:1/application/health");
    }

    #[test]
    fn instances_keep_their_health_and_identity_across_rebuilds_and_status_changes() {
        let mut regs = Registrations::default();
        put(&mut regs, "SAMPLE", "127.0.0.1:sample:2", 2, "UP");
        let mut notes = Notes::default();
        let first = merge(&statics(1), &regs, &Registry::default(), &mut notes);
        let (stat, reg) = {
            let s = first.get("sample").unwrap();
            (s.instances[0].clone(), s.instances[1].clone())
        };
        reg.failed(std::time::Duration::from_secs(60));
        stat.requests.fetch_add(7, std::sync::atomic::Ordering::Relaxed);
        // Out of service, then back: the same instance, still ejected.
        put(&mut regs, "SAMPLE", "127.0.0.1:sample:2", 2, "OUT_OF_SERVICE");
        let second = merge(&statics(1), &regs, &first, &mut notes);
        assert!(Arc::ptr_eq(&second.get("sample").unwrap().parked[0].instance, &reg));
        put(&mut regs, "SAMPLE", "127.0.0.1:sample:2", 2, "UP");
        let third = merge(&statics(1), &regs, &second, &mut notes);
        let s = third.get("sample").unwrap();
        assert!(Arc::ptr_eq(&s.instances[0], &stat) && Arc::ptr_eq(&s.instances[1], &reg));
        assert!(!s.instances[1].available(), "the ejection survived the rebuilds");
        // Another base URL under the same id is another instance.
        put(&mut regs, "SAMPLE", "127.0.0.1:sample:2", 3, "UP");
        let fourth = merge(&statics(1), &regs, &third, &mut notes);
        assert!(!Arc::ptr_eq(&fourth.get("sample").unwrap().instances[1], &reg));
    }

    #[test]
    fn an_unreadable_registration_is_skipped_and_the_others_still_route() {
        let mut regs = Registrations::default();
        put(&mut regs, "HW", "h:hw:1", 1, "UP");
        regs.put("BROKEN/x", "{not a registration");
        // Valid JSON, invalid metadata (no route).
        let (k, v) = stored_with("BAD", "h:bad:1", 1, "UP", "api/v1", 1_000, 1_000);
        regs.put(&k, &v.replace("apiml.routes.api_v1.gatewayUrl", "apiml.routes.api_v1.nonsense"));
        let r = merge(&[], &regs, &Registry::default(), &mut Notes::default());
        assert_eq!(r.all().map(|s| s.def.service_id.as_str()).collect::<Vec<_>>(), ["hw"]);
    }
}
