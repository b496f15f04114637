//! A registration as the registry keeps it: the instance, its lease times and any status
//! override, in the form stored in the caching service (one map entry per instance, so every
//! gateway follows registrations through the change feed as it follows revocations), and the
//! `applications` document Eureka clients read.

use serde_json::{Value, json};

use crate::error::DiscoveryError;
use crate::instance::{Instance, Status, Times};

/// The caching-service map that holds registrations.
pub const MAP: &str = "eurekaRegistrations";

/// One registered instance with what the registry knows of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// What the instance registered.
    pub instance: Instance,
    /// A status set by `PUT .../status?value=` (Eureka's override), until deleted.
    pub overridden: Option<Status>,
    /// Registration, renewal and change times.
    pub times: Times,
}

impl Record {
    /// A new registration at `now_ms`; a re-registration keeps the first registration time.
    pub fn registered(instance: Instance, previous: Option<&Record>, now_ms: u64) -> Record {
        let registered_ms = previous.map_or(now_ms, |p| p.times.registered_ms);
        Record {
            instance,
            overridden: previous.and_then(|p| p.overridden),
            times: Times { registered_ms, renewed_ms: now_ms, updated_ms: now_ms },
        }
    }

    /// The map key: `APP/instanceId` (neither may hold a `/`: both are checked at registration).
    pub fn key(&self) -> String {
        key(&self.instance.app, &self.instance.instance_id)
    }

    /// The status clients see: the override when there is one.
    pub fn status(&self) -> Status {
        self.overridden.unwrap_or(self.instance.status)
    }

    /// Whether the lease ran out: no renewal for `durationInSecs`.
    pub fn expired(&self, now_ms: u64) -> bool {
        now_ms.saturating_sub(self.times.renewed_ms) > u64::from(self.instance.lease.duration_secs) * 1000
    }

    /// Whether the gateways may send it requests.
    pub fn routable(&self, now_ms: u64) -> bool {
        self.status() == Status::Up && !self.expired(now_ms)
    }

    /// The value stored in [`MAP`].
    pub fn to_stored(&self) -> String {
        json!({
            "instance": self.instance.to_eureka(self.instance.status, None, self.times, "ADDED"),
            "overridden": self.overridden.map(Status::as_str),
            "registered": self.times.registered_ms,
            "renewed": self.times.renewed_ms,
            "updated": self.times.updated_ms,
        })
        .to_string()
    }

    /// Reads a value of [`MAP`]; a value that does not read is an error naming why (it was
    /// written by this code, so that means a corrupt or foreign entry).
    pub fn from_stored(text: &str) -> Result<Record, DiscoveryError> {
        let v: Value = serde_json::from_str(text).map_err(|e| DiscoveryError::BadBody(format!("stored registration: {e}")))?;
        let app = v.pointer("/instance/app").and_then(Value::as_str).unwrap_or_default().to_owned();
        let instance = Instance::from_registration(&app, &v)?;
        let overridden = match v.get("overridden").and_then(Value::as_str) {
            None => None,
            Some(s) => Some(Status::parse(s).ok_or_else(|| DiscoveryError::field("overridden", format!("`{s}` is not a status")))?),
        };
        let ms = |k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
        Ok(Record {
            instance,
            overridden,
            times: Times { registered_ms: ms("registered"), renewed_ms: ms("renewed"), updated_ms: ms("updated") },
        })
    }

    /// Eureka's JSON of this instance, as the read calls answer it.
    pub fn to_eureka(&self, action: &str) -> Value {
        self.instance.to_eureka(self.status(), self.overridden, self.times, action)
    }
}

/// The map key of an instance.
pub fn key(app: &str, instance_id: &str) -> String {
    format!("{}/{instance_id}", app.to_ascii_uppercase())
}

