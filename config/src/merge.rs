//! The view of one haInstance: `haInstances.<id>.components.*` deep-merged over `components.*`.

use serde_json::Value;

/// Merges `over` into `base` key by key at any depth. A mapping merges into a mapping; anything
/// else replaces. A `null` in `over` removes the key, so the default applies again.
pub fn deep_merge(base: &mut Value, over: &Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                if v.is_null() {
                    b.remove(k);
                } else if let Some(existing) = b.get_mut(k) {
                    deep_merge(existing, v);
                } else {
                    b.insert(k.clone(), v.clone());
                }
            }
        }
        (b, o) => *b = o.clone(),
    }
}

/// The whole file as instance `id` sees it (the caller has checked that `id` exists).
pub fn instance_view(raw: &Value, id: &str) -> Value {
    let mut view = raw.clone();
    let over = raw.get("haInstances").and_then(|h| h.get(id)).and_then(|i| i.get("components")).cloned();
    if let Some(over) = over {
        let components = view.as_object_mut().map(|m| m.entry("components").or_insert_with(|| Value::Object(Default::default())));
        if let Some(components) = components {
            if !components.is_object() {
                *components = Value::Object(Default::default());
            }
            deep_merge(components, &over);
        }
    }
    view
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merges_at_any_depth_and_replaces_leaves_and_lists() {
        let mut base = json!({"a": {"b": 1, "c": {"d": [1, 2], "e": "x"}}, "f": true});
        deep_merge(&mut base, &json!({"a": {"c": {"d": [3], "new": 1}}, "f": false}));
        assert_eq!(base, json!({"a": {"b": 1, "c": {"d": [3], "e": "x", "new": 1}}, "f": false}));
    }

    #[test]
    fn null_removes_a_key() {
        let mut base = json!({"a": {"b": 1, "c": 2}});
        deep_merge(&mut base, &json!({"a": {"b": null}}));
        assert_eq!(base, json!({"a": {"c": 2}}));
    }

    #[test]
    fn instance_view_overrides_components_only_for_that_instance() {
        let raw = json!({
            "components": {"gateway": {"port": 7554, "enabled": true}},
            "haInstances": {"a": {"components": {"gateway": {"enabled": false}}}, "b": {}}
        });
        let a = instance_view(&raw, "a");
        assert_eq!(a["components"]["gateway"], json!({"port": 7554, "enabled": false}));
        let b = instance_view(&raw, "b");
        assert_eq!(b["components"]["gateway"], json!({"port": 7554, "enabled": true}));
    }
}
