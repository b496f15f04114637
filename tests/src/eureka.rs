//! A Eureka REST client written for the tests (not plexgate's own code): every call Zowe's
//! onboarding enablers and Eureka's clients make against a discovery service, with the
//! registration bodies they send (JSON as the Node.js enabler, XML as the Java client), and a
//! small XML reader so a test can compare what XML and JSON reads answer.
//!
//! Replies are kept whole ([`Reply`]: status, content type, body) so tests assert each one.

use std::path::Path;
use std::time::Duration;

use reqwest::blocking::Client;
use serde_json::{Value, json};

/// What a read asks for in its `Accept` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accept {
    /// No `Accept` header (Eureka answers JSON then, as plexgate's contract says).
    Default,
    /// `application/json`.
    Json,
    /// `application/xml`.
    Xml,
}

/// One answer of the discovery service.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The HTTP status.
    pub status: u16,
    /// The `Content-Type` header (empty when none).
    pub content_type: String,
    /// The body as text.
    pub body: String,
}

impl Reply {
    /// The body as JSON; panics naming the reply when it is not.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }

    /// The body as an XML tree; panics naming the reply when it is not.
    pub fn xml(&self) -> Element {
        Element::parse(&self.body).unwrap_or_else(|e| panic!("not XML ({e}): {self:?}"))
    }
}

/// A client of one discovery service (`https://127.0.0.1:<port>/eureka`).
pub struct Eureka {
    /// `https://127.0.0.1:<port>/eureka` (no trailing slash).
    pub base: String,
    http: Client,
}

impl Eureka {
    /// A client of the discovery service on `port`, trusting `ca` and presenting `identity`.
    pub fn new(port: u16, ca: &Path, identity: Option<(&Path, &Path)>) -> Eureka {
        let http = Client::builder()
            .tls_backend_preconfigured(crate::https::tls_config(ca, identity))
            .timeout(Duration::from_secs(10))
            .build()
            .expect("https client");
        Eureka { base: format!("https://127.0.0.1:{port}/eureka"), http }
    }

    fn send(&self, req: reqwest::blocking::RequestBuilder) -> Reply {
        self.try_send(req).unwrap_or_else(|e| panic!("request to {} failed: {e:?}", self.base))
    }

    /// Sends `req`; the transport error (a refused handshake, a reset) when there is one.
    pub fn try_send(&self, req: reqwest::blocking::RequestBuilder) -> Result<Reply, reqwest::Error> {
        let r = req.send()?;
        let status = r.status().as_u16();
        let content_type = r.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        let body = r.text()?;
        Ok(Reply { status, content_type, body })
    }

