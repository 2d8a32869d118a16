//! Liveness and readiness probes: out of rotation and back, killed and restarted, and the
//! words `show` and `get-logs` explain it with.

use std::time::Duration;

use sluice_backend::{BackendError, ProbeConfig, Probes, ReplicaPhase, ReplicaSetId, ReplicaSetSpec, ReplicaStatus};

use crate::support::{Harness, PATIENCE, alive, fake, harness, harness_with, id, spec};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A probe every 200 ms from 200 ms after ready; thresholds 2; a timeout no healthy replica
/// reaches even on a loaded machine.
fn fast() -> ProbeConfig {
    ProbeConfig {
        path: "/".into(),
        initial_delay: ms(200),
        period: ms(200),
        timeout: Duration::from_secs(5),
        success_threshold: 2,
        failure_threshold: 2,
    }
}

/// A probe that never reaches its failure threshold in a test.
fn lenient() -> ProbeConfig {
    ProbeConfig { failure_threshold: 1_000_000, ..fast() }
}

/// An HTTP fake replica per slot whose health is read from `<dir>/health-<slot>`.
fn probed(h: &Harness, id: &ReplicaSetId, count: u32, probes: Probes) -> ReplicaSetSpec {
    let health = h.dir.path().join("health-%i");
    let mut spec = spec(id, 1, count, fake(&["--http-health", health.to_str().unwrap()]));
    spec.probes = Some(probes);
    spec
}

fn set_health(h: &Harness, slot: u32, state: &str) {
    std::fs::write(h.dir.path().join(format!("health-{slot}")), state).unwrap();
}

fn replica(h: &Harness, id: &ReplicaSetId, slot: u32) -> ReplicaStatus {
    let status = h.backend.status(id).expect("status");
    status.replicas.into_iter().find(|r| r.index == slot).expect("replica")
}

/// Polls the replica's status until `pred` holds (a generous wait for an event, not a bound).
async fn replica_until(h: &Harness, id: &ReplicaSetId, slot: u32, pred: impl Fn(&ReplicaStatus) -> bool) {
    let wait = async {
        while !pred(&replica(h, id, slot)) {
            tokio::time::sleep(ms(10)).await;
        }
    };
    if tokio::time::timeout(PATIENCE, wait).await.is_err() {
        panic!("replica {slot} never got there: {:?}", replica(h, id, slot));
    }
}

