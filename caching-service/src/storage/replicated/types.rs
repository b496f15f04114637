//! The Raft group's types: a log entry carries one [`Proposal`] (a [`Write`] of the embedded
//! store and the id of the request that proposed it), and its application answers an
//! [`Outcome`], the same on every replica (it depends only on the state and the write).

use std::io::Cursor;

use serde::{Deserialize, Serialize};

use crate::error::CacheError;
use crate::storage::embedded::Write;

openraft::declare_raft_types!(
    /// The caching service's Raft types.
    pub TypeConfig:
        D = Proposal,
        R = Outcome,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
);

/// A write as proposed to the group. A proposer whose answer was lost (a forwarded write
/// timed out, a leader stepped down after appending) cannot tell whether it was committed, so
/// it proposes again under the same `request`: the state machine applies a request once and
/// answers a repeat with the first outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    /// The proposing request's id; `None` in entries written before ids existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
    /// The change.
    #[serde(flatten)]
    pub write: Write,
}

impl Proposal {
    /// `write` under a new request id.
    pub fn new(write: Write) -> Proposal {
        Proposal { request: Some(uuid::Uuid::new_v4().simple().to_string()), write }
    }
}

/// The deterministic answer to one applied write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Outcome {
    /// Applied; how many entries changed.
    Done(u64),
    /// `POST /cache` of a key that exists.
    Conflict(String),
    /// The key does not exist.
    NotFound(String),
    /// No room.
    Full,
    /// A value the write cannot take.
    BadPayload(String),
    /// The store failed while applying (a disk error); the caller gets a 503.
    Failed(String),
}

impl Outcome {
    /// From what [`crate::storage::embedded::apply`] returned.
    pub fn of(r: Result<u64, CacheError>) -> Outcome {
        match r {
            Ok(n) => Outcome::Done(n),
            Err(CacheError::Conflict(k)) => Outcome::Conflict(k),
            Err(CacheError::NotFound(k)) => Outcome::NotFound(k),
            Err(CacheError::Full) => Outcome::Full,
            Err(CacheError::BadPayload(m)) => Outcome::BadPayload(m),
            Err(e) => Outcome::Failed(e.to_string()),
        }
    }

    /// As the REST layer answers it.
    pub fn into_result(self) -> Result<u64, CacheError> {
        match self {
            Outcome::Done(n) => Ok(n),
            Outcome::Conflict(k) => Err(CacheError::Conflict(k)),
            Outcome::NotFound(k) => Err(CacheError::NotFound(k)),
            Outcome::Full => Err(CacheError::Full),
            Outcome::BadPayload(m) => Err(CacheError::BadPayload(m)),
            Outcome::Failed(m) => Err(CacheError::Unavailable(m)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_without_a_request_id_still_reads() {
        let old = r#"{"write":"delete","ns":"n","key":"k"}"#;
        let p: Proposal = serde_json::from_str(old).unwrap();
        assert_eq!(p, Proposal { request: None, write: Write::Delete { ns: "n".into(), key: "k".into() } });
        let new = Proposal::new(Write::Delete { ns: "n".into(), key: "k".into() });
        let back: Proposal = serde_json::from_str(&serde_json::to_string(&new).unwrap()).unwrap();
        assert_eq!(back, new);
    }
}
