//! Several deployments behind one endpoint: weighted split, header pinning, mirroring, and
//! changes under load that must not fail a single request.

use crate::harness::{Server, deploy_iris, post_json, primary_key, repo};
use crate::load::{Load, Tally};
use std::path::Path;

/// Creates deployment `name` of model `model` behind iris-ep, with 0 traffic.
fn add_deployment(server: &Server, dir: &Path, name: &str, model: &str, extra: &str) {
    let file = dir.join(format!("{name}.yml"));
    std::fs::write(
        &file,
        format!("name: {name}\nendpoint_name: iris-ep\nmodel: {model}\ninstance_type: cpu=1,memory=1Gi\n{extra}"),
    )
    .unwrap();
    server.cli_ok(&["online-deployment", "create", "--file", file.to_str().unwrap()]);
}

/// The observed share is within five standard deviations of the weight (exact at 0 and 100).
fn assert_share(t: &Tally, deployment: &str, percent: u32) {
    let n = t.total() as f64;
    let p = f64::from(percent) / 100.0;
    let got = t.share(deployment);
    let tolerance = 5.0 * (p * (1.0 - p) / n).sqrt();
    assert!(n > 0.0, "no requests counted");
    assert!(
        (got - p).abs() <= tolerance,
        "{deployment}: {got:.3} of {n} requests, expected {p} ± {tolerance:.3} ({t:?})"
    );
}