/// Eureka's `applications` document of `records` (`GET /eureka/apps`, and `/apps/delta` with
/// the changed ones): applications sorted by name, `apps__hashcode` counting instances per
/// status as Eureka does (`DOWN_1_UP_3_`), so clients that compare it see a consistent view.
pub fn applications<'a>(records: impl IntoIterator<Item = &'a Record>, version: u64) -> Value {
    let mut apps: std::collections::BTreeMap<&str, Vec<&Record>> = std::collections::BTreeMap::new();
    for r in records {
        apps.entry(r.instance.app.as_str()).or_default().push(r);
    }
    let mut counts: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    let application: Vec<Value> = apps
        .iter()
        .map(|(name, rs)| {
            let mut rs = rs.clone();
            rs.sort_by(|a, b| a.instance.instance_id.cmp(&b.instance.instance_id));
            for r in &rs {
                *counts.entry(r.status().as_str()).or_default() += 1;
            }
            json!({"name": name, "instance": rs.iter().map(|r| r.to_eureka("ADDED")).collect::<Vec<_>>()})
        })
        .collect();
    let hashcode: String = counts.iter().map(|(s, n)| format!("{s}_{n}_")).collect();
    json!({"applications": {"versions__delta": version.to_string(), "apps__hashcode": hashcode, "application": application}})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::instance::Lease;

    fn instance(app: &str, id: &str) -> Instance {
        let body = json!({"instance": {"instanceId": id, "app": app, "hostName": "localhost", "status": "UP",
            "securePort": {"$": 10012, "@enabled": "true"}, "leaseInfo": {"renewalIntervalInSecs": 30, "durationInSecs": 90},
            "metadata": {"apiml.routes.api_v1.gatewayUrl": "api/v1"}}});
        Instance::from_registration(app, &body).unwrap()
    }

    #[test]
    fn a_record_round_trips_through_its_stored_form_and_keeps_its_override() {
        let mut r = Record::registered(instance("hw", "localhost:hw:1"), None, 1_000);
        r.overridden = Some(Status::OutOfService);
        let back = Record::from_stored(&r.to_stored()).unwrap();
        assert_eq!(back, r);
        assert_eq!(back.key(), "HW/localhost:hw:1");
        assert_eq!(back.status(), Status::OutOfService);
        assert!(!back.routable(1_000), "out of service gets no requests");
        // A re-registration keeps the first registration time and the override.
        let again = Record::registered(instance("hw", "localhost:hw:1"), Some(&back), 5_000);
        assert_eq!((again.times.registered_ms, again.times.renewed_ms, again.overridden), (1_000, 5_000, Some(Status::OutOfService)));
    }

    #[test]
    fn the_lease_expires_after_its_duration_without_a_renewal() {
        let r = Record::registered(instance("hw", "a"), None, 0);
        assert_eq!(r.instance.lease, Lease { renewal_secs: 30, duration_secs: 90 });
        assert!(r.routable(90_000));
        assert!(r.expired(90_001) && !r.routable(90_001));
    }

    #[test]
    fn applications_group_sort_and_count_by_status() {
        let mut down = Record::registered(instance("b", "b2"), None, 0);
        down.instance.status = Status::Down;
        let recs = [Record::registered(instance("b", "b1"), None, 0), Record::registered(instance("a", "a1"), None, 0), down];
        let doc = applications(recs.iter(), 7);
        assert_eq!(doc["applications"]["apps__hashcode"], "DOWN_1_UP_2_");
        assert_eq!(doc["applications"]["versions__delta"], "7");
        let apps = doc["applications"]["application"].as_array().unwrap();
        assert_eq!(apps.iter().map(|a| a["name"].as_str().unwrap()).collect::<Vec<_>>(), ["A", "B"]);
        assert_eq!(apps[1]["instance"][1]["status"], "DOWN");
    }

    #[test]
    fn a_corrupt_stored_value_is_an_error() {
        assert!(Record::from_stored("{").is_err());
        assert!(Record::from_stored("{\"instance\":{\"app\":\"x\"}}").is_err());
    }
}
