//! One registered instance, as Eureka's `InstanceInfo` has it: read from what an enabler
//! sends (checked field by field, so nothing half-valid is stored) and rendered back in
//! Eureka's JSON shape (the XML writer renders the same shape).
//!
//! Eureka's JSON has a few habits the reader accepts: numbers as strings (`"$":"10020"`),
//! booleans as strings (`"@enabled":"true"`), and metadata values of any scalar type. Unknown
//! fields are ignored, as Eureka's server does.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde_json::{Map, Value, json};

use crate::error::DiscoveryError;

/// Longest instance id, app name or host name accepted.
const MAX_NAME: usize = 253;
/// Most metadata keys, and the longest key and value.
const MAX_METADATA: usize = 512;
const MAX_METADATA_KEY: usize = 256;
const MAX_METADATA_VALUE: usize = 4096;
/// Longest URL field.
const MAX_URL: usize = 2048;

/// An instance's status, Eureka's `InstanceStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Ready for traffic.
    Up,
    /// Not working.
    Down,
    /// Still starting.
    Starting,
    /// Taken out of traffic on purpose (a status override).
    OutOfService,
    /// Not known.
    Unknown,
}

impl Status {
    /// Parses Eureka's spelling (`UP`, `OUT_OF_SERVICE`, ...), case-insensitively.
    pub fn parse(s: &str) -> Option<Status> {
        Some(match s.to_ascii_uppercase().as_str() {
            "UP" => Status::Up,
            "DOWN" => Status::Down,
            "STARTING" => Status::Starting,
            "OUT_OF_SERVICE" => Status::OutOfService,
            "UNKNOWN" => Status::Unknown,
            _ => return None,
        })
    }

    /// Eureka's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Up => "UP",
            Status::Down => "DOWN",
            Status::Starting => "STARTING",
            Status::OutOfService => "OUT_OF_SERVICE",
            Status::Unknown => "UNKNOWN",
        }
    }
}

/// A port and whether the instance serves on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Port {
    /// The port number.
    pub number: u16,
    /// `@enabled`.
    pub enabled: bool,
}

/// The lease an instance asked for (`leaseInfo`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// How often it renews (`renewalIntervalInSecs`, Eureka's default 30).
    pub renewal_secs: u32,
    /// How long after the last renewal it expires (`durationInSecs`, Eureka's default 90).
    pub duration_secs: u32,
}

impl Default for Lease {
    fn default() -> Self {
        Lease { renewal_secs: 30, duration_secs: 90 }
    }
}

/// One registered instance of an application.
#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    /// The application, upper-case as Eureka keeps it (`DISCOVERABLECLIENT`).
    pub app: String,
    /// Unique within the app; Zowe's enablers use `host:serviceId:port`.
    pub instance_id: String,
    /// Where to reach it.
    pub host_name: String,
    /// Its address, when it sent one.
    pub ip_addr: Option<IpAddr>,
    /// `vipAddress` (Zowe: the serviceId).
    pub vip_address: String,
    /// `secureVipAddress` (Zowe: the serviceId).
    pub secure_vip_address: String,
    /// What the instance says of itself.
    pub status: Status,
    /// The plain port.
    pub port: Option<Port>,
    /// The TLS port.
    pub secure_port: Option<Port>,
    /// `homePageUrl`.
    pub home_page_url: Option<String>,
    /// `statusPageUrl`.
    pub status_page_url: Option<String>,
    /// `healthCheckUrl` (or `secureHealthCheckUrl`).
    pub health_check_url: Option<String>,
    /// `dataCenterInfo`, kept as sent (clients read it back).
    pub data_center_info: Value,
    /// The lease it asked for.
    pub lease: Lease,
    /// Flat metadata (`apiml.routes.api_v1.gatewayUrl` -> `api/v1`).
    pub metadata: BTreeMap<String, String>,
}

