//! Data-plane and management credentials: keys, regenerated keys, tokens, and every way of
//! getting them wrong.

use crate::harness::{Server, deploy_iris, post_json, primary_key, repo, wait_for_200};
use std::time::Duration;

#[tokio::test]
async fn keys_gate_the_data_plane() {
    let server = Server::start();
    deploy_iris(&server);
    // A second endpoint, so its key can be tried on the first.
    let tmp = tempfile::tempdir().unwrap();
    let other = tmp.path().join("other-ep.yml");
    std::fs::write(&other, "name: other-ep\nauth_mode: key\n").unwrap();
    server.cli_ok(&["online-endpoint", "create", "--file", other.to_str().unwrap()]);

    let key = primary_key(&server, "iris-ep");
    let other_key = primary_key(&server, "other-ep");
    let body = std::fs::read(repo().join("examples/iris/request.json")).unwrap();
    let url = format!("{}/endpoints/iris-ep/v2/models/iris/infer", server.url);

    assert_eq!(post_json(&url, Some(&key), &body).await.0, 200);
    assert_eq!(post_json(&url, None, &body).await.0, 401, "no key");
    assert_eq!(post_json(&url, Some("wrong-key"), &body).await.0, 401, "wrong key");
    assert_eq!(post_json(&url, Some(&other_key), &body).await.0, 401, "another endpoint's key");
    let unknown = format!("{}/endpoints/no-such-ep/v2/models/iris/infer", server.url);
    let (status, text) = post_json(&unknown, Some(&key), &body).await;
    assert_eq!(status, 401, "an unknown endpoint looks like a bad key: {text}");
    // Percent-encoded, the path goes through the router instead of the gateway's hot route
    // (sluice_gateway::with_hot_route): it decodes to the same endpoint behind the same gate.
    let encoded = format!("{}/endpoints/iris%2Dep/v2/models/iris/infer", server.url);
    assert_eq!(post_json(&encoded, Some(&key), &body).await.0, 200, "percent-encoded endpoint name");
    assert_eq!(post_json(&encoded, None, &body).await.0, 401, "percent-encoded, no key");

    // The secondary key works; regenerating the primary retires the old one at once.
    let creds: serde_json::Value =
        serde_json::from_str(&server.cli_ok(&["online-endpoint", "get-credentials", "--name", "iris-ep"])).unwrap();
    let secondary = creds["secondaryKey"].as_str().unwrap().to_owned();
    assert_eq!(post_json(&url, Some(&secondary), &body).await.0, 200);
    server.cli_ok(&["online-endpoint", "regenerate-keys", "--name", "iris-ep", "--key-type", "primary"]);
    let new_key = primary_key(&server, "iris-ep");
    assert_ne!(new_key, key);
    assert_eq!(post_json(&url, Some(&key), &body).await.0, 401, "old primary after regeneration");
    assert_eq!(post_json(&url, Some(&new_key), &body).await.0, 200);
    assert_eq!(post_json(&url, Some(&secondary), &body).await.0, 200, "secondary untouched");

    // Keys are encrypted at rest: the database file does not contain them.
    let db = std::fs::read(server.data_dir.join("sluice.db")).unwrap();
    let wal = std::fs::read(server.data_dir.join("sluice.db-wal")).unwrap_or_default();
    for k in [&new_key, &secondary] {
        let needle = k.as_bytes();
        assert!(!db.windows(needle.len()).any(|w| w == needle) && !wal.windows(needle.len()).any(|w| w == needle));
    }

    // The management API wants the admin credential.
    let resp = reqwest::get(format!("{}/api/v1/workspaces/default/online-endpoints", server.url)).await.unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    let out = server.cli(&["online-endpoint", "list", "--token", "not-the-admin-token"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("error:"));
}

#[tokio::test]
async fn aml_tokens_are_signed_bound_and_expire() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("sluice.yaml");
    std::fs::write(&config, "token_lifetime_s: 3\n").unwrap();
    let server = Server::start_on(&tmp.path().join("data"), &["--config", config.to_str().unwrap()]);
    server.cli_ok(&["online-endpoint", "create", "--file", "examples/iris-mlflow/endpoint.yml"]);
    server.cli_ok(&["online-deployment", "create", "--file", "examples/iris-mlflow/deployment.yml", "--all-traffic"]);

    let creds: serde_json::Value =
        serde_json::from_str(&server.cli_ok(&["online-endpoint", "get-credentials", "--name", "iris-mlflow-ep"]))
            .unwrap();
    let token = creds["accessToken"].as_str().expect("a token endpoint answers with accessToken").to_owned();
    assert_eq!(creds["tokenType"], "Bearer");
    assert!(creds["expiryTimeUtc"].as_i64().unwrap() > creds["refreshAfterTimeUtc"].as_i64().unwrap());

    let url = format!("{}/endpoints/iris-mlflow-ep/score", server.url);
    let body = std::fs::read(repo().join("examples/iris-mlflow/request.json")).unwrap();
    let (status, text) = wait_for_200(&url, &token, &body).await;
    assert_eq!(status, 200, "{text}");
    let labels: serde_json::Value = serde_json::from_str(&text).unwrap();
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo().join("examples/iris-mlflow/expected.json")).unwrap())
            .unwrap();
    assert_eq!(labels, expected);

    let (forged_body, _) = token.split_once('.').unwrap();
    assert_eq!(post_json(&url, Some(&format!("{forged_body}.AAAA")), &body).await.0, 401, "forged signature");
    assert_eq!(post_json(&url, Some("not-a-token"), &body).await.0, 401);

    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(post_json(&url, Some(&token), &body).await.0, 401, "expired token");
}
