//! A new generation replaces the old without a moment with nothing to route to.

use std::time::Duration;

use sluice_backend::{BackendError, ReplicaPhase};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use crate::support::{PATIENCE, alive, ask, fake, harness, id, spec};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_replicas_serve_until_the_new_generation_is_ready() {
    let h = harness();
    let id = id("rolling");
    h.apply_ready(spec(&id, 1, 1, fake(&[]))).await;
    let old_addr = h.routed(&id)[0];
    let old_pid = h.pids(&id)[0];

    // Generation 2 starts, then waits at the gate until the test lets it report ready.
    let gate = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gate_addr = gate.local_addr().unwrap().to_string();
    h.backend.apply(spec(&id, 2, 1, fake(&["--gate", &gate_addr]))).await.unwrap();
    let (conn, _) = tokio::time::timeout(PATIENCE, gate.accept()).await.unwrap().unwrap();
    let mut conn = BufReader::new(conn);
    let mut hello = String::new();
    conn.read_line(&mut hello).await.unwrap();
    assert_eq!(hello.trim(), "waiting 2 0");

    // The new replica runs but is not ready: the old one still takes the traffic.
    assert_eq!(h.routed(&id), vec![old_addr]);
    assert!(ask(old_addr).await.starts_with("generation 1 slot 0"));
    let status = h.backend.status(&id).unwrap();
    let phases: Vec<_> = status.replicas.iter().map(|r| (r.generation, r.phase)).collect();
    assert_eq!(phases, [(1, ReplicaPhase::Ready), (2, ReplicaPhase::Starting)]);
    assert_eq!((status.desired, status.ready), (1, 0));
    let early = h.backend.wait_ready(&id, Duration::from_millis(1)).await;
    assert!(matches!(early, Err(BackendError::Timeout { ready: 0, desired: 1, .. })), "{early:?}");

    conn.get_mut().write_all(b"go").await.unwrap();
    h.backend.wait_ready(&id, PATIENCE).await.unwrap();
    let new_addr = h.routed(&id);
    assert_eq!(new_addr.len(), 1);
    assert_ne!(new_addr[0], old_addr);
    assert!(ask(new_addr[0]).await.starts_with("generation 2 slot 0"));
    assert!(!alive(old_pid), "the old replica was stopped");
    assert_eq!(h.backend.status(&id).unwrap().replicas.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_generation_leaves_the_old_one_serving() {
    let h = harness();
    let id = id("badupdate");
    h.apply_ready(spec(&id, 1, 2, fake(&[]))).await;
    let old_addrs = h.routed(&id);
    let old_pids = h.pids(&id);

    let broken = fake(&["--fail", "3", "error: model.onnx not found under /models/v2"]);
    h.backend.apply(spec(&id, 2, 2, broken)).await.unwrap();
    let err = h.backend.wait_ready(&id, PATIENCE).await.unwrap_err();
    assert!(err.to_string().contains("model.onnx not found under /models/v2"), "{err}");

    assert_eq!(h.routed(&id), old_addrs);
    assert!(old_pids.iter().all(|&p| alive(p)));
    assert!(ask(old_addrs[0]).await.starts_with("generation 1"));
    let status = h.backend.status(&id).unwrap();
    assert!(status.failure.is_some());
    assert_eq!(status.ready, 0, "ready counts the current generation");

    // A fixed generation rolls out over the old one.
    h.apply_ready(spec(&id, 3, 2, fake(&[]))).await;
    let status = h.backend.status(&id).unwrap();
    assert_eq!((status.ready, status.failure), (2, None));
    assert!(status.replicas.iter().all(|r| r.generation == 3));
    assert!(old_pids.iter().all(|&p| !alive(p)));
}