fn endpoint_json(server: &Server) -> serde_json::Value {
    serde_json::from_str(&server.cli_ok(&["online-endpoint", "show", "--name", "iris-ep"])).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_pin_and_mirror() {
    let server = Server::start();
    deploy_iris(&server);
    let tmp = tempfile::tempdir().unwrap();
    add_deployment(&server, tmp.path(), "green", "azureml:iris:1", "");
    // A deployment whose model takes other inputs: every mirrored copy fails there.
    server.cli_ok(&[
        "model",
        "create",
        "--name",
        "lr",
        "--version",
        "1",
        "--type",
        "triton_model",
        "--path",
        "testdata/models/lr20/model_repository",
    ]);
    add_deployment(&server, tmp.path(), "broken", "azureml:lr:1", "");

    let key = primary_key(&server, "iris-ep");
    let body = std::fs::read(repo().join("examples/iris/request.json")).unwrap();
    let url = format!("{}/endpoints/iris-ep/score", server.url);

    // Weighted split, checked statistically.
    server.cli_ok(&["online-endpoint", "update", "--name", "iris-ep", "--traffic", "blue=70 green=30"]);
    let load = Load::start(url.clone(), key.clone(), body.clone(), 8);
    let t = load.measure(800).await;
    assert!(t.failures.is_empty(), "{:?}", &t.failures[..t.failures.len().min(3)]);
    assert_share(&t, "green", 30);
    assert_share(&t, "broken", 0);

    // Mirror half of the live requests to green (no live share), all live traffic to blue.
    server.cli_ok(&["online-endpoint", "update", "--name", "iris-ep", "--traffic", "blue=100 green=0"]);
    server.cli_ok(&["online-endpoint", "update", "--name", "iris-ep", "--mirror-traffic", "green=50"]);
    let before = endpoint_json(&server)["deployment_stats"]["green"]["mirror"]["requests"].as_u64().unwrap_or(0);
    let t = load.measure(400).await;
    assert!(t.failures.is_empty());
    assert_share(&t, "blue", 100);
    let stats = endpoint_json(&server)["deployment_stats"]["green"].clone();
    let mirrored = stats["mirror"]["requests"].as_u64().unwrap() - before;
    assert!(mirrored > 50, "about half of {} requests mirrored, got {mirrored}: {stats}", t.total());
    assert_eq!(stats["mirror"]["agreement"], 1.0, "same model, same answers: {stats}");

    // A mirror that fails every copy changes nothing for live clients.
    server.cli_ok(&["online-endpoint", "update", "--name", "iris-ep", "--mirror-traffic", "broken=50"]);
    let t = load.measure(400).await;
    assert!(
        t.failures.is_empty(),
        "a failing mirror failed live requests: {:?}",
        &t.failures[..t.failures.len().min(3)]
    );
    assert_share(&t, "blue", 100);
    let broken = endpoint_json(&server)["deployment_stats"]["broken"].clone();
    assert!(broken["mirror"]["errors"].as_u64().unwrap() > 0, "{broken}");
    assert_eq!(broken["requests"], 0, "no live request reached the mirror: {broken}");
    load.stop().await;

    // Pinning wins over weights (0 included), bypasses mirroring, and names the server.
    let pinned = reqwest::Client::new()
        .post(&url)
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json")
        .header("azureml-model-deployment", "green")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(pinned.status().as_u16(), 200);
    assert_eq!(pinned.headers()["azureml-model-deployment"], "green");
    let unknown = reqwest::Client::new()
        .post(&url)
        .header("authorization", format!("Bearer {key}"))
        .header("azureml-model-deployment", "purple")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status().as_u16(), 404);
    assert!(unknown.text().await.unwrap().contains("purple"));
    let (status, _) = post_json(&url, Some(&key), &body).await;
    assert_eq!(status, 200);

    // Pinned requests are never mirrored, as in Azure ML: the mirror's count stands still.
    let mirror_count = |v: &serde_json::Value| {
        v["deployment_stats"]["broken"]["mirror"]["requests"].as_u64().unwrap_or(0)
            + v["deployment_stats"]["broken"]["mirror"]["shed"].as_u64().unwrap_or(0)
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await; // copies of unpinned requests land
    let before = mirror_count(&endpoint_json(&server));
    for _ in 0..40 {
        let r = reqwest::Client::new()
            .post(&url)
            .header("authorization", format!("Bearer {key}"))
            .header("content-type", "application/json")
            .header("azureml-model-deployment", "blue")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(mirror_count(&endpoint_json(&server)), before, "a pinned request was mirrored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_traffic_is_refused_and_changes_nothing() {
    let server = Server::start();
    deploy_iris(&server);
    let tmp = tempfile::tempdir().unwrap();
    add_deployment(&server, tmp.path(), "green", "azureml:iris:1", "");
    let before = endpoint_json(&server);
    for (flag, value, says) in [
        ("--traffic", "blue=90", "100"),
        ("--traffic", "blue=110 green=-10", "100"),
        ("--traffic", "blue=50 purple=50", "purple"),
        ("--mirror-traffic", "blue=10", "live"),
        ("--mirror-traffic", "green=60", "50"),
        ("--mirror-traffic", "purple=10", "purple"),
    ] {
        let out = server.cli(&["online-endpoint", "update", "--name", "iris-ep", flag, value]);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(1), "{flag} {value} was accepted");
        assert!(err.contains(says), "{flag} {value}: {err}");
    }
    let after = endpoint_json(&server);
    assert_eq!(before["traffic"], after["traffic"]);
    assert_eq!(before["mirror_traffic"], after["mirror_traffic"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_under_load_fail_no_request() {
    let server = Server::start();
    deploy_iris(&server);
    server.cli_ok(&[
        "model",
        "create",
        "--name",
        "iris",
        "--version",
        "2",
        "--type",
        "triton_model",
        "--path",
        "examples/iris/model_repository",
    ]);
    let tmp = tempfile::tempdir().unwrap();
    let key = primary_key(&server, "iris-ep");
    let body = std::fs::read(repo().join("examples/iris/request.json")).unwrap();
    let load = Load::start(format!("{}/endpoints/iris-ep/score", server.url), key, body, 8);
    let mut failures = Vec::new();

    add_deployment(&server, tmp.path(), "green", "azureml:iris:1", "");
    server.cli_ok(&["online-endpoint", "update", "--name", "iris-ep", "--mirror-traffic", "green=20"]);
    let t = load.measure(300).await;
    assert_share(&t, "blue", 100);
    failures.extend(t.failures);
    server.cli_ok(&["online-endpoint", "update", "--name", "iris-ep", "--mirror-traffic", "green=0"]);
    for (blue, green) in [(90, 10), (50, 50)] {
        server.cli_ok(&[
            "online-endpoint",
            "update",
            "--name",
            "iris-ep",
            "--traffic",
            &format!("blue={blue} green={green}"),
        ]);
        load.take();
        let t = load.measure(600).await;
        assert_share(&t, "green", green);
        failures.extend(t.failures);
    }
    // Replace blue's replicas (count and model) while it takes half the traffic.
    server.cli_ok(&[
        "online-deployment",
        "update",
        "--file",
        "examples/iris/blue-deployment.yml",
        "--set",
        "instance_count=2",
        "--set",
        "model=azureml:iris:2",
    ]);
    failures.extend(load.take().failures);
    server.cli_ok(&["online-endpoint", "update", "--name", "iris-ep", "--traffic", "blue=0 green=100"]);
    load.take();
    let t = load.measure(300).await;
    assert_share(&t, "green", 100);
    failures.extend(t.failures);
    server.cli_ok(&["online-deployment", "delete", "--name", "blue", "--endpoint-name", "iris-ep", "--yes"]);
    let t = load.stop().await;
    failures.extend(t.failures);
    assert!(failures.is_empty(), "{} failed requests, e.g. {:?}", failures.len(), &failures[..failures.len().min(5)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_mirror_never_delays_live_answers() {
    let tmp = tempfile::tempdir().unwrap();
    let python = crate::harness::test_python();
    let server = Server::start_on(&tmp.path().join("data"), &["--python", python.to_str().unwrap()]);
    deploy_iris(&server);
    // A mirror whose scoring script sleeps 5 s per request.
    std::fs::create_dir_all(tmp.path().join("code")).unwrap();
    std::fs::write(
        tmp.path().join("code/score.py"),
        "import time\n\ndef init():\n    pass\n\ndef run(raw):\n    time.sleep(5)\n    return []\n",
    )
    .unwrap();
    add_deployment(
        &server,
        tmp.path(),
        "sleepy",
        "azureml:iris:1",
        "code_configuration:\n  code: code\n  scoring_script: score.py\nrequest_settings:\n  request_timeout_ms: 10000\n",
    );
    server.cli_ok(&["online-endpoint", "update", "--name", "iris-ep", "--mirror-traffic", "sleepy=50"]);
    let key = primary_key(&server, "iris-ep");
    let body = std::fs::read(repo().join("examples/iris/request.json")).unwrap();
    let load = Load::start(format!("{}/endpoints/iris-ep/score", server.url), key, body, 8);
    // Live answers keep flowing at full rate while each mirrored copy takes 5 s: were a live
    // answer to wait for its copy, 8 clients could not finish 400 requests within the minute.
    let t = load.measure(400).await;
    load.stop().await;
    assert!(t.failures.is_empty(), "{:?}", &t.failures[..t.failures.len().min(3)]);
    assert!(t.total() >= 400, "live traffic slowed down behind the mirror: {t:?}");
    assert_share(&t, "blue", 100);
    let stats = endpoint_json(&server)["deployment_stats"]["sleepy"]["mirror"].clone();
    assert!(stats["shed"].as_u64().unwrap() > 0, "a saturated mirror sheds copies: {stats}");
}
