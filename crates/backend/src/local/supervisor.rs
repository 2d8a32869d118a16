//! One task per replica: start the process, watch for its readiness line, probe it while it
//! runs (readiness in and out of rotation, liveness to restart), restart it with back-off when
//! it exits or fails liveness, give up after too many start failures, stop it when told.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::process::Child;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::local::Inner;
use crate::local::output::{OutputTail, READY_PREFIX, StreamPump};
use crate::local::probe::{Change, ProbeState, probe, schedule};
use crate::local::process::{Launch, describe_exit, signal_group, stop_group};
use crate::local::state::ReplicaKey;
use crate::logfile::SharedLog;
use crate::spec::{ProbeConfig, ReplicaPhase, ReplicaSetSpec, ReplicaStatus};

/// How long to wait for a dead replica's output to drain into its log.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// The supervisor of one replica (one generation, one slot).
pub(crate) struct Supervisor {
    pub(crate) inner: Arc<Inner>,
    pub(crate) spec: Arc<ReplicaSetSpec>,
    pub(crate) key: ReplicaKey,
    pub(crate) log: SharedLog,
    pub(crate) cancel: CancellationToken,
}

/// How one run of the process ended.
enum RunEnd {
    /// Told to stop; the process is gone.
    Stopped,
    /// It ended by itself (or never started, or never became ready in time).
    Ended {
        /// How long it had been ready, if it ever was.
        ready_for: Option<Duration>,
        last_exit: Option<String>,
        /// What happened, one line.
        reason: String,
        /// `; last lines on stderr:\n...`, the replica's own words.
        output: String,
        /// `reason` is in the log already.
        logged: bool,
    },
}

/// The status a freshly planned replica starts with.
pub(crate) fn initial_status(key: ReplicaKey) -> ReplicaStatus {
    ReplicaStatus {
        index: key.index,
        generation: key.generation,
        pid: None,
        phase: ReplicaPhase::Starting,
        addr: None,
        restarts: 0,
        last_exit: None,
        message: None,
    }
}

impl Supervisor {
    /// Runs until stopped or failed. A stopped replica is forgotten; a failed one stays in the
    /// set's status (phase `Failed`) for the controller and the user to see.
    pub(crate) async fn run(self) {
        let cfg = &self.inner.cfg;
        let (mut restarts, mut start_failures, mut streak) = (0u32, 0u32, 0u32);
        let mut ever_ready = false;
        loop {
            let RunEnd::Ended { ready_for, last_exit, reason, output, logged } = self.run_once().await else {
                break;
            };
            match ready_for {
                Some(ready_for) => {
                    ever_ready = true;
                    start_failures = 0;
                    if ready_for >= cfg.restart_backoff_max {
                        streak = 0;
                    }
                }
                None => start_failures += 1,
            }
            streak += 1;
            if !logged {
                self.write_log(&reason);
            }
            if self.cancel.is_cancelled() {
                break;
            }
            if !ever_ready && start_failures >= cfg.max_start_failures {
                let message = format!("{reason} ({start_failures} consecutive start failures){output}");
                self.update(|r| {
                    r.phase = ReplicaPhase::Failed;
                    r.pid = None;
                    r.addr = None;
                    r.last_exit.clone_from(&last_exit);
                    r.message = Some(message);
                });
                return;
            }
            let delay = cfg.restart_delay(streak);
            restarts += 1;
            self.update(|r| {
                r.phase = ReplicaPhase::Restarting;
                r.pid = None;
                r.addr = None;
                r.restarts = restarts;
                r.last_exit.clone_from(&last_exit);
                r.message = Some(format!("restarting in {delay:?}: {reason}{output}"));
            });
            tokio::select! {
                () = self.cancel.cancelled() => break,
                () = tokio::time::sleep(delay) => {}
            }
        }
        let key = self.key;
        self.inner.registry.update(&self.spec.id.0, |state| (state.replicas.remove(&key).is_some(), ()));
    }

    async fn run_once(&self) -> RunEnd {
        let spec = &self.spec;
        let program = spec.command.program.display().to_string();
        self.write_log(&format!("starting `{program}` {:?}", spec.command.args));
        let launch = Launch {
            spec,
            index: self.key.index,
            inherit_env: &self.inner.cfg.inherit_env,
            host_cpus: self.inner.host.cpus,
        };
        let leaf = self.inner.cgroups.as_ref().and_then(|root| {
            let name = format!("{}.g{}.r{}", spec.id.file_stem(), spec.generation, self.key.index);
            root.create_leaf(&name, &spec.resources)
                .inspect_err(|e| tracing::warn!(error = %e, "cannot create replica cgroup"))
                .ok()
        });
        let mut child = match launch.spawn() {
            Ok(child) => child,
            Err(error) => {
                if let Some(leaf) = leaf {
                    leaf.remove();
                }
                let reason = format!("cannot start `{program}` in {}: {error}", spec.command.cwd.display());
                let output = String::new();
                return RunEnd::Ended { ready_for: None, last_exit: None, reason, output, logged: false };
            }
        };
        let pid = child.id().unwrap_or_default();
        if let Some(leaf) = &leaf
            && let Err(error) = leaf.add_process(pid)
        {
            tracing::warn!(pid, %error, "cannot move replica into its cgroup");
        }
        self.update(|r| {
            r.phase = ReplicaPhase::Starting;
            r.pid = Some(pid);
        });
        let end = self.watch(&mut child, pid).await;
        if let Some(leaf) = leaf {
            leaf.remove();
        }
        end
    }

