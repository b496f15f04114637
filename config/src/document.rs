//! A loaded zowe.yaml with its environment overrides, ready to be viewed from any instance.

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::env::{self, Override};
use crate::error::{ConfigError, Origin, Problem, Warning};
use crate::merge::instance_view;
use crate::model::ZoweYaml;
use crate::source::Source;
use crate::unknown::{self, Schema};

/// The file, parsed, with the environment resolved against it.
pub struct Document {
    pub(crate) source: Source,
    /// The tree with the `haInstances.*` overrides already applied.
    raw: Value,
    /// Overrides applied after merging an instance.
    late: Vec<Override>,
    /// All overrides, for telling where a value came from.
    all: Vec<Override>,
    pub(crate) warnings: Vec<Warning>,
    env_problems: Vec<Problem>,
}

impl Document {
    /// Parses `text` (named `name` in messages) and resolves `env` (`PLEXGATE__*` variables).
    pub fn parse(name: &str, text: &str, env: &[(String, String)]) -> Result<Document, ConfigError> {
        let source = Source::parse(name, text)?;
        let schema = Schema::new();
        let warnings = unknown::warnings(&source, &schema);
        let (all, env_problems) = env::resolve(env, &source.tree, &schema);
        let mut raw = source.tree.clone();
        env::apply(&mut raw, all.iter().filter(|o| o.is_instance()));
        let late = all.iter().filter(|o| !o.is_instance()).cloned().collect();
        Ok(Document { source, raw, late, all, warnings, env_problems })
    }

    /// The name of the source, for messages.
    pub fn name(&self) -> &str {
        &self.source.name
    }

    /// The ids under `haInstances`, in file order.
    pub fn instance_ids(&self) -> Vec<String> {
        self.raw.get("haInstances").and_then(Value::as_object).map(|m| m.keys().cloned().collect()).unwrap_or_default()
    }

    /// Problems with the environment variables themselves.
    pub(crate) fn env_problems(&self) -> &[Problem] {
        &self.env_problems
    }

    /// The file as `instance` sees it, environment applied, as a tree.
    pub(crate) fn view(&self, instance: Option<&str>) -> Value {
        let mut v = match instance {
            Some(id) => instance_view(&self.raw, id),
            None => self.raw.clone(),
        };
        env::apply(&mut v, self.late.iter());
        v
    }

    /// The file as `instance` sees it, typed; a type error names the path it was written at.
    pub(crate) fn typed(&self, instance: Option<&str>) -> Result<ZoweYaml, Problem> {
        self.deserialize(self.view(instance), instance)
    }

    fn deserialize<T: DeserializeOwned>(&self, v: Value, instance: Option<&str>) -> Result<T, Problem> {
        serde_path_to_error::deserialize(v).map_err(|e| {
            let path = dotted(e.path());
            let message = e.inner().to_string().replace("invalid type: ", "found ").replace("invalid value: ", "found ");
            self.problem(&path, instance, message)
        })
    }

    /// A problem about `path` of `instance`'s view, located where that value was written.
    pub(crate) fn problem(&self, path: &str, instance: Option<&str>, message: String) -> Problem {
        let (path, origin) = self.locate(path, instance);
        Problem { path, origin, message }
    }

    /// Where the value at `path` of `instance`'s view came from, and its path there.
    fn locate(&self, path: &str, instance: Option<&str>) -> (String, Origin) {
        let in_instance = instance.filter(|_| path.starts_with("components.")).map(|id| format!("haInstances.{id}.{path}"));
        for candidate in in_instance.iter().map(String::as_str).chain([path]) {
            if let Some(o) = self.all.iter().rev().find(|o| covers(&o.dotted(), candidate)) {
                return (candidate.to_owned(), Origin::Env(o.var.clone()));
            }
        }
        if let Some(p) = in_instance.as_deref().and_then(|p| self.source.position(p).map(|pos| (p, pos))) {
            return (p.0.to_owned(), Origin::File(p.1));
        }
        // The nearest written ancestor, so a default that is wrong in context still points somewhere.
        let mut probe = path;
        loop {
            if let Some(pos) = self.source.position(probe) {
                return (path.to_owned(), Origin::File(pos));
            }
            match probe.rfind('.') {
                Some(i) => probe = &probe[..i],
                None => return (path.to_owned(), Origin::Default),
            }
        }
    }
}

/// Whether an override of `set` decides the value at `path` (the same path or an ancestor).
fn covers(set: &str, path: &str) -> bool {
    path == set || path.starts_with(&format!("{set}."))
}

fn dotted(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    path.iter()
        .map(|s| match s {
            Segment::Seq { index } => index.to_string(),
            Segment::Map { key } => key.clone(),
            Segment::Enum { variant } => variant.clone(),
            Segment::Unknown => "?".to_owned(),
        })
        .collect::<Vec<_>>()
        .join(".")
}
