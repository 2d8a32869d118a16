//! The local backend: replicas as supervised child processes of this server.

mod config;
mod controller;
mod output;
mod probe;
mod process;
mod state;
mod supervisor;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

pub use config::LocalBackendConfig;
pub use output::READY_PREFIX;
pub use process::DEFAULT_INHERITED_ENV;
pub(crate) use process::{die_with_parent, signal_group};
pub use state::EndpointMap;

use crate::cgroup::CgroupRoot;
use crate::error::BackendError;
use crate::host::HostProfile;
use crate::logfile::{self, replica_log_path};
use crate::spec::{ReplicaPhase, ReplicaSetId, ReplicaSetSpec, ReplicaSetStatus};
use controller::Controller;
use state::{Readiness, Registry, SetSlot, SetState};

/// The most log lines one `logs` call returns per replica.
pub const MAX_LOG_LINES: usize = 10_000;

/// Runs replica sets as child processes on this machine. Cheap to clone.
#[derive(Clone)]
pub struct LocalBackend {
    inner: Arc<Inner>,
}

/// What every controller and supervisor shares.
pub(crate) struct Inner {
    pub(crate) registry: Registry,
    pub(crate) cfg: LocalBackendConfig,
    pub(crate) host: HostProfile,
    pub(crate) cgroups: Option<CgroupRoot>,
    /// Put in a ready replica's status message when its requested limits are not enforced.
    pub(crate) limits_note: Option<String>,
}

impl LocalBackend {
    /// A backend for this machine, its capacity read from the OS.
    pub fn new(cfg: LocalBackendConfig) -> Self {
        Self::with_host(cfg, HostProfile::detect())
    }

    /// A backend that believes the machine is `host` (tests, or an operator's override).
    pub fn with_host(cfg: LocalBackendConfig, host: HostProfile) -> Self {
        let (cgroups, limits_note) = if cfg.enforce_limits {
            match CgroupRoot::detect() {
                Ok(root) => (Some(root), None),
                Err(why) => {
                    let note = format!("resource limits not enforced on this host (no writable cgroup v2: {why})");
                    (None, Some(note))
                }
            }
        } else {
            (None, Some("resource limits not enforced (disabled by configuration)".to_owned()))
        };
        tracing::info!(?host, limits = limits_note.as_deref().unwrap_or("cgroup v2"), "local backend");
        let inner = Inner { registry: Registry::new(), cfg, host, cgroups, limits_note };
        Self { inner: Arc::new(inner) }
    }

    /// The machine as this backend sees it.
    pub fn host(&self) -> &HostProfile {
        &self.inner.host
    }

    /// Idempotent. Makes `instance_count` replicas of `generation` run; returns once the change
    /// is under way (see [`LocalBackend::wait_ready`]).
    ///
    /// A new generation is rolled out without downtime: its replicas start beside the old
    /// ones, and only when all are ready are the old ones taken out of routing and stopped
    /// (SIGTERM, grace, SIGKILL). If it fails to start, the old replicas keep serving and the
    /// status carries the failure. Within one generation only `instance_count` is applied
    /// (scaling in place); an older generation than the current one is refused.
    ///
    /// Fails at once with [`BackendError::Unsatisfiable`] for what this machine can never run
    /// (a GPU without one, more memory than it has).
    pub async fn apply(&self, spec: ReplicaSetSpec) -> Result<(), BackendError> {
        spec.validate()?;
        self.inner.host.check(&spec.resources)?;
        let registry = &self.inner.registry;
        let id = spec.id.0.clone();
        let spec = Arc::new(spec);
        loop {
            let mut removal = {
                let mut sets = registry.lock();
                if sets.shutting_down {
                    return Err(BackendError::ShuttingDown);
                }
                match sets.map.get_mut(&id) {
                    Some(slot) if slot.state.removing => slot.changed.subscribe(),
                    Some(slot) => {
                        if update_spec(&mut slot.state, &spec)? | slot.state.refresh_established() {
                            registry.changed(&sets, &id);
                        }
                        return Ok(());
                    }
                    None => {
                        let (changed, rx) = watch::channel(());
                        let set_dir = self.inner.cfg.log_dir.join(spec.id.file_stem());
                        let controller = Controller::new(self.inner.clone(), id.clone(), set_dir);
                        let slot = SetSlot { state: SetState::new(spec.clone()), changed };
                        sets.map.insert(id.clone(), slot);
                        tokio::spawn(controller.run(rx));
                        registry.changed(&sets, &id);
                        return Ok(());
                    }
                }
            };
            // The set is being removed: start afresh once it is gone.
            while removal.changed().await.is_ok() {}
        }
    }

