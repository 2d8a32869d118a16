//! Whole commands, from argv to exit status, against the fake server.

use crate::fake::FakeServer;
use clap::Parser;
use serde_json::json;
use sluice_cli::{Command, GlobalArgs, OutputFormat};
use std::path::Path;
use std::process::ExitCode;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    cmd: Command,
}

async fn sluice(server: &str, args: &[&str]) -> ExitCode {
    let global = GlobalArgs {
        server: server.to_owned(),
        token: Some("admin".into()),
        data_dir: "/nonexistent".into(),
        output: OutputFormat::Json,
    };
    let cli = Cli::try_parse_from(std::iter::once("sluice").chain(args.iter().copied())).unwrap();
    sluice_cli::run(global, cli.cmd).await
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn mlflow_project(dir: &Path) -> (String, String) {
    std::fs::create_dir_all(dir.join("model")).unwrap();
    std::fs::write(dir.join("model/MLmodel"), "flavors: {}\n").unwrap();
    let ep = write(dir, "endpoint.yml", "name: iris-ep\ndescription: first\nauth_mode: key\n");
    let dep = write(
        dir,
        "deployment.yml",
        "name: blue\nendpoint_name: iris-ep\nmodel:\n  path: model\n  type: mlflow_model\ninstance_count: 1\n",
    );
    (ep, dep)
}

#[tokio::test]
async fn model_create_uploads_then_registers_the_next_version() {
    let server = FakeServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("repo")).unwrap();
    std::fs::write(dir.path().join("repo/config.pbtxt"), "x").unwrap();
    let file = write(dir.path(), "model.yml", "name: iris\ntype: triton_model\npath: repo\n");
    assert_eq!(sluice(&server.url, &["model", "create", "--file", &file]).await, ExitCode::SUCCESS);
    assert_eq!(
        sluice(&server.url, &["model", "create", "-f", &file, "--description", "again"]).await,
        ExitCode::SUCCESS
    );
    let w = server.world.lock().unwrap();
    let versions: Vec<&str> = w.models.keys().map(|k| k.1.as_str()).collect();
    assert_eq!(versions, ["1", "2"]);
    assert_eq!(w.models[&("iris".into(), "2".into())]["type"], "triton_model");
    assert_eq!(w.models[&("iris".into(), "2".into())]["description"], "again");
    assert_eq!(w.log[0], "POST /api/v1/workspaces/default/artifacts");
}

#[tokio::test]
async fn inline_model_deployment_with_all_traffic() {
    let server = FakeServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (ep, dep) = mlflow_project(dir.path());
    assert_eq!(sluice(&server.url, &["online-endpoint", "create", "-f", &ep]).await, ExitCode::SUCCESS);
    let code = sluice(&server.url, &["online-deployment", "create", "-f", &dep, "--all-traffic"]).await;
    assert_eq!(code, ExitCode::SUCCESS);
    {
        let w = server.world.lock().unwrap();
        assert!(w.models.contains_key(&("iris-ep-blue-model".into(), "1".into())), "{:?}", w.models.keys());
        assert_eq!(w.deployment_bodies[0]["model"], "azureml:iris-ep-blue-model:1");
        assert_eq!(w.endpoints["iris-ep"]["traffic"], json!({"blue": 100}));
        assert_eq!(w.endpoints["iris-ep"]["provisioning_state"], "Succeeded");
    }
    // Same folder again: the registered version is reused, not registered anew.
    let code = sluice(&server.url, &["online-deployment", "update", "-f", &dep, "--set", "instance_count=2"]).await;
    assert_eq!(code, ExitCode::SUCCESS);
    let w = server.world.lock().unwrap();
    assert_eq!(w.models.len(), 1);
    assert_eq!(w.deployment_bodies[1]["model"], "azureml:iris-ep-blue-model:1");
    assert_eq!(w.deployment_bodies[1]["instance_count"], 2);
}

