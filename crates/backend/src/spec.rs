//! The backend-neutral vocabulary: what a replica set should run, and what it is doing now.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::BackendError;

/// The most replicas one set may ask for; a bound, not a capacity promise.
pub const MAX_INSTANCE_COUNT: u32 = 128;

/// The longest replica set id accepted (the Kubernetes backend derives object names from it).
pub const MAX_ID_LEN: usize = 253;

/// Identity of one deployment's replica set, e.g. `default/iris-ep/blue`.
///
/// Segments separated by `/`, each made of ASCII letters, digits, `.`, `_` and `-`, none empty,
/// `.` or `..`; [`ReplicaSetId::validate`] checks it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReplicaSetId(pub String);

impl ReplicaSetId {
    /// Checks the id's shape; the backend calls this on every `apply`.
    pub fn validate(&self) -> Result<(), BackendError> {
        let id = &self.0;
        let invalid = |why: &str| BackendError::InvalidSpec(format!("replica set id {id:?} {why}"));
        if id.is_empty() || id.len() > MAX_ID_LEN {
            return Err(invalid(&format!("must be 1 to {MAX_ID_LEN} characters long")));
        }
        for segment in id.split('/') {
            if segment.is_empty() || segment == "." || segment == ".." {
                return Err(invalid("has an empty, `.` or `..` segment"));
            }
            let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
            if !segment.chars().all(allowed) {
                return Err(invalid("may hold only ASCII letters, digits, `.`, `_`, `-` and `/`"));
            }
        }
        Ok(())
    }

    /// A file-name-safe form: `/` becomes `__` (`default/iris-ep/blue` → `default__iris-ep__blue`).
    pub fn file_stem(&self) -> String {
        self.0.replace('/', "__")
    }
}

impl fmt::Display for ReplicaSetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The process every replica of a set runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaCommand {
    pub program: PathBuf,
    pub args: Vec<String>,
    /// Variables set for the replica on top of the few the backend passes through.
    pub env: BTreeMap<String, String>,
    pub cwd: PathBuf,
}

/// What one replica asks of the machine. Zero means "no request" for CPU and memory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResourceRequest {
    pub cpu_millis: u32,
    pub memory_bytes: u64,
    pub gpus: u32,
}

/// The longest probe path accepted.
pub const MAX_PROBE_PATH_LEN: usize = 2048;

/// One HTTP probe of a ready replica: `GET http://<addr><path>`, first `initial_delay` after
/// the replica reported ready, then every `period`. A probe fails when it cannot connect, does
/// not answer within `timeout`, or answers a status outside 2xx.
///
/// [`Default`] is Azure ML's `ProbeSettings` default (`initial_delay: 10, period: 10,
/// timeout: 2, success_threshold: 1, failure_threshold: 30`, in seconds) on path `/`, which
/// every Sluice replica answers with 200 while it is healthy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeConfig {
    /// Absolute path, with an optional query: `/`, `/health?deep=1`.
    pub path: String,
    /// From the readiness line to the first probe.
    pub initial_delay: Duration,
    /// From one probe's start to the next one's (a probe slower than this delays the next).
    pub period: Duration,
    /// How long one probe may take, connecting included.
    pub timeout: Duration,
    /// Consecutive successes that put a replica that failed readiness back into rotation.
    /// Liveness ignores it: one success clears its failures (Azure fixes it at 1 there).
    pub success_threshold: u32,
    /// Consecutive failures that take the replica out of rotation (readiness) or restart it
    /// (liveness).
    pub failure_threshold: u32,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        Self {
            path: "/".to_owned(),
            initial_delay: Duration::from_secs(10),
            period: Duration::from_secs(10),
            timeout: Duration::from_secs(2),
            success_threshold: 1,
            failure_threshold: 30,
        }
    }
}

impl ProbeConfig {
    fn validate(&self, which: &str) -> Result<(), BackendError> {
        let invalid = |why: String| Err(BackendError::InvalidSpec(format!("{which} probe: {why}")));
        let path = &self.path;
        if !path.starts_with('/') || path.len() > MAX_PROBE_PATH_LEN {
            return invalid(format!("path {path:?} must start with `/` and be at most {MAX_PROBE_PATH_LEN} bytes"));
        }
        if !path.chars().all(|c| c.is_ascii_graphic()) {
            return invalid(format!("path {path:?} may hold only visible ASCII characters (percent-encode the rest)"));
        }
        if self.period.is_zero() || self.timeout.is_zero() {
            return invalid("period and timeout must be above zero".into());
        }
        if self.success_threshold == 0 || self.failure_threshold == 0 {
            return invalid("success_threshold and failure_threshold must be at least 1".into());
        }
        Ok(())
    }
}

/// The probes every replica of a set gets once it reported ready.
///
/// Failing `readiness` takes a replica out of rotation (phase [`ReplicaPhase::NotReady`]) until
/// it passes again; failing `liveness` kills it (SIGKILL to its process group) and restarts it
/// with the usual back-off. Each replica's status message and log say which and why.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Probes {
    pub liveness: ProbeConfig,
    pub readiness: ProbeConfig,
}

