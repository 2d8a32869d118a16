//! `kill -9` the server, start it again: the same world, the same keys, scoring works.

use crate::harness::{Server, deploy_iris, primary_key, replica_pids, repo, show_blue, wait_for_200};

#[tokio::test]
async fn a_killed_server_comes_back_with_everything() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let body = std::fs::read(repo().join("examples/iris/request.json")).unwrap();
    let (key, admin) = {
        let mut server = Server::start_on(&data, &[]);
        deploy_iris(&server);
        let key = primary_key(&server, "iris-ep");
        let url = format!("{}/endpoints/iris-ep/v2/models/iris/infer", server.url);
        assert_eq!(wait_for_200(&url, &key, &body).await.0, 200);
        let admin = server.admin_token();
        server.kill();
        (key, admin)
    };

    let server = Server::start_on(&data, &[]);
    assert_eq!(server.admin_token(), admin, "the admin credential survives");
    let url = format!("{}/endpoints/iris-ep/v2/models/iris/infer", server.url);
    let (status, text) = wait_for_200(&url, &key, &body).await;
    assert_eq!(status, 200, "the same key scores after a restart: {text}");
    let models = server.cli_ok(&["model", "list"]);
    assert!(models.contains("azureml:iris:1"), "{models}");
    let dep = show_blue(&server);
    assert_eq!(dep["provisioning_state"], "Succeeded");
}

#[tokio::test]
async fn a_crashed_replica_is_restarted() {
    let server = Server::start();
    deploy_iris(&server);
    let key = primary_key(&server, "iris-ep");
    let body = std::fs::read(repo().join("examples/iris/request.json")).unwrap();
    let url = format!("{}/endpoints/iris-ep/v2/models/iris/infer", server.url);
    let before = replica_pids(&server);
    assert_eq!(before.len(), 1);
    let killed = std::process::Command::new("kill").args(["-9", &before[0].to_string()]).status().unwrap();
    assert!(killed.success());

    let (status, text) = wait_for_200(&url, &key, &body).await;
    assert_eq!(status, 200, "scoring recovers once the replica is restarted: {text}");
    let after = replica_pids(&server);
    assert_eq!(after.len(), 1);
    assert_ne!(after, before, "a new process serves");
    let logs = server.cli_ok(&["online-deployment", "get-logs", "--name", "blue", "--endpoint-name", "iris-ep"]);
    assert!(logs.contains("exit") || logs.contains("signal"), "the crash is in the log: {logs}");
    // `show` explains each replica: restarted once, and how its last run ended.
    let shown = show_blue(&server);
    let replica = &shown["replicas"]["instances"][0];
    assert_eq!((replica["state"].as_str(), replica["restarts"].as_u64()), (Some("Ready"), Some(1)), "{shown}");
    assert!(replica["last_exit"].as_str().unwrap_or("").contains("signal: 9"), "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_under_load_leaves_rotation_and_the_other_serves_every_request() {
    let server = Server::start();
    crate::harness::register_iris(&server);
    server.cli_ok(&["online-endpoint", "create", "--file", "examples/iris/endpoint.yml"]);
    server.cli_ok(&[
        "online-deployment",
        "create",
        "--file",
        "examples/iris/blue-deployment.yml",
        "--set",
        "instance_count=2",
        "--all-traffic",
    ]);
    let key = primary_key(&server, "iris-ep");
    let body = std::fs::read(repo().join("examples/iris/request.json")).unwrap();
    let url = format!("{}/endpoints/iris-ep/v2/models/iris/infer", server.url);
    let before = replica_pids(&server);
    assert_eq!(before.len(), 2);

    let load = crate::load::Load::start(url, key, body, 4);
    let warm = load.measure(200).await;
    assert!(warm.failures.is_empty(), "{:?}", warm.failures);
    let killed = std::process::Command::new("kill").args(["-9", &before[0].to_string()]).status().unwrap();
    assert!(killed.success());
    // Requests keep flowing through the kill and the restart.
    let during = load.measure(2000).await;
    let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while replica_pids(&server).len() < 2 && std::time::Instant::now() < until {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let after_restart = load.measure(200).await;
    let rest = load.stop().await;
    for t in [&during, &after_restart, &rest] {
        assert!(t.failures.is_empty(), "no request failed: {:?}", &t.failures[..t.failures.len().min(3)]);
    }
    let after = replica_pids(&server);
    assert_eq!(after.len(), 2, "the killed replica was restarted");
    assert!(after.contains(&before[1]) && !after.contains(&before[0]), "{before:?} -> {after:?}");
}
