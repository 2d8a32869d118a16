//! The local backend's shared state: every set's desired spec and replica statuses under one
//! lock, a change signal per set, and the routing view derived from them.
//!
//! The lock is a `std` mutex held only inside short synchronous closures, never across an
//! `.await`. Every modification wakes the set's controller and waiters and republishes the
//! routing view, in the same critical section, so the view never lags the statuses.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::watch;

use crate::spec::{ReplicaPhase, ReplicaSetSpec, ReplicaSetStatus, ReplicaStatus};

/// The routing view: ready replica addresses per replica set id. A set that exists but has no
/// ready replica maps to an empty list.
pub type EndpointMap = Arc<HashMap<String, Vec<SocketAddr>>>;

/// One replica of one generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct ReplicaKey {
    pub(crate) generation: u64,
    pub(crate) index: u32,
}

/// What the backend knows and wants for one set.
#[derive(Debug)]
pub(crate) struct SetState {
    pub(crate) spec: Arc<ReplicaSetSpec>,
    /// `remove` or `shutdown` asked the set to go.
    pub(crate) removing: bool,
    /// The newest generation that was once all ready; it keeps serving during a rollout.
    pub(crate) established: Option<u64>,
    /// Why a generation cannot become ready.
    pub(crate) failure: Option<(u64, String)>,
    pub(crate) replicas: BTreeMap<ReplicaKey, ReplicaStatus>,
}

/// How far the set is from serving its current generation.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Readiness {
    /// Every replica of the current generation is ready and no other replica is left.
    Ready,
    Failed(String),
    Pending {
        ready: u32,
        desired: u32,
    },
}

impl SetState {
    pub(crate) fn new(spec: Arc<ReplicaSetSpec>) -> Self {
        Self { spec, removing: false, established: None, failure: None, replicas: BTreeMap::new() }
    }

    /// Records the current generation as established once all its replicas are ready. Runs
    /// in the same critical section as every change, so a generation that was all ready is
    /// never mistaken for an unfinished one by a spec change that follows at once.
    pub(crate) fn refresh_established(&mut self) -> bool {
        let generation = self.spec.generation;
        if self.established == Some(generation) || self.ready_count() != self.spec.instance_count {
            return false;
        }
        let current_ready = (0..self.spec.instance_count).all(|index| {
            let key = ReplicaKey { generation, index };
            self.replicas.get(&key).is_some_and(|r| r.phase == ReplicaPhase::Ready)
        });
        if current_ready {
            tracing::info!(set = %self.spec.id, generation, "replica set generation ready");
            self.established = Some(generation);
        }
        current_ready
    }

    pub(crate) fn ready_count(&self) -> u32 {
        let generation = self.spec.generation;
        self.replicas.iter().filter(|(k, r)| k.generation == generation && r.phase == ReplicaPhase::Ready).count()
            as u32
    }

    pub(crate) fn readiness(&self) -> Readiness {
        let generation = self.spec.generation;
        if let Some((failed, reason)) = &self.failure
            && *failed == generation
        {
            return Readiness::Failed(reason.clone());
        }
        let desired = self.spec.instance_count;
        let ready = self.ready_count();
        let settled = self.replicas.len() == desired as usize
            && self.replicas.keys().all(|k| k.generation == generation && k.index < desired);
        if ready == desired && settled { Readiness::Ready } else { Readiness::Pending { ready, desired } }
    }

    pub(crate) fn status(&self) -> ReplicaSetStatus {
        let generation = self.spec.generation;
        ReplicaSetStatus {
            desired: self.spec.instance_count,
            ready: self.ready_count(),
            replicas: self.replicas.values().cloned().collect(),
            failure: self.failure.as_ref().filter(|(g, _)| *g == generation).map(|(_, r)| r.clone()),
        }
    }

    fn ready_addrs(&self) -> Vec<SocketAddr> {
        self.replicas.values().filter(|r| r.phase == ReplicaPhase::Ready).filter_map(|r| r.addr).collect()
    }
}

/// A set's entry: its state and who to wake on change. Its controller task is detached: it
/// removes the slot itself when it ends, which closes `changed` for everyone waiting.
pub(crate) struct SetSlot {
    pub(crate) state: SetState,
    pub(crate) changed: watch::Sender<()>,
}

/// Every set, and whether `shutdown` has begun.
#[derive(Default)]
pub(crate) struct Sets {
    pub(crate) map: BTreeMap<String, SetSlot>,
    pub(crate) shutting_down: bool,
}

/// The sets plus the routing view derived from them.
pub(crate) struct Registry {
    sets: Mutex<Sets>,
    endpoints: watch::Sender<EndpointMap>,
}

impl Registry {
    pub(crate) fn new() -> Self {
        Self { sets: Mutex::new(Sets::default()), endpoints: watch::Sender::new(EndpointMap::default()) }
    }

    pub(crate) fn endpoints(&self) -> watch::Receiver<EndpointMap> {
        self.endpoints.subscribe()
    }

