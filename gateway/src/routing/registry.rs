//! The services and their instances: which instance gets a request (round-robin over the
//! healthy ones, then the others as fallbacks), and what their health is (active checks on
//! `healthCheckRelativeUrl`, passive ejection on failures with gradual return).
//!
//! A service's instances come from its static definition, from Eureka registrations, or both
//! (see [`super::merge`]); each instance says where it came from ([`Origin`]). Registered
//! instances whose Eureka status is not UP are kept aside ([`Parked`]): listed, never a
//! candidate, not even a last resort.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::Uri;

use super::definitions::ServiceDef;

/// Longest ejection after repeated failures.
const MAX_EJECTION: Duration = Duration::from_secs(60);

#[derive(Debug)]
struct Health {
    /// Result of the last active check (true when the service has none).
    checked_up: bool,
    /// Not used until then, after passive failures.
    ejected_until: Option<Instant>,
    /// Consecutive passive failures.
    failures: u32,
}

/// Where an instance came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A static definition file (it stays until the file says otherwise).
    Static {
        /// The definition file.
        file: PathBuf,
    },
    /// A Eureka registration (it stays while the registration is in the caching service).
    Eureka {
        /// Its key in the `eurekaRegistrations` map (`APP/instanceId`).
        key: String,
    },
}

impl Origin {
    /// `static` or `eureka`, for listings.
    pub fn name(&self) -> &'static str {
        match self {
            Origin::Static { .. } => "static",
            Origin::Eureka { .. } => "eureka",
        }
    }
}

/// One instance of a service.
#[derive(Debug)]
pub struct Instance {
    /// `host:serviceId:port`, as Eureka names instances (what `X-InstanceId` selects).
    pub id: String,
    /// Its base URL.
    pub base: Uri,
    /// Where it came from.
    pub origin: Origin,
    /// Its own health check (a registration's `healthCheckUrl`); without one, the service's
    /// `healthCheckRelativeUrl` applies.
    pub health_url: Option<Uri>,
    health: Mutex<Health>,
    /// Requests sent to it.
    pub requests: AtomicU64,
    /// Its metric handles, kept off the request path.
    pub metrics: InstanceMetrics,
}

/// The metric handles of one instance (`service` and `instance` labels).
pub struct InstanceMetrics {
    /// `ROUTED_REQUESTS_TOTAL` by status.
    pub routed: crate::metrics::ByStatus,
    upstream: std::sync::OnceLock<metrics::Histogram>,
    labels: [(&'static str, String); 2],
}

impl InstanceMetrics {
    fn new(service: &str, instance: &str) -> InstanceMetrics {
        let labels = [("service", service.to_owned()), ("instance", instance.to_owned())];
        let routed = crate::metrics::ByStatus::new(
            crate::metrics::ROUTED_REQUESTS_TOTAL,
            labels.iter().map(|(k, v)| metrics::Label::new(*k, v.clone())).collect(),
        );
        InstanceMetrics { routed, upstream: std::sync::OnceLock::new(), labels }
    }

    /// `ROUTED_UPSTREAM_SECONDS` of this instance.
    pub fn upstream(&self) -> &metrics::Histogram {
        self.upstream.get_or_init(|| metrics::histogram!(crate::metrics::ROUTED_UPSTREAM_SECONDS, &self.labels))
    }
}

impl std::fmt::Debug for InstanceMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InstanceMetrics")
    }
}

impl Instance {
    /// A new instance, healthy until a check or a failure says otherwise.
    pub fn new(service_id: &str, id: String, base: Uri, origin: Origin, health_url: Option<Uri>) -> Instance {
        Instance {
            metrics: InstanceMetrics::new(service_id, &id),
            id,
            base,
            origin,
            health_url,
            health: Mutex::new(Health { checked_up: true, ejected_until: None, failures: 0 }),
            requests: AtomicU64::new(0),
        }
    }

    fn health(&self) -> std::sync::MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether new requests should go here first.
    pub fn available(&self) -> bool {
        let h = self.health();
        h.checked_up && h.ejected_until.is_none_or(|t| Instant::now() >= t)
    }

