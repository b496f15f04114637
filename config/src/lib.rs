//! plexgate's configuration: one `zowe.yaml` for every process.
//!
//! - [`Document::parse`] reads the YAML (any real zowe.yaml loads; sections we do not use are
//!   ignored) and resolves `PLEXGATE__*` environment overrides ([`env`]).
//! - [`load`] checks the view of one haInstance (`haInstances.<id>.components.*` deep-merged
//!   over `components.*`, then the environment) into a [`Config`]: every problem names its YAML
//!   path, line and column, what was found and what is allowed.
//! - Precedence, lowest first: plexgate's defaults < the file's `components.*` <
//!   `haInstances.<id>.components.*` < environment.
//!
//! Relative paths in the file are relative to the current directory of the process.

mod checked;
pub mod cidr;
pub mod dn;
mod document;
pub mod env;
mod error;
mod merge;
pub mod model;
mod source;
pub mod tls;
mod tls_verify;
pub mod unknown;
pub mod users;
mod validate;

use std::path::Path;

pub use checked::*;
pub use document::Document;
pub use error::{ConfigError, Origin, Position, Problem, Warning};
pub use merge::deep_merge;
pub use validate::certs::{GENERATED_DIR, generated as generated_certificates};

/// A checked configuration and what was noticed on the way.
#[derive(Debug)]
pub struct Loaded {
    /// The configuration.
    pub config: Config,
    /// Unknown keys, deprecated values: worth fixing, not fatal.
    pub warnings: Vec<Warning>,
}

/// Where a configuration comes from.
pub enum ConfigSource<'a> {
    /// A file on disk.
    File(&'a Path),
    /// Text in memory (the embedded default), with a name for messages.
    Text {
        /// Name for messages.
        name: &'a str,
        /// The YAML.
        text: &'a str,
    },
}

impl ConfigSource<'_> {
    /// Reads and parses the source with these environment variables.
    pub fn document(&self, env: &[(String, String)]) -> Result<Document, ConfigError> {
        match self {
            ConfigSource::File(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
                Document::parse(&path.display().to_string(), &text, env)
            }
            ConfigSource::Text { name, text } => Document::parse(name, text, env),
        }
    }
}

/// Loads the configuration of `instance` (or the base view without one).
pub fn load(doc: &Document, instance: Option<&str>, base_dir: &Path) -> Result<Loaded, ConfigError> {
    let (config, problems, warnings) = validate::check(doc, instance, base_dir);
    finish(doc, config, problems, warnings)
}

/// Checks the base view and the view of every haInstance; returns them all (base first).
pub fn load_all(doc: &Document, base_dir: &Path) -> Result<Vec<Loaded>, ConfigError> {
    let mut views = Vec::new();
    let mut all_problems: Vec<Problem> = Vec::new();
    let mut all_warnings: Vec<Warning> = doc.warnings.clone();
    let ids = doc.instance_ids();
    for instance in std::iter::once(None).chain(ids.iter().map(|s| Some(s.as_str()))) {
        let (config, problems, warnings) = validate::check(doc, instance, base_dir);
        for p in problems {
            if !all_problems.contains(&p) {
                all_problems.push(p);
            }
        }
        for w in warnings {
            if !all_warnings.contains(&w) {
                all_warnings.push(w);
            }
        }
        views.extend(config);
    }
    if !all_problems.is_empty() {
        return Err(ConfigError::Invalid { file: doc.name().to_owned(), problems: sorted(all_problems) });
    }
    let mut out: Vec<Loaded> = views.into_iter().map(|config| Loaded { config, warnings: Vec::new() }).collect();
    if let Some(first) = out.first_mut() {
        first.warnings = all_warnings;
    }
    Ok(out)
}

fn finish(doc: &Document, config: Option<Config>, problems: Vec<Problem>, warnings: Vec<Warning>) -> Result<Loaded, ConfigError> {
    let mut problems_dedup: Vec<Problem> = Vec::new();
    for p in problems {
        if !problems_dedup.contains(&p) {
            problems_dedup.push(p);
        }
    }
    match config {
        Some(config) if problems_dedup.is_empty() => {
            let mut all = doc.warnings.clone();
            all.extend(warnings);
            Ok(Loaded { config, warnings: all })
        }
        _ => Err(ConfigError::Invalid { file: doc.name().to_owned(), problems: sorted(problems_dedup) }),
    }
}

/// File order first (by line), then environment and defaults.
fn sorted(mut problems: Vec<Problem>) -> Vec<Problem> {
    problems.sort_by_key(|p| match p.origin {
        Origin::File(pos) => (0, pos.line, pos.column),
        Origin::Env(_) => (1, 0, 0),
        Origin::Default => (2, 0, 0),
    });
    problems
}
