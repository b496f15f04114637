//! Static API service definitions in Zowe's own YAML format, read from the configured
//! directories (every `*.yml` / `*.yaml` file, or files named directly).
//!
//! Every field of Zowe's format is parsed; fields we do not use are accepted, and fields
//! Zowe's format does not have are warnings naming the file and entry. Errors (duplicate
//! serviceId, a bad URL, a route without gatewayUrl, an authentication scheme plexgate does
//! not implement) name the file and the entry and stop the gateway from starting.

use std::path::{Path, PathBuf};

use http::Uri;
use serde::Deserialize;
use serde_json::Value;

/// How the gateway authenticates requests to a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Forward as is; the service authenticates (or not).
    Bypass,
    /// A valid login token, or a PAT scoped to the service, is required and passed on.
    ZoweJwt,
    /// A client certificate (verified against the truststore at the TLS handshake) is
    /// required; its DN, CN and DER are passed on as `X-Certificate-*`.
    X509,
}

impl Scheme {
    /// The name in Zowe's definitions.
    pub fn name(self) -> &'static str {
        match self {
            Scheme::Bypass => "bypass",
            Scheme::ZoweJwt => "zoweJwt",
            Scheme::X509 => "x509",
        }
    }
}

/// One route of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteDef {
    /// The part after `/<serviceId>/`, without slashes at the ends (e.g. `api/v1`).
    pub gateway_url: String,
    /// The path prefix at the instance (e.g. `/discoverableclient/api/v1`), no trailing slash.
    pub service_relative_url: String,
}

/// One service, checked.
#[derive(Debug, Clone)]
pub struct ServiceDef {
    /// Lower-case service id.
    pub service_id: String,
    /// Title, for listings.
    pub title: String,
    /// Description, for listings.
    pub description: String,
    /// Base URLs of its instances.
    pub instances: Vec<Uri>,
    /// Path of its health check, relative to an instance's base URL.
    pub health_check: Option<String>,
    /// Routes, longest gatewayUrl first.
    pub routes: Vec<RouteDef>,
    /// Authentication towards it.
    pub scheme: Scheme,
    /// `customMetadata.apiml.lb.type: authentication`: one user, one instance, on every gateway.
    pub sticky_by_user: bool,
    /// `customMetadata.apiml.readTimeout` (milliseconds, as Zowe has it): this service's time
    /// until the first byte of an answer, instead of `routing.responseTimeout`.
    pub read_timeout: Option<std::time::Duration>,
    /// `customMetadata.apiml.connectTimeout` (milliseconds, as Zowe has it): this service's time
    /// to open a connection, instead of `routing.connectTimeout`.
    pub connect_timeout: Option<std::time::Duration>,
    /// `customMetadata.apiml.idleTimeout` (milliseconds; plexgate's own key): the longest pause
    /// between two pieces of a body, either way, instead of `routing.idleTimeout`.
    pub idle_timeout: Option<std::time::Duration>,
    /// The file it came from.
    pub file: PathBuf,
}

/// What reading the definitions found.
#[derive(Debug, Default)]
pub struct Loaded {
    /// The services.
    pub services: Vec<ServiceDef>,
    /// Problems that stop the gateway.
    pub errors: Vec<String>,
    /// Things worth fixing.
    pub warnings: Vec<String>,
}

#[derive(Deserialize)]
struct File {
    #[serde(default)]
    services: Vec<Value>,
    #[serde(default, rename = "catalogUiTiles")]
    _tiles: Option<Value>,
    #[serde(default, rename = "additionalServiceMetadata")]
    _additional: Option<Value>,
}

/// The fields of a service entry in Zowe's format.
const SERVICE_FIELDS: &[&str] = &[
    "serviceId",
    "title",
    "description",
    "catalogUiTileId",
    "instanceBaseUrls",
    "homePageRelativeUrl",
    "statusPageRelativeUrl",
    "healthCheckRelativeUrl",
    "routes",
    "authentication",
    "apiInfo",
    "customMetadata",
];

/// Reads every definition file under `paths`.
pub fn load(paths: &[PathBuf]) -> Loaded {
    let mut out = Loaded::default();
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            match std::fs::read_dir(p) {
                Ok(entries) => {
                    let mut found: Vec<PathBuf> = entries
                        .filter_map(|e| e.ok().map(|e| e.path()))
                        .filter(|f| f.extension().is_some_and(|x| x == "yml" || x == "yaml"))
                        .collect();
                    found.sort();
                    files.extend(found);
                }
                Err(e) => out.errors.push(format!("{}: cannot read the directory: {e}", p.display())),
            }
        } else if p.is_file() {
            files.push(p.clone());
        }
        // A directory that does not exist simply defines nothing (the default one may not).
    }
    for f in files {
        read_file(&f, &mut out);
    }
    let mut seen = std::collections::HashMap::new();
    for s in &out.services {
        if let Some(first) = seen.insert(s.service_id.clone(), s.file.clone()) {
            out.errors.push(format!("{}: serviceId `{}` is defined twice (also in {})", s.file.display(), s.service_id, first.display()));
        }
    }
    out
}