    /// Waits until every replica of the set's current generation is ready and no replica of
    /// another generation is left; or the generation failed (the reason); or `timeout` passed.
    pub async fn wait_ready(&self, id: &ReplicaSetId, timeout: Duration) -> Result<(), BackendError> {
        // A timeout too large to add means "no deadline" in practice: a year.
        let far = Duration::from_secs(365 * 24 * 3600);
        let deadline = Instant::now().checked_add(timeout).unwrap_or_else(|| Instant::now() + far);
        let registry = &self.inner.registry;
        let not_found = || BackendError::NotFound(id.0.clone());
        let mut changed = {
            let sets = registry.lock();
            sets.map.get(&id.0).ok_or_else(not_found)?.changed.subscribe()
        };
        loop {
            match registry.read(&id.0, SetState::readiness).ok_or_else(not_found)? {
                Readiness::Ready => return Ok(()),
                Readiness::Failed(reason) => return Err(BackendError::Failed(reason)),
                Readiness::Pending { ready, desired } => {
                    match tokio::time::timeout_at(deadline, changed.changed()).await {
                        Ok(Ok(())) => {}
                        Ok(Err(_removed)) => return Err(not_found()),
                        Err(_elapsed) => {
                            let set = id.0.clone();
                            return Err(BackendError::Timeout { set, timeout, ready, desired });
                        }
                    }
                }
            }
        }
    }

    /// Stops every replica of the set (out of routing first, then SIGTERM, grace, SIGKILL) and
    /// forgets it. Returns when the processes are gone. Unknown sets are ignored.
    pub async fn remove(&self, id: &ReplicaSetId) {
        let Some(mut gone) = self.begin_removal(&id.0) else { return };
        while gone.changed().await.is_ok() {}
    }

    fn begin_removal(&self, id: &str) -> Option<watch::Receiver<()>> {
        let registry = &self.inner.registry;
        let mut sets = registry.lock();
        let slot = sets.map.get_mut(id)?;
        slot.state.removing = true;
        let rx = slot.changed.subscribe();
        registry.changed(&sets, id);
        Some(rx)
    }

    /// The set as the backend sees it now.
    /// Sets the applied set's `instance_count` in place (same generation), as an autoscaler
    /// does. Returns false when the set is not applied or is being removed.
    pub fn scale(&self, id: &ReplicaSetId, instance_count: u32) -> Result<bool, BackendError> {
        let registry = &self.inner.registry;
        let mut sets = registry.lock();
        let Some(slot) = sets.map.get_mut(&id.0).filter(|s| !s.state.removing) else { return Ok(false) };
        let mut spec = (*slot.state.spec).clone();
        spec.instance_count = instance_count;
        spec.validate()?;
        if update_spec(&mut slot.state, &Arc::new(spec))? | slot.state.refresh_established() {
            registry.changed(&sets, &id.0);
        }
        Ok(true)
    }

    pub fn status(&self, id: &ReplicaSetId) -> Option<ReplicaSetStatus> {
        self.inner.registry.read(&id.0, SetState::status)
    }

    /// The routing view for the gateway: ready replica addresses per set id, updated the
    /// moment a replica becomes ready or leaves (crash, stop, failed readiness or liveness).
    pub fn endpoints(&self) -> watch::Receiver<EndpointMap> {
        self.inner.registry.endpoints()
    }

