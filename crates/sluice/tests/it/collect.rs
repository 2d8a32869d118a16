//! Data collection: a deployment's `data_collector` records sampled request and response
//! payloads as JSON Lines in the data directory; credentials are never recorded; off by default.

use crate::harness::{Server, primary_key, register_iris, repo};
use std::time::{Duration, Instant};

fn records(dir: &std::path::Path) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let text = std::fs::read_to_string(&p).unwrap();
                out.extend(text.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()));
            }
        }
    }
    out
}

#[tokio::test]
async fn sampled_payloads_are_recorded_without_credentials() {
    let server = Server::start();
    let tmp = tempfile::tempdir().unwrap();
    register_iris(&server);
    server.cli_ok(&["online-endpoint", "create", "--file", "examples/iris/endpoint.yml"]);
    let file = tmp.path().join("collected.yml");
    std::fs::write(
        &file,
        "name: blue\nendpoint_name: iris-ep\nmodel: azureml:iris:1\ninstance_type: cpu=1,memory=1Gi\n\
         data_collector:\n  sampling_rate: 1.0\n  rolling_rate: hour\n  request_logging:\n    capture_headers: [x-customer, authorization]\n  \
         collections:\n    request:\n      enabled: 'True'\n    response:\n      enabled: 'True'\n",
    )
    .unwrap();
    server.cli_ok(&["online-deployment", "create", "--file", file.to_str().unwrap(), "--all-traffic"]);
    // A second deployment without a data_collector records nothing.
    server.cli_ok(&["online-deployment", "create", "--file", "examples/iris/blue-deployment.yml", "--name", "green"]);

    let key = primary_key(&server, "iris-ep");
    let body = std::fs::read(repo().join("examples/iris/request.json")).unwrap();
    let url = format!("{}/endpoints/iris-ep/v2/models/iris/infer", server.url);
    let client = reqwest::Client::new();
    let mut ids = Vec::new();
    for deployment in ["blue", "blue", "blue", "green"] {
        let resp = client
            .post(&url)
            .bearer_auth(&key)
            .header("x-customer", "acme")
            .header("azureml-model-deployment", deployment)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        if deployment == "blue" {
            ids.push(resp.headers()["x-request-id"].to_str().unwrap().to_owned());
        }
    }

    let root = server.data_dir.join("data-collector/iris-ep");
    let until = Instant::now() + Duration::from_secs(30);
    let mut got = records(&root);
    while got.len() < 6 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(100)).await;
        got = records(&root);
    }
    assert_eq!(got.len(), 6, "3 requests and 3 responses of blue: {got:#?}");
    assert!(!root.join("green").exists(), "green has no data_collector");
    let sent: serde_json::Value = serde_json::from_slice(&body).unwrap();
    for id in &ids {
        let req = got.iter().find(|r| r["id"] == id.as_str() && r["type"] == "azureml.inference.request").unwrap();
        assert_eq!(req["data"], sent);
        assert_eq!(req["headers"], serde_json::json!({"x-customer": "acme"}));
        assert_eq!(req["path"], "/v2/models/iris/infer");
        let resp = got.iter().find(|r| r["id"] == id.as_str() && r["type"] == "azureml.inference.response").unwrap();
        assert_eq!(resp["statuscode"], 200);
        assert!(resp["data"]["outputs"].is_array(), "{resp}");
    }
    // Files are rolled by hour under request/ and response/; the key appears nowhere.
    let hour_dirs: Vec<_> = std::fs::read_dir(root.join("blue/request")).unwrap().collect();
    assert_eq!(hour_dirs.len(), 1, "one year folder");
    let all = records(&root).iter().map(ToString::to_string).collect::<String>();
    assert!(!all.contains(&key) && !all.to_lowercase().contains("bearer"), "credentials were recorded");
}

#[tokio::test]
async fn a_bad_data_collector_is_refused_with_the_field_named() {
    let server = Server::start();
    let tmp = tempfile::tempdir().unwrap();
    register_iris(&server);
    server.cli_ok(&["online-endpoint", "create", "--file", "examples/iris/endpoint.yml"]);
    let out = server.cli(&[
        "online-deployment",
        "create",
        "--file",
        "examples/iris/blue-deployment.yml",
        "--set",
        "data_collector.sampling_rate=3",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("data_collector.sampling_rate: 3: expected a number from 0 to 1"),
        "{err}"
    );
    let _ = tmp;
}