/// When the registry last saw an instance; rendered into `leaseInfo` and the timestamps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Times {
    /// First registration, milliseconds since the epoch.
    pub registered_ms: u64,
    /// Last renewal (heartbeat).
    pub renewed_ms: u64,
    /// Last change of the registration.
    pub updated_ms: u64,
}

impl Instance {
    /// Reads the body of `POST /eureka/apps/{app}` (`{"instance":{...}}`, or the bare instance
    /// object), checking every field it uses; `app` is the path's application.
    pub fn from_registration(app: &str, body: &Value) -> Result<Instance, DiscoveryError> {
        let v = match body.get("instance") {
            Some(inner) => inner,
            None => body,
        };
        let Some(o) = v.as_object() else {
            return Err(DiscoveryError::BadBody("expected an object {\"instance\":{...}}".to_owned()));
        };
        check_name("app (in the path)", app)?;
        let app = app.to_ascii_uppercase();
        if let Some(body_app) = opt_str(o, "app")?
            && !body_app.eq_ignore_ascii_case(&app)
        {
            return Err(DiscoveryError::AppMismatch { path: app, body: body_app.to_owned() });
        }
        let host_name = opt_str(o, "hostName")?.ok_or_else(|| DiscoveryError::field("hostName", "is required"))?;
        check_host("hostName", host_name)?;
        let instance_id = opt_str(o, "instanceId")?.unwrap_or(host_name);
        check_instance_id(instance_id)?;
        let ip_addr = match opt_str(o, "ipAddr")? {
            None | Some("") => None,
            Some(s) => Some(s.parse::<IpAddr>().map_err(|_| DiscoveryError::field("ipAddr", format!("`{s}` is not an IP address")))?),
        };
        let vip_address = opt_str(o, "vipAddress")?.map(str::to_owned).unwrap_or_else(|| app.to_ascii_lowercase());
        let secure_vip_address = opt_str(o, "secureVipAddress")?.map(str::to_owned).unwrap_or_else(|| vip_address.clone());
        check_name("vipAddress", &vip_address)?;
        check_name("secureVipAddress", &secure_vip_address)?;
        let status = match opt_str(o, "status")? {
            None => Status::Up,
            Some(s) => Status::parse(s).ok_or_else(|| {
                DiscoveryError::field("status", format!("`{s}` is not one of UP, DOWN, STARTING, OUT_OF_SERVICE, UNKNOWN"))
            })?,
        };
        let port = read_port(o, "port")?;
        let secure_port = read_port(o, "securePort")?;
        if !port.is_some_and(|p| p.enabled) && !secure_port.is_some_and(|p| p.enabled) {
            return Err(DiscoveryError::field("port", "neither `port` nor `securePort` is enabled"));
        }
        let health_check_url = match url(o, "secureHealthCheckUrl")? {
            Some(u) => Some(u),
            None => url(o, "healthCheckUrl")?,
        };
        Ok(Instance {
            app,
            instance_id: instance_id.to_owned(),
            host_name: host_name.to_owned(),
            ip_addr,
            vip_address,
            secure_vip_address,
            status,
            port,
            secure_port,
            home_page_url: url(o, "homePageUrl")?,
            status_page_url: url(o, "statusPageUrl")?,
            health_check_url,
            data_center_info: o.get("dataCenterInfo").cloned().unwrap_or_else(default_data_center),
            lease: lease(o)?,
            metadata: metadata(o)?,
        })
    }

    /// The base URL requests are routed to: the TLS port when enabled, else the plain one.
    pub fn base_url(&self) -> String {
        let host = match self.host_name.parse::<IpAddr>() {
            Ok(IpAddr::V6(a)) => format!("[{a}]"),
            _ => self.host_name.clone(),
        };
        match (self.secure_port, self.port) {
            (Some(p), _) if p.enabled => format!("https://{host}:{}", p.number),
            (_, Some(p)) => format!("http://{host}:{}", p.number),
            (Some(p), None) => format!("https://{host}:{}", p.number),
            (None, None) => format!("https://{host}"),
        }
    }

