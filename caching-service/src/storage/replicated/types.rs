//! The Raft group's types: a log entry carries one [`Write`] of the embedded store, and its
//! application answers an [`Outcome`], the same on every replica (it depends only on the state
//! and the write).

use std::io::Cursor;

use serde::{Deserialize, Serialize};

use crate::error::CacheError;
use crate::storage::embedded::Write;

openraft::declare_raft_types!(
    /// The caching service's Raft types.
    pub TypeConfig:
        D = Write,
        R = Outcome,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
);

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