    /// The last `lines` lines (at most [`MAX_LOG_LINES`]) of one replica slot's log, or of
    /// every slot's (each under a `==> replica-N <==` header). Logs outlive their set.
    pub async fn logs(&self, id: &ReplicaSetId, replica: Option<u32>, lines: usize) -> Result<String, BackendError> {
        id.validate()?;
        let lines = lines.min(MAX_LOG_LINES);
        let set_dir = self.inner.cfg.log_dir.join(id.file_stem());
        let known = self.inner.registry.read(&id.0, |s| s.spec.instance_count);
        let id = id.0.clone();
        let read = move || -> Result<String, BackendError> {
            let log_error = |path: &std::path::Path| {
                let path = path.to_owned();
                move |source| BackendError::Log { path, source }
            };
            let mut indexes = match replica {
                Some(index) => vec![index],
                None => logged_slots(&set_dir),
            };
            if let Some(count) = known
                && replica.is_none()
            {
                indexes.extend(0..count);
            }
            indexes.sort_unstable();
            indexes.dedup();
            if indexes.is_empty() && known.is_none() {
                return Err(BackendError::NotFound(id));
            }
            let mut out = String::new();
            for index in indexes {
                let path = replica_log_path(&set_dir, index);
                let tail = logfile::tail(&path, lines).map_err(log_error(&path))?;
                let exists = !tail.is_empty() || path.exists();
                if replica.is_some() && !exists && known.is_none_or(|count| index >= count) {
                    return Err(BackendError::ReplicaNotFound { set: id, replica: index });
                }
                if replica.is_none() {
                    out.push_str(&format!("==> replica-{index} <==\n"));
                }
                for line in tail {
                    out.push_str(&line);
                    out.push('\n');
                }
            }
            Ok(out)
        };
        tokio::task::spawn_blocking(read).await.unwrap_or_else(|join| {
            Err(BackendError::Log { path: "replica logs".into(), source: std::io::Error::other(join) })
        })
    }

    /// Stops every replica of every set and refuses new work; returns when all are gone.
    pub async fn shutdown(&self) {
        let pending: Vec<watch::Receiver<()>> = {
            let registry = &self.inner.registry;
            let mut sets = registry.lock();
            sets.shutting_down = true;
            let ids: Vec<String> = sets.map.keys().cloned().collect();
            ids.iter()
                .filter_map(|id| {
                    let slot = sets.map.get_mut(id)?;
                    slot.state.removing = true;
                    let rx = slot.changed.subscribe();
                    registry.changed(&sets, id);
                    Some(rx)
                })
                .collect()
        };
        for mut gone in pending {
            while gone.changed().await.is_ok() {}
        }
    }
}

/// Applies a new desired spec to an existing set; returns whether anything changed.
fn update_spec(state: &mut SetState, spec: &Arc<ReplicaSetSpec>) -> Result<bool, BackendError> {
    let current = &state.spec;
    if spec.generation < current.generation {
        return Err(BackendError::InvalidSpec(format!(
            "generation {} of {} is older than the applied generation {}",
            spec.generation, spec.id, current.generation
        )));
    }
    if spec.generation == current.generation {
        if spec.instance_count == current.instance_count {
            return Ok(false);
        }
        if spec.command != current.command || spec.resources != current.resources || spec.probes != current.probes {
            tracing::warn!(set = %spec.id, "template changed without a new generation; only scaling");
        }
        let mut scaled = (**current).clone();
        scaled.instance_count = spec.instance_count;
        state.spec = Arc::new(scaled);
    } else {
        state.spec = spec.clone();
    }
    // A changed spec is a fresh attempt: forget failures and the replicas that gave up.
    state.failure = None;
    state.replicas.retain(|_, r| r.phase != ReplicaPhase::Failed);
    Ok(true)
}

/// Slots that have a log file in `set_dir`.
fn logged_slots(set_dir: &std::path::Path) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir(set_dir) else { return Vec::new() };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            name.strip_prefix("replica-")?.split('.').next()?.parse().ok()
        })
        .collect()
}