    /// Eureka's JSON of this instance (the inside of `{"instance": ...}`), as `GET /eureka/apps`
    /// answers it; `effective` is the status after any override.
    pub fn to_eureka(&self, effective: Status, overridden: Option<Status>, times: Times, action: &str) -> Value {
        let port = |p: Option<Port>, default_enabled: bool| match p {
            Some(p) => json!({"$": p.number, "@enabled": if p.enabled { "true" } else { "false" }}),
            None => json!({"$": 0, "@enabled": if default_enabled { "true" } else { "false" }}),
        };
        let mut o = Map::new();
        o.insert("instanceId".into(), json!(self.instance_id));
        o.insert("hostName".into(), json!(self.host_name));
        o.insert("app".into(), json!(self.app));
        o.insert("ipAddr".into(), json!(self.ip_addr.map(|a| a.to_string()).unwrap_or_default()));
        o.insert("status".into(), json!(effective.as_str()));
        o.insert("overriddenStatus".into(), json!(overridden.unwrap_or(Status::Unknown).as_str()));
        o.insert("port".into(), port(self.port, false));
        o.insert("securePort".into(), port(self.secure_port, false));
        o.insert("countryId".into(), json!(1));
        o.insert("dataCenterInfo".into(), self.data_center_info.clone());
        o.insert(
            "leaseInfo".into(),
            json!({
                "renewalIntervalInSecs": self.lease.renewal_secs,
                "durationInSecs": self.lease.duration_secs,
                "registrationTimestamp": times.registered_ms,
                "lastRenewalTimestamp": times.renewed_ms,
                "evictionTimestamp": 0,
                "serviceUpTimestamp": times.registered_ms,
            }),
        );
        o.insert("metadata".into(), Value::Object(self.metadata.iter().map(|(k, v)| (k.clone(), json!(v))).collect()));
        for (k, v) in
            [("homePageUrl", &self.home_page_url), ("statusPageUrl", &self.status_page_url), ("healthCheckUrl", &self.health_check_url)]
        {
            o.insert(k.into(), json!(v.clone().unwrap_or_default()));
        }
        o.insert("vipAddress".into(), json!(self.vip_address));
        o.insert("secureVipAddress".into(), json!(self.secure_vip_address));
        o.insert("isCoordinatingDiscoveryServer".into(), json!("false"));
        o.insert("lastUpdatedTimestamp".into(), json!(times.updated_ms.to_string()));
        o.insert("lastDirtyTimestamp".into(), json!(times.updated_ms.to_string()));
        o.insert("actionType".into(), json!(action));
        Value::Object(o)
    }
}

fn default_data_center() -> Value {
    json!({"@class": "com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo", "name": "MyOwn"})
}

/// A scalar as text: Eureka clients send numbers and booleans as either.
fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn opt_str<'a>(o: &'a Map<String, Value>, field: &str) -> Result<Option<&'a str>, DiscoveryError> {
    match o.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(_) => Err(DiscoveryError::field(field, "must be a string")),
    }
}

/// Checks an application name as a path names it.
pub fn check_app(app: &str) -> Result<(), DiscoveryError> {
    check_name("app (in the path)", app)
}

fn check_name(field: &str, s: &str) -> Result<(), DiscoveryError> {
    if s.is_empty() || s.len() > MAX_NAME {
        return Err(DiscoveryError::field(field, format!("must be 1 to {MAX_NAME} characters")));
    }
    if !s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')) {
        return Err(DiscoveryError::field(field, format!("`{}` may hold only letters, digits, `-`, `_` and `.`", s.escape_debug())));
    }
    Ok(())
}

