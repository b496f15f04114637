//! The `users-file` provider: Argon2id hashes from the file `plexgate users add` writes.
//!
//! Hash checks run on the blocking pool, so a login never stalls other requests. An unknown
//! user is checked against a dummy hash of the same cost, so a failure takes the same time
//! whether the user exists or not. The file is read again when it changes on disk.
//!
//! Memory: an Argon2id check at the default cost fills 19 MiB. Letting every login allocate
//! its own made the allocator keep hundreds of MiB after a burst of logins (602 MB after 100
//! in docs/benchmarks.md), so checks run at most one per CPU at a time, each in a memory
//! block that is kept and reused; a login beyond that waits for a turn.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use argon2::password_hash::{Output, PasswordHash, PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use async_trait::async_trait;
use plexgate_config::users::UsersFile;
use tokio::sync::Semaphore;

use super::{AuthFailure, AuthProvider};

/// The users-file provider.
pub struct UsersFileProvider {
    path: PathBuf,
    state: RwLock<(Option<SystemTime>, Arc<UsersFile>)>,
    dummy: String,
    /// One turn per concurrent check.
    turns: Semaphore,
    /// Memory blocks of finished checks, for the next ones.
    memory: Mutex<Vec<Vec<Block>>>,
}

/// Largest Argon2 memory cost accepted from the users file (KiB): 256 MiB.
const MAX_M_COST: u32 = 256 * 1024;

impl UsersFileProvider {
    /// Reads `path` (a missing file is an empty one).
    pub fn open(path: PathBuf) -> Result<UsersFileProvider, String> {
        let file = UsersFile::read(&path).map_err(|e| e.to_string())?;
        let mtime = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
        let salt = SaltString::from_b64("ZHVtbXlzYWx0ZHVtbXlzYWx0").map_err(|e| e.to_string())?;
        let dummy = argon2::Argon2::default().hash_password(b"no such user", &salt).map_err(|e| e.to_string())?.to_string();
        let turns = std::thread::available_parallelism().map_or(1, |n| n.get());
        Ok(UsersFileProvider {
            path,
            state: RwLock::new((mtime, Arc::new(file))),
            dummy,
            turns: Semaphore::new(turns),
            memory: Mutex::new(Vec::new()),
        })
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
        let _turn = self.turns.acquire().await.map_err(|e| AuthFailure::Unavailable(e.to_string()))?;
        let mut memory = self.memory.lock().unwrap_or_else(|p| p.into_inner()).pop().unwrap_or_default();
        let (ok, memory) = tokio::task::spawn_blocking(move || {
            let ok = verify(&hash, password.as_bytes(), &mut memory);
            (ok, memory)
        })
        .await
        .map_err(|e| AuthFailure::Unavailable(e.to_string()))?;
        self.memory.lock().unwrap_or_else(|p| p.into_inner()).push(memory);
        if ok && exists { Ok(()) } else { Err(AuthFailure::BadCredentials) }
    }

    fn is_admin(&self, user: &str) -> bool {
        self.users().find(user).is_some_and(|u| u.admin)
    }

    fn name(&self) -> &'static str {
        "users-file"
    }
}

/// Whether `password` matches the PHC string `phc` (argon2id, argon2i or argon2d), computed in
/// `memory` (grown as needed and kept by the caller). The same computation as
/// `PasswordVerifier::verify_password`, without its allocation per call; the comparison of
/// the outputs is constant-time (`Output`'s equality).
fn verify(phc: &str, password: &[u8], memory: &mut Vec<Block>) -> bool {
    let Ok(hash) = PasswordHash::new(phc) else { return false };
    let (Some(expected), Some(salt)) = (hash.hash, hash.salt) else { return false };
    let Ok(algorithm) = Algorithm::try_from(hash.algorithm) else { return false };
    let Ok(version) = hash.version.map(Version::try_from).transpose() else { return false };
    let Ok(params) = Params::try_from(&hash) else { return false };
    if params.m_cost() > MAX_M_COST {
        tracing::warn!(m_cost = params.m_cost(), "a users-file hash asks for more memory than allowed; refused");
        return false;
    }
    let mut salt_bytes = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_bytes) else { return false };
    let need = params.block_count();
    if memory.len() < need {
        memory.resize(need, Block::default());
    }
    let argon = Argon2::new(algorithm, version.unwrap_or_default(), params);
    let mut out = vec![0u8; expected.len()];
    if argon.hash_password_into_with_memory(password, salt, &mut out, &mut memory[..need]).is_err() {
        return false;
    }
    Output::new(&out).is_ok_and(|o| o == expected)
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::password_hash::PasswordVerifier;

    #[test]
    fn reused_memory_verifies_exactly_as_the_crate_does() {
        let mut memory = Vec::new();
        let salt = SaltString::from_b64("c29tZXNhbHRzb21lc2FsdA").unwrap();
        let small = Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::new(64, 2, 1, None).unwrap());
        let hashes = [
            Argon2::default().hash_password(b"right", &salt).unwrap().to_string(),
            small.hash_password(b"right", &salt).unwrap().to_string(),
            Argon2::new(Algorithm::Argon2i, Version::V0x10, Params::new(128, 1, 2, Some(16)).unwrap())
                .hash_password(b"right", &salt)
                .unwrap()
                .to_string(),
        ];
        for phc in &hashes {
            // The same memory for every hash, big and small, in turn.
            for (password, want) in [(&b"right"[..], true), (b"wrong", false), (b"", false)] {
                let crate_says = Argon2::default().verify_password(password, &PasswordHash::new(phc).unwrap()).is_ok();
                assert_eq!(crate_says, want, "{phc}");
                assert_eq!(verify(phc, password, &mut memory), want, "{phc}");
            }
        }
        assert_eq!(memory.len(), Params::default().block_count(), "the largest need, kept");
        for broken in ["", "$argon2id$", "plain", "$argon2id$v=19$m=999999999,t=1,p=1$c29tZXNhbHQ$AAAA", "$md5$x$y"] {
            assert!(!verify(broken, b"right", &mut memory), "{broken}");
        }
    }
}
