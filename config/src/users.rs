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
//!
//! Several processes write it: `plexgate users add`, and every gateway of a host when a user
//! changes their password at login. [`UsersFile::update`] is the one way to change it: an
//! exclusive advisory lock (`flock`) on `<file>.lock` beside it, the file read again under the
//! lock, then an atomic replacement, so no writer loses another's change and no reader (each
//! gateway re-reads the file when it changes on disk) ever sees half a file.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;

/// Longest password accepted, in bytes (z/OS passphrases are at most 100 characters).
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Why `password` may not be stored, if it may not: the one set of rules for `plexgate users
/// add` and for a change at login. Only non-empty and a bound on the length (a bound on the
/// hashing work a request can cause); strength rules are the administrator's business.
pub fn password_problem(password: &str) -> Option<String> {
    if password.is_empty() {
        Some("the password is empty".to_owned())
    } else if password.len() > MAX_PASSWORD_BYTES {
        Some(format!("the password is longer than {MAX_PASSWORD_BYTES} bytes"))
    } else {
        None
    }
}

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

    /// Finds a user by name, case-insensitively, to change it.
    pub fn find_mut(&mut self, name: &str) -> Option<&mut User> {
        self.users.iter_mut().find(|u| u.name.eq_ignore_ascii_case(name))
    }

    /// Adds or replaces a user.
    pub fn upsert(&mut self, user: User) {
        match self.users.iter_mut().find(|u| u.name.eq_ignore_ascii_case(&user.name)) {
            Some(existing) => *existing = user,
            None => self.users.push(user),
        }
    }

    /// Changes the file at `path` under its lock: reads it (a missing file is an empty one),
    /// lets `change` edit it, and writes it back when `change` returns `Some`, returning that
    /// value; `None` leaves the file untouched. Blocks while another process holds the lock
    /// (every holder only reads and writes a small file), so call it off async runtimes.
    pub fn update<T>(path: &Path, change: impl FnOnce(&mut UsersFile) -> Option<T>) -> Result<Option<T>, ConfigError> {
        let _lock = lock(path)?;
        let mut file = UsersFile::read(path)?;
        let Some(value) = change(&mut file) else { return Ok(None) };
        file.write(path)?;
        Ok(Some(value))
    }

    /// Writes the file atomically: a temporary file in the same directory, flushed to disk,
    /// renamed over `path`, the directory flushed too. An existing file's permission bits are
    /// kept; a new file is 0600. Writers other than [`UsersFile::update`] must hold the lock.
    pub fn write(&self, path: &Path) -> Result<(), ConfigError> {
        use std::os::unix::fs::PermissionsExt;
        let io = |what: &'static str| move |source| ConfigError::Io { what, path: path.to_owned(), source };
        let text = serde_saphyr::to_string(self).map_err(|e| ConfigError::Io {
            what: "cannot serialise users file",
            path: path.to_owned(),
            source: std::io::Error::other(e.to_string()),
        })?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io("cannot create directory for"))?;
        }
        let mode = match std::fs::metadata(path) {
            Ok(m) => m.permissions().mode() & 0o777,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0o600,
            Err(e) => return Err(io("cannot read the permissions of")(e)),
        };
        let tmp = beside(path, ".tmp");
        write_private(&tmp, text.as_bytes()).map_err(io("cannot write"))?;
        // The umask may have narrowed the mode asked for at creation; set it exactly.
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode)).map_err(io("cannot set the permissions of"))?;
        std::fs::rename(&tmp, path).map_err(io("cannot replace"))?;
        // The rename is durable only once the directory is on disk too.
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        File::open(dir).and_then(|d| d.sync_all()).map_err(io("cannot flush the directory of"))
    }
}

/// `path` with `suffix` appended to its file name (`users.yaml` -> `users.yaml.lock`).
fn beside(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(suffix);
    path.with_file_name(name)
}

/// Takes the exclusive lock of the users file at `path`: `flock` on `<path>.lock`, released
/// when the returned file is dropped (or its process dies). The lock file is never removed:
/// removing it would let two writers lock two different files.
fn lock(path: &Path) -> Result<File, ConfigError> {
    use std::os::unix::fs::OpenOptionsExt;
    let lock_path = beside(path, ".lock");
    let io = |what: &'static str| {
        let lock_path = lock_path.clone();
        move |source| ConfigError::Io { what, path: lock_path, source }
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io("cannot create directory for"))?;
    }
    let file = OpenOptions::new().write(true).create(true).truncate(false).mode(0o600).open(&lock_path).map_err(io("cannot open"))?;
    file.lock().map_err(io("cannot lock"))?;
    Ok(file)
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

    #[test]
    fn writes_keep_the_mode_and_leave_no_temporary_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.yaml");
        let mut f = UsersFile::default();
        f.upsert(User { name: "alice".into(), hash: "$argon2id$v=19$x".into(), admin: false });
        f.write(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        f.write(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o640);
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["users.yaml"], "no temporary file left");
    }

    #[test]
    fn updates_reread_under_the_lock_and_none_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.yaml");
        let hash = |c: char| format!("$argon2id$v=19${c}");
        // Many writers at once, each adding its own user: none loses another's.
        std::thread::scope(|s| {
            for i in 0..8 {
                let path = &path;
                s.spawn(move || {
                    UsersFile::update(path, |f| {
                        f.upsert(User { name: format!("u{i}"), hash: hash('x'), admin: false });
                        Some(())
                    })
                    .unwrap()
                });
            }
        });
        assert_eq!(UsersFile::read(&path).unwrap().users.len(), 8);
        let before = std::fs::read(&path).unwrap();
        let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
        assert_eq!(UsersFile::update(&path, |_| None::<()>).unwrap(), None);
        assert_eq!(std::fs::read(&path).unwrap(), before);
        assert_eq!(std::fs::metadata(&path).unwrap().modified().unwrap(), mtime, "not rewritten");
        let changed = UsersFile::update(&path, |f| {
            let u = f.find_mut("U3")?;
            u.hash = hash('y');
            Some(u.name.clone())
        });
        assert_eq!(changed.unwrap().as_deref(), Some("u3"));
        assert_eq!(UsersFile::read(&path).unwrap().find("u3").unwrap().hash, hash('y'));
        assert!(dir.path().join("users.yaml.lock").exists());
    }
}
