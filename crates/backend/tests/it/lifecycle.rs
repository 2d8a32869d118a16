//! A set becomes ready, is routed, survives a crash, scales, and goes away cleanly.

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use sluice_backend::{BackendError, ReplicaPhase};

use crate::support::{PATIENCE, alive, ask, fake, harness, harness_with, id, sh, spec};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_become_ready_and_are_routed() {
    let h = harness();
    let id = id("ready");
    h.apply_ready(spec(&id, 1, 2, fake(&[]))).await;

    let status = h.backend.status(&id).unwrap();
    assert_eq!((status.desired, status.ready, status.failure), (2, 2, None));
    assert!(status.replicas.iter().all(|r| r.phase == ReplicaPhase::Ready && r.pid.is_some()));
    let routed = h.routed(&id);
    assert_eq!(routed.len(), 2);
    let mut answers = Vec::new();
    for addr in routed {
        answers.push(ask(addr).await);
    }
    answers.sort();
    assert!(answers[0].starts_with("generation 1 slot 0"), "{answers:?}");
    assert!(answers[1].starts_with("generation 1 slot 1"), "{answers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_replica_leaves_routing_and_restarts() {
    let h = harness();
    let id = id("crash");
    h.apply_ready(spec(&id, 1, 1, fake(&[]))).await;
    let before = h.backend.status(&id).unwrap().replicas[0].clone();
    let (old_pid, old_addr) = (before.pid.unwrap(), before.addr.unwrap());

    kill(Pid::from_raw(old_pid as i32), Signal::SIGKILL).unwrap();
    h.routed_until(&id, |addrs| !addrs.contains(&old_addr)).await;
    h.backend.wait_ready(&id, PATIENCE).await.unwrap();

    let after = h.backend.status(&id).unwrap().replicas[0].clone();
    assert_eq!(after.phase, ReplicaPhase::Ready);
    assert_eq!(after.restarts, 1);
    assert_ne!(after.pid, Some(old_pid));
    assert!(after.last_exit.as_deref().unwrap().contains("signal: 9"), "{after:?}");
    assert_eq!(h.routed(&id), vec![after.addr.unwrap()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_is_idempotent_and_scales_in_place() {
    let h = harness();
    let id = id("scale");
    h.apply_ready(spec(&id, 1, 1, fake(&[]))).await;
    let first = h.pids(&id);
    h.apply_ready(spec(&id, 1, 1, fake(&[]))).await;
    assert_eq!(h.pids(&id), first, "same spec, same processes");

    h.apply_ready(spec(&id, 1, 3, fake(&[]))).await;
    let scaled = h.pids(&id);
    assert_eq!(scaled.len(), 3);
    assert_eq!(scaled[0], first[0], "slot 0 kept running");
    assert_eq!(h.routed(&id).len(), 3);

    h.apply_ready(spec(&id, 1, 1, fake(&[]))).await;
    assert_eq!(h.pids(&id), first);
    assert!(!alive(scaled[1]) && !alive(scaled[2]));
    assert_eq!(h.routed(&id).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_stops_every_process() {
    let h = harness();
    let id = id("remove");
    h.apply_ready(spec(&id, 1, 2, fake(&[]))).await;
    let pids = h.pids(&id);
    assert!(pids.iter().all(|&p| alive(p)));

    h.backend.remove(&id).await;
    assert!(pids.iter().all(|&p| !alive(p)), "{pids:?}");
    assert!(h.backend.status(&id).is_none());
    assert!(!h.backend.endpoints().borrow().contains_key(&id.0));
    assert!(matches!(h.backend.wait_ready(&id, PATIENCE).await, Err(BackendError::NotFound(_))));
    h.backend.remove(&id).await; // removing again is a no-op
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_ignoring_sigterm_is_killed_after_the_grace() {
    let h = harness_with(|cfg| cfg.stop_grace = std::time::Duration::from_millis(200));
    let id = id("stubborn");
    let script = "trap '' TERM; echo SLUICE_REPLICA_LISTENING 127.0.0.1:9; while :; do sleep 1; done";
    h.apply_ready(spec(&id, 1, 1, sh(script))).await;
    let pid = h.pids(&id)[0];

    h.backend.remove(&id).await;
    assert!(!alive(pid));
    let logs = h.backend.logs(&id, Some(0), 10).await.unwrap();
    assert!(logs.contains("stopped: signal: 9"), "{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_everything_and_refuses_new_sets() {
    let h = harness();
    let (a, b) = (id("one"), id("two"));
    h.apply_ready(spec(&a, 1, 1, fake(&[]))).await;
    h.apply_ready(spec(&b, 1, 2, fake(&[]))).await;
    let pids = [h.pids(&a), h.pids(&b)].concat();

    h.backend.shutdown().await;
    assert!(pids.iter().all(|&p| !alive(p)), "{pids:?}");
    assert!(h.backend.endpoints().borrow().is_empty());
    let refused = h.backend.apply(spec(&a, 2, 1, fake(&[]))).await;
    assert!(matches!(refused, Err(BackendError::ShuttingDown)), "{refused:?}");
}