fn check_host(field: &str, s: &str) -> Result<(), DiscoveryError> {
    if s.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    if s.is_empty() || s.len() > MAX_NAME || s.split('.').any(|l| l.is_empty() || l.len() > 63) {
        return Err(DiscoveryError::field(field, format!("`{}` is not a host name", s.escape_debug())));
    }
    if !s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_')) {
        return Err(DiscoveryError::field(field, format!("`{}` is not a host name", s.escape_debug())));
    }
    Ok(())
}

/// An instance id is part of request paths (`/eureka/apps/{app}/{id}`) and of storage keys:
/// no separators, no escapes, no dot segments, nothing unprintable.
pub fn check_instance_id(s: &str) -> Result<(), DiscoveryError> {
    if s.is_empty() || s.len() > MAX_NAME {
        return Err(DiscoveryError::field("instanceId", format!("must be 1 to {MAX_NAME} characters")));
    }
    if s == "." || s == ".." {
        return Err(DiscoveryError::field("instanceId", "may not be `.` or `..`"));
    }
    if !s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'@')) {
        return Err(DiscoveryError::field(
            "instanceId",
            format!("`{}` may hold only letters, digits, `-`, `_`, `.`, `:` and `@`", s.escape_debug()),
        ));
    }
    Ok(())
}

fn read_port(o: &Map<String, Value>, field: &str) -> Result<Option<Port>, DiscoveryError> {
    let (number, enabled) = match o.get(field) {
        None | Some(Value::Null) => return Ok(None),
        // A bare number: enabled (some clients send it so).
        Some(n @ (Value::Number(_) | Value::String(_))) => (scalar(n), Some("true".to_owned())),
        Some(Value::Object(p)) => (p.get("$").and_then(scalar), p.get("@enabled").and_then(scalar)),
        Some(_) => return Err(DiscoveryError::field(field, "must be {\"$\": port, \"@enabled\": \"true\"|\"false\"}")),
    };
    let number = number.ok_or_else(|| DiscoveryError::field(format!("{field}.$"), "is required"))?;
    // How Eureka itself renders a port the instance does not have.
    if number.trim() == "0" && enabled.as_deref().is_some_and(|e| e.eq_ignore_ascii_case("false")) {
        return Ok(None);
    }
    let number: u16 = number
        .trim()
        .parse()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| DiscoveryError::field(format!("{field}.$"), format!("`{}` is not a port (1-65535)", number.escape_debug())))?;
    let enabled = match enabled.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None => field == "port",
        Some("true") => true,
        Some("false") => false,
        Some(other) => return Err(DiscoveryError::field(format!("{field}.@enabled"), format!("`{other}` is not true or false"))),
    };
    Ok(Some(Port { number, enabled }))
}

fn url(o: &Map<String, Value>, field: &str) -> Result<Option<String>, DiscoveryError> {
    let Some(s) = opt_str(o, field)? else { return Ok(None) };
    if s.is_empty() {
        return Ok(None);
    }
    let lower = s.to_ascii_lowercase();
    if s.len() > MAX_URL || !(lower.starts_with("http://") || lower.starts_with("https://")) || s.chars().any(char::is_control) {
        return Err(DiscoveryError::field(field, format!("`{}` is not an http(s) URL", s.escape_debug())));
    }
    Ok(Some(s.to_owned()))
}

fn lease(o: &Map<String, Value>) -> Result<Lease, DiscoveryError> {
    let mut lease = Lease::default();
    let Some(info) = o.get("leaseInfo").filter(|v| !v.is_null()) else { return Ok(lease) };
    let Some(info) = info.as_object() else { return Err(DiscoveryError::field("leaseInfo", "must be an object")) };
    for (key, slot) in [("renewalIntervalInSecs", &mut lease.renewal_secs), ("durationInSecs", &mut lease.duration_secs)] {
        if let Some(v) = info.get(key) {
            let text = scalar(v).ok_or_else(|| DiscoveryError::field(format!("leaseInfo.{key}"), "must be a number"))?;
            *slot = text.trim().parse::<u32>().ok().filter(|n| (1..=3600).contains(n)).ok_or_else(|| {
                DiscoveryError::field(format!("leaseInfo.{key}"), format!("`{}` is not 1 to 3600 seconds", text.escape_debug()))
            })?;
        }
    }
    if lease.duration_secs < lease.renewal_secs {
        return Err(DiscoveryError::field(
            "leaseInfo.durationInSecs",
            "is shorter than renewalIntervalInSecs: the lease would expire between renewals",
        ));
    }
    Ok(lease)
}