    /// Follows one started process until it stops, exits or is told to stop.
    async fn watch(&self, child: &mut Child, pid: u32) -> RunEnd {
        let (ready_tx, mut ready_rx) = oneshot::channel();
        let (stdout_tail, stderr_tail) = (OutputTail::default(), OutputTail::default());
        let mut pumps = Vec::with_capacity(2);
        if let Some(stdout) = child.stdout.take() {
            pumps.push(tokio::spawn(self.pump("stdout", &stdout_tail, Some(ready_tx)).run(stdout)));
        }
        if let Some(stderr) = child.stderr.take() {
            pumps.push(tokio::spawn(self.pump("stderr", &stderr_tail, None).run(stderr)));
        }
        let tails = [("stderr", &stderr_tail), ("stdout", &stdout_tail)];
        let index = self.key.index;
        let ready_timeout = self.inner.cfg.ready_timeout;

        let addr = tokio::select! {
            biased;
            () = self.cancel.cancelled() => return self.stop(child, pid, pumps).await,
            Ok(addr) = &mut ready_rx => addr,
            status = child.wait() => {
                let exit = exit_text(status);
                drain(pid, pumps).await;
                return RunEnd::Ended {
                    ready_for: None,
                    reason: format!("replica {index} exited with {exit} before reporting ready"),
                    last_exit: Some(exit),
                    output: tail_text(&tails),
                    logged: false,
                };
            }
            () = tokio::time::sleep(ready_timeout) => {
                let status = stop_group(child, pid, self.inner.cfg.stop_grace).await;
                drain(pid, pumps).await;
                return RunEnd::Ended {
                    ready_for: None,
                    reason: format!(
                        "replica {index} did not print `{READY_PREFIX}<ip:port>` on stdout \
                         within {ready_timeout:?}"
                    ),
                    last_exit: status.map(|s| describe_exit(&s)),
                    output: tail_text(&tails),
                    logged: false,
                };
            }
        };

        let ready_at = Instant::now();
        self.write_log(&format!("ready at {addr}"));
        let note = self.limits_note();
        self.update(|r| {
            r.phase = ReplicaPhase::Ready;
            r.addr = Some(addr);
            r.message = note;
        });
        tokio::select! {
            biased;
            () = self.cancel.cancelled() => self.stop(child, pid, pumps).await,
            status = child.wait() => {
                // Out of the routing view first, then tidy up.
                let exit = exit_text(status);
                self.update(|r| {
                    r.phase = ReplicaPhase::Restarting;
                    r.addr = None;
                });
                drain(pid, pumps).await;
                RunEnd::Ended {
                    ready_for: Some(ready_at.elapsed()),
                    reason: format!("replica {index} exited with {exit} after being ready"),
                    last_exit: Some(exit),
                    output: tail_text(&tails),
                    logged: false,
                }
            }
            reason = self.probe_until_dead(addr) => {
                // Out of the routing view first, then kill the whole group (as a stop does
                // after its grace) and restart with the usual back-off.
                let message = format!("restarting: {reason}");
                self.update(|r| {
                    r.phase = ReplicaPhase::Restarting;
                    r.addr = None;
                    r.message = Some(message.clone());
                });
                self.write_log(&format!("{message}; killing its process group (SIGKILL)"));
                signal_group(pid, nix::sys::signal::Signal::SIGKILL);
                let exit = exit_text(child.wait().await);
                drain(pid, pumps).await;
                self.write_log(&format!("killed: {exit}"));
                RunEnd::Ended {
                    ready_for: Some(ready_at.elapsed()),
                    last_exit: Some(format!("{exit}, killed after it {reason}")),
                    reason,
                    output: String::new(),
                    logged: true,
                }
            }
        }
    }

    /// Probes the ready replica at `addr` while it runs. Readiness moves it out of the routing
    /// view and back; the future ends, with the reason, once liveness failed (never without
    /// probes).
    async fn probe_until_dead(&self, addr: SocketAddr) -> String {
        let Some(probes) = &self.spec.probes else { return std::future::pending().await };
        tokio::select! {
            reason = self.liveness(addr, &probes.liveness) => reason,
            never = self.readiness(addr, &probes.readiness) => match never {},
        }
    }

    /// Returns `failed liveness N times (last: <why>)` once the probe failed its threshold.
    async fn liveness(&self, addr: SocketAddr, cfg: &ProbeConfig) -> String {
        let mut state = ProbeState::new(cfg);
        let mut ticks = schedule(cfg);
        loop {
            ticks.tick().await;
            let result = probe(addr, &cfg.path, cfg.timeout).await;
            if let (Some(Change::Failed), Err(why)) = (state.record(result.is_ok()), &result) {
                return format!("failed liveness {} times (last: {why})", state.failures);
            }
        }
    }