#[tokio::test]
async fn a_failed_deployment_exits_1() {
    let server = FakeServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (ep, dep) = mlflow_project(dir.path());
    assert_eq!(sluice(&server.url, &["online-endpoint", "create", "-f", &ep, "--no-wait"]).await, ExitCode::SUCCESS);
    let code = sluice(&server.url, &["online-deployment", "create", "-f", &dep, "--set", "instance_count=3"]).await;
    assert_eq!(code, ExitCode::from(1));
}

#[tokio::test]
async fn invalid_files_fail_before_anything_is_sent() {
    let server = FakeServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (_, dep) = mlflow_project(dir.path());
    let code = sluice(&server.url, &["online-deployment", "create", "-f", &dep, "--set", "instance_count=0"]).await;
    assert_eq!(code, ExitCode::from(1));
    let bad = write(dir.path(), "bad.yml", "name: blue\nendpoint_name: iris-ep\nmodel:\n  path: nowhere\n");
    assert_eq!(sluice(&server.url, &["online-deployment", "create", "-f", &bad]).await, ExitCode::from(1));
    let code = sluice(&server.url, &["online-endpoint", "update", "-n", "iris-ep", "--traffic", "blue=90"]).await;
    assert_eq!(code, ExitCode::from(1));
    assert_eq!(server.log(), Vec::<String>::new());
}

#[tokio::test]
async fn update_traffic_keeps_other_fields_and_invoke_uses_the_key() {
    let server = FakeServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (ep, _) = mlflow_project(dir.path());
    assert_eq!(sluice(&server.url, &["online-endpoint", "create", "-f", &ep]).await, ExitCode::SUCCESS);
    let code =
        sluice(&server.url, &["online-endpoint", "update", "-n", "iris-ep", "--traffic", "blue=90 green=10"]).await;
    assert_eq!(code, ExitCode::SUCCESS);
    {
        let w = server.world.lock().unwrap();
        assert_eq!(w.endpoints["iris-ep"]["traffic"], json!({"blue": 90, "green": 10}));
        assert_eq!(w.endpoints["iris-ep"]["description"], "first");
    }
    let request = write(dir.path(), "request.json", "{\"input_data\": [[1, 2]]}");
    let code = sluice(&server.url, &["online-endpoint", "invoke", "-n", "iris-ep", "--request-file", &request]).await;
    assert_eq!(code, ExitCode::SUCCESS);
    let log = server.log();
    assert_eq!(log[log.len() - 1], "POST /endpoints/iris-ep/score");
    assert_eq!(log[log.len() - 2], "POST /api/v1/workspaces/default/online-endpoints/iris-ep/get-credentials");
}

#[tokio::test]
async fn delete_waits_until_gone_and_needs_yes_without_a_terminal() {
    let server = FakeServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (ep, _) = mlflow_project(dir.path());
    assert_eq!(sluice(&server.url, &["online-endpoint", "create", "-f", &ep]).await, ExitCode::SUCCESS);
    assert_eq!(sluice(&server.url, &["online-endpoint", "delete", "-n", "iris-ep"]).await, ExitCode::from(1));
    assert_eq!(sluice(&server.url, &["online-endpoint", "delete", "-n", "iris-ep", "--yes"]).await, ExitCode::SUCCESS);
    assert!(server.world.lock().unwrap().endpoints.is_empty());
    assert_eq!(sluice(&server.url, &["online-endpoint", "show", "-n", "iris-ep"]).await, ExitCode::from(1));
}

/// An endpoint with all live traffic on `blue`, straight into the fake's state.
fn endpoint_on_blue(server: &FakeServer) {
    let ep = json!({"name": "iris-ep", "auth_mode": "key", "traffic": {"blue": 100}, "mirror_traffic": {},
        "tags": {}, "provisioning_state": "Succeeded", "scoring_uri": "http://x/score",
        "openapi_uri": "http://x/swagger.json", "created_at": "t", "updated_at": "t"});
    server.world.lock().unwrap().endpoints.insert("iris-ep".into(), ep);
}

const ROLLOUTS: &str = "/api/v1/workspaces/default/online-endpoints/iris-ep/rollouts";

