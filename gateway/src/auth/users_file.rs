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
//!
//! Password changes (a login with `newPassword`) check the old password the same way, hash the
//! new one with the parameters `plexgate users add` uses (in a turn too), then replace the hash
//! with [`UsersFile::update`]: under the file's lock, so gateways of one host never write over
//! each other, and only if the user's hash is still the one just checked. Every gateway sees
//! the new file at its next login, as it re-reads the file when it changes on disk.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use argon2::password_hash::{Output, PasswordHash, PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use async_trait::async_trait;
use password_hash::rand_core::OsRng;
use plexgate_config::users::UsersFile;
use tokio::sync::Semaphore;

use super::{AuthFailure, AuthProvider, ChangeFailure, check_new_password};

/// What identifies one version of the file on disk: modification time, inode and length. A
/// rewrite is a new inode (it is renamed into place), so a change is seen even when two
/// versions share a modification time (a coarse file-system clock).
type FileVersion = Option<(SystemTime, u64, u64)>;

/// The users-file provider.
pub struct UsersFileProvider {
    path: PathBuf,
    state: RwLock<(FileVersion, Arc<UsersFile>)>,
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
        let version = file_version(&path);
        let file = UsersFile::read(&path).map_err(|e| e.to_string())?;
        let salt = SaltString::from_b64("ZHVtbXlzYWx0ZHVtbXlzYWx0").map_err(|e| e.to_string())?;
        let dummy = argon2::Argon2::default().hash_password(b"no such user", &salt).map_err(|e| e.to_string())?.to_string();
        let turns = std::thread::available_parallelism().map_or(1, |n| n.get());
        Ok(UsersFileProvider {
            path,
            state: RwLock::new((version, Arc::new(file))),
            dummy,
            turns: Semaphore::new(turns),
            memory: Mutex::new(Vec::new()),
        })
    }

    /// The current contents, re-read if the file changed.
    fn users(&self) -> Arc<UsersFile> {
        let version = file_version(&self.path);
        {
            let s = self.state.read().unwrap_or_else(|p| p.into_inner());
            if s.0 == version {
                return s.1.clone();
            }
        }
        match UsersFile::read(&self.path) {
            Ok(f) => {
                let f = Arc::new(f);
                *self.state.write().unwrap_or_else(|p| p.into_inner()) = (version, f.clone());
                tracing::info!(path = %self.path.display(), users = f.users.len(), "users file reloaded");
                f
            }
            Err(e) => {
                tracing::warn!(error = %e, "users file unreadable; keeping the previous contents");
                self.state.read().unwrap_or_else(|p| p.into_inner()).1.clone()
            }
        }
    }

    /// Checks `password` of `user` in a turn; on success, the hash it matched.
    async fn check(&self, user: &str, password: &str) -> Result<String, AuthFailure> {
        let users = self.users();
        let (hash, exists) = match users.find(user) {
            Some(u) => (u.hash.clone(), true),
            None => (self.dummy.clone(), false),
        };
        let password = password.to_owned();
        let _turn = self.turns.acquire().await.map_err(|e| AuthFailure::Unavailable(e.to_string()))?;
        let mut memory = self.memory.lock().unwrap_or_else(|p| p.into_inner()).pop().unwrap_or_default();
        let (ok, memory, hash) = tokio::task::spawn_blocking(move || {
            let ok = verify(&hash, password.as_bytes(), &mut memory);
            (ok, memory, hash)
        })
        .await
        .map_err(|e| AuthFailure::Unavailable(e.to_string()))?;
        self.memory.lock().unwrap_or_else(|p| p.into_inner()).push(memory);
        if ok && exists { Ok(hash) } else { Err(AuthFailure::BadCredentials) }
    }

    /// An Argon2id hash of `password` with the default parameters (those of `plexgate users
    /// add`) and a fresh salt, computed in a turn. Not in the reused memory: changes are rare.
    async fn hash(&self, password: &str) -> Result<String, AuthFailure> {
        let password = password.to_owned();
        let _turn = self.turns.acquire().await.map_err(|e| AuthFailure::Unavailable(e.to_string()))?;
        tokio::task::spawn_blocking(move || {
            let salt = SaltString::generate(&mut OsRng);
            Argon2::default().hash_password(password.as_bytes(), &salt).map(|h| h.to_string())
        })
        .await
        .map_err(|e| AuthFailure::Unavailable(e.to_string()))?
        .map_err(|e| AuthFailure::Unavailable(format!("cannot hash the new password: {e}")))
    }
}

#[async_trait]
impl AuthProvider for UsersFileProvider {
    async fn authenticate(&self, user: &str, password: &str) -> Result<(), AuthFailure> {
        self.check(user, password).await.map(drop)
    }

    async fn change_password(&self, user: &str, old: &str, new: &str) -> Result<(), ChangeFailure> {
        check_new_password(old, new)?;
        let checked = self.check(user, old).await?;
        let hash = self.hash(new).await?;
        let (path, user) = (self.path.clone(), user.to_owned());
        let written = tokio::task::spawn_blocking(move || {
            UsersFile::update(&path, |file| {
                // Read again under the lock: another writer may have changed the user since the
                // check, and then `old` is no longer known to be the password.
                let u = file.find_mut(&user).filter(|u| u.hash == checked)?;
                u.hash = hash;
                Some(())
            })
        })
        .await
        .map_err(|e| AuthFailure::Unavailable(e.to_string()))?
        .map_err(|e| AuthFailure::Unavailable(format!("cannot write the users file: {e}")))?;
        match written {
            Some(()) => Ok(()),
            None => Err(AuthFailure::BadCredentials.into()),
        }
    }

