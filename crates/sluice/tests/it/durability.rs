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
}
