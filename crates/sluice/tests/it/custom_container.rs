//! Custom containers ("bring your own container") as a command: the environment's
//! `inference_config` says where the user's own server answers; Sluice starts the command per
//! replica, waits for its readiness route, and proxies scoring (and any other path) to it.

use crate::harness::{Server, pids_matching, post_json, primary_key};

const EXAMPLE: &str = "examples/custom-container";

#[tokio::test]
async fn the_tf_serving_example_scores_through_its_own_server() {
    let server = Server::start();
    server.cli_ok(&["online-endpoint", "create", "--file", &format!("{EXAMPLE}/endpoint.yml")]);
    server.cli_ok(&["online-deployment", "create", "--file", &format!("{EXAMPLE}/deployment.yml"), "--all-traffic"]);
    let out = server.cli_ok(&[
        "online-endpoint",
        "invoke",
        "--name",
        "tfserving-endpoint",
        "--request-file",
        &format!("{EXAMPLE}/sample-request.json"),
    ]);
    let got: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(got, serde_json::json!({"predictions": [2.5, 3.0, 4.5]}));

    // Other paths reach the same server (the Triton example calls <base>/v2/...), with the key.
    let key = primary_key(&server, "tfserving-endpoint");
    let base = format!("{}/endpoints/tfserving-endpoint", server.url);
    let status = reqwest::Client::new()
        .get(format!("{base}/v1/models/half_plus_two"))
        .header("authorization", format!("Bearer {key}"))
        .send()
        .await
        .unwrap();
    assert_eq!(status.status().as_u16(), 200);
    // The server's own errors pass through as a model error (424 with its status).
    let (code, body) = post_json(&format!("{base}/score"), Some(&key), br#"{"instances": ["x"]}"#).await;
    assert_eq!(code, 424, "{body}");

    // Two replicas on one machine: the route's port is taken by the first, so the second is
    // told another one in $PORT; both serve.
    server.cli_ok(&[
        "online-deployment",
        "update",
        "--name",
        "tfserving-deployment",
        "--endpoint-name",
        "tfserving-endpoint",
        "--set",
        "instance_count=2",
    ]);
    assert_eq!(pids_matching(&server, "replica-command").len(), 2);
    for _ in 0..6 {
        let (code, body) = post_json(&format!("{base}/score"), Some(&key), br#"{"instances": [4]}"#).await;
        assert_eq!((code, body.as_str()), (200, r#"{"predictions": [4.0]}"#));
    }
    // The command's output is in the deployment's logs.
    let logs = server.cli_ok(&[
        "online-deployment",
        "get-logs",
        "--name",
        "tfserving-deployment",
        "--endpoint-name",
        "tfserving-endpoint",
    ]);
    assert!(logs.contains("half_plus_two serving on port"), "{logs}");

    // Deleting stops the commands too.
    server.cli_ok(&["online-endpoint", "delete", "--name", "tfserving-endpoint", "--yes"]);
    assert!(pids_matching(&server, "replica-command").is_empty());
}

#[tokio::test]
async fn a_custom_container_without_a_command_or_routes_is_refused_with_what_to_fix() {
    let server = Server::start();
    server.cli_ok(&["online-endpoint", "create", "--file", &format!("{EXAMPLE}/endpoint.yml")]);
    let out = server.cli(&[
        "online-deployment",
        "create",
        "--file",
        &format!("{EXAMPLE}/deployment.yml"),
        "--set",
        "environment.command=",
        "--set",
        "environment.inference_config.scoring_route.port=70000",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("environment.command: "), "{err}");
    assert!(err.contains("environment.inference_config.scoring_route.port: required: a port number"), "{err}");
    let listed = server.cli_ok(&["online-deployment", "list", "--endpoint-name", "tfserving-endpoint"]);
    assert_eq!(listed.trim(), "[]");
}
