//! One task per replica set: drives its replicas towards the desired spec.
//!
//! The controller wakes on every change of the set (a new spec, a replica's phase) and
//! reconciles in one critical section: start missing replicas of the current generation, stop
//! extra ones, and once every replica of the current generation is ready, stop all others (the
//! rolling replacement). A current generation that fails before it was ever all ready is
//! stopped while the last established generation keeps serving. Stops are asynchronous: the
//! controller cancels a supervisor, which takes the replica out of routing and stops it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::local::Inner;
use crate::local::state::{ReplicaKey, SetState};
use crate::local::supervisor::{Supervisor, initial_status};
use crate::logfile::{ReplicaLog, SharedLog, replica_log_path};
use crate::spec::ReplicaPhase;

/// A running supervisor.
struct Handle {
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

pub(crate) struct Controller {
    inner: Arc<Inner>,
    id: String,
    set_dir: PathBuf,
    /// Parent of every supervisor's token: dropping the controller (even by a panic) stops them.
    token: CancellationToken,
    handles: BTreeMap<ReplicaKey, Handle>,
    logs: BTreeMap<u32, SharedLog>,
}

impl Controller {
    pub(crate) fn new(inner: Arc<Inner>, id: String, set_dir: PathBuf) -> Self {
        Self { inner, id, set_dir, token: CancellationToken::new(), handles: BTreeMap::new(), logs: BTreeMap::new() }
    }

    /// Reconciles on every change until the set is removed, then stops every replica and
    /// forgets the set (which wakes everyone waiting on it).
    pub(crate) async fn run(mut self, mut changed: watch::Receiver<()>) {
        let _forget = ForgetOnDrop {
            inner: self.inner.clone(),
            id: self.id.clone(),
            _stop_replicas: self.token.clone().drop_guard(),
        };
        loop {
            changed.borrow_and_update();
            self.handles.retain(|_, h| !h.task.is_finished());
            let Some(removing) = self.reconcile() else { break };
            if removing || changed.changed().await.is_err() {
                break;
            }
        }
        for (_, handle) in std::mem::take(&mut self.handles) {
            handle.cancel.cancel();
            let _ = handle.task.await;
        }
    }

    /// One pass; returns whether the set is being removed (`None`: it is gone already).
    fn reconcile(&mut self) -> Option<bool> {
        let (inner, id) = (self.inner.clone(), self.id.clone());
        inner.registry.update(&id, |state| {
            if state.removing {
                let keys: Vec<ReplicaKey> = self.handles.keys().copied().collect();
                let modified = keys.into_iter().fold(false, |m, k| self.begin_stop(state, k) | m);
                return (modified, true);
            }
            (self.reconcile_spec(state), false)
        })
    }

    fn reconcile_spec(&mut self, state: &mut SetState) -> bool {
        let spec = state.spec.clone();
        let (generation, count) = (spec.generation, spec.instance_count);
        let current = |k: &ReplicaKey| k.generation == generation && k.index < count;
        let mut modified = false;

        // Forget replicas nobody supervises any more, unless they explain a current failure.
        let before = state.replicas.len();
        state.replicas.retain(|k, _| self.handles.contains_key(k) || current(k));
        modified |= state.replicas.len() != before;

        // A current replica that gave up fails its generation.
        let failed_already = state.failure.as_ref().is_some_and(|(g, _)| *g == generation);
        if !failed_already {
            let gave_up = state.replicas.iter().find(|(k, r)| current(k) && r.phase == ReplicaPhase::Failed);
            if let Some((_, replica)) = gave_up {
                let reason = replica.message.clone().unwrap_or_else(|| "replica failed".into());
                tracing::warn!(set = %self.id, generation, %reason, "replica set generation failed");
                state.failure = Some((generation, reason));
                modified = true;
                if state.established != Some(generation) {
                    for key in self.keys(|k| k.generation == generation) {
                        modified |= self.begin_stop(state, key);
                    }
                }
            }
        }
        let failed = state.failure.as_ref().is_some_and(|(g, _)| *g == generation);

        if !failed {
            for index in 0..count {
                let key = ReplicaKey { generation, index };
                if !self.handles.contains_key(&key) && !state.replicas.contains_key(&key) {
                    state.replicas.insert(key, initial_status(key));
                    self.start(state, key);
                    modified = true;
                }
            }
        }
        for key in self.keys(|k| k.generation == generation && k.index >= count) {
            modified |= self.begin_stop(state, key);
        }

        modified |= state.refresh_established();
        // Other generations serve only while the current one is not yet established, and
        // only the last established one does.
        let serving = state.established.filter(|g| *g != generation);
        for key in self.keys(|k| k.generation != generation && Some(k.generation) != serving) {
            modified |= self.begin_stop(state, key);
        }
        modified
    }

    fn keys(&self, filter: impl Fn(&ReplicaKey) -> bool) -> Vec<ReplicaKey> {
        self.handles.keys().copied().filter(|k| filter(k)).collect()
    }

    fn start(&mut self, state: &SetState, key: ReplicaKey) {
        let log = self
            .logs
            .entry(key.index)
            .or_insert_with(|| {
                let path = replica_log_path(&self.set_dir, key.index);
                ReplicaLog::new(path, self.inner.cfg.log_max_bytes)
            })
            .clone();
        let cancel = self.token.child_token();
        let supervisor =
            Supervisor { inner: self.inner.clone(), spec: state.spec.clone(), key, log, cancel: cancel.clone() };
        let task = tokio::spawn(supervisor.run());
        self.handles.insert(key, Handle { cancel, task });
    }

    /// Takes the replica out of routing now and tells its supervisor to stop it.
    fn begin_stop(&self, state: &mut SetState, key: ReplicaKey) -> bool {
        let Some(handle) = self.handles.get(&key) else { return false };
        if handle.cancel.is_cancelled() {
            return false;
        }
        handle.cancel.cancel();
        if let Some(replica) = state.replicas.get_mut(&key) {
            replica.phase = ReplicaPhase::Stopping;
            replica.addr = None;
        }
        true
    }
}

/// Removes the set from the registry when the controller ends, however it ends.
struct ForgetOnDrop {
    inner: Arc<Inner>,
    id: String,
    _stop_replicas: DropGuard,
}

impl Drop for ForgetOnDrop {
    fn drop(&mut self) {
        let mut sets = self.inner.registry.lock();
        let slot = sets.map.remove(&self.id);
        // Publish before dropping the slot: dropping it wakes `remove` and `shutdown`, whose
        // callers may read the routing view at once.
        self.inner.registry.publish(&sets);
        drop(slot);
    }
}
