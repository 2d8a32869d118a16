//! The README walkthrough: register the iris model, create the endpoint and a deployment with
//! all traffic, score it through the gateway with the CLI, plain HTTP and tritonclient.

use crate::harness::{Server, deploy_iris, post_json, primary_key, repo, show_blue};

#[tokio::test]
async fn iris_walkthrough_scores_like_onnxruntime() {
    let server = Server::start();
    deploy_iris(&server);

    let shown = show_blue(&server);
    assert_eq!(shown["provisioning_state"], "Succeeded");
    assert_eq!(shown["replicas"]["ready"], 1);
    let ep: serde_json::Value =
        serde_json::from_str(&server.cli_ok(&["online-endpoint", "show", "--name", "iris-ep"])).unwrap();
    assert_eq!(ep["traffic"]["blue"], 100, "--all-traffic set the split: {ep}");

    // The curl line of the walkthrough: KServe v2 infer through the gateway with the key.
    let key = primary_key(&server, "iris-ep");
    let body = std::fs::read(repo().join("examples/iris/request.json")).unwrap();
    let url = format!("{}/endpoints/iris-ep/v2/models/iris/infer", server.url);
    let (status, text) = post_json(&url, Some(&key), &body).await;
    assert_eq!(status, 200, "{text}");
    let got: serde_json::Value = serde_json::from_str(&text).unwrap();
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo().join("examples/iris/expected.json")).unwrap()).unwrap();
    assert_outputs_match(&got, &expected);

    // `online-endpoint invoke` posts the same file to the scoring URI.
    let invoked: serde_json::Value = serde_json::from_str(&server.cli_ok(&[
        "online-endpoint",
        "invoke",
        "--name",
        "iris-ep",
        "--request-file",
        "examples/iris/request.json",
    ]))
    .unwrap();
    assert_outputs_match(&invoked, &expected);

    // The OpenAPI description comes from the model's inputs and outputs.
    for version in ["2", "3"] {
        let doc = crate::harness::valid_swagger(&server, "iris-ep", &key, version).await;
        assert!(doc.to_string().contains("/v2/models/{model}/infer"), "{doc}");
    }

    // The replica's log is reachable through the API.
    let logs = server.cli_ok(&["online-deployment", "get-logs", "--name", "blue", "--endpoint-name", "iris-ep"]);
    assert!(!logs.trim().is_empty(), "get-logs returned nothing");

    // The unmodified tritonclient package against the endpoint's base URL.
    let python = crate::harness::test_python();
    let out = std::process::Command::new(python)
        .arg(repo().join("tests/python/check_tritonclient.py"))
        .args(["--url", &format!("{}/endpoints/iris-ep", server.url.trim_start_matches("http://"))])
        // `--key=...`: a generated key may start with '-', which argparse would take for a flag.
        .arg(format!("--key={key}"))
        .args(["--model", "iris", "--repo"])
        .arg(repo().join("examples/iris/model_repository"))
        .output()
        .expect("run check_tritonclient.py");
    assert!(
        out.status.success(),
        "tritonclient check failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn deleting_stops_replicas_and_frees_the_endpoint() {
    let server = Server::start();
    deploy_iris(&server);
    assert_eq!(replica_processes(&server), 1);

    // A deployment that takes live traffic is not deleted out from under its clients.
    let out = server.cli(&["online-deployment", "delete", "--name", "blue", "--endpoint-name", "iris-ep", "--yes"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("traffic"), "{}", String::from_utf8_lossy(&out.stderr));

    server.cli_ok(&["online-endpoint", "update", "--name", "iris-ep", "--traffic", "blue=0"]);
    let key = primary_key(&server, "iris-ep");
    let body = std::fs::read(repo().join("examples/iris/request.json")).unwrap();
    let (status, text) = post_json(&format!("{}/endpoints/iris-ep/score", server.url), Some(&key), &body).await;
    assert_eq!(status, 404, "no deployment has traffic: {text}");
    assert!(text.contains("no deployment with traffic"), "{text}");

    server.cli_ok(&["online-deployment", "delete", "--name", "blue", "--endpoint-name", "iris-ep", "--yes"]);
    assert_eq!(replica_processes(&server), 0, "the replica stopped with its deployment");
    server.cli_ok(&["online-endpoint", "delete", "--name", "iris-ep", "--yes"]);
    let err = server.client().get_endpoint("iris-ep").await.unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert_eq!(post_json(&format!("{}/endpoints/iris-ep/score", server.url), Some(&key), &body).await.0, 401);
}

fn replica_processes(server: &Server) -> usize {
    crate::harness::replica_pids(server).len()
}

/// Labels equal, probabilities within float tolerance, whatever the order of outputs.
fn assert_outputs_match(got: &serde_json::Value, expected: &serde_json::Value) {
    let find = |v: &serde_json::Value, name: &str| -> Vec<f64> {
        let outputs = v["outputs"].as_array().unwrap_or_else(|| panic!("no outputs in {v}"));
        let o = outputs.iter().find(|o| o["name"] == name).unwrap_or_else(|| panic!("no output {name} in {v}"));
        o["data"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
    };
    assert_eq!(find(got, "label"), find(expected, "label"));
    let (g, e) = (find(got, "probabilities"), find(expected, "probabilities"));
    assert_eq!(g.len(), e.len());
    for (a, b) in g.iter().zip(&e) {
        assert!((a - b).abs() < 1e-5, "probabilities differ: {g:?} vs {e:?}");
    }
}

#[tokio::test]
async fn openapi_document_is_served_and_matches_the_checked_in_copy() {
    let server = Server::start();
    let served = reqwest::get(format!("{}/api/v1/openapi.json", server.url)).await.unwrap().text().await.unwrap();
    let checked_in = std::fs::read_to_string(repo().join("openapi/openapi.json")).unwrap();
    assert_eq!(served.trim(), checked_in.trim(), "the API changed: run `sluice openapi > openapi/openapi.json`");
}