    /// `UP` or `DOWN`, for listings.
    pub fn status(&self) -> &'static str {
        if self.available() { "UP" } else { "DOWN" }
    }

    /// A failed connect, reset or 502/503: eject for `base` doubled per consecutive failure.
    /// Failures of requests already in flight while it is ejected do not count again: one
    /// outage is one failure, not one per request that met it.
    pub fn failed(&self, base: Duration) {
        let mut h = self.health();
        if h.ejected_until.is_some_and(|t| Instant::now() < t) {
            return;
        }
        h.failures = h.failures.saturating_add(1);
        let factor = 1u32 << h.failures.saturating_sub(1).min(6);
        let ejection = base.saturating_mul(factor).min(MAX_EJECTION);
        h.ejected_until = Some(Instant::now() + ejection);
        tracing::warn!(instance = %self.id, ?ejection, failures = h.failures, "instance ejected");
    }

    /// A success: back in rotation at once.
    pub fn succeeded(&self) {
        let mut h = self.health();
        if h.failures > 0 || h.ejected_until.is_some() {
            tracing::info!(instance = %self.id, "instance back in rotation");
        }
        h.failures = 0;
        h.ejected_until = None;
    }

    /// The outcome of an active health check.
    pub fn checked(&self, up: bool) {
        let mut h = self.health();
        if h.checked_up != up {
            tracing::info!(instance = %self.id, up, "instance health changed");
        }
        // An instance seen down and now up again (restarted) is back at once. One whose health
        // endpoint stayed up while requests failed serves out its ejection, and keeps its count
        // of failures until a request succeeds: a passing check proves nothing about requests,
        // so the next failure ejects it for twice as long.
        let recovered = up && !h.checked_up;
        h.checked_up = up;
        if recovered {
            h.ejected_until = None;
            h.failures = 0;
        }
    }
}

/// A registered instance whose Eureka status is not UP: listed, never sent a request.
#[derive(Debug, Clone)]
pub struct Parked {
    /// The instance (kept, so its health and metrics survive a return to UP).
    pub instance: Arc<Instance>,
    /// Its Eureka status (DOWN, OUT_OF_SERVICE, STARTING, UNKNOWN).
    pub status: plexgate_discovery::Status,
}

/// One service and its instances.
#[derive(Debug)]
pub struct Service {
    /// Its definition (for a service only registered, made from the registration's metadata).
    pub def: ServiceDef,
    /// The instances that may get requests: static ones in definition order, then the
    /// registered ones that are UP.
    pub instances: Vec<Arc<Instance>>,
    /// Registered instances that are not UP.
    pub parked: Vec<Parked>,
    next: AtomicUsize,
}

impl Service {
    /// A service with its routable and parked instances.
    pub fn new(def: ServiceDef, instances: Vec<Arc<Instance>>, parked: Vec<Parked>) -> Service {
        Service { def, instances, parked, next: AtomicUsize::new(0) }
    }

    /// Instances to try, in order: the available ones starting at the round-robin position,
    /// then the unavailable ones (a last resort, still better than refusing).
    pub fn candidates(&self) -> Vec<Arc<Instance>> {
        let n = self.instances.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n.max(1);
        let rotated = (0..n).map(|i| self.instances[(start + i) % n].clone());
        let (up, down): (Vec<_>, Vec<_>) = rotated.partition(|i| i.available());
        up.into_iter().chain(down).collect()
    }

    /// The instance named by `X-InstanceId`.
    pub fn instance(&self, id: &str) -> Option<Arc<Instance>> {
        self.instances.iter().find(|i| i.id.eq_ignore_ascii_case(id)).cloned()
    }

    /// `UP` when any instance is available.
    pub fn status(&self) -> &'static str {
        if self.instances.iter().any(|i| i.available()) { "UP" } else { "DOWN" }
    }
}

/// Every service, by id.
#[derive(Debug, Default)]
pub struct Registry {
    services: BTreeMap<String, Arc<Service>>,
}

impl Registry {
    /// From checked definitions alone.
    pub fn new(defs: Vec<ServiceDef>) -> Registry {
        super::merge::merge(&defs, &super::dynamic::Registrations::default(), &Registry::default(), &mut super::merge::Notes::default())
    }

    /// From services, by id.
    pub fn from_services(services: impl IntoIterator<Item = Service>) -> Registry {
        Registry { services: services.into_iter().map(|s| (s.def.service_id.clone(), Arc::new(s))).collect() }
    }

    /// Every instance, routable or parked, by (service id, instance id): what a rebuild reuses.
    pub fn instances_by_id(&self) -> std::collections::HashMap<(&str, &str), &Arc<Instance>> {
        self.services
            .values()
            .flat_map(|s| {
                let id = s.def.service_id.as_str();
                s.instances.iter().chain(s.parked.iter().map(|p| &p.instance)).map(move |i| ((id, i.id.as_str()), i))
            })
            .collect()
    }

    /// A service by id (case-insensitive).
    pub fn get(&self, id: &str) -> Option<Arc<Service>> {
        // Ids are stored lower case; most paths name them so, and then nothing is allocated.
        match self.services.get(id) {
            Some(s) => Some(s.clone()),
            None if id.bytes().any(|b| b.is_ascii_uppercase()) || !id.is_ascii() => self.services.get(&id.to_lowercase()).cloned(),
            None => None,
        }
    }

    /// Every service.
    pub fn all(&self) -> impl Iterator<Item = &Arc<Service>> {
        self.services.values()
    }
}
