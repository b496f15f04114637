//! The config crate's one error type, and the diagnostics it carries.
//!
//! Every problem names the YAML path it is about (`components.caching-service.storage.size`),
//! where in which file that path was written when the parser knows it, and what was found
//! versus what is allowed, so an operator can fix the file without reading our code.

use std::fmt;
use std::path::PathBuf;

/// A position in a YAML source, 1-based as editors show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Position {
    /// Line, starting at 1.
    pub line: usize,
    /// Column, starting at 1.
    pub column: usize,
}

/// Where a value came from: a place in the file, an environment variable, or a default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Written in the configuration file at this position.
    File(Position),
    /// Set by this environment variable.
    Env(String),
    /// Not written anywhere: a default or a derived value.
    Default,
}

/// One problem with a configuration: what, where, and what would be accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted YAML path, e.g. `components.caching-service.storage.size`.
    pub path: String,
    /// Where the offending value was set.
    pub origin: Origin,
    /// What is wrong, including what was found and what is allowed.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.origin {
            Origin::File(p) => write!(f, "{} (line {}, column {}): {}", self.path, p.line, p.column, self.message),
            Origin::Env(var) => write!(f, "{} (from environment variable {var}): {}", self.path, self.message),
            Origin::Default => write!(f, "{}: {}", self.path, self.message),
        }
    }
}

/// Everything that can stop a configuration from loading.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read at all.
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        /// The file that was asked for.
        path: PathBuf,
        /// Why reading failed.
        source: std::io::Error,
    },
    /// The text is not valid YAML.
    #[error("{file}: YAML syntax error{}: {message}", at.map(|p| format!(" at line {}, column {}", p.line, p.column)).unwrap_or_default())]
    Syntax {
        /// The file (or `<embedded default>`).
        file: String,
        /// Where the parser stopped.
        at: Option<Position>,
        /// The parser's words.
        message: String,
    },
    /// The YAML parsed but one or more values are wrong.
    #[error("{file}: {} problem(s):\n{}", problems.len(), problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid {
        /// The file (or `<embedded default>`).
        file: String,
        /// Every problem found, in file order where known.
        problems: Vec<Problem>,
    },
    /// A file that the configuration does not name, but that a command needs, failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file involved.
        path: PathBuf,
        /// The underlying failure.
        source: std::io::Error,
    },
}

impl ConfigError {
    /// The problems of an [`ConfigError::Invalid`], empty for the other variants.
    pub fn problems(&self) -> &[Problem] {
        match self {
            ConfigError::Invalid { problems, .. } => problems,
            _ => &[],
        }
    }
}

/// A non-fatal finding: the configuration loads, but something looks wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning(pub Problem);

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}
