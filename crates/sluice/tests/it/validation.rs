//! Bad input gets a clear error and creates nothing; a model that cannot load fails its
//! deployment with a reason the user can act on.

use crate::harness::{Server, register_iris, repo, show_blue};
use std::path::Path;

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_owned()
}

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn invalid_files_and_bodies_are_refused_and_create_nothing() {
    let server = Server::start();
    let tmp = tempfile::tempdir().unwrap();

    // Every broken field is named, with the file.
    let bad_ep = write(tmp.path(), "bad-ep.yml", "name: 1bad\nauth_mode: password\n");
    let out = server.cli(&["online-endpoint", "create", "--file", &bad_ep]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr_of(&out);
    assert!(err.contains("bad-ep.yml") && err.contains("auth_mode"), "{err}");

    let bad_name = write(tmp.path(), "bad-name.yml", "name: 1bad\n");
    let err = stderr_of(&server.cli(&["online-endpoint", "create", "--file", &bad_name]));
    assert!(err.contains("bad-name.yml") && err.contains("name") && err.contains("3-32 characters"), "{err}");

    let unparsable = write(tmp.path(), "broken.yml", "name: [unclosed\n");
    let err = stderr_of(&server.cli(&["online-endpoint", "create", "--file", &unparsable]));
    assert!(err.contains("broken.yml"), "{err}");

    server.cli_ok(&["online-endpoint", "create", "--file", "examples/iris/endpoint.yml"]);
    let bad_dep = write(
        tmp.path(),
        "bad-dep.yml",
        "name: blue\nendpoint_name: iris-ep\nmodel: azureml:iris:1\ninstance_count: 0\ninstance_type: Standard_Nope\nrequest_settings:\n  request_timeout_ms: 999999999\n",
    );
    let out = server.cli(&["online-deployment", "create", "--file", &bad_dep]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr_of(&out);
    for field in ["instance_count", "instance_type", "request_settings.request_timeout_ms"] {
        assert!(err.contains(field), "{field} not named in: {err}");
    }

    // A reference to a model that is not registered.
    let out = server.cli(&["online-deployment", "create", "--file", "examples/iris/blue-deployment.yml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr_of(&out).contains("iris"), "{}", stderr_of(&out));

    let client = server.client();
    assert!(client.list_deployments("iris-ep").await.unwrap().is_empty(), "nothing was created");
    assert_eq!(client.list_endpoints().await.unwrap().len(), 1);

    // Traffic must name real deployments and sum to 100.
    let out = server.cli(&["online-endpoint", "update", "--name", "iris-ep", "--traffic", "blue=90"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));

    // Raw REST: malformed JSON, wrong content type, unknown fields.
    let http = reqwest::Client::new();
    let url = format!("{}/api/v1/workspaces/default/online-endpoints", server.url);
    let auth = format!("Bearer {}", server.admin_token());
    let resp = http
        .post(&url)
        .header("authorization", &auth)
        .header("content-type", "application/json")
        .body("{nope")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "BadRequest");
    let resp = http
        .post(&url)
        .header("authorization", &auth)
        .header("content-type", "text/plain")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 415);
    let resp = http
        .post(&url)
        .header("authorization", &auth)
        .json(&serde_json::json!({"name": "ep-two", "auth_mod": "key"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    assert!(resp.text().await.unwrap().contains("auth_mod"));
    assert_eq!(client.list_endpoints().await.unwrap().len(), 1);

    // What axum rejects before a handler runs comes in the same error body: a path segment that
    // is not UTF-8, a query string that does not parse, a method the route does not take.
    let base = format!("{}/api/v1/workspaces/default", server.url);
    let cases = [
        ("GET", format!("{base}/online-endpoints/%FF"), 400, "BadRequest", "UTF-8"),
        ("GET", format!("{base}/online-endpoints/iris-ep/deployments/blue/logs?lines=abc"), 400, "BadRequest", "lines"),
        ("GET", format!("{base}/usage?since=2026-11-25&since=2026-11-26"), 400, "BadRequest", "since"),
        ("DELETE", url.clone(), 405, "MethodNotAllowed", "DELETE is not allowed on /api/v1/"),
        // The batch routes too.
        ("GET", format!("{base}/batch-endpoints/%FF"), 400, "BadRequest", "UTF-8"),
        ("GET", format!("{base}/jobs/any/logs?lines=abc"), 400, "BadRequest", "lines"),
        ("DELETE", format!("{base}/batch-endpoints"), 405, "MethodNotAllowed", "DELETE is not allowed on /api/v1/"),
    ];
    for (method, target, status, code, says) in cases {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let resp = http.request(method.clone(), &target).header("authorization", &auth).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), status, "{method} {target}");
        let allow = resp.headers().get("allow").map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(resp.headers()["content-type"], "application/json", "{method} {target}");
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], code, "{method} {target}: {body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{method} {target}: {message}");
        if status == 405 {
            let allow = allow.expect("a 405 keeps its Allow header");
            assert!(allow.contains("GET") && allow.contains("POST"), "{allow}");
        }
    }
    // A batch endpoint's job routes on the data plane answer a wrong method the same way.
    server.cli_ok(&["batch-endpoint", "create", "--file", "examples/batch-sklearn/endpoint.yml"]);
    let jobs = format!("{}/endpoints/iris-batch/jobs", server.url);
    let resp = http.delete(&jobs).header("authorization", &auth).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 405);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "MethodNotAllowed", "{body}");
}

