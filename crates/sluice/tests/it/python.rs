//! Scoring scripts: the user's `score.py` runs in Python workers with Azure ML's contract; a
//! hanging `run` is cut off at `request_timeout_ms` and its worker replaced; a failing `init`
//! fails the deployment with the traceback in its logs.

use crate::harness::{Server, post_json, primary_key, repo, test_python};
use std::path::Path;

fn server() -> (Server, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let python = test_python();
    let server = Server::start_on(&tmp.path().join("data"), &["--python", python.to_str().unwrap()]);
    (server, tmp)
}

pub(crate) fn write_code(dir: &Path, script: &str) -> String {
    std::fs::create_dir_all(dir.join("code")).unwrap();
    std::fs::write(dir.join("code/score.py"), script).unwrap();
    let dep = dir.join("dep.yml");
    std::fs::write(
        &dep,
        format!(
            "name: blue\nendpoint_name: sklearn-ep\nmodel:\n  path: {}\ncode_configuration:\n  code: code\n  scoring_script: score.py\ninstance_type: cpu=1,memory=1Gi\nrequest_settings:\n  request_timeout_ms: 1500\n",
            repo().join("examples/sklearn-score/model").display()
        ),
    )
    .unwrap();
    dep.to_str().unwrap().to_owned()
}

#[tokio::test]
async fn the_azure_example_scores() {
    let (server, _tmp) = server();
    server.cli_ok(&["online-endpoint", "create", "--file", "examples/sklearn-score/endpoint.yml"]);
    server.cli_ok(&["online-deployment", "create", "--file", "examples/sklearn-score/deployment.yml", "--all-traffic"]);
    let out = server.cli_ok(&[
        "online-endpoint",
        "invoke",
        "--name",
        "sklearn-ep",
        "--request-file",
        "examples/sklearn-score/request.json",
    ]);
    let got: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(got, serde_json::json!([0, 2]));
    // Swagger comes from the scoring script, through the endpoint, with the same key.
    let key = primary_key(&server, "sklearn-ep");
    let doc = crate::harness::valid_swagger(&server, "sklearn-ep", &key, "3").await;
    crate::harness::valid_swagger(&server, "sklearn-ep", &key, "2").await;
    assert!(doc["openapi"].as_str().unwrap_or("").starts_with("3."), "{doc}");
    assert!(doc["components"]["schemas"]["ServiceInput"].is_object(), "{doc}");
    // The gateway reached the scoring-script replica over the replica's Unix socket, as it does a native one.
    let replicas = crate::harness::pids_matching(&server, "replica-python");
    assert_eq!(replicas.len(), 1, "{replicas:?}");
    let sockets: Vec<(String, bool)> = crate::replica_socket::abstract_sockets_of(replicas[0])
        .into_iter()
        .filter(|(n, _)| n.starts_with("sluice-replica-"))
        .collect();
    assert!(sockets.iter().any(|(_, listening)| *listening), "no replica socket: {sockets:?}");
    assert!(sockets.iter().any(|(_, listening)| !listening), "no gateway connection on it: {sockets:?}");
    // The conda file was built into its own environment, with a log of the build.
    let envs: Vec<_> = std::fs::read_dir(server.data_dir.join("envs")).unwrap().filter_map(Result::ok).collect();
    assert_eq!(envs.len(), 1);
    assert!(envs[0].path().join(".complete").exists());
    let log = std::fs::read_to_string(envs[0].path().join("build.log")).unwrap();
    assert!(log.contains("scikit-learn==1.8.0") && log.contains("joblib==1.6.0"), "{log}");
}

