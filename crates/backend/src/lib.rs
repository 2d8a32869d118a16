//! Where replicas run: the backend-neutral interface and the local process backend.
//!
//! A backend places a deployment's replica set: it starts `instance_count` replicas of the
//! set's current `generation`, replaces them without downtime when the generation changes,
//! restarts crashed ones, reports why a set cannot become ready, and publishes the addresses
//! of ready replicas for the gateway. [`LocalBackend`] runs replicas as supervised child
//! processes; a Kubernetes backend implements the same [`ReplicaBackend`] trait.
//!
//! The replica side of the contract is one line: once its model is loaded and it is
//! listening, a replica prints `SLUICE_REPLICA_LISTENING <ip:port>` on stdout
//! ([`READY_PREFIX`]). Everything else it prints goes to its log. From then on, a set with
//! [`Probes`] has each replica probed over HTTP: failing readiness takes it out of the routing
//! view until it passes again, failing liveness restarts it.

mod cgroup;
mod error;
mod host;
mod local;
mod logfile;
pub mod pipe_worker;
mod spec;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tokio::sync::watch;

pub use error::BackendError;
pub use host::{HostProfile, memory_total_bytes};
pub use local::{DEFAULT_INHERITED_ENV, EndpointMap, LocalBackend, LocalBackendConfig, MAX_LOG_LINES, READY_PREFIX};
pub use spec::{
    MAX_ID_LEN, MAX_INSTANCE_COUNT, MAX_PROBE_PATH_LEN, ProbeConfig, Probes, ReplicaCommand, ReplicaPhase,
    ReplicaSetId, ReplicaSetSpec, ReplicaSetStatus, ReplicaStatus, ResourceRequest,
};

/// A boxed, sendable future, so that [`ReplicaBackend`] can be used as `dyn`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the reconciler, the job scheduler and the gateway need from wherever replicas run.
/// See [`LocalBackend`]'s methods for the exact behaviour each one promises.
pub trait ReplicaBackend: Send + Sync + 'static {
    /// Idempotently makes the spec's replicas run (rolling replacement on a new generation).
    fn apply(&self, spec: ReplicaSetSpec) -> BoxFuture<'_, Result<(), BackendError>>;
    /// Waits for the current generation to be all ready, to fail, or for the timeout.
    fn wait_ready<'a>(&'a self, id: &'a ReplicaSetId, timeout: Duration) -> BoxFuture<'a, Result<(), BackendError>>;
    /// Stops every replica of the set and forgets it.
    fn remove<'a>(&'a self, id: &'a ReplicaSetId) -> BoxFuture<'a, ()>;
    /// The set as the backend sees it now.
    fn status(&self, id: &ReplicaSetId) -> Option<ReplicaSetStatus>;
    /// Ready replica addresses per set id.
    fn endpoints(&self) -> watch::Receiver<EndpointMap>;
    /// The tail of a replica's (or every replica's) log.
    fn logs<'a>(
        &'a self,
        id: &'a ReplicaSetId,
        replica: Option<u32>,
        lines: usize,
    ) -> BoxFuture<'a, Result<String, BackendError>>;
    /// Stops everything (server exit).
    fn shutdown(&self) -> BoxFuture<'_, ()>;
}

impl ReplicaBackend for LocalBackend {
    fn apply(&self, spec: ReplicaSetSpec) -> BoxFuture<'_, Result<(), BackendError>> {
        Box::pin(LocalBackend::apply(self, spec))
    }

    fn wait_ready<'a>(&'a self, id: &'a ReplicaSetId, timeout: Duration) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(LocalBackend::wait_ready(self, id, timeout))
    }

    fn remove<'a>(&'a self, id: &'a ReplicaSetId) -> BoxFuture<'a, ()> {
        Box::pin(LocalBackend::remove(self, id))
    }

    fn status(&self, id: &ReplicaSetId) -> Option<ReplicaSetStatus> {
        LocalBackend::status(self, id)
    }

    fn endpoints(&self) -> watch::Receiver<EndpointMap> {
        LocalBackend::endpoints(self)
    }

    fn logs<'a>(
        &'a self,
        id: &'a ReplicaSetId,
        replica: Option<u32>,
        lines: usize,
    ) -> BoxFuture<'a, Result<String, BackendError>> {
        Box::pin(LocalBackend::logs(self, id, replica, lines))
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(LocalBackend::shutdown(self))
    }
}
