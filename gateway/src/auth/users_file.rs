//! The `users-file` provider: Argon2id hashes from the file `plexgate users add` writes.
//!
//! Hash checks run on the blocking pool, so a login never stalls other requests. An unknown
//! user is checked against a dummy hash of the same cost, so a failure takes the same time
//! whether the user exists or not. The file is read again when it changes on disk.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use async_trait::async_trait;
use plexgate_config::users::UsersFile;

use super::{AuthFailure, AuthProvider};

/// The users-file provider.
pub struct UsersFileProvider {
    path: PathBuf,
    state: RwLock<(Option<SystemTime>, Arc<UsersFile>)>,
    dummy: String,
}

impl UsersFileProvider {
    /// Reads `path` (a missing file is an empty one).
    pub fn open(path: PathBuf) -> Result<UsersFileProvider, String> {
        let file = UsersFile::read(&path).map_err(|e| e.to_string())?;
        let mtime = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
        let salt = SaltString::from_b64("ZHVtbXlzYWx0ZHVtbXlzYWx0").map_err(|e| e.to_string())?;
        let dummy = argon2::Argon2::default().hash_password(b"no such user", &salt).map_err(|e| e.to_string())?.to_string();
        Ok(UsersFileProvider { path, state: RwLock::new((mtime, Arc::new(file))), dummy })
    }

    /// The current contents, re-read if the file changed.
    fn users(&self) -> Arc<UsersFile> {
        let mtime = std::fs::metadata(&self.path).and_then(|m| m.modified()).ok();
        {
            let s = self.state.read().unwrap_or_else(|p| p.into_inner());
            if s.0 == mtime {
                return s.1.clone();
            }
        }
        match UsersFile::read(&self.path) {
            Ok(f) => {
                let f = Arc::new(f);
                *self.state.write().unwrap_or_else(|p| p.into_inner()) = (mtime, f.clone());
                tracing::info!(path = %self.path.display(), users = f.users.len(), "users file reloaded");
                f
            }
            Err(e) => {
                tracing::warn!(error = %e, "users file unreadable; keeping the previous contents");
                self.state.read().unwrap_or_else(|p| p.into_inner()).1.clone()
            }
        }
    }
}

#[async_trait]
impl AuthProvider for UsersFileProvider {
    async fn authenticate(&self, user: &str, password: &str) -> Result<(), AuthFailure> {
        let users = self.users();
        let (hash, exists) = match users.find(user) {
            Some(u) => (u.hash.clone(), true),
            None => (self.dummy.clone(), false),
        };
        let password = password.to_owned();
        let ok = tokio::task::spawn_blocking(move || {
            PasswordHash::new(&hash).is_ok_and(|h| argon2::Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
        })
        .await
        .map_err(|e| AuthFailure::Unavailable(e.to_string()))?;
        if ok && exists { Ok(()) } else { Err(AuthFailure::BadCredentials) }
    }

    fn is_admin(&self, user: &str) -> bool {
        self.users().find(user).is_some_and(|u| u.admin)
    }

    fn name(&self) -> &'static str {
        "users-file"
    }
}
