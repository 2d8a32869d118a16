//! A set that cannot become ready says why, in words the user can act on.

use std::time::Duration;

use sluice_backend::{BackendError, ReplicaPhase, ResourceRequest};

use crate::support::{PATIENCE, command, fake, harness, harness_with, id, sh, spec};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_that_cannot_load_fails_the_set_with_its_message() {
    let h = harness();
    let id = id("noload");
    let message = "error: model.onnx not found under /models/iris/1";
    h.backend.apply(spec(&id, 1, 1, fake(&["--fail", "3", message]))).await.unwrap();

    let Err(BackendError::Failed(reason)) = h.backend.wait_ready(&id, PATIENCE).await else {
        panic!("expected a failure");
    };
    assert_eq!(
        reason,
        "replica 0 exited with exit status: 3 before reporting ready (3 consecutive start \
         failures); last lines on stderr:\nloading model\nerror: model.onnx not found under \
         /models/iris/1"
    );

    let status = h.backend.status(&id).unwrap();
    assert_eq!(status.failure.as_deref(), Some(reason.as_str()));
    assert_eq!(status.ready, 0);
    let replica = &status.replicas[0];
    assert_eq!(replica.phase, ReplicaPhase::Failed);
    assert_eq!(replica.restarts, 2);
    assert_eq!(replica.last_exit.as_deref(), Some("exit status: 3"));
    assert!(h.routed(&id).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_never_reports_ready_times_out() {
    let h = harness_with(|cfg| {
        cfg.ready_timeout = Duration::from_millis(300);
        cfg.max_start_failures = 1;
    });
    let id = id("silent");
    h.backend.apply(spec(&id, 1, 1, sh("echo still loading >&2; exec sleep 1000"))).await.unwrap();
    let err = h.backend.wait_ready(&id, PATIENCE).await.unwrap_err().to_string();
    assert!(err.contains("did not print `SLUICE_REPLICA_LISTENING <ip:port>`"), "{err}");
    assert!(err.contains("still loading"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_program_fails_with_the_os_error() {
    let h = harness();
    let id = id("missing");
    h.backend.apply(spec(&id, 1, 1, command("/nonexistent/replica", &[]))).await.unwrap();
    let err = h.backend.wait_ready(&id, PATIENCE).await.unwrap_err().to_string();
    assert!(err.contains("cannot start `/nonexistent/replica`"), "{err}");
    assert!(err.contains("No such file or directory"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_this_host_cannot_satisfy_are_refused_at_once() {
    let h = harness();
    let id = id("gpu");
    let mut gpu = spec(&id, 1, 1, fake(&[]));
    gpu.resources = ResourceRequest { gpus: 1, ..ResourceRequest::default() };
    let err = h.backend.apply(gpu).await.unwrap_err();
    assert!(matches!(err, BackendError::Unsatisfiable(_)), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("1 GPU(s)") && text.contains("no NVIDIA GPU"), "{text}");
    assert!(h.backend.status(&id).is_none(), "nothing was started");

    let mut big = spec(&id, 1, 1, fake(&[]));
    big.resources.memory_bytes = (8 << 30) + 1;
    let text = h.backend.apply(big).await.unwrap_err().to_string();
    assert!(text.contains("8.0 GiB in total"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_specs_are_refused() {
    let h = harness();
    let mut bad = spec(&id("x"), 1, 1, fake(&[]));
    bad.id.0 = "../escape".into();
    assert!(matches!(h.backend.apply(bad).await, Err(BackendError::InvalidSpec(_))));

    let id = id("older");
    h.apply_ready(spec(&id, 5, 1, fake(&[]))).await;
    let err = h.backend.apply(spec(&id, 4, 1, fake(&[]))).await.unwrap_err();
    assert!(err.to_string().contains("older than the applied generation 5"), "{err}");
}