fn read_file(path: &Path, out: &mut Loaded) {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => return out.errors.push(format!("{}: cannot read: {e}", path.display())),
    };
    let file: File = match serde_saphyr::from_str::<Option<File>>(&text) {
        Ok(Some(f)) => f,
        Ok(None) => return,
        Err(e) => {
            return out.errors.push(format!(
                "{}: not a service definition file: {}",
                path.display(),
                e.to_string().lines().next().unwrap_or_default()
            ));
        }
    };
    for (i, entry) in file.services.iter().enumerate() {
        match service(path, i, entry, out) {
            Ok(s) => out.services.push(s),
            Err(e) => out.errors.push(e),
        }
    }
}

fn service(path: &Path, i: usize, v: &Value, out: &mut Loaded) -> Result<ServiceDef, String> {
    let id = v.get("serviceId").and_then(Value::as_str).unwrap_or("").trim().to_lowercase();
    let at = if id.is_empty() { format!("{}: services[{i}]", path.display()) } else { format!("{}: services[{i}] ({id})", path.display()) };
    let Some(obj) = v.as_object() else { return Err(format!("{at}: an entry must be a mapping")) };
    for k in obj.keys() {
        if !SERVICE_FIELDS.contains(&k.as_str()) {
            out.warnings.push(format!("{at}: unknown field `{k}`, ignored"));
        }
    }
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.') {
        return Err(format!("{at}: serviceId must be a non-empty name of letters, digits, '-', '_' or '.'"));
    }
    let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
    let mut instances = Vec::new();
    let urls = v.get("instanceBaseUrls").and_then(Value::as_array).cloned().unwrap_or_default();
    if urls.is_empty() {
        return Err(format!("{at}: instanceBaseUrls lists no URL"));
    }
    for u in urls {
        let s = u.as_str().unwrap_or_default();
        let uri: Uri = s.parse().map_err(|e| format!("{at}: instanceBaseUrls: `{s}` is not a URL ({e})"))?;
        match (uri.scheme_str(), uri.authority()) {
            (Some("https" | "http"), Some(a)) if a.port_u16().is_some() || !a.host().is_empty() => instances.push(uri),
            _ => return Err(format!("{at}: instanceBaseUrls: `{s}` must be an http(s) URL with a host")),
        }
    }
    let mut routes = Vec::new();
    for (j, r) in v.get("routes").and_then(Value::as_array).cloned().unwrap_or_default().iter().enumerate() {
        let gw = r.get("gatewayUrl").and_then(Value::as_str).map(|s| s.trim_matches('/').to_owned());
        let Some(gateway_url) = gw.filter(|g| !g.is_empty()) else { return Err(format!("{at}: routes[{j}] has no gatewayUrl")) };
        let rel = r.get("serviceRelativeUrl").and_then(Value::as_str).unwrap_or("").trim_end_matches('/').to_owned();
        let rel = if rel.is_empty() || rel.starts_with('/') { rel } else { format!("/{rel}") };
        routes.push(RouteDef { gateway_url, service_relative_url: rel });
    }
    if routes.is_empty() {
        return Err(format!("{at}: routes lists no route"));
    }
    routes.sort_by_key(|r| std::cmp::Reverse(r.gateway_url.len()));
    let scheme = match v.pointer("/authentication/scheme").and_then(Value::as_str).unwrap_or("bypass") {
        "bypass" => Scheme::Bypass,
        "zoweJwt" => Scheme::ZoweJwt,
        "x509" => Scheme::X509,
        other => {
            return Err(format!(
                "{at}: authentication scheme `{other}` is not supported by plexgate yet; supported: bypass, zoweJwt, x509"
            ));
        }
    };
    let read_timeout = millis(v, "readTimeout").map_err(|e| format!("{at}: {e}"))?;
    let connect_timeout = millis(v, "connectTimeout").map_err(|e| format!("{at}: {e}"))?;
    let idle_timeout = millis(v, "idleTimeout").map_err(|e| format!("{at}: {e}"))?;
    let sticky =
        v.pointer("/customMetadata/apiml/lb/type").and_then(Value::as_str).is_some_and(|t| t.eq_ignore_ascii_case("authentication"));
    Ok(ServiceDef {
        service_id: id,
        title: text("title").unwrap_or_default(),
        description: text("description").unwrap_or_default(),
        instances,
        health_check: text("healthCheckRelativeUrl").filter(|h| !h.is_empty()),
        routes,
        scheme,
        sticky_by_user: sticky,
        read_timeout,
        connect_timeout,
        idle_timeout,
        file: path.to_owned(),
    })
}

