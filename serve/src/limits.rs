//! Open-files limits of the servers: a forwarded connection holds two sockets in the
//! distributor, a routed one two in the gateway (its own and the upstream one), so the usual
//! soft limit of 1024 would cap them near 500 connections, and whatever the limit, a server
//! that accepts past it fails connections half-way with EMFILE.

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// Raises the soft limit of open files to the hard limit; returns the limit now in force
/// (`None`: unlimited).
pub fn raise_open_files() -> Option<u64> {
    let limit = getrlimit(Resource::Nofile);
    if limit.current == limit.maximum {
        return limit.current;
    }
    match setrlimit(Resource::Nofile, Rlimit { current: limit.maximum, maximum: limit.maximum }) {
        Ok(()) => limit.maximum,
        Err(e) => {
            tracing::warn!(error = %e, soft = ?limit.current, hard = ?limit.maximum, "cannot raise the open-files limit");
            limit.current
        }
    }
}

/// Descriptors kept back from client connections: health checks, the admin listener, DNS,
/// log files and the runtime's own.
pub const RESERVED_FILES: u64 = 256;

/// The connections a process may hold open when each takes `per_connection` descriptors under
/// the open-files limit `open_files` (`None`: unlimited), at most `configured`. Past it a
/// connect or an accept would fail with EMFILE in the middle of the traffic (10,000 clients
/// under a limit of 20,000 did, issue 14), so the servers stop accepting there instead.
pub fn connections_within(configured: u32, open_files: Option<u64>, per_connection: u64) -> u32 {
    match open_files {
        None => configured,
        Some(n) => (n.saturating_sub(RESERVED_FILES) / per_connection.max(1)).clamp(1, u64::from(configured)) as u32,
    }
}

/// A slot for a connection just accepted: at once when one is free; otherwise `paused` is
/// called and the caller waits, holding that connection unserved and accepting no more, until a
/// connection closes (so the next clients wait in the kernel's accept queue, as under HAProxy's
/// maxconn) or `stop` completes (`None`). Taken after the accept, so no idle thread sits on one.
pub async fn slot(
    slots: &std::sync::Arc<tokio::sync::Semaphore>,
    paused: impl FnOnce(),
    stop: impl std::future::Future,
) -> Option<tokio::sync::OwnedSemaphorePermit> {
    if let Ok(s) = slots.clone().try_acquire_owned() {
        return Some(s);
    }
    paused();
    tokio::select! {
        s = slots.clone().acquire_owned() => s.ok(),
        _ = stop => None,
    }
}

/// The open-files limit in force (`None`: unlimited).
pub fn open_files() -> Option<u64> {
    getrlimit(Resource::Nofile).current
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_what_the_descriptors_allow_and_never_more_than_configured() {
        assert_eq!(connections_within(20_000, Some(20_000), 2), 9_872);
        assert_eq!(connections_within(5_000, Some(20_000), 2), 5_000);
        assert_eq!(connections_within(20_000, None, 2), 20_000);
        assert_eq!(connections_within(20_000, Some(100), 2), 1, "a tiny limit still serves one");
        assert_eq!(connections_within(20_000, Some(1_280), 1), 1_024);
    }
}