#[tokio::test]
async fn a_registered_environment_is_built_once_and_deployments_name_it() {
    let (server, _tmp) = server();
    let created: serde_json::Value = serde_json::from_str(&server.cli_ok(&[
        "environment",
        "create",
        "--file",
        "examples/sklearn-score/environment.yml",
    ]))
    .unwrap();
    assert_eq!(created["id"], "azureml:sklearn-env:1", "{created}");
    assert_eq!(created["spec"]["conda_file"]["dependencies"][2], "scikit-learn=1.8.0", "{created}");
    // The build started on registration; `show` follows it to the end, with its log.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(900);
    let shown = loop {
        let shown: serde_json::Value = serde_json::from_str(&server.cli_ok(&[
            "environment",
            "show",
            "--name",
            "sklearn-env",
            "--label",
            "latest",
        ]))
        .unwrap();
        let state = shown["build"]["state"].as_str().unwrap().to_owned();
        assert!(["NotStarted", "Running", "Succeeded"].contains(&state.as_str()), "{shown}");
        if state == "Succeeded" || std::time::Instant::now() > deadline {
            break shown;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    };
    assert_eq!(shown["build"]["state"], "Succeeded", "{shown}");
    assert!(shown["build"]["log_tail"].as_str().unwrap().contains("joblib"), "{shown}");
    let listed = server.cli_ok(&["environment", "list", "-o", "table"]);
    assert!(listed.contains("sklearn-env") && listed.contains("Succeeded"), "{listed}");

    // A deployment names it; `@latest` is pinned, and the environment is not built again.
    server.cli_ok(&["online-endpoint", "create", "--file", "examples/sklearn-score/endpoint.yml"]);
    server.cli_ok(&[
        "online-deployment",
        "create",
        "--file",
        "examples/sklearn-score/deployment.yml",
        "--set",
        "environment=azureml:sklearn-env@latest",
        "--all-traffic",
    ]);
    let dep = server.client().get_deployment("sklearn-ep", "blue").await.unwrap();
    assert_eq!(dep.spec.environment, Some(serde_json::json!("azureml:sklearn-env:1")));
    let out = server.cli_ok(&[
        "online-endpoint",
        "invoke",
        "--name",
        "sklearn-ep",
        "--request-file",
        "examples/sklearn-score/request.json",
    ]);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&out).unwrap(), serde_json::json!([0, 2]));
    assert_eq!(std::fs::read_dir(server.data_dir.join("envs")).unwrap().count(), 1);

    // Unknown references and bad files are refused with what to fix, and nothing is created.
    let out = server.cli(&[
        "online-deployment",
        "create",
        "--file",
        "examples/sklearn-score/deployment.yml",
        "--name",
        "green",
        "--set",
        "environment=azureml:no-such-env:3",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("environment no-such-env:3 not found"), "{err}");
    let out = server.cli(&[
        "environment",
        "create",
        "--file",
        "examples/sklearn-score/environment.yml",
        "--set",
        "command=serve",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("command: a command needs inference_config"), "{err}");
    let out =
        server.cli(&["environment", "create", "--file", "examples/sklearn-score/environment.yml", "--version", "1"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("already exists"), "{err}");
}

#[tokio::test]
async fn an_environment_that_cannot_build_fails_the_deployment_with_the_installer_error() {
    let (server, tmp) = server();
    server.cli_ok(&["online-endpoint", "create", "--file", "examples/sklearn-score/endpoint.yml"]);
    let dep = write_code(tmp.path(), "def init():\n    pass\n\ndef run(raw):\n    return 1\n");
    std::fs::write(
        tmp.path().join("conda.yml"),
        "dependencies:\n  - pip:\n      - sluice-no-such-package-xyz==0.0.1\n",
    )
    .unwrap();
    let mut text = std::fs::read_to_string(&dep).unwrap();
    text.push_str("environment:\n  conda_file: conda.yml\n");
    std::fs::write(&dep, text).unwrap();
    let out = server.cli(&["online-deployment", "create", "--file", &dep]);
    assert_eq!(out.status.code(), Some(1));
    let shown = server.client().get_deployment("sklearn-ep", "blue").await.unwrap();
    assert_eq!(shown.provisioning_state, "Failed");
    let message = shown.message.unwrap_or_default();
    assert!(message.contains("sluice-no-such-package-xyz"), "the installer's error is in the reason: {message}");
}

#[tokio::test]
async fn a_hanging_run_times_out_and_the_next_request_succeeds() {
    let (server, tmp) = server();
    server.cli_ok(&["online-endpoint", "create", "--file", "examples/sklearn-score/endpoint.yml"]);
    let dep = write_code(
        tmp.path(),
        "import json, time\n\ndef init():\n    pass\n\ndef run(raw_data):\n    if json.loads(raw_data).get('hang'):\n        time.sleep(60)\n    return {'ok': True}\n",
    );
    server.cli_ok(&["online-deployment", "create", "--file", &dep, "--all-traffic"]);
    let key = primary_key(&server, "sklearn-ep");
    let url = format!("{}/endpoints/sklearn-ep/score", server.url);
    // instance_type cpu=1 and no WORKER_COUNT: one worker per core.
    assert_eq!(worker_processes(&server), 1);
    let (status, body) = post_json(&url, Some(&key), br#"{"hang": true}"#).await;
    assert_eq!(status, 408, "{body}");
    let mut last = (0, String::new());
    for _ in 0..100 {
        last = post_json(&url, Some(&key), br#"{"hang": false}"#).await;
        if last.0 == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(last, (200, r#"{"ok": true}"#.to_owned()));
    // An exception in run() is the model's error: 424 with the original status, as in Azure ML.
    let resp = reqwest::Client::new()
        .post(&url)
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json")
        .body("not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 424);
    assert_eq!(resp.headers()["ms-azureml-model-error-statuscode"], "500");
}

#[tokio::test]
async fn worker_count_follows_the_instance_type_unless_set() {
    let (server, tmp) = server();
    server.cli_ok(&["online-endpoint", "create", "--file", "examples/sklearn-score/endpoint.yml"]);
    let dep = write_code(tmp.path(), "def init():\n    pass\n\ndef run(raw):\n    return 1\n");
    server.cli_ok(&["online-deployment", "create", "--file", &dep, "--set", "instance_type=cpu=3,memory=1Gi"]);
    assert_eq!(worker_processes(&server), 3, "one worker per core of the instance type");
    server.cli_ok(&["online-deployment", "update", "--file", &dep, "--set", "environment_variables.WORKER_COUNT=2"]);
    assert_eq!(worker_processes(&server), 2, "WORKER_COUNT wins");
}

/// Live Python workers started for this server's deployments.
fn worker_processes(server: &Server) -> usize {
    crate::harness::pids_matching(server, "-m sluice_worker").len()
}

#[tokio::test]
async fn a_failing_init_fails_the_deployment_with_its_traceback() {
    let (server, tmp) = server();
    server.cli_ok(&["online-endpoint", "create", "--file", "examples/sklearn-score/endpoint.yml"]);
    let dep = write_code(
        tmp.path(),
        "def init():\n    raise RuntimeError('model file is corrupt')\n\ndef run(raw_data):\n    return 1\n",
    );
    let out = server.cli(&["online-deployment", "create", "--file", &dep]);
    assert_eq!(out.status.code(), Some(1));
    let logs = server.cli_ok(&["online-deployment", "get-logs", "--name", "blue", "--endpoint-name", "sklearn-ep"]);
    assert!(logs.contains("model file is corrupt") && logs.contains("Traceback"), "{logs}");
}

#[tokio::test]
async fn get_logs_follow_prints_what_the_script_prints_as_it_happens() {
    use std::io::{BufRead, BufReader};
    let (server, tmp) = server();
    server.cli_ok(&["online-endpoint", "create", "--file", "examples/sklearn-score/endpoint.yml"]);
    let dep = write_code(
        tmp.path(),
        "def init():\n    print('booted', flush=True)\n\ndef run(raw):\n    print('scored ' + raw, flush=True)\n    return 1\n",
    );
    server.cli_ok(&["online-deployment", "create", "--file", &dep, "--all-traffic"]);
    let mut follow = std::process::Command::new(crate::harness::BIN)
        .args(["online-deployment", "get-logs", "--name", "blue", "--endpoint-name", "sklearn-ep", "--follow"])
        .env("SLUICE_SERVER", &server.url)
        .env("SLUICE_DATA_DIR", &server.data_dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = follow.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let key = primary_key(&server, "sklearn-ep");
    let url = format!("{}/endpoints/sklearn-ep/score", server.url);
    let wait_for = |needle: &str| {
        let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::time::Instant::now() < until {
            if let Ok(line) = rx.recv_timeout(std::time::Duration::from_millis(200))
                && line.contains(needle)
            {
                return true;
            }
        }
        false
    };
    assert!(wait_for("booted"), "the existing log is printed first");
    for i in 0..2 {
        let (status, _) = post_json(&url, Some(&key), format!("\"call-{i}\"").as_bytes()).await;
        assert_eq!(status, 200);
        assert!(wait_for(&format!("call-{i}")), "line {i} followed");
    }
    let _ = follow.kill();
    let _ = follow.wait();
}