async fn log_of(h: &Harness, id: &ReplicaSetId, slot: u32) -> String {
    h.backend.logs(id, Some(slot), 1000).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_readiness_takes_a_replica_out_of_rotation_until_it_passes_again() {
    let h = harness();
    let id = id("readiness");
    h.apply_ready(probed(&h, &id, 2, Probes { liveness: lenient(), readiness: fast() })).await;
    let (addr0, addr1) = (replica(&h, &id, 0).addr.unwrap(), replica(&h, &id, 1).addr.unwrap());
    let pid1 = replica(&h, &id, 1).pid;

    set_health(&h, 1, "503");
    h.routed_until(&id, |addrs| addrs == [addr0]).await;
    let out = replica(&h, &id, 1);
    assert_eq!(out.phase, ReplicaPhase::NotReady);
    assert_eq!((out.pid, out.addr, out.restarts), (pid1, Some(addr1), 0), "still running, not restarted");
    let message = out.message.unwrap();
    assert!(message.starts_with("not ready: failed readiness ") && message.ends_with(" times (last: status 503)"));
    let status = h.backend.status(&id).unwrap();
    assert_eq!((status.desired, status.ready), (2, 1));
    assert_eq!(replica(&h, &id, 0).phase, ReplicaPhase::Ready, "the healthy replica keeps serving");
    let log = log_of(&h, &id, 1).await;
    let line = "[g1 sluice] not ready: failed readiness 2 times (last: status 503); out of rotation until it \
                passes 2 time(s) in a row";
    assert!(log.contains(line), "{log}");

    set_health(&h, 1, "ok");
    h.routed_until(&id, |addrs| addrs.len() == 2 && addrs.contains(&addr1)).await;
    let back = replica(&h, &id, 1);
    assert_eq!((back.phase, back.pid, back.restarts, back.message), (ReplicaPhase::Ready, pid1, 0, None));
    h.backend.wait_ready(&id, PATIENCE).await.unwrap();
    let log = log_of(&h, &id, 1).await;
    assert!(log.contains("[g1 sluice] ready again: passed readiness 2 time(s) in a row; back in rotation"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_liveness_kills_and_restarts_the_replica_with_back_off() {
    // A back-off long enough to read the reason while the replica waits to start again.
    let h = harness_with(|cfg| {
        cfg.restart_backoff_base = Duration::from_secs(1);
        cfg.restart_backoff_max = Duration::from_secs(2);
    });
    let id = id("liveness");
    let liveness = ProbeConfig { timeout: ms(300), ..fast() };
    h.apply_ready(probed(&h, &id, 1, Probes { liveness, readiness: lenient() })).await;
    let before = replica(&h, &id, 0);
    let old_pid = before.pid.unwrap();

    set_health(&h, 0, "hang");
    let why = "failed liveness 2 times (last: timed out after 300ms)";
    let message = format!("restarting in 1s: {why}");
    replica_until(&h, &id, 0, |r| r.message.as_deref() == Some(message.as_str())).await;
    let restarting = replica(&h, &id, 0);
    assert_eq!((restarting.phase, restarting.pid, restarting.addr), (ReplicaPhase::Restarting, None, None));
    let last_exit = restarting.last_exit.unwrap();
    assert_eq!(last_exit, format!("signal: 9 (SIGKILL), killed after it {why}"));
    assert!(h.routed(&id).is_empty(), "out of rotation while it restarts");
    assert!(!alive(old_pid));

    set_health(&h, 0, "ok");
    h.backend.wait_ready(&id, PATIENCE).await.unwrap();
    let after = replica(&h, &id, 0);
    assert_eq!(after.phase, ReplicaPhase::Ready);
    assert!(after.restarts >= 1, "{after:?}");
    assert_ne!(after.pid, Some(old_pid));
    assert_eq!(h.routed(&id), vec![after.addr.unwrap()]);
    let log = log_of(&h, &id, 0).await;
    assert!(log.contains(&format!("[g1 sluice] restarting: {why}; killing its process group (SIGKILL)")), "{log}");
    assert!(log.contains("[g1 sluice] killed: signal: 9 (SIGKILL)"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probed_replica_that_exits_leaves_rotation_and_restarts() {
    let h = harness();
    let id = id("probedcrash");
    h.apply_ready(probed(&h, &id, 1, Probes { liveness: fast(), readiness: fast() })).await;
    let before = replica(&h, &id, 0);
    let (old_pid, old_addr) = (before.pid.unwrap(), before.addr.unwrap());

    nix::sys::signal::kill(nix::unistd::Pid::from_raw(old_pid as i32), nix::sys::signal::Signal::SIGKILL).unwrap();
    h.routed_until(&id, |addrs| !addrs.contains(&old_addr)).await;
    h.backend.wait_ready(&id, PATIENCE).await.unwrap();
    let after = replica(&h, &id, 0);
    assert_eq!((after.phase, after.restarts), (ReplicaPhase::Ready, 1));
    assert_eq!(after.last_exit.as_deref(), Some("signal: 9 (SIGKILL)"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthy_replicas_stay_ready_under_probes() {
    let h = harness();
    let id = id("healthy");
    let probes = Probes { liveness: ProbeConfig { failure_threshold: 1, ..fast() }, readiness: fast() };
    h.apply_ready(probed(&h, &id, 1, probes)).await;
    let pid = replica(&h, &id, 0).pid;
    // Several probe periods of each kind.
    tokio::time::sleep(ms(1200)).await;
    let now = replica(&h, &id, 0);
    assert_eq!((now.phase, now.pid, now.restarts, now.message), (ReplicaPhase::Ready, pid, 0, None));
    let log = log_of(&h, &id, 0).await;
    assert!(!log.contains("readiness") && !log.contains("liveness"), "{log}");
}

#[test]
fn probe_defaults_are_azures() {
    let d = ProbeConfig::default();
    assert_eq!(d.path, "/");
    assert_eq!(
        (d.initial_delay, d.period, d.timeout),
        (Duration::from_secs(10), Duration::from_secs(10), Duration::from_secs(2))
    );
    assert_eq!((d.success_threshold, d.failure_threshold), (1, 30));
    assert_eq!(Probes::default().liveness, d);
    assert_eq!(Probes::default().readiness, d);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_probes_are_refused() {
    let h = harness();
    let id = id("badprobe");
    let mut bad = probed(&h, &id, 1, Probes::default());
    bad.probes.as_mut().unwrap().liveness.period = Duration::ZERO;
    let err = h.backend.apply(bad).await.unwrap_err();
    assert!(matches!(err, BackendError::InvalidSpec(_)), "{err:?}");
    assert!(err.to_string().contains("liveness probe: period and timeout must be above zero"), "{err}");
    assert!(h.backend.status(&id).is_none());
}