/// The desired state of one replica set.
///
/// `generation` names the template (command, resources and probes): a new template must come
/// with a new generation, which triggers a rolling replacement. Within one generation only
/// `instance_count` is looked at (scaling in place).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaSetSpec {
    pub id: ReplicaSetId,
    pub generation: u64,
    pub instance_count: u32,
    pub command: ReplicaCommand,
    pub resources: ResourceRequest,
    /// Liveness and readiness probes; `None` (the default): a replica is trusted from its
    /// readiness line until it exits.
    pub probes: Option<Probes>,
}

impl ReplicaSetSpec {
    /// Checks what can be checked without looking at the machine.
    pub fn validate(&self) -> Result<(), BackendError> {
        self.id.validate()?;
        if self.instance_count > MAX_INSTANCE_COUNT {
            return Err(BackendError::InvalidSpec(format!(
                "instance_count {} is above the limit of {MAX_INSTANCE_COUNT}",
                self.instance_count
            )));
        }
        if self.command.program.as_os_str().is_empty() {
            return Err(BackendError::InvalidSpec("the replica command has no program".into()));
        }
        if let Some(probes) = &self.probes {
            probes.liveness.validate("liveness")?;
            probes.readiness.validate("readiness")?;
        }
        Ok(())
    }
}

/// Where one replica is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReplicaPhase {
    /// Started, not yet reported listening.
    Starting,
    /// Listening at its `addr`; in the routing view.
    Ready,
    /// Running and listening, but failing its readiness probe: out of the routing view until it
    /// passes again. `message` says why.
    NotReady,
    /// Exited; waiting out a back-off before starting again.
    Restarting,
    /// Gave up: too many consecutive start failures. `message` says why.
    Failed,
    /// Being stopped (out of the routing view already).
    Stopping,
}

/// One replica as the backend sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaStatus {
    /// Slot within the set, `0..instance_count`; a new generation reuses the slots.
    pub index: u32,
    pub generation: u64,
    /// The running process (or pod), if any.
    pub pid: Option<u32>,
    pub phase: ReplicaPhase,
    /// Where it listens, once `Ready` (kept while `NotReady`).
    pub addr: Option<SocketAddr>,
    /// Times the replica was started again after an exit.
    pub restarts: u32,
    /// How the last run ended, e.g. `exit status: 3`.
    pub last_exit: Option<String>,
    /// A human-readable note: why it is restarting, not ready or failed (e.g. `not ready:
    /// failed readiness 3 times (last: status 503)`), or that limits are not enforced.
    pub message: Option<String>,
}

/// A replica set as the backend sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaSetStatus {
    /// Replicas wanted at the current generation.
    pub desired: u32,
    /// Replicas of the current generation that are `Ready`.
    pub ready: u32,
    /// Every replica the backend tracks, sorted by generation then index; during a rolling
    /// replacement both generations appear.
    pub replicas: Vec<ReplicaStatus>,
    /// Set when the current generation cannot become ready: the reason, user-actionable.
    pub failure: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(id: &str, ok: bool) {
        let got = ReplicaSetId(id.to_owned()).validate();
        assert_eq!(got.is_ok(), ok, "{id:?}: {got:?}");
    }

    #[test]
    fn ids_are_validated() {
        check("default/iris-ep/blue", true);
        check("a", true);
        check("v1.2_x", true);
        check("", false);
        check("a//b", false);
        check("/a", false);
        check("a/..", false);
        check(".", false);
        check("a b", false);
        check("ä", false);
        check(&"x".repeat(MAX_ID_LEN + 1), false);
    }

    #[test]
    fn probe_defaults_are_azures() {
        let d = ProbeConfig::default();
        assert_eq!(d.path, "/");
        assert_eq!((d.initial_delay, d.period, d.timeout), (secs(10), secs(10), secs(2)));
        assert_eq!((d.success_threshold, d.failure_threshold), (1, 30));
        assert_eq!(Probes::default(), Probes { liveness: d.clone(), readiness: d });
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn probes_are_validated() {
        let check = |edit: fn(&mut ProbeConfig), ok: bool| {
            let mut probe = ProbeConfig::default();
            edit(&mut probe);
            let got = probe.validate("readiness");
            assert_eq!(got.is_ok(), ok, "{probe:?}: {got:?}");
        };
        check(|_| {}, true);
        check(|p| p.path = "/health?deep=1".into(), true);
        check(|p| p.path = "health".into(), false);
        check(|p| p.path = "/a b".into(), false);
        check(|p| p.path = "/a\r\nX-Evil: 1".into(), false);
        check(|p| p.period = Duration::ZERO, false);
        check(|p| p.timeout = Duration::ZERO, false);
        check(|p| p.success_threshold = 0, false);
        check(|p| p.failure_threshold = 0, false);
        check(|p| p.initial_delay = Duration::ZERO, true);
    }

    #[test]
    fn file_stem_replaces_slashes() {
        let id = ReplicaSetId("default/iris-ep/blue".into());
        assert_eq!(id.file_stem(), "default__iris-ep__blue");
    }
}