/// Checks flat metadata (after a `PUT .../metadata` update) by a registration's rules.
pub fn check_metadata(m: &BTreeMap<String, String>) -> Result<(), DiscoveryError> {
    let mut o = Map::new();
    o.insert("metadata".into(), Value::Object(m.iter().map(|(k, v)| (k.clone(), json!(v))).collect()));
    metadata(&o).map(drop)
}

fn metadata(o: &Map<String, Value>) -> Result<BTreeMap<String, String>, DiscoveryError> {
    let mut out = BTreeMap::new();
    let Some(m) = o.get("metadata").filter(|v| !v.is_null()) else { return Ok(out) };
    let Some(m) = m.as_object() else { return Err(DiscoveryError::field("metadata", "must be an object of strings")) };
    if m.len() > MAX_METADATA {
        return Err(DiscoveryError::field("metadata", format!("has {} keys, at most {MAX_METADATA} are kept", m.len())));
    }
    for (k, v) in m {
        // The Java client sends `@class` for its metadata map type.
        if k == "@class" || (k == "$" && v.as_str().is_some_and(|t| t.trim().is_empty())) {
            continue;
        }
        // Keys are element names in Eureka's XML: a letter or `_`, then letters, digits, `.`, `_`, `-`.
        let name_like = k.bytes().next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
            && k.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if k.len() > MAX_METADATA_KEY || !name_like {
            return Err(DiscoveryError::field(
                "metadata",
                format!(
                    "key `{}` is not a name (a letter, then letters, digits, `.`, `_`, `-`; at most {MAX_METADATA_KEY})",
                    k.escape_debug()
                ),
            ));
        }
        let text = scalar(v).ok_or_else(|| DiscoveryError::field(format!("metadata.{k}"), "must be a string"))?;
        if text.len() > MAX_METADATA_VALUE {
            return Err(DiscoveryError::field(format!("metadata.{k}"), format!("is longer than {MAX_METADATA_VALUE} characters")));
        }
        out.insert(k.clone(), text);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zowe_instance() -> Value {
        json!({"instance": {
            "instanceId": "localhost:hwexpress:10020",
            "app": "hwexpress",
            "hostName": "localhost",
            "ipAddr": "127.0.0.1",
            "vipAddress": "hwexpress",
            "secureVipAddress": "hwexpress",
            "status": "UP",
            "port": {"$": 10020, "@enabled": false},
            "securePort": {"$": "10020", "@enabled": "true"},
            "homePageUrl": "https://localhost:10020/",
            "healthCheckUrl": "https://localhost:10020/api/v1/status",
            "dataCenterInfo": {"@class": "com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo", "name": "MyOwn"},
            "leaseInfo": {"renewalIntervalInSecs": 30, "durationInSecs": 90},
            "metadata": {"apiml.routes.api_v1.gatewayUrl": "api/v1", "apiml.routes.api_v1.serviceUrl": "/api/v1", "apiml.service.title": "HW", "x": 5}
        }})
    }

    #[test]
    fn an_enabler_registration_reads_with_string_numbers_and_booleans() {
        let i = Instance::from_registration("HWEXPRESS", &zowe_instance()).unwrap();
        assert_eq!(i.app, "HWEXPRESS");
        assert_eq!(i.instance_id, "localhost:hwexpress:10020");
        assert_eq!(i.secure_port, Some(Port { number: 10020, enabled: true }));
        assert_eq!(i.port, Some(Port { number: 10020, enabled: false }));
        assert_eq!(i.base_url(), "https://localhost:10020");
        assert_eq!(i.metadata["x"], "5");
        assert_eq!(i.lease, Lease { renewal_secs: 30, duration_secs: 90 });
        let out = i.to_eureka(Status::Up, None, Times::default(), "ADDED");
        assert_eq!(out["securePort"], json!({"$": 10020, "@enabled": "true"}));
        assert_eq!(out["metadata"]["apiml.service.title"], "HW");
        // What it renders reads back the same.
        assert_eq!(Instance::from_registration("hwexpress", &out).unwrap(), i);
    }

    #[test]
    fn hostile_or_broken_fields_are_refused_naming_the_field() {
        let cases: Vec<(&str, Value, &str)> = vec![
            ("instanceId", json!("../../etc"), "instanceId"),
            ("instanceId", json!("a/b"), "instanceId"),
            ("instanceId", json!("a%2fb"), "instanceId"),
            ("instanceId", json!(".."), "instanceId"),
            ("instanceId", json!("a\nb"), "instanceId"),
            ("hostName", json!("evil host"), "hostName"),
            ("hostName", json!(null), "hostName"),
            ("ipAddr", json!("1.2.3"), "ipAddr"),
            ("status", json!("MAYBE"), "status"),
            ("securePort", json!({"$": 70000, "@enabled": "true"}), "securePort.$"),
            ("securePort", json!({"$": "x", "@enabled": "true"}), "securePort.$"),
            ("securePort", json!({"$": 1, "@enabled": "yes"}), "securePort.@enabled"),
            ("securePort", json!({"$": 1, "@enabled": "false"}), "port"),
            ("homePageUrl", json!("javascript:alert(1)"), "homePageUrl"),
            ("leaseInfo", json!({"durationInSecs": 0}), "leaseInfo.durationInSecs"),
            ("leaseInfo", json!({"renewalIntervalInSecs": 60, "durationInSecs": 30}), "leaseInfo.durationInSecs"),
            ("metadata", json!(["a"]), "metadata"),
            ("metadata", json!({"k": {"nested": 1}}), "metadata.k"),
            ("metadata", json!({"a b": "1"}), "metadata"),
            ("metadata", json!({"<x>": "1"}), "metadata"),
            ("vipAddress", json!("a/b"), "vipAddress"),
        ];
        for (field, value, named) in cases {
            let mut body = zowe_instance();
            body["instance"][field] = value.clone();
            match Instance::from_registration("hwexpress", &body) {
                Err(DiscoveryError::BadField { field: f, .. }) => assert_eq!(f, named, "{field} = {value}"),
                other => panic!("{field} = {value}: {other:?}"),
            }
        }
    }

    #[test]
    fn the_body_must_name_the_paths_app_and_be_an_object() {
        let e = Instance::from_registration("OTHER", &zowe_instance()).unwrap_err();
        assert!(matches!(e, DiscoveryError::AppMismatch { .. }), "{e:?}");
        assert_eq!(e.status(), 400);
        assert!(matches!(Instance::from_registration("a", &json!([1])), Err(DiscoveryError::BadBody(_))));
        assert!(matches!(Instance::from_registration("a/b", &zowe_instance()), Err(DiscoveryError::BadField { .. })));
    }

    #[test]
    fn a_missing_instance_id_is_the_host_name_and_an_ipv6_host_is_bracketed() {
        let mut body = zowe_instance();
        body["instance"].as_object_mut().unwrap().remove("instanceId");
        body["instance"]["hostName"] = json!("::1");
        let i = Instance::from_registration("hwexpress", &body).unwrap();
        assert_eq!(i.instance_id, "::1");
        assert_eq!(i.base_url(), "https://[::1]:10020");
    }
}
