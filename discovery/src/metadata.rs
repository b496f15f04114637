//! The `apiml.*` metadata keys of a registration: what static definitions say in YAML, an
//! enabler says in flat keys (Zowe's `EurekaMetadataDefinition`). Checked whole at
//! registration, so an instance with a broken route is refused (400), never half-routed.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::error::DiscoveryError;

/// One route: `/{serviceId}/{gateway_url}/...` goes to `{service_url}/...` at the instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Without slashes at the ends (`api/v1`).
    pub gateway_url: String,
    /// The path prefix at the instance, starting with `/`, no trailing slash (`/x/api/v1`).
    pub service_url: String,
}

/// What the gateway needs from a registration's metadata.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ApimlMetadata {
    /// `apiml.service.title`.
    pub title: String,
    /// `apiml.service.description`.
    pub description: String,
    /// `apiml.routes.<n>.*`, longest gatewayUrl first.
    pub routes: Vec<Route>,
    /// `apiml.authentication.scheme` (default `bypass`): `bypass`, `zoweJwt` or `x509`.
    pub scheme: String,
    /// `apiml.lb.type: authentication`: one user, one instance.
    pub sticky_by_user: bool,
    /// `apiml.connectTimeout` (milliseconds).
    pub connect_timeout: Option<Duration>,
    /// `apiml.readTimeout` (milliseconds).
    pub read_timeout: Option<Duration>,
}

/// Schemes the gateway implements (the same as for static definitions).
pub const SCHEMES: &[&str] = &["bypass", "zoweJwt", "x509"];

impl ApimlMetadata {
    /// Reads and checks the `apiml.*` keys of `metadata`.
    pub fn from_metadata(metadata: &BTreeMap<String, String>) -> Result<ApimlMetadata, DiscoveryError> {
        let mut pairs: BTreeMap<&str, (Option<&str>, Option<&str>)> = BTreeMap::new();
        for (k, v) in metadata.iter() {
            let Some(rest) = k.strip_prefix("apiml.routes.") else { continue };
            let (name, field) = rest.rsplit_once('.').ok_or_else(|| bad_key(k))?;
            let slot = pairs.entry(name).or_default();
            match field {
                "gatewayUrl" => slot.0 = Some(v),
                "serviceUrl" => slot.1 = Some(v),
                _ => return Err(bad_key(k)),
            }
        }
        let mut routes = Vec::new();
        for (name, (gw, svc)) in pairs {
            let at = |f: &str| format!("metadata.apiml.routes.{name}.{f}");
            let gw = gw.ok_or_else(|| DiscoveryError::field(at("gatewayUrl"), "is missing beside its serviceUrl"))?;
            let gateway_url = gw.trim().trim_matches('/').to_owned();
            if gateway_url.is_empty() {
                return Err(DiscoveryError::field(at("gatewayUrl"), "is empty"));
            }
            check_path(&at("gatewayUrl"), &gateway_url)?;
            let svc = svc.unwrap_or("").trim().trim_end_matches('/');
            let service_url = if svc.is_empty() || svc.starts_with('/') { svc.to_owned() } else { format!("/{svc}") };
            check_path(&at("serviceUrl"), &service_url)?;
            routes.push(Route { gateway_url, service_url });
        }
        if routes.is_empty() {
            return Err(DiscoveryError::field("metadata.apiml.routes", "lists no route (apiml.routes.<name>.gatewayUrl and .serviceUrl)"));
        }
        routes.sort_by_key(|r| std::cmp::Reverse(r.gateway_url.len()));
        let scheme = metadata.get("apiml.authentication.scheme").map(|s| s.trim().to_owned()).unwrap_or_else(|| "bypass".to_owned());
        if !SCHEMES.contains(&scheme.as_str()) {
            return Err(DiscoveryError::field(
                "metadata.apiml.authentication.scheme",
                format!("`{}` is not supported by plexgate; supported: {}", scheme.escape_debug(), SCHEMES.join(", ")),
            ));
        }
        Ok(ApimlMetadata {
            title: metadata.get("apiml.service.title").cloned().unwrap_or_default(),
            description: metadata.get("apiml.service.description").cloned().unwrap_or_default(),
            routes,
            scheme,
            sticky_by_user: metadata.get("apiml.lb.type").is_some_and(|t| t.eq_ignore_ascii_case("authentication")),
            connect_timeout: millis(metadata, "apiml.connectTimeout")?,
            read_timeout: millis(metadata, "apiml.readTimeout")?,
        })
    }
}