    /// Takes the replica out of rotation after `failure_threshold` failures in a row, puts it
    /// back after `success_threshold` successes in a row; runs until dropped.
    async fn readiness(&self, addr: SocketAddr, cfg: &ProbeConfig) -> Infallible {
        let mut state = ProbeState::new(cfg);
        let mut ticks = schedule(cfg);
        loop {
            ticks.tick().await;
            let result = probe(addr, &cfg.path, cfg.timeout).await;
            let change = state.record(result.is_ok());
            match (&result, change) {
                (Err(why), Some(Change::Failed)) => {
                    let message = format!("not ready: failed readiness {} times (last: {why})", state.failures);
                    self.write_log(&format!(
                        "{message}; out of rotation until it passes {} time(s) in a row",
                        cfg.success_threshold
                    ));
                    self.set_running_phase(ReplicaPhase::NotReady, Some(message));
                }
                // Still out: keep the count and the last reason current.
                (Err(why), None) if !state.passing => {
                    let message = format!("not ready: failed readiness {} times (last: {why})", state.failures);
                    self.set_running_phase(ReplicaPhase::NotReady, Some(message));
                }
                (Ok(()), Some(Change::Passed)) => {
                    self.write_log(&format!(
                        "ready again: passed readiness {} time(s) in a row; back in rotation",
                        state.successes
                    ));
                    self.set_running_phase(ReplicaPhase::Ready, self.limits_note());
                }
                _ => {}
            }
        }
    }

    /// Moves a running replica between `Ready` and `NotReady` (never out of another phase).
    fn set_running_phase(&self, phase: ReplicaPhase, message: Option<String>) {
        self.update(|r| {
            if matches!(r.phase, ReplicaPhase::Ready | ReplicaPhase::NotReady) {
                r.phase = phase;
                r.message = message;
            }
        });
    }

    async fn stop(&self, child: &mut Child, pid: u32, pumps: Vec<JoinHandle<()>>) -> RunEnd {
        self.update(|r| {
            r.phase = ReplicaPhase::Stopping;
            r.addr = None;
        });
        self.write_log("stopping (SIGTERM, then SIGKILL after the grace period)");
        let status = stop_group(child, pid, self.inner.cfg.stop_grace).await;
        drain(pid, pumps).await;
        let exit = status.map_or_else(|| "unknown exit".into(), |s| describe_exit(&s));
        self.write_log(&format!("stopped: {exit}"));
        RunEnd::Stopped
    }

    fn pump(
        &self,
        stream: &'static str,
        tail: &OutputTail,
        ready: Option<oneshot::Sender<std::net::SocketAddr>>,
    ) -> StreamPump {
        StreamPump { stream, log: self.log.clone(), generation: self.key.generation, tail: tail.clone(), ready }
    }

    fn limits_note(&self) -> Option<String> {
        let resources = &self.spec.resources;
        let asked = resources.cpu_millis > 0 || resources.memory_bytes > 0;
        asked.then(|| self.inner.limits_note.clone()).flatten()
    }

    /// Changes this replica's status. Once the controller has cancelled it (inside the same
    /// lock), the replica stays out of routing whatever the run reports.
    fn update(&self, f: impl FnOnce(&mut ReplicaStatus)) {
        let cancel = &self.cancel;
        self.inner.registry.update_replica(&self.spec.id.0, self.key, |r| {
            f(r);
            if cancel.is_cancelled() && matches!(r.phase, ReplicaPhase::Ready | ReplicaPhase::NotReady) {
                r.phase = ReplicaPhase::Stopping;
                r.addr = None;
            }
        });
    }

    fn write_log(&self, text: &str) {
        self.log.lock().expect("log lock").write(self.key.generation, "sluice", text);
    }
}

/// Kills what the dead leader left in its group (so pipes close), then lets the readers
/// finish, within a bound.
async fn drain(pid: u32, pumps: Vec<JoinHandle<()>>) {
    signal_group(pid, nix::sys::signal::Signal::SIGKILL);
    let all = async {
        for pump in pumps {
            let _ = pump.await;
        }
    };
    if tokio::time::timeout(DRAIN_TIMEOUT, all).await.is_err() {
        tracing::warn!(pid, "replica output did not close after it exited");
    }
}

fn exit_text(status: std::io::Result<std::process::ExitStatus>) -> String {
    status.map_or_else(|e| format!("unknown exit ({e})"), |s| describe_exit(&s))
}

/// `; last lines on stderr:\n...` from the first stream that printed anything.
fn tail_text(tails: &[(&str, &OutputTail)]) -> String {
    for (stream, tail) in tails {
        let lines = tail.lines();
        if !lines.is_empty() {
            return format!("; last lines on {stream}:\n{}", lines.join("\n"));
        }
    }
    "; it printed nothing".into()
}
