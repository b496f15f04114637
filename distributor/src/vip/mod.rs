//! Takeover of the virtual address between distributor hosts, by keepalived (VRRP): what
//! Sysplex Distributor gets from a dynamic VIPA that a backup stack takes over.
//!
//! plexgate does not speak VRRP itself. It writes each host's keepalived.conf ([`conf`]),
//! keepalived asks the local distributor's admin listener whether it serves (`GET /health`,
//! through `plexgate distributor check`) and gives the address up when it does not, and
//! keepalived's notify command records the host's VRRP state in a small file ([`state`]) that
//! `plexgate status` reads. The distributor binds the address before it owns it
//! (`IP_FREEBIND`), so a backup serves the moment the address arrives.

pub mod conf;
pub mod state;

use std::path::{Path, PathBuf};

/// The files of one host's keepalived, under `<workspace>/keepalived/<haInstance>/`.
#[derive(Debug, Clone)]
pub struct Files {
    /// Its directory.
    pub dir: PathBuf,
}

impl Files {
    /// The files of `instance` in `workspace`.
    pub fn new(workspace: &Path, instance: &str) -> Files {
        Files { dir: workspace.join("keepalived").join(instance) }
    }
    /// The generated keepalived.conf.
    pub fn conf(&self) -> PathBuf {
        self.dir.join("keepalived.conf")
    }
    /// The VRRP state the notify command writes.
    pub fn state(&self) -> PathBuf {
        self.dir.join("state.json")
    }
    /// keepalived's parent process id.
    pub fn pid(&self) -> PathBuf {
        self.dir.join("keepalived.pid")
    }
    /// keepalived's VRRP child process id.
    pub fn vrrp_pid(&self) -> PathBuf {
        self.dir.join("vrrp.pid")
    }
}

/// Whether keepalived would run a script at `path` with `enable_script_security`: the file
/// and every directory above it owned by root and writable by nobody else. keepalived
/// disables a script that fails this, which would silently stop the distributor check, so
/// the generated file enables script security only where it holds.
pub fn script_path_is_secure(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let mut p = Some(path);
    while let Some(dir) = p {
        match std::fs::metadata(dir) {
            Ok(m) if m.uid() == 0 && m.mode() & 0o022 == 0 => {}
            _ => return false,
        }
        p = dir.parent();
    }
    true
}
