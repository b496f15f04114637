//! The users file of the `users-file` authentication provider.
//!
//! Format (YAML), written by `plexgate users add` and read by the gateway:
//! ```yaml
//! users:
//!   - name: alice
//!     hash: "$argon2id$v=19$m=19456,t=2,p=1$..."   # PHC string; never a plain password
//!     admin: true
//! ```
//! Only the hash is stored; verifying it is the gateway's business.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsersFile {
    /// One entry per user, names unique.
    #[serde(default)]
    pub users: Vec<User>,
}

/// One user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// The login name (compared case-insensitively, as z/OS user ids are).
    pub name: String,
    /// Argon2id hash in PHC string format.
    pub hash: String,
    /// May revoke other users' tokens and evict.
    #[serde(default)]
    pub admin: bool,
}

impl UsersFile {
    /// Reads the file; a missing file is an empty one.
    pub fn read(path: &Path) -> Result<UsersFile, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(UsersFile::default()),
            Err(source) => return Err(ConfigError::Io { what: "cannot read users file", path: path.to_owned(), source }),
        };
        let name = path.display().to_string();
        let parsed: Option<UsersFile> = serde_saphyr::from_str(&text).map_err(|e| ConfigError::Syntax {
            file: name.clone(),
            at: e.location().map(|l| crate::Position { line: l.line() as usize, column: l.column() as usize }),
            message: e.to_string().lines().next().unwrap_or_default().to_owned(),
        })?;
        let file = parsed.unwrap_or_default();
        for u in &file.users {
            if !u.hash.starts_with("$argon2id$") {
                return Err(ConfigError::Syntax {
                    file: name,
                    at: None,
                    message: format!("user `{}`: hash is not an Argon2id PHC string", u.name),
                });
            }
        }
        Ok(file)
    }

    /// Finds a user by name, case-insensitively.
    pub fn find(&self, name: &str) -> Option<&User> {
        self.users.iter().find(|u| u.name.eq_ignore_ascii_case(name))
    }

    /// Adds or replaces a user.
    pub fn upsert(&mut self, user: User) {
        match self.users.iter_mut().find(|u| u.name.eq_ignore_ascii_case(&user.name)) {
            Some(existing) => *existing = user,
            None => self.users.push(user),
        }
    }

    /// Writes the file atomically (temporary file, then rename), mode 0600.
    pub fn write(&self, path: &Path) -> Result<(), ConfigError> {
        let io = |what: &'static str| move |source| ConfigError::Io { what, path: path.to_owned(), source };
        let text = serde_saphyr::to_string(self).map_err(|e| ConfigError::Io {
            what: "cannot serialise users file",
            path: path.to_owned(),
            source: std::io::Error::other(e.to_string()),
        })?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io("cannot create directory for"))?;
        }
        let tmp = path.with_extension("tmp");
        write_private(&tmp, text.as_bytes()).map_err(io("cannot write"))?;
        std::fs::rename(&tmp, path).map_err(io("cannot replace"))
    }
}

/// Writes `bytes` to a new file readable by its owner only.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_finds_case_insensitively() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/users.yaml");
        let mut f = UsersFile::default();
        f.upsert(User { name: "Alice".into(), hash: "$argon2id$v=19$x".into(), admin: true });
        f.upsert(User { name: "alice".into(), hash: "$argon2id$v=19$y".into(), admin: false });
        f.write(&path).unwrap();
        let back = UsersFile::read(&path).unwrap();
        assert_eq!(back.users.len(), 1);
        assert_eq!(back.find("ALICE").unwrap().hash, "$argon2id$v=19$y");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn refuses_plain_passwords_and_unknown_fields() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.yaml");
        std::fs::write(&path, "users:\n  - name: bob\n    hash: secret\n").unwrap();
        assert!(UsersFile::read(&path).is_err());
        std::fs::write(&path, "users:\n  - name: bob\n    password: secret\n").unwrap();
        assert!(UsersFile::read(&path).is_err());
        assert_eq!(UsersFile::read(&dir.path().join("none.yaml")).unwrap(), UsersFile::default());
    }
}