#[tokio::test]
async fn deployments_that_cannot_run_fail_with_a_reason() {
    let server = Server::start();
    let tmp = tempfile::tempdir().unwrap();
    // A model repository whose model.onnx is not an ONNX file.
    let repo_dir = tmp.path().join("broken_repository");
    std::fs::create_dir_all(repo_dir.join("broken/1")).unwrap();
    std::fs::write(repo_dir.join("broken/1/model.onnx"), b"this is not onnx").unwrap();
    server.cli_ok(&[
        "model",
        "create",
        "--name",
        "broken",
        "--version",
        "1",
        "--type",
        "triton_model",
        "--path",
        repo_dir.to_str().unwrap(),
    ]);
    server.cli_ok(&["online-endpoint", "create", "--file", "examples/iris/endpoint.yml"]);

    let dep = write(
        tmp.path(),
        "dep.yml",
        "name: blue\nendpoint_name: iris-ep\nmodel: azureml:broken:1\ninstance_type: cpu=1,memory=1Gi\n",
    );
    let out = server.cli(&["online-deployment", "create", "--file", &dep]);
    assert_eq!(out.status.code(), Some(1), "a model that cannot load fails the deployment");
    let shown = show_blue(&server);
    assert_eq!(shown["provisioning_state"], "Failed");
    let message = shown["message"].as_str().unwrap_or_default();
    assert!(message.contains("model.onnx") || message.contains("broken"), "the reason names the model: {message}");
    let logs = server.cli_ok(&["online-deployment", "get-logs", "--name", "blue", "--endpoint-name", "iris-ep"]);
    assert!(logs.contains("broken"), "get-logs shows the replica's error: {logs}");

    // A GPU request on a machine without a GPU is refused with a clear reason.
    register_iris(&server);
    let gpu = write(
        tmp.path(),
        "gpu.yml",
        "name: gpu\nendpoint_name: iris-ep\nmodel: azureml:iris:1\ninstance_type: Standard_NC6s_v3\n",
    );
    let out = server.cli(&["online-deployment", "create", "--file", &gpu]);
    if !std::path::Path::new("/dev/nvidia0").exists() {
        assert_eq!(out.status.code(), Some(1));
        let shown = server.client().get_deployment("iris-ep", "gpu").await.unwrap();
        assert_eq!(shown.provisioning_state, "Failed");
        assert!(shown.message.unwrap_or_default().to_lowercase().contains("gpu"));
    }
    let _ = repo();
}
