//! Progressive rollouts under constant load: a healthy target reaches 100 %, a target failing
//! 20 % of its requests is rolled back at the first step, a restart resumes a rollout, an abort
//! restores the split.

use crate::harness::{Server, deploy_iris, primary_key, repo};
use crate::load::Load;
use std::path::Path;

fn add_green(server: &Server, dir: &Path, model: &str) {
    let file = dir.join("green.yml");
    std::fs::write(
        &file,
        format!("name: green\nendpoint_name: iris-ep\nmodel: {model}\ninstance_type: cpu=1,memory=1Gi\n"),
    )
    .unwrap();
    server.cli_ok(&["online-deployment", "create", "--file", file.to_str().unwrap()]);
}

fn rollout_json(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{e}: {} / {}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    })
}

fn traffic(server: &Server) -> serde_json::Value {
    let ep: serde_json::Value =
        serde_json::from_str(&server.cli_ok(&["online-endpoint", "show", "--name", "iris-ep"])).unwrap();
    ep["traffic"].clone()
}

fn start_load(server: &Server) -> Load {
    let key = primary_key(server, "iris-ep");
    let body = std::fs::read(repo().join("examples/iris/request.json")).unwrap();
    Load::start(format!("{}/endpoints/iris-ep/score", server.url), key, body, 6)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_target_reaches_all_traffic() {
    let server = Server::start();
    deploy_iris(&server);
    let tmp = tempfile::tempdir().unwrap();
    add_green(&server, tmp.path(), "azureml:iris:1");
    let load = start_load(&server);
    let out = server.cli(&[
        "online-endpoint",
        "rollout",
        "--name",
        "iris-ep",
        "--to",
        "green",
        "--steps",
        "20,60,100",
        "--interval",
        "1s",
        "--max-error-rate",
        "1%",
        "--min-requests",
        "20",
    ]);
    let tally = load.stop().await;
    let r = rollout_json(&out);
    assert!(out.status.success(), "{r}");
    assert_eq!(r["state"], "Succeeded");
    assert_eq!(r["history"].as_array().unwrap().len(), 3, "{r}");
    assert!(
        r["history"].as_array().unwrap().iter().all(|s| s["passed"] == true && s["requests"].as_u64().unwrap() >= 20)
    );
    assert_eq!(traffic(&server), serde_json::json!({"blue": 0, "green": 100}));
    assert!(tally.failures.is_empty(), "{:?}", &tally.failures[..tally.failures.len().min(3)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_target_is_rolled_back_at_the_first_step() {
    let server = Server::start();
    deploy_iris(&server);
    server.cli_ok(&[
        "model",
        "create",
        "--name",
        "flaky",
        "--version",
        "1",
        "--type",
        "triton_model",
        "--path",
        "testdata/models/flaky/model_repository",
    ]);
    let tmp = tempfile::tempdir().unwrap();
    add_green(&server, tmp.path(), "azureml:flaky:1");
    let load = start_load(&server);
    let out = server.cli(&[
        "online-endpoint",
        "rollout",
        "--name",
        "iris-ep",
        "--to",
        "green",
        "--steps",
        "10,50,100",
        "--interval",
        "2s",
        "--max-error-rate",
        "1%",
        "--min-requests",
        "50",
    ]);
    load.stop().await;
    let r = rollout_json(&out);
    assert_eq!(out.status.code(), Some(1), "a rolled-back rollout fails the command: {r}");
    assert_eq!(r["state"], "RolledBack");
    let history = r["history"].as_array().unwrap();
    assert_eq!(history.len(), 1, "stopped at the first step: {r}");
    assert_eq!(history[0]["weight"], 10);
    assert!(r["message"].as_str().unwrap().contains("error rate"), "{r}");
    assert_eq!(traffic(&server), serde_json::json!({"blue": 100}), "traffic is back where it started");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_survives_a_restart_and_can_be_aborted() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    {
        let mut server = Server::start_on(&data, &[]);
        deploy_iris(&server);
        add_green(&server, tmp.path(), "azureml:iris:1");
        let out = server.cli(&[
            "online-endpoint",
            "rollout",
            "--name",
            "iris-ep",
            "--to",
            "green",
            "--steps",
            "30,100",
            "--interval",
            "600s",
            "--no-wait",
        ]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(traffic(&server), serde_json::json!({"blue": 70, "green": 30}));
        // Traffic moved by a rollout is not changed by hand meanwhile.
        let out = server.cli(&["online-endpoint", "update", "--name", "iris-ep", "--traffic", "blue=100 green=0"]);
        assert_eq!(out.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&out.stderr).contains("rollout"));
        server.kill();
    }
    let server = Server::start_on(&data, &[]);
    let r = rollout_json(&server.cli(&["online-endpoint", "rollout", "show", "--name", "iris-ep"]));
    assert_eq!((r["state"].as_str(), r["step_index"].as_u64()), (Some("Running"), Some(0)), "{r}");
    assert_eq!(traffic(&server), serde_json::json!({"blue": 70, "green": 30}));
    let out = server.cli(&["online-endpoint", "rollout", "abort", "--name", "iris-ep"]);
    let r = rollout_json(&out);
    assert_eq!(r["state"], "Aborted", "{r}");
    assert_eq!(traffic(&server), serde_json::json!({"blue": 100}));
    let out = server.cli(&["online-endpoint", "rollout", "abort", "--name", "iris-ep"]);
    assert_eq!(out.status.code(), Some(1), "nothing left to abort");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_rollouts_are_refused() {
    let server = Server::start();
    deploy_iris(&server);
    let tmp = tempfile::tempdir().unwrap();
    add_green(&server, tmp.path(), "azureml:iris:1");
    for (args, says) in [
        (vec!["--to", "purple"], "purple"),
        (vec!["--to", "green", "--steps", "50,20,100"], "increas"),
        (vec!["--to", "green", "--steps", "10,50"], "100"),
        (vec!["--to", "green", "--min-agreement", "0.99"], "mirror"),
        (vec!["--to", "blue"], "100%"),
    ] {
        let mut full = vec!["online-endpoint", "rollout", "--name", "iris-ep", "--no-wait"];
        full.extend(args.iter().copied());
        let out = server.cli(&full);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(1), "{args:?} was accepted");
        assert!(err.contains(says), "{args:?}: {err}");
    }
    assert_eq!(traffic(&server), serde_json::json!({"blue": 100}));
}
