//! Process limits the servers need: many clients mean many open files (a routed client
//! connection holds two descriptors in the gateway, its own and the upstream one; a forwarded
//! one two in the distributor), and the usual soft limit of 1024 caps that at a few hundred.

/// Below this limit a server says how to raise it: about 8,000 clients at two descriptors
/// each, with room for upstream pools and files.
const WANTED_OPEN_FILES: u64 = 16_384;

/// Raises the soft open-files limit to the hard one (the distributor's helper), logs the limit
/// in force, and says what is needed when it is low. `role` names the process in the log.
pub fn raise_open_files(role: &str) {
    let limit = plexgate_serve::limits::raise_open_files();
    tracing::info!(role, open_files = ?limit, "open-files limit");
    if let Some(limit) = limit.filter(|l| *l < WANTED_OPEN_FILES) {
        tracing::warn!(
            role,
            limit,
            clients = limit / 2,
            wanted = WANTED_OPEN_FILES,
            "the open-files limit allows about `clients` concurrent client connections; for more raise the hard limit (LimitNOFILE= in the systemd unit, `ulimit -Hn` as root, or nofile in /etc/security/limits.conf)"
        );
    }
}