    /// `<base><path>` (path starting with `/`, segments already encoded).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn instance_path(app: &str, id: &str) -> String {
        format!("/apps/{}/{}", enc(app), enc(id))
    }

    /// `POST /eureka/apps/{app}` with `body` as JSON (`{"instance":{...}}`).
    pub fn register_json(&self, app: &str, body: &Value) -> Reply {
        self.register_raw(app, "application/json", body.to_string())
    }

    /// `POST /eureka/apps/{app}` with `body` as JSON; the transport error when the call fails.
    pub fn try_register_json(&self, app: &str, body: &Value) -> Result<Reply, reqwest::Error> {
        self.try_send(
            self.http.post(self.url(&format!("/apps/{}", enc(app)))).header("Content-Type", "application/json").body(body.to_string()),
        )
    }

    /// `POST /eureka/apps/{app}` with an XML `<instance>` document.
    pub fn register_xml(&self, app: &str, xml: &str) -> Reply {
        self.register_raw(app, "application/xml", xml.to_owned())
    }

    /// `POST /eureka/apps/{app}` with any body and content type.
    pub fn register_raw(&self, app: &str, content_type: &str, body: String) -> Reply {
        self.send(self.http.post(self.url(&format!("/apps/{}", enc(app)))).header("Content-Type", content_type).body(body))
    }

    /// `PUT /eureka/apps/{app}/{id}`: a heartbeat (renewal), as the Node.js enabler sends it
    /// (no query, `Content-Type: application/json`, no body).
    pub fn heartbeat(&self, app: &str, id: &str) -> Reply {
        self.heartbeat_query(app, id, &[])
    }

    /// A heartbeat with a query, as the Java client sends it (`status`, `lastDirtyTimestamp`).
    pub fn heartbeat_query(&self, app: &str, id: &str, query: &[(&str, &str)]) -> Reply {
        self.send(self.http.put(self.url(&Self::instance_path(app, id))).header("Content-Type", "application/json").query(query))
    }

    /// `DELETE /eureka/apps/{app}/{id}`: deregistration.
    pub fn deregister(&self, app: &str, id: &str) -> Reply {
        self.send(self.http.delete(self.url(&Self::instance_path(app, id))).header("Content-Type", "application/json"))
    }

    /// `PUT /eureka/apps/{app}/{id}/status?value=<value>`: the status override.
    pub fn set_status(&self, app: &str, id: &str, value: &str) -> Reply {
        self.send(self.http.put(self.url(&format!("{}/status", Self::instance_path(app, id)))).query(&[("value", value)]))
    }

    /// `DELETE /eureka/apps/{app}/{id}/status`: the override removed.
    pub fn clear_status(&self, app: &str, id: &str) -> Reply {
        self.send(self.http.delete(self.url(&format!("{}/status", Self::instance_path(app, id)))))
    }

    /// `PUT /eureka/apps/{app}/{id}/metadata?k=v...`: metadata keys set (others kept).
    pub fn put_metadata(&self, app: &str, id: &str, pairs: &[(&str, &str)]) -> Reply {
        self.send(self.http.put(self.url(&format!("{}/metadata", Self::instance_path(app, id)))).query(pairs))
    }

    fn get(&self, path: &str, accept: Accept) -> Reply {
        let mut req = self.http.get(self.url(path));
        match accept {
            Accept::Default => {}
            Accept::Json => req = req.header("Accept", "application/json"),
            Accept::Xml => req = req.header("Accept", "application/xml"),
        }
        self.send(req)
    }

    /// `GET /eureka/apps`.
    pub fn apps(&self, accept: Accept) -> Reply {
        self.get("/apps", accept)
    }

    /// `GET /eureka/apps/delta`.
    pub fn delta(&self, accept: Accept) -> Reply {
        self.get("/apps/delta", accept)
    }

    /// `GET /eureka/apps/{app}`.
    pub fn app(&self, app: &str, accept: Accept) -> Reply {
        self.get(&format!("/apps/{}", enc(app)), accept)
    }

    /// `GET /eureka/apps/{app}/{id}`.
    pub fn instance(&self, app: &str, id: &str, accept: Accept) -> Reply {
        self.get(&Self::instance_path(app, id), accept)
    }

    /// Any request to `<base><path>` with `method` (for paths and methods tests pick).
    pub fn request(&self, method: reqwest::Method, path: &str) -> Result<Reply, reqwest::Error> {
        self.try_send(self.http.request(method, self.url(path)))
    }

    /// `(APP, instanceId)` of every instance `GET /eureka/apps` (JSON) lists now; empty when
    /// the call fails (a test polling for a change treats that as "not yet").
    pub fn listed(&self) -> Vec<(String, String)> {
        match self.try_send(self.http.get(self.url("/apps")).header("Accept", "application/json")) {
            Ok(r) if r.status == 200 => serde_json::from_str(&r.body).map(|v: Value| instances(&v)).unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    /// Whether `GET /eureka/apps` lists `id` of `app` now.
    pub fn lists(&self, app: &str, id: &str) -> bool {
        self.listed().iter().any(|(a, i)| a.eq_ignore_ascii_case(app) && i == id)
    }
}

/// Percent-encodes one path segment, leaving what Eureka ids hold (`:`, `.`, `-`, `_`, `@`).
fn enc(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b"-_.~:@".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

/// `(APP, instanceId)` of every instance of an `applications` JSON document. Eureka writes a
/// single application or instance either as an object or as an array of one: both read.
pub fn instances(doc: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for app in one_or_many(&doc["applications"]["application"]) {
        for i in one_or_many(&app["instance"]) {
            out.push((app["name"].as_str().unwrap_or_default().to_owned(), i["instanceId"].as_str().unwrap_or_default().to_owned()));
        }
    }
    out
}

/// The instance `id` of an `applications` JSON document.
pub fn find_instance<'a>(doc: &'a Value, id: &str) -> Option<&'a Value> {
    one_or_many(&doc["applications"]["application"])
        .into_iter()
        .flat_map(|app| one_or_many(&app["instance"]))
        .find(|i| i["instanceId"] == id)
}

/// An array's items, an object as one item, nothing for null.
pub fn one_or_many(v: &Value) -> Vec<&Value> {
    match v {
        Value::Array(items) => items.iter().collect(),
        Value::Null => Vec::new(),
        other => vec![other],
    }
}