    fn is_admin(&self, user: &str) -> bool {
        self.users().find(user).is_some_and(|u| u.admin)
    }

    fn name(&self) -> &'static str {
        "users-file"
    }
}

/// The version of the file at `path` now; `None` when it cannot be read (missing).
fn file_version(path: &std::path::Path) -> FileVersion {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.ino(), m.len()))
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

    /// A users file with `alice` and `bob`, both with password `old-S3cret` (cheap hashes).
    fn users_file(dir: &std::path::Path) -> PathBuf {
        use plexgate_config::users::User;
        let path = dir.join("users.yaml");
        let salt = SaltString::from_b64("c29tZXNhbHRzb21lc2FsdA").unwrap();
        let small = Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::new(64, 1, 1, None).unwrap());
        let hash = small.hash_password(b"old-S3cret", &salt).unwrap().to_string();
        let mut file = UsersFile::default();
        file.upsert(User { name: "alice".into(), hash: hash.clone(), admin: true });
        file.upsert(User { name: "bob".into(), hash, admin: false });
        file.write(&path).unwrap();
        path
    }

    #[tokio::test]
    async fn a_change_replaces_only_that_hash_and_the_old_password_stops_working() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = users_file(dir.path());
        let p = UsersFileProvider::open(path.clone()).unwrap();
        let other = UsersFileProvider::open(path.clone()).unwrap();
        assert_eq!(other.authenticate("alice", "old-S3cret").await, Ok(()));
        let before = UsersFile::read(&path).unwrap();
        p.change_password("ALICE", "old-S3cret", "new-S3cret").await.unwrap();
        let after = UsersFile::read(&path).unwrap();
        let alice = after.find("alice").unwrap();
        assert_eq!((alice.name.as_str(), alice.admin), ("alice", true), "name and admin flag kept");
        assert!(alice.hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "the parameters of `users add`: {}", alice.hash);
        assert_eq!(after.find("bob"), before.find("bob"));
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(p.authenticate("alice", "new-S3cret").await, Ok(()));
        assert_eq!(p.authenticate("alice", "old-S3cret").await, Err(AuthFailure::BadCredentials));
        assert_eq!(p.authenticate("bob", "old-S3cret").await, Ok(()));
        // Another gateway's provider, which read the file before the change, reads it again.
        assert_eq!(other.authenticate("alice", "new-S3cret").await, Ok(()));
        assert_eq!(other.authenticate("alice", "old-S3cret").await, Err(AuthFailure::BadCredentials));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("S3cret"), "{text}");
    }

    #[tokio::test]
    async fn refused_changes_leave_the_file_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = users_file(dir.path());
        let p = UsersFileProvider::open(path.clone()).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let bad = Err(ChangeFailure::Auth(AuthFailure::BadCredentials));
        assert_eq!(p.change_password("alice", "wrong", "new-S3cret").await, bad);
        assert_eq!(p.change_password("carol", "old-S3cret", "new-S3cret").await, bad);
        assert!(matches!(p.change_password("alice", "old-S3cret", "").await, Err(ChangeFailure::Refused(_))));
        assert!(matches!(p.change_password("alice", "old-S3cret", "old-S3cret").await, Err(ChangeFailure::Refused(_))));
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
    }

    #[tokio::test]
    async fn a_file_that_cannot_be_written_is_the_provider_unavailable_not_a_refusal() {
        let dir = tempfile::tempdir().unwrap();
        let path = users_file(dir.path());
        // The lock file cannot be opened for writing when a directory stands in its place.
        std::fs::create_dir(dir.path().join("users.yaml.lock")).unwrap();
        let p = UsersFileProvider::open(path.clone()).unwrap();
        let r = p.change_password("bob", "old-S3cret", "new-S3cret").await;
        assert!(matches!(&r, Err(ChangeFailure::Auth(AuthFailure::Unavailable(why))) if why.contains("users.yaml.lock")), "{r:?}");
        assert_eq!(p.authenticate("bob", "old-S3cret").await, Ok(()), "nothing changed");
    }

    #[tokio::test]
    async fn two_gateways_changing_one_password_at_once_one_wins() {
        let dir = tempfile::tempdir().unwrap();
        let path = users_file(dir.path());
        let (a, b) = (UsersFileProvider::open(path.clone()).unwrap(), UsersFileProvider::open(path.clone()).unwrap());
        let (ra, rb) = tokio::join!(a.change_password("bob", "old-S3cret", "new-A"), b.change_password("bob", "old-S3cret", "new-B"));
        let winner = match (ra, rb) {
            (Ok(()), Err(ChangeFailure::Auth(AuthFailure::BadCredentials))) => "new-A",
            (Err(ChangeFailure::Auth(AuthFailure::BadCredentials)), Ok(())) => "new-B",
            other => panic!("exactly one change must win: {other:?}"),
        };
        for p in [&a, &b] {
            assert_eq!(p.authenticate("bob", winner).await, Ok(()));
            assert_eq!(p.authenticate("bob", "old-S3cret").await, Err(AuthFailure::BadCredentials));
        }
    }
}
