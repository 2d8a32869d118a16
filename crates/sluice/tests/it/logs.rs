//! Structured logs: with `SLUICE_LOG_FORMAT=json` the server writes one JSON object per line, and
//! a request the deployment failed is logged with its request id, endpoint and status.

use crate::harness::{Server, deploy_iris, post_json, primary_key};

#[tokio::test]
async fn a_failed_request_is_logged_as_json_with_its_request_id() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let server = Server::start_with_env(&data, &[], &[("SLUICE_LOG_FORMAT", "json")]);
    deploy_iris(&server);
    let key = primary_key(&server, "iris-ep");
    // A body the model rejects: 424 through /score, the deployment's failure.
    let resp = reqwest::Client::new()
        .post(format!("{}/endpoints/iris-ep/score", server.url))
        .bearer_auth(&key)
        .header("x-request-id", "trace-me-42")
        .header("content-type", "application/json")
        .body(r#"{"inputs": [{"name": "nope", "shape": [1], "datatype": "FP32", "data": [1]}]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 424);
    assert_eq!(resp.headers()["x-request-id"], "trace-me-42");
    let (ok, _) = post_json(&format!("{}/endpoints/iris-ep/score", server.url), Some(&key), b"{}").await;
    assert_ne!(ok, 0);

    let log = data.with_extension("log");
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let line = loop {
        let text = std::fs::read_to_string(&log).unwrap();
        if let Some(l) = text.lines().find(|l| l.contains("trace-me-42")) {
            break l.to_owned();
        }
        assert!(std::time::Instant::now() < until, "no log line for the request:\n{text}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let v: serde_json::Value = serde_json::from_str(&line).expect("a JSON log line");
    assert_eq!(v["level"], "WARN", "{v}");
    assert_eq!(v["fields"]["request_id"], "trace-me-42", "{v}");
    assert_eq!(v["fields"]["endpoint"], "iris-ep", "{v}");
    assert_eq!(v["fields"]["deployment"], "blue", "{v}");
    assert_eq!(v["fields"]["status"], 424, "{v}");
    // Every line is JSON, and no credential is logged.
    let text = std::fs::read_to_string(&log).unwrap();
    for l in text.lines().filter(|l| l.starts_with('{')) {
        serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| panic!("{e}: {l}"));
    }
    assert!(!text.contains(&key), "the key was logged");
}