/// A registration as Zowe's Node.js enabler sends it: `{"instance":{...}}` for `app` with
/// `instanceId` `127.0.0.1:<app>:<port>`-like `id`, the TLS port enabled, a lease of
/// `lease_secs` (renewal every second, so short leases are valid), routes `api/v1` ->
/// `/<app>/api/v1`, and `extra` metadata.
pub fn registration(app: &str, id: &str, port: u16, lease_secs: u32, extra: &[(&str, &str)]) -> Value {
    let service = app.to_ascii_lowercase();
    let mut metadata = serde_json::Map::new();
    metadata.insert("apiml.routes.api_v1.gatewayUrl".into(), json!("api/v1"));
    metadata.insert("apiml.routes.api_v1.serviceUrl".into(), json!(format!("/{service}/api/v1")));
    metadata.insert("apiml.service.title".into(), json!(format!("Test service {service}")));
    metadata.insert("apiml.service.description".into(), json!("registered by plexgate's black-box tests"));
    metadata.insert("apiml.apiInfo.0.apiId".into(), json!(format!("org.zowe.{service}")));
    metadata.insert("apiml.apiInfo.0.version".into(), json!("1.0.0"));
    metadata.insert("apiml.apiInfo.0.gatewayUrl".into(), json!("api/v1"));
    metadata.insert("apiml.catalog.tile.id".into(), json!("tests"));
    for (k, v) in extra {
        metadata.insert((*k).into(), json!(v));
    }
    json!({"instance": {
        "instanceId": id,
        "app": app,
        "hostName": "127.0.0.1",
        "ipAddr": "127.0.0.1",
        "vipAddress": service,
        "secureVipAddress": service,
        "status": "UP",
        "port": {"$": port, "@enabled": false},
        "securePort": {"$": port, "@enabled": "true"},
        "homePageUrl": format!("https://127.0.0.1:{port}/"),
        "statusPageUrl": format!("https://127.0.0.1:{port}/{service}/application/info"),
        "healthCheckUrl": format!("https://127.0.0.1:{port}/{service}/application/health"),
        "dataCenterInfo": {"@class": "com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo", "name": "MyOwn"},
        "leaseInfo": {"renewalIntervalInSecs": 1, "durationInSecs": lease_secs},
        "metadata": metadata,
    }})
}

/// The same registration as Eureka's Java client sends it (XStream's XML: attributes for
/// `enabled` and `class`, metadata element names with `_` doubled).
pub fn registration_xml(app: &str, id: &str, port: u16, lease_secs: u32) -> String {
    let service = app.to_ascii_lowercase();
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<instance>
  <instanceId>{id}</instanceId>
  <hostName>127.0.0.1</hostName>
  <app>{app_upper}</app>
  <ipAddr>127.0.0.1</ipAddr>
  <status>UP</status>
  <overriddenstatus>UNKNOWN</overriddenstatus>
  <port enabled="false">{port}</port>
  <securePort enabled="true">{port}</securePort>
  <countryId>1</countryId>
  <dataCenterInfo class="com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo"><name>MyOwn</name></dataCenterInfo>
  <leaseInfo><renewalIntervalInSecs>1</renewalIntervalInSecs><durationInSecs>{lease_secs}</durationInSecs></leaseInfo>
  <metadata class="java.util.Collections$EmptyMap">
    <apiml.routes.api__v1.gatewayUrl>api/v1</apiml.routes.api__v1.gatewayUrl>
    <apiml.routes.api__v1.serviceUrl>/{service}/api/v1</apiml.routes.api__v1.serviceUrl>
    <apiml.service.title>Java &amp; XML &lt;{service}&gt;</apiml.service.title>
  </metadata>
  <homePageUrl>https://127.0.0.1:{port}/{service}</homePageUrl>
  <healthCheckUrl>https://127.0.0.1:{port}/{service}/application/health</healthCheckUrl>
  <vipAddress>{service}</vipAddress>
  <secureVipAddress>{service}</secureVipAddress>
</instance>"#,
        app_upper = app.to_ascii_uppercase()
    )
}

/// One XML element read by quick-xml: name, attributes, children and text, enough for a test
/// to compare an XML answer with its JSON twin.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Element {
    /// The element's name.
    pub name: String,
    /// Its attributes, in document order.
    pub attributes: Vec<(String, String)>,
    /// Its child elements, in document order.
    pub children: Vec<Element>,
    /// Its text (entities and character references resolved).
    pub text: String,
}

