//! Keys we do not know, in the sections we own, and the known key nearest to each.
//!
//! The known keys are read off plexgate's own defaults (every owned struct serialises all of
//! its fields), so this list can never drift from the model.

use serde_json::{Value, json};

use crate::error::{Origin, Problem, Warning};
use crate::model::{Certificate, Components, HaInstance, Target, Zosmf, ZoweYaml};
use crate::source::Source;

/// Sections whose keys are ours to know: a key under them that we do not know is a warning.
const OWNED: &[&str] =
    &["components.gateway", "components.caching-service", "components.distributor", "zowe.certificate", "zOSMF", "haInstances"];

/// Components whose keys we own, also under `haInstances.<id>.components`.
const OWNED_COMPONENTS: &[&str] = &["gateway", "caching-service", "distributor"];

/// The shape of every known key: the defaults, with list items and map entries spelled out.
pub struct Schema(Value);

impl Default for Schema {
    fn default() -> Self {
        Self::new()
    }
}

impl Schema {
    /// plexgate's schema.
    pub fn new() -> Schema {
        let mut tree = serde_json::to_value(ZoweYaml::default()).unwrap_or_default();
        let cert = serde_json::to_value(Certificate::default()).unwrap_or_default();
        let components = serde_json::to_value(Components::default()).unwrap_or_default();
        let mut instance = serde_json::to_value(HaInstance::default()).unwrap_or_default();
        instance["components"] = components;
        instance["components"]["gateway"]["certificate"] = cert.clone();
        instance["components"]["caching-service"]["certificate"] = cert.clone();
        tree["zOSMF"] = serde_json::to_value(Zosmf::default()).unwrap_or_default();
        tree["components"]["gateway"]["certificate"] = cert.clone();
        tree["components"]["caching-service"]["certificate"] = cert;
        tree["components"]["distributor"]["targets"] = json!([serde_json::to_value(Target::default()).unwrap_or_default()]);
        instance["components"]["distributor"]["targets"] = tree["components"]["distributor"]["targets"].clone();
        tree["haInstances"] = json!({ "*": instance });
        Schema(tree)
    }

    fn node(&self, path: &[String]) -> Option<&Value> {
        let mut node = &self.0;
        for (i, key) in path.iter().enumerate() {
            node = match node {
                Value::Object(m) if i == 1 && path[0] == "haInstances" => m.get("*")?,
                Value::Object(m) => m.get(key)?,
                Value::Array(items) => items.first()?,
                _ => return None,
            };
        }
        Some(node)
    }

    /// The known keys of the mapping at `path` (empty when it is not a known mapping).
    pub fn keys_at(&self, path: &[String]) -> Vec<String> {
        match self.node(path) {
            Some(Value::Object(m)) => m.keys().filter(|k| *k != "*").cloned().collect(),
            _ => Vec::new(),
        }
    }
}

/// Warns about every key under an owned section of `source` that the schema does not know.
pub fn warnings(source: &Source, schema: &Schema) -> Vec<Warning> {
    let mut out = Vec::new();
    walk(&source.tree, &mut Vec::new(), source, schema, &mut out);
    out
}

fn walk(node: &Value, path: &mut Vec<String>, source: &Source, schema: &Schema, out: &mut Vec<Warning>) {
    let dotted = path.join(".");
    // haInstances.<id>.components.<c>: checked as the component it overrides, if it is ours.
    if glob("haInstances.*.components.*", path) && !path.last().is_some_and(|c| OWNED_COMPONENTS.contains(&c.as_str())) {
        return;
    }
    match node {
        Value::Object(map) => {
            let owned =
                OWNED.iter().any(|o| dotted == *o || dotted.starts_with(&format!("{o}."))) && !glob("haInstances.*.components", path);
            let known = schema.keys_at(path);
            let typed = matches!(schema.node(path), Some(Value::Object(_)));
            for (key, child) in map {
                let is_map_entry = path.len() == 1 && path[0] == "haInstances";
                if owned && typed && !is_map_entry && !known.contains(key) {
                    let full = format!("{dotted}.{key}");
                    let origin = source.position(&full).map(Origin::File).unwrap_or(Origin::Default);
                    let message = match nearest(key, &known) {
                        Some(n) => format!("unknown key `{key}`, ignored; did you mean `{n}`?"),
                        None => format!("unknown key `{key}`, ignored; known here: {}", known.join(", ")),
                    };
                    out.push(Warning(Problem { path: full, origin, message }));
                    continue;
                }
                path.push(key.clone());
                walk(child, path, source, schema, out);
                path.pop();
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                path.push(i.to_string());
                walk(child, path, source, schema, out);
                path.pop();
            }
        }
        _ => {}
    }
}

fn glob(pattern: &str, path: &[String]) -> bool {
    let parts: Vec<&str> = pattern.split('.').collect();
    parts.len() == path.len() && parts.iter().zip(path).all(|(p, k)| *p == "*" || p == k)
}

/// The known key closest to `key`, when one is close enough to be a likely typo.
pub fn nearest<'a>(key: &str, known: &'a [String]) -> Option<&'a str> {
    let lower = key.to_ascii_lowercase();
    known
        .iter()
        .map(|k| (k, strsim::damerau_levenshtein(&lower, &k.to_ascii_lowercase())))
        .filter(|(k, d)| *d <= (k.len() / 3).max(2))
        .min_by_key(|(_, d)| *d)
        .map(|(k, _)| k.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn warn(yaml: &str) -> Vec<Warning> {
        warnings(&Source::parse("t", yaml).unwrap(), &Schema::new())
    }

    #[test]
    fn a_typo_in_an_owned_section_names_the_nearest_key() {
        let w = warn("components:\n  caching-service:\n    storage:\n      evictionStratgy: reject\n");
        assert_eq!(w.len(), 1, "{w:?}");
        assert_eq!(w[0].0.path, "components.caching-service.storage.evictionStratgy");
        assert!(w[0].0.message.contains("did you mean `evictionStrategy`"), "{}", w[0]);
        assert_eq!(w[0].0.origin, Origin::File(crate::error::Position { line: 4, column: 7 }));
    }

    #[test]
    fn typos_inside_ha_instances_and_targets_are_found() {
        let w = warn(
            "haInstances:\n  lpar1:\n    hostnme: x\n    components:\n      gateway:\n        prot: 1\n      app-server:\n        anything: 1\ncomponents:\n  distributor:\n    targets:\n      - instance: lpar1\n        rol: backup\n",
        );
        let paths: Vec<_> = w.iter().map(|w| w.0.path.as_str()).collect();
        assert_eq!(
            paths,
            ["haInstances.lpar1.hostnme", "haInstances.lpar1.components.gateway.prot", "components.distributor.targets.0.rol"]
        );
    }

    #[test]
    fn zowe_sections_we_do_not_own_are_silent() {
        let w = warn(
            "java:\n  home: /usr\nzowe:\n  setup:\n    dataset: {prefix: X}\ncomponents:\n  app-server:\n    port: 7556\n  gateway:\n    apiml:\n      security:\n        auth:\n          zosmf: {jwtAutoconfiguration: jwt}\n",
        );
        assert!(w.is_empty(), "{w:?}");
    }

    #[test]
    fn nearest_only_when_close() {
        let known = vec!["mode".to_owned(), "size".to_owned(), "evictionStrategy".to_owned()];
        assert_eq!(nearest("sise", &known), Some("size"));
        assert_eq!(nearest("completelydifferent", &known), None);
    }
}