/// `customMetadata.apiml.<key>`: a positive number of milliseconds (a number or a string of
/// digits, as Zowe's definitions carry both), or absent.
fn millis(v: &Value, key: &str) -> Result<Option<std::time::Duration>, String> {
    let Some(t) = v.pointer(&format!("/customMetadata/apiml/{key}")) else { return Ok(None) };
    match t.as_u64().or_else(|| t.as_str().and_then(|s| s.trim().parse().ok())) {
        Some(ms) if ms > 0 => Ok(Some(std::time::Duration::from_millis(ms))),
        _ => Err(format!("customMetadata.apiml.{key} must be a positive number of milliseconds, found {t}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_text(text: &str) -> Loaded {
        let dir = std::env::temp_dir().join(format!("plexgate-defs-{}-{}", std::process::id(), text.len()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("a.yml"), text).unwrap();
        let l = load(std::slice::from_ref(&dir));
        let _ = std::fs::remove_dir_all(&dir);
        l
    }

    #[test]
    fn parses_zowes_format() {
        let l = load_text(
            "services:\n  - serviceId: DiscoverableClient\n    title: Sample\n    instanceBaseUrls: [https://h1:10012/, https://h2:10012/]\n    healthCheckRelativeUrl: /application/health\n    routes:\n      - gatewayUrl: api/v1\n        serviceRelativeUrl: /discoverableclient/api/v1\n      - gatewayUrl: /api/v1/long/\n        serviceRelativeUrl: /x\n    authentication:\n      scheme: zoweJwt\n    customMetadata: {apiml: {lb: {type: authentication}}}\n    apiInfo: [{apiId: x}]\n    surprise: 1\ncatalogUiTiles: {}\n",
        );
        assert!(l.errors.is_empty(), "{:?}", l.errors);
        let s = &l.services[0];
        assert_eq!(s.service_id, "discoverableclient");
        assert_eq!(s.instances.len(), 2);
        assert_eq!(s.routes[0].gateway_url, "api/v1/long");
        assert_eq!(s.scheme, Scheme::ZoweJwt);
        assert!(s.sticky_by_user);
        assert_eq!(l.warnings.len(), 1);
        assert!(l.warnings[0].contains("surprise"));
    }

    #[test]
    fn bad_entries_name_file_and_entry() {
        let l = load_text(
            "services:\n  - serviceId: a\n    instanceBaseUrls: [not a url]\n    routes: [{gatewayUrl: x}]\n  - serviceId: b\n    instanceBaseUrls: [https://h:1]\n    routes: [{serviceRelativeUrl: /x}]\n  - serviceId: c\n    instanceBaseUrls: [https://h:1]\n    routes: [{gatewayUrl: x}]\n    authentication: {scheme: httpBasicPassTicket}\n  - serviceId: d\n    instanceBaseUrls: [https://h:1]\n    routes: [{gatewayUrl: x}]\n  - serviceId: d\n    instanceBaseUrls: [https://h:2]\n    routes: [{gatewayUrl: x}]\n",
        );
        let all = l.errors.join("\n");
        assert!(all.contains("services[0] (a): instanceBaseUrls"), "{all}");
        assert!(all.contains("services[1] (b): routes[0] has no gatewayUrl"), "{all}");
        assert!(all.contains("services[2] (c): authentication scheme `httpBasicPassTicket` is not supported"), "{all}");
        assert!(all.contains("serviceId `d` is defined twice"), "{all}");
    }

    #[test]
    fn per_service_timeouts_are_milliseconds() {
        let ok = load_text(
            "services:\n  - serviceId: t\n    instanceBaseUrls: [https://h:1]\n    routes: [{gatewayUrl: x}]\n    customMetadata: {apiml: {readTimeout: 1500, connectTimeout: '250', idleTimeout: 3000}}\n",
        );
        assert!(ok.errors.is_empty(), "{:?}", ok.errors);
        let s = &ok.services[0];
        assert_eq!(s.read_timeout, Some(std::time::Duration::from_millis(1500)));
        assert_eq!(s.connect_timeout, Some(std::time::Duration::from_millis(250)));
        assert_eq!(s.idle_timeout, Some(std::time::Duration::from_millis(3000)));
        for bad in ["connectTimeout: 0", "idleTimeout: soon", "readTimeout: -5"] {
            let l = load_text(&format!(
                "services:\n  - serviceId: t\n    instanceBaseUrls: [https://h:1]\n    routes: [{{gatewayUrl: x}}]\n    customMetadata: {{apiml: {{{bad}}}}}\n"
            ));
            let key = bad.split(':').next().unwrap();
            assert!(
                l.errors.join("\n").contains(&format!("services[0] (t): customMetadata.apiml.{key} must be a positive number")),
                "{bad}: {:?}",
                l.errors
            );
        }
    }
}
