//! Environment overrides: one scheme, no guessing.
//!
//! `PLEXGATE__<KEY>__<KEY>__...=<value>` sets the value at that YAML path. Keys are separated
//! by a double underscore; each key matches case-insensitively, with `_` standing for `-`
//! (so `CACHING_SERVICE` is `caching-service`), and must name a key that the file or
//! plexgate's defaults have at that place. The value is read as a YAML scalar or flow
//! collection (`7554` is a number, `true` a boolean, `[a, b]` a list).
//!
//! Examples: `PLEXGATE__ZOWE__EXTERNALPORT=8554`,
//! `PLEXGATE__COMPONENTS__CACHING_SERVICE__STORAGE__MODE=redis`,
//! `PLEXGATE__HAINSTANCES__LPAR1__COMPONENTS__GATEWAY__PORT=17554`.
//!
//! Overrides under `haInstances` apply before instances are merged; all others after, so
//! environment beats both `components.*` and `haInstances.<id>.components.*`.
//! (`PLEXGATE_CONFIG` and `PLEXGATE_LOG`, with one underscore, are not config paths.)

use serde_json::{Map, Value};

use crate::error::{Origin, Problem};

/// The prefix of every override variable.
pub const ENV_PREFIX: &str = "PLEXGATE__";

/// One override, resolved to a YAML path.
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    /// The variable's name.
    pub var: String,
    /// The YAML path it sets, as keys.
    pub path: Vec<String>,
    /// The value, read as YAML.
    pub value: Value,
}

impl Override {
    /// The dotted path.
    pub fn dotted(&self) -> String {
        self.path.join(".")
    }
    /// Whether it belongs to an haInstance (applied before merging).
    pub fn is_instance(&self) -> bool {
        self.path.first().is_some_and(|k| k == "haInstances")
    }
}

/// Resolves every `PLEXGATE__*` variable against the file (`tree`) and the known keys
/// (`schema`). Unresolvable variables become problems rather than silently doing nothing.
pub fn resolve(vars: &[(String, String)], tree: &Value, schema: &crate::unknown::Schema) -> (Vec<Override>, Vec<Problem>) {
    let mut out = Vec::new();
    let mut problems = Vec::new();
    let mut vars: Vec<_> = vars.iter().filter(|(k, _)| k.starts_with(ENV_PREFIX)).collect();
    vars.sort();
    for (name, raw) in vars {
        let segs: Vec<&str> = name[ENV_PREFIX.len()..].split("__").collect();
        let problem = |message: String| Problem { path: segs.join("."), origin: Origin::Env(name.clone()), message };
        if segs.iter().any(|s| s.is_empty()) {
            problems.push(problem("empty key in the variable name (keys are separated by exactly two underscores)".to_owned()));
            continue;
        }
        let mut path: Vec<String> = Vec::new();
        let mut ok = true;
        for seg in &segs {
            let here = lookup(tree, &path);
            let mut candidates: Vec<String> = here.and_then(Value::as_object).map(|m| m.keys().cloned().collect()).unwrap_or_default();
            candidates.extend(schema.keys_at(&path));
            match candidates.iter().find(|c| matches(c, seg)) {
                Some(key) => path.push(key.clone()),
                None => {
                    let at = if path.is_empty() { "the top level".to_owned() } else { path.join(".") };
                    problems.push(problem(format!("no key `{seg}` under {at}; known there: {}", list(&candidates))));
                    ok = false;
                    break;
                }
            }
        }
        if ok {
            let value = serde_saphyr::from_str::<Value>(raw).ok().unwrap_or_else(|| Value::String(raw.clone()));
            out.push(Override { var: name.clone(), path, value });
        }
    }
    (out, problems)
}

/// Sets every override in `tree`.
pub fn apply<'a>(tree: &mut Value, overrides: impl IntoIterator<Item = &'a Override>) {
    for o in overrides {
        let mut node = &mut *tree;
        for key in &o.path {
            if !node.is_object() {
                *node = Value::Object(Map::new());
            }
            let Value::Object(map) = node else { unreachable!("made an object above") };
            node = map.entry(key.clone()).or_insert(Value::Null);
        }
        *node = o.value.clone();
    }
}

fn lookup<'a>(tree: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(tree, |node, key| node.get(key))
}

fn matches(key: &str, seg: &str) -> bool {
    key.len() == seg.len() && key.chars().zip(seg.chars()).all(|(k, s)| k.eq_ignore_ascii_case(&s) || (k == '-' && s == '_'))
}

fn list(keys: &[String]) -> String {
    let mut keys = keys.to_vec();
    keys.sort();
    keys.dedup();
    if keys.is_empty() { "none".to_owned() } else { keys.join(", ") }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unknown::Schema;
    use serde_json::json;

    fn vars(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    #[test]
    fn resolves_keys_case_insensitively_with_underscore_for_dash() {
        let tree = json!({"haInstances": {"lpar1": {}}});
        let (o, p) = resolve(
            &vars(&[
                ("PLEXGATE__COMPONENTS__CACHING_SERVICE__STORAGE__MODE", "redis"),
                ("PLEXGATE__ZOWE__EXTERNALPORT", "8554"),
                ("PLEXGATE__HAINSTANCES__LPAR1__COMPONENTS__GATEWAY__ENABLED", "false"),
                ("PLEXGATE_LOG", "debug"),
            ]),
            &tree,
            &Schema::new(),
        );
        assert!(p.is_empty(), "{p:?}");
        let paths: Vec<_> = o.iter().map(|o| (o.dotted(), o.value.clone())).collect();
        assert!(paths.contains(&("components.caching-service.storage.mode".into(), json!("redis"))));
        assert!(paths.contains(&("zowe.externalPort".into(), json!(8554))));
        assert!(paths.contains(&("haInstances.lpar1.components.gateway.enabled".into(), json!(false))));
        assert_eq!(o.len(), 3);
    }

    #[test]
    fn unknown_keys_are_problems_naming_the_variable() {
        let (o, p) =
            resolve(&vars(&[("PLEXGATE__COMPONENTS__GATEWAY__PROT", "1"), ("PLEXGATE__ZOWE____X", "1")]), &json!({}), &Schema::new());
        assert!(o.is_empty());
        assert_eq!(p.len(), 2);
        assert!(p.iter().any(|p| p.message.contains("no key `PROT` under components.gateway") && p.message.contains("port")), "{p:?}");
        assert!(p.iter().all(|p| matches!(p.origin, Origin::Env(_))));
    }

    #[test]
    fn apply_creates_missing_levels() {
        let mut tree = json!({});
        let o = Override { var: "x".into(), path: vec!["a".into(), "b".into()], value: json!([1]) };
        apply(&mut tree, [&o]);
        assert_eq!(tree, json!({"a": {"b": [1]}}));
    }
}