impl Element {
    /// Reads a whole document into its root element.
    pub fn parse(text: &str) -> Result<Element, String> {
        use quick_xml::events::Event;
        let mut reader = quick_xml::Reader::from_str(text);
        let mut stack: Vec<Element> = Vec::new();
        let start = |e: &quick_xml::events::BytesStart<'_>| -> Result<Element, String> {
            let mut el = Element { name: AsRef::<str>::as_ref(&e.name()).to_owned(), ..Element::default() };
            for a in e.attributes() {
                let a = a.map_err(|e| e.to_string())?;
                let v = a.normalized_value(quick_xml::XmlVersion::Implicit1_0).map_err(|e| e.to_string())?.into_owned();
                el.attributes.push((AsRef::<str>::as_ref(&a.key).to_owned(), v));
            }
            Ok(el)
        };
        loop {
            match reader.read_event().map_err(|e| e.to_string())? {
                Event::Start(e) => stack.push(start(&e)?),
                Event::Empty(e) => {
                    let el = start(&e)?;
                    match stack.last_mut() {
                        Some(parent) => parent.children.push(el),
                        None => return Ok(el),
                    }
                }
                Event::Text(t) => {
                    if let Some(top) = stack.last_mut() {
                        top.text.push_str(&t.xml10_content());
                    }
                }
                Event::GeneralRef(r) => {
                    let name = r.xml10_content().into_owned();
                    let c = match name.as_str() {
                        "lt" => '<',
                        "gt" => '>',
                        "amp" => '&',
                        "quot" => '"',
                        "apos" => '\'',
                        n => n
                            .strip_prefix("#x")
                            .and_then(|h| u32::from_str_radix(h, 16).ok())
                            .or_else(|| n.strip_prefix('#').and_then(|d| d.parse().ok()))
                            .and_then(char::from_u32)
                            .ok_or_else(|| format!("unknown entity &{n};"))?,
                    };
                    if let Some(top) = stack.last_mut() {
                        top.text.push(c);
                    }
                }
                Event::CData(c) => {
                    if let Some(top) = stack.last_mut() {
                        top.text.push_str(&c.into_inner());
                    }
                }
                Event::End(_) => {
                    let el = stack.pop().ok_or("an end without a start")?;
                    match stack.last_mut() {
                        Some(parent) => parent.children.push(el),
                        None => return Ok(el),
                    }
                }
                Event::Eof => return Err("the document ended before its root element closed".to_owned()),
                _ => {}
            }
        }
    }

    /// The first child named `name`.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// Every child named `name`.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// The trimmed text of the child `name` (empty when absent).
    pub fn text_of(&self, name: &str) -> String {
        self.child(name).map(|c| c.text.trim().to_owned()).unwrap_or_default()
    }

    /// The attribute `name`.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attributes.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// What a test compares between an instance's JSON and its XML: id, app, host, status,
/// ports with their `enabled`, VIP addresses, lease duration, and metadata (XML element names
/// with `__` read back as `_`, as XStream writes them).
pub fn summary_of_json(i: &Value) -> Value {
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    let port = |p: &Value| json!([text(&p["$"]), text(&p["@enabled"])]);
    let metadata: serde_json::Map<String, Value> = i["metadata"]
        .as_object()
        .map(|m| m.iter().filter(|(k, _)| k.as_str() != "@class").map(|(k, v)| (k.clone(), json!(text(v)))).collect())
        .unwrap_or_default();
    json!({
        "instanceId": text(&i["instanceId"]), "app": text(&i["app"]), "hostName": text(&i["hostName"]),
        "status": text(&i["status"]), "port": port(&i["port"]), "securePort": port(&i["securePort"]),
        "vipAddress": text(&i["vipAddress"]), "secureVipAddress": text(&i["secureVipAddress"]),
        "durationInSecs": text(&i["leaseInfo"]["durationInSecs"]), "metadata": metadata,
    })
}

/// [`summary_of_json`] of an `<instance>` element.
pub fn summary_of_xml(i: &Element) -> Value {
    let port = |name: &str| {
        let p = i.child(name);
        json!([p.map(|p| p.text.trim().to_owned()).unwrap_or_default(), p.and_then(|p| p.attr("enabled")).unwrap_or_default()])
    };
    let metadata: serde_json::Map<String, Value> = i
        .child("metadata")
        .map(|m| m.children.iter().map(|c| (c.name.replace("__", "_"), json!(c.text.trim()))).collect())
        .unwrap_or_default();
    json!({
        "instanceId": i.text_of("instanceId"), "app": i.text_of("app"), "hostName": i.text_of("hostName"),
        "status": i.text_of("status"), "port": port("port"), "securePort": port("securePort"),
        "vipAddress": i.text_of("vipAddress"), "secureVipAddress": i.text_of("secureVipAddress"),
        "durationInSecs": i.child("leaseInfo").map(|l| l.text_of("durationInSecs")).unwrap_or_default(), "metadata": metadata,
    })
}

/// Sends `request` (raw HTTP/1.1 bytes, exactly as given: no client-side path normalisation)
/// over TLS to 127.0.0.1:`port`, presenting `identity`; returns the whole answer as text.
pub fn raw_request(ca: &Path, identity: (&Path, &Path), port: u16, request: &[u8]) -> String {
    crate::https::raw_request_as(ca, Some(identity), port, request)
}
