//! Settings of the local process backend.

use std::path::PathBuf;
use std::time::Duration;

use crate::local::process::DEFAULT_INHERITED_ENV;

/// How the local backend runs and supervises replica processes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalBackendConfig {
    /// Replica logs go to `<log_dir>/<set id, / → __>/replica-<index>.log`.
    pub log_dir: PathBuf,
    /// Consecutive start failures (exit, or no readiness line in time, before ever being
    /// ready) after which a replica, and its generation, is `Failed`.
    pub max_start_failures: u32,
    /// How long a replica may take to print its readiness line.
    pub ready_timeout: Duration,
    /// Between SIGTERM and SIGKILL when stopping a replica.
    pub stop_grace: Duration,
    /// First delay before restarting an exited replica; doubles with each consecutive exit.
    pub restart_backoff_base: Duration,
    /// Cap of the restart delay. A replica that stayed ready this long starts over at the base.
    pub restart_backoff_max: Duration,
    /// A replica's log file is rotated when it would pass this size (one old file is kept).
    pub log_max_bytes: u64,
    /// Server environment variables passed through to replicas; nothing else is inherited.
    pub inherit_env: Vec<String>,
    /// Try to enforce CPU and memory requests with cgroup v2 (when this host allows it).
    pub enforce_limits: bool,
}

impl LocalBackendConfig {
    /// The defaults: 3 start failures, 120 s to become ready, 10 s stop grace, restarts after
    /// 1 s doubling up to 60 s, 10 MiB log files.
    pub fn new(log_dir: impl Into<PathBuf>) -> Self {
        Self {
            log_dir: log_dir.into(),
            max_start_failures: 3,
            ready_timeout: Duration::from_secs(120),
            stop_grace: Duration::from_secs(10),
            restart_backoff_base: Duration::from_secs(1),
            restart_backoff_max: Duration::from_secs(60),
            log_max_bytes: 10 << 20,
            inherit_env: DEFAULT_INHERITED_ENV.iter().map(|s| (*s).to_owned()).collect(),
            enforce_limits: true,
        }
    }

    /// The delay before the `streak`-th consecutive restart (1-based).
    pub(crate) fn restart_delay(&self, streak: u32) -> Duration {
        let doublings = streak.saturating_sub(1).min(31);
        self.restart_backoff_base.saturating_mul(1 << doublings).min(self.restart_backoff_max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_delay_doubles_up_to_the_cap() {
        let cfg = LocalBackendConfig::new("/tmp");
        let secs = |n| cfg.restart_delay(n).as_secs();
        assert_eq!([secs(1), secs(2), secs(3), secs(6), secs(7)], [1, 2, 4, 32, 60]);
        assert_eq!(secs(u32::MAX), 60);
    }
}
