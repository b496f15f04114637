//! The VRRP state of one host as keepalived last notified it, in a JSON file beside its
//! keepalived.conf; `plexgate status` reads every host's (a shared workspace shows them all).

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// What the notify command records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VipState {
    /// The haInstance (distributor host).
    pub ha_instance: String,
    /// keepalived's vrrp_instance name.
    pub vrrp_instance: String,
    /// `MASTER` (holds the address), `BACKUP`, `FAULT` (its check fails or its link is down),
    /// `STOP` (keepalived stopped) or `STOPPED` (keepalived exited; written by `plexgate up`).
    pub state: String,
    /// Its priority as keepalived reported it.
    pub priority: Option<u16>,
    /// When it entered this state, milliseconds since the Unix epoch.
    pub since: u64,
}

/// Now, in milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Writes `state` to `path` atomically (a reader never sees half a file).
pub fn write(path: &Path, state: &VipState) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let body = serde_json::to_vec_pretty(state).map_err(std::io::Error::other)?;
    std::fs::write(&tmp, body)?;
    std::fs::rename(&tmp, path)
}

/// Reads the state at `path`.
pub fn read(path: &Path) -> std::io::Result<VipState> {
    let body = std::fs::read(path)?;
    serde_json::from_slice(&body).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_files_round_trip() {
        let dir = std::env::temp_dir().join(format!("plexgate-vip-state-{}", std::process::id()));
        let path = dir.join("a/state.json");
        let s = VipState {
            ha_instance: "a".into(),
            vrrp_instance: "plexgate_vip_51".into(),
            state: "MASTER".into(),
            priority: Some(250),
            since: 7,
        };
        write(&path, &s).unwrap();
        assert_eq!(read(&path).unwrap(), s);
        let _ = std::fs::remove_dir_all(dir);
    }
}