fn bad_key(k: &str) -> DiscoveryError {
    DiscoveryError::field(format!("metadata.{k}"), "is not apiml.routes.<name>.gatewayUrl or .serviceUrl")
}

/// A URL path a route may use: printable, no `..` segments, no query, fragment or escapes.
fn check_path(field: &str, p: &str) -> Result<(), DiscoveryError> {
    let bad_char = p.chars().any(|c| c.is_control() || c.is_whitespace() || matches!(c, '?' | '#' | '%' | '\\'));
    if bad_char || p.split('/').any(|s| s == ".." || s == ".") {
        return Err(DiscoveryError::field(field, format!("`{}` is not a plain path", p.escape_debug())));
    }
    Ok(())
}

fn millis(metadata: &BTreeMap<String, String>, key: &str) -> Result<Option<Duration>, DiscoveryError> {
    let Some(v) = metadata.get(key) else { return Ok(None) };
    match v.trim().parse::<u64>() {
        Ok(ms) if ms > 0 => Ok(Some(Duration::from_millis(ms))),
        _ => Err(DiscoveryError::field(
            format!("metadata.{key}"),
            format!("`{}` is not a positive number of milliseconds", v.escape_debug()),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn routes_title_scheme_and_timeouts_read_as_static_definitions_have_them() {
        let m = ApimlMetadata::from_metadata(&meta(&[
            ("apiml.routes.api_v1.gatewayUrl", "/api/v1/"),
            ("apiml.routes.api_v1.serviceUrl", "discoverableclient/api/v1/"),
            ("apiml.routes.ui_v1.gatewayUrl", "ui/v1/long"),
            ("apiml.routes.ui_v1.serviceUrl", "/"),
            ("apiml.service.title", "Sample"),
            ("apiml.authentication.scheme", "zoweJwt"),
            ("apiml.lb.type", "authentication"),
            ("apiml.connectTimeout", "250"),
            ("apiml.catalog.tile.id", "samples"),
        ]))
        .unwrap();
        assert_eq!(
            m.routes,
            vec![
                Route { gateway_url: "ui/v1/long".into(), service_url: "".into() },
                Route { gateway_url: "api/v1".into(), service_url: "/discoverableclient/api/v1".into() },
            ]
        );
        assert_eq!((m.title.as_str(), m.scheme.as_str(), m.sticky_by_user), ("Sample", "zoweJwt", true));
        assert_eq!(m.connect_timeout, Some(Duration::from_millis(250)));
    }

    #[test]
    fn broken_routes_schemes_and_timeouts_are_refused_naming_the_key() {
        let ok = [("apiml.routes.a.gatewayUrl", "api"), ("apiml.routes.a.serviceUrl", "/x")];
        let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
            (vec![], "metadata.apiml.routes"),
            (vec![("apiml.routes.a.serviceUrl", "/x")], "metadata.apiml.routes.a.gatewayUrl"),
            (vec![("apiml.routes.a.gatewayUrl", "/")], "metadata.apiml.routes.a.gatewayUrl"),
            (vec![("apiml.routes.a.gatewayUrl", "a/../b")], "metadata.apiml.routes.a.gatewayUrl"),
            (vec![("apiml.routes.a.gatewayUrl", "a"), ("apiml.routes.a.serviceUrl", "/x?y=1")], "metadata.apiml.routes.a.serviceUrl"),
            (vec![("apiml.routes.a.gatewayUrl", "a"), ("apiml.routes.a.serviceUrl", "/%2e%2e")], "metadata.apiml.routes.a.serviceUrl"),
            (vec![("apiml.routes.a.gateway", "a")], "metadata.apiml.routes.a.gateway"),
            (vec![("apiml.routes.nodot", "a")], "metadata.apiml.routes.nodot"),
            (
                ok.into_iter().chain([("apiml.authentication.scheme", "httpBasicPassTicket")]).collect(),
                "metadata.apiml.authentication.scheme",
            ),
            (ok.into_iter().chain([("apiml.readTimeout", "soon")]).collect(), "metadata.apiml.readTimeout"),
            (ok.into_iter().chain([("apiml.connectTimeout", "0")]).collect(), "metadata.apiml.connectTimeout"),
        ];
        for (pairs, named) in cases {
            match ApimlMetadata::from_metadata(&meta(&pairs)) {
                Err(DiscoveryError::BadField { field, .. }) => assert_eq!(field, named, "{pairs:?}"),
                other => panic!("{pairs:?}: {other:?}"),
            }
        }
    }
}
