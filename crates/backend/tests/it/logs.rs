//! Log tails, and what a replica finds in its environment.

use sluice_backend::{BackendError, ResourceRequest};

use crate::support::{fake, harness, harness_with, id, spec};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_return_the_tail_of_each_replica() {
    let h = harness();
    let id = id("logs");
    h.apply_ready(spec(&id, 1, 2, fake(&["--stdout-lines", "50"]))).await;

    let all = h.backend.logs(&id, Some(0), 1000).await.unwrap();
    assert!(all.contains("[g1 stdout] line 1\n") && all.contains("[g1 stdout] line 50\n"), "{all}");
    assert!(all.contains("[g1 sluice] ready at 127.0.0.1:"), "{all}");
    assert!(!all.contains("SLUICE_REPLICA_LISTENING"), "the protocol line is not logged");

    let two = h.backend.logs(&id, Some(1), 2).await.unwrap();
    assert_eq!(two.lines().count(), 2, "{two}");

    let both = h.backend.logs(&id, None, 5).await.unwrap();
    assert!(both.contains("==> replica-0 <==") && both.contains("==> replica-1 <=="), "{both}");

    let dir = h.dir.path().join("logs/default__logs__blue");
    assert!(dir.join("replica-0.log").is_file());

    assert!(matches!(h.backend.logs(&id, Some(7), 10).await, Err(BackendError::ReplicaNotFound { replica: 7, .. })));
    assert!(matches!(h.backend.logs(&crate::support::id("nothing"), None, 10).await, Err(BackendError::NotFound(_))));

    // Logs outlive the set.
    h.backend.remove(&id).await;
    let kept = h.backend.logs(&id, Some(0), 3).await.unwrap();
    assert!(kept.contains("stopped"), "{kept}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_get_their_resources_and_not_the_server_environment() {
    let h = harness_with(|cfg| cfg.enforce_limits = false);
    let id = id("env");
    let args = ["SLUICE_CPU_MILLIS", "SLUICE_MEMORY_BYTES", "OMP_NUM_THREADS", "PATH", "CARGO_MANIFEST_DIR"]
        .iter()
        .flat_map(|name| ["--print-env", name])
        .collect::<Vec<_>>();
    let mut spec = spec(&id, 1, 1, fake(&args));
    spec.resources = ResourceRequest { cpu_millis: 1500, memory_bytes: 256 << 20, gpus: 0 };
    spec.command.env.insert("MODEL_DIR".into(), "/models/iris".into());
    h.apply_ready(spec).await;

    let logs = h.backend.logs(&id, Some(0), 100).await.unwrap();
    for expected in
        ["SLUICE_CPU_MILLIS=1500", "SLUICE_MEMORY_BYTES=268435456", "OMP_NUM_THREADS=1", "CARGO_MANIFEST_DIR=<unset>"]
    {
        assert!(logs.contains(expected), "{expected} missing in {logs}");
    }
    assert!(!logs.contains("PATH=<unset>"), "PATH is passed through: {logs}");
    let message = h.backend.status(&id).unwrap().replicas[0].message.clone();
    assert_eq!(message.as_deref(), Some("resource limits not enforced (disabled by configuration)"));
}