#[tokio::test]
async fn rollout_waits_until_it_succeeds() {
    let server = FakeServer::start().await;
    endpoint_on_blue(&server);
    let args = [
        "online-endpoint",
        "rollout",
        "-n",
        "iris-ep",
        "--to",
        "green",
        "--steps",
        "50,100",
        "--interval",
        "1m",
        "--max-error-rate",
        "2%",
        "--min-agreement",
        "0.99",
        "--max-p99-latency-ms",
        "250",
    ];
    assert_eq!(sluice(&server.url, &args).await, ExitCode::SUCCESS);
    let w = server.world.lock().unwrap();
    assert_eq!(
        w.rollout_bodies,
        [json!({"to": "green", "steps": [50, 100], "interval_s": 60, "max_error_rate": 0.02,
            "max_p99_latency_ms": 250.0, "min_agreement": 0.99, "min_requests": 10})]
    );
    assert_eq!(w.rollouts["iris-ep"]["state"], "Succeeded");
    assert_eq!(w.endpoints["iris-ep"]["traffic"], json!({"green": 100}));
    // Started once, then polled until the answer was Succeeded: Running 1/2, Running 2/2, Succeeded.
    let latest = format!("GET {ROLLOUTS}/latest");
    assert_eq!(w.log, [format!("POST {ROLLOUTS}"), latest.clone(), latest.clone(), latest]);
}

#[tokio::test]
async fn a_rolled_back_rollout_exits_1() {
    let server = FakeServer::start().await;
    endpoint_on_blue(&server);
    let code = sluice(&server.url, &["online-endpoint", "rollout", "-n", "iris-ep", "--to", "red"]).await;
    assert_eq!(code, ExitCode::from(1));
    let w = server.world.lock().unwrap();
    assert_eq!(w.rollouts["iris-ep"]["state"], "RolledBack");
    assert_eq!(w.rollout_bodies[0]["steps"], json!([10, 25, 50, 100]), "the server's defaults");
    assert_eq!(w.endpoints["iris-ep"]["traffic"], json!({"blue": 100}));
}

#[tokio::test]
async fn rollout_show_and_abort() {
    let server = FakeServer::start().await;
    endpoint_on_blue(&server);
    let show = ["online-endpoint", "rollout", "show", "-n", "iris-ep"];
    assert_eq!(sluice(&server.url, &show).await, ExitCode::from(1), "no rollout yet: 404");
    let start = ["online-endpoint", "rollout", "-n", "iris-ep", "--to", "green", "--no-wait"];
    assert_eq!(sluice(&server.url, &start).await, ExitCode::SUCCESS);
    assert_eq!(sluice(&server.url, &start).await, ExitCode::from(1), "one is already running: 409");
    assert_eq!(sluice(&server.url, &show).await, ExitCode::SUCCESS);
    let abort = ["online-endpoint", "rollout", "abort", "-n", "iris-ep"];
    assert_eq!(sluice(&server.url, &abort).await, ExitCode::SUCCESS);
    assert_eq!(server.world.lock().unwrap().rollouts["iris-ep"]["state"], "Aborted");
    assert_eq!(sluice(&server.url, &abort).await, ExitCode::from(1), "not running any more: 409");
    let log = server.log();
    assert_eq!(log[log.len() - 2], format!("POST {ROLLOUTS}/latest/abort"));
    assert_eq!(server.world.lock().unwrap().rollout_bodies.len(), 1);
}

#[tokio::test]
async fn bad_rollout_flags_fail_before_anything_is_sent() {
    let server = FakeServer::start().await;
    for (flag, value) in [
        ("--interval", "500ms"),
        ("--interval", "soon"),
        ("--max-error-rate", "5"),
        ("--min-agreement", "101%"),
        ("--steps", "10,50"),
        ("--min-requests", "lots"),
    ] {
        let args = ["online-endpoint", "rollout", "-n", "iris-ep", "--to", "green", flag, value];
        assert_eq!(sluice(&server.url, &args).await, ExitCode::from(1), "{flag} {value}");
    }
    assert_eq!(server.log(), Vec::<String>::new());
}

#[tokio::test]
async fn an_unreachable_server_exits_2() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    assert_eq!(sluice(&url, &["online-endpoint", "list"]).await, ExitCode::from(2));
}
