//! The one error type at the backend boundary.

use std::path::PathBuf;
use std::time::Duration;

/// What can go wrong placing or inspecting replicas.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The spec is malformed (a caller bug or unvalidated input).
    #[error("invalid replica set spec: {0}")]
    InvalidSpec(String),
    /// This host can never run the request (e.g. a GPU on a machine without one); the message
    /// says what was asked, what the host has, and what to change.
    #[error("this host cannot run the replica set: {0}")]
    Unsatisfiable(String),
    #[error("replica set {0} not found")]
    NotFound(String),
    #[error("replica {replica} of replica set {set} not found")]
    ReplicaNotFound { set: String, replica: u32 },
    /// The current generation cannot become ready; the message is user-actionable (exit status
    /// and the tail of the replica's stderr).
    #[error("replica set failed to become ready: {0}")]
    Failed(String),
    /// `wait_ready` gave up; the set may still become ready later.
    #[error("replica set {set} not ready after {timeout:?}: {ready} of {desired} replicas ready")]
    Timeout { set: String, timeout: Duration, ready: u32, desired: u32 },
    /// `shutdown` ran; nothing new is started.
    #[error("the backend is shutting down")]
    ShuttingDown,
    #[error("cannot read replica log {path}: {source}")]
    Log {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl BackendError {
    /// Whether the caller may succeed by trying the same thing again later.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Timeout { .. } | Self::Log { .. })
    }
}