    /// Locks the sets. Callers that change a set must call [`Registry::changed`] before
    /// unlocking.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Sets> {
        // A panic elsewhere must not wedge removal and shutdown; the data stays consistent
        // because every critical section only assigns whole values.
        self.sets.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wakes the set's watchers and republishes the routing view.
    pub(crate) fn changed(&self, sets: &Sets, id: &str) {
        if let Some(slot) = sets.map.get(id) {
            slot.changed.send_modify(|()| {});
        }
        self.publish(sets);
    }

    /// Republishes the routing view if it differs from the last one.
    pub(crate) fn publish(&self, sets: &Sets) {
        let view: HashMap<String, Vec<SocketAddr>> =
            sets.map.iter().map(|(id, slot)| (id.clone(), slot.state.ready_addrs())).collect();
        self.endpoints.send_if_modified(|current| {
            if **current == view {
                return false;
            }
            *current = Arc::new(view);
            true
        });
    }

    /// Runs `f` on the set's state; when it returns true (it changed something), wakes
    /// watchers. Returns `None` when the set is gone.
    pub(crate) fn update<R>(&self, id: &str, f: impl FnOnce(&mut SetState) -> (bool, R)) -> Option<R> {
        let mut sets = self.lock();
        let slot = sets.map.get_mut(id)?;
        let (modified, out) = f(&mut slot.state);
        if modified | slot.state.refresh_established() {
            self.changed(&sets, id);
        }
        Some(out)
    }

    /// Changes one replica's status (if it is still tracked), waking watchers if it differs.
    pub(crate) fn update_replica(&self, id: &str, key: ReplicaKey, f: impl FnOnce(&mut ReplicaStatus)) {
        self.update(id, |state| match state.replicas.get_mut(&key) {
            Some(replica) => {
                let before = replica.clone();
                f(replica);
                (*replica != before, ())
            }
            None => (false, ()),
        });
    }

    /// Reads the set's state.
    pub(crate) fn read<R>(&self, id: &str, f: impl FnOnce(&SetState) -> R) -> Option<R> {
        self.lock().map.get(id).map(|slot| f(&slot.state))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{ReplicaCommand, ReplicaSetId, ResourceRequest};

    fn state(generation: u64, count: u32) -> SetState {
        SetState::new(Arc::new(ReplicaSetSpec {
            id: ReplicaSetId("s".into()),
            generation,
            instance_count: count,
            command: ReplicaCommand {
                program: "/bin/true".into(),
                args: vec![],
                env: BTreeMap::new(),
                cwd: "/".into(),
            },
            resources: ResourceRequest::default(),
            probes: None,
        }))
    }

    fn add(state: &mut SetState, generation: u64, index: u32, phase: ReplicaPhase) {
        let addr = (phase == ReplicaPhase::Ready).then(|| SocketAddr::from(([127, 0, 0, 1], 1000 + index as u16)));
        let status =
            ReplicaStatus { index, generation, pid: None, phase, addr, restarts: 0, last_exit: None, message: None };
        state.replicas.insert(ReplicaKey { generation, index }, status);
    }

    #[test]
    fn ready_means_only_the_current_generation_is_left() {
        let mut s = state(2, 2);
        assert_eq!(s.readiness(), Readiness::Pending { ready: 0, desired: 2 });
        add(&mut s, 1, 0, ReplicaPhase::Ready);
        add(&mut s, 2, 0, ReplicaPhase::Ready);
        add(&mut s, 2, 1, ReplicaPhase::Ready);
        assert_eq!(s.readiness(), Readiness::Pending { ready: 2, desired: 2 });
        assert_eq!(s.ready_addrs().len(), 3, "both generations serve meanwhile");
        s.replicas.remove(&ReplicaKey { generation: 1, index: 0 });
        assert_eq!(s.readiness(), Readiness::Ready);
        s.failure = Some((1, "old".into()));
        assert_eq!(s.readiness(), Readiness::Ready, "a failure of another generation");
        s.failure = Some((2, "boom".into()));
        assert_eq!(s.readiness(), Readiness::Failed("boom".into()));
        assert_eq!(state(1, 0).readiness(), Readiness::Ready);
    }

    #[test]
    fn a_replica_failing_readiness_is_neither_routed_nor_counted() {
        let mut s = state(1, 2);
        add(&mut s, 1, 0, ReplicaPhase::Ready);
        add(&mut s, 1, 1, ReplicaPhase::Ready);
        assert_eq!(s.readiness(), Readiness::Ready);
        let replica = s.replicas.get_mut(&ReplicaKey { generation: 1, index: 1 }).unwrap();
        replica.phase = ReplicaPhase::NotReady;
        assert_eq!(s.ready_addrs(), [SocketAddr::from(([127, 0, 0, 1], 1000))]);
        assert_eq!(s.readiness(), Readiness::Pending { ready: 1, desired: 2 });
    }
}
