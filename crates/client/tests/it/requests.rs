//! What each client method sends, and how it reads the answer.

use crate::mock::{MockServer, Recorded};
use serde_json::json;
use sluice_api::ModelTypeWire;
use sluice_api::endpoint::{EndpointCredentials, KeyType, OnlineEndpointSpec};
use sluice_api::model::ModelCreate;
use sluice_api::rollout::{RolloutSpec, RolloutState};
use sluice_client::{ClientError, SluiceClient, archive};

const WS: &str = "/api/v1/workspaces/default";

fn model_json(version: &str) -> String {
    json!({
        "id": format!("azureml:iris:{version}"), "name": "iris", "version": version, "type": "triton_model",
        "artifact": "sha256:ab", "path": "model_repository", "description": null, "tags": {},
        "created_at": "2026-01-01T00:00:00Z"
    })
    .to_string()
}

fn endpoint_json(state: &str) -> String {
    json!({
        "name": "iris-ep", "description": null, "tags": {}, "auth_mode": "key",
        "traffic": {"blue": 100}, "mirror_traffic": {}, "provisioning_state": state,
        "scoring_uri": "http://h/endpoints/iris-ep/score", "openapi_uri": "http://h/x",
        "created_at": "t", "updated_at": "t"
    })
    .to_string()
}

fn deployment_json(state: &str) -> String {
    json!({
        "name": "blue", "endpoint_name": "iris-ep", "model": "azureml:iris:1", "instance_count": 1,
        "request_settings": {"request_timeout_ms": 5000, "max_concurrent_requests_per_instance": 1, "max_queue_wait_ms": 500},
        "provisioning_state": state, "message": null, "replicas": {"desired": 1, "ready": 0},
        "created_at": "t", "updated_at": "t"
    })
    .to_string()
}

fn client(server: &MockServer) -> SluiceClient {
    SluiceClient::new(&server.url, Some("admin-tok".into())).unwrap()
}

fn assert_call(r: &Recorded, method: &str, path: &str) {
    assert_eq!((r.method.as_str(), r.path.as_str()), (method, path));
    assert_eq!(r.header("authorization"), Some("Bearer admin-tok"), "{method} {path}");
}

#[tokio::test]
async fn uploads_send_the_deterministic_archive_as_gzip() {
    let server = MockServer::start(|_| {
        (201, json!({"artifact": "sha256:00", "path": "model", "files": 1, "bytes": 5}).to_string())
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("model");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("m.onnx"), "hello").unwrap();
    let artifact = client(&server).upload_dir_or_file(&root).await.unwrap();
    assert_eq!((artifact.artifact.as_str(), artifact.files), ("sha256:00", 1));
    let r = server.last();
    assert_call(&r, "POST", &format!("{WS}/artifacts"));
    assert_eq!(r.header("content-type"), Some("application/gzip"));
    assert_eq!(r.body, archive::write_archive(&root, Vec::new()).unwrap().0);
    assert_eq!(r.header("content-length"), Some(r.body.len().to_string().as_str()));
}

#[tokio::test]
async fn archives_stream_from_a_file_with_their_length() {
    let server = MockServer::start(|r| {
        (201, json!({"artifact": "sha256:00", "path": "x", "files": 0, "bytes": r.body.len()}).to_string())
    })
    .await;
    let bytes = vec![42u8; 3 * 1024 * 1024];
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &bytes).unwrap();
    let body = tokio::fs::File::open(file.path()).await.unwrap();
    let artifact = client(&server).upload_archive(body, bytes.len() as u64).await.unwrap();
    assert_eq!(artifact.bytes, bytes.len() as u64);
    assert_eq!(server.last().body, bytes);
}

#[tokio::test]
async fn model_routes() {
    let server = MockServer::start(|r| match r.method.as_str() {
        "PUT" => (201, model_json("2")),
        "DELETE" => (204, String::new()),
        _ if r.path.ends_with("/versions") || r.path.ends_with("/models") => {
            (200, format!("[{},{}]", model_json("2"), model_json("10")))
        }
        _ => (200, model_json("10")),
    })
    .await;
    let c = client(&server);
    let body = ModelCreate {
        model_type: ModelTypeWire::TritonModel,
        artifact: "sha256:ab".into(),
        description: Some("d".into()),
        tags: Default::default(),
    };
    assert_eq!(c.create_model("iris", "2", &body).await.unwrap().version, "2");
    let r = server.last();
    assert_call(&r, "PUT", &format!("{WS}/models/iris/versions/2"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.json(), json!({"type": "triton_model", "artifact": "sha256:ab", "description": "d", "tags": {}}));
    assert_eq!(c.list_models().await.unwrap().len(), 2);
    assert_call(&server.last(), "GET", &format!("{WS}/models"));
    assert_eq!(c.next_model_version("iris").await.unwrap(), "11");
    assert_call(&server.last(), "GET", &format!("{WS}/models/iris/versions"));
    assert_eq!(c.get_model("iris", "latest").await.unwrap().version, "10");
    assert_call(&server.last(), "GET", &format!("{WS}/models/iris/versions/latest"));
    c.delete_model("iris", "2").await.unwrap();
    assert_call(&server.last(), "DELETE", &format!("{WS}/models/iris/versions/2"));
}

#[tokio::test]
async fn endpoint_routes_and_credentials() {
    let server = MockServer::start(|r| match (r.method.as_str(), r.path.rsplit('/').next().unwrap()) {
        ("POST", "online-endpoints") => (201, endpoint_json("Creating")),
        ("POST", "get-credentials") => (200, json!({"primaryKey": "k1", "secondaryKey": "k2"}).to_string()),
        ("POST", "regenerate-keys") => (200, json!({"primaryKey": "k3", "secondaryKey": "k2"}).to_string()),
        ("DELETE", _) => (202, String::new()),
        _ => (200, endpoint_json("Succeeded")),
    })
    .await;
    let c = client(&server);
    let spec: OnlineEndpointSpec = sluice_api::yaml::from_str("name: iris-ep\nauth_mode: key\n").unwrap();
    assert_eq!(c.create_endpoint(&spec).await.unwrap().provisioning_state, "Creating");
    let r = server.last();
    assert_call(&r, "POST", &format!("{WS}/online-endpoints"));
    assert_eq!(r.json()["name"], "iris-ep");
    assert_eq!(r.json()["auth_mode"], "key");
    c.update_endpoint("iris-ep", &spec).await.unwrap();
    assert_call(&server.last(), "PUT", &format!("{WS}/online-endpoints/iris-ep"));
    c.delete_endpoint("iris-ep").await.unwrap();
    assert_call(&server.last(), "DELETE", &format!("{WS}/online-endpoints/iris-ep"));
    let EndpointCredentials::Keys(keys) = c.get_credentials("iris-ep").await.unwrap() else { panic!("keys expected") };
    assert_eq!(keys.primary_key, "k1");
    assert_call(&server.last(), "POST", &format!("{WS}/online-endpoints/iris-ep/get-credentials"));
    assert_eq!(c.regenerate_keys("iris-ep", KeyType::Primary).await.unwrap().primary_key, "k3");
    let r = server.last();
    assert_call(&r, "POST", &format!("{WS}/online-endpoints/iris-ep/regenerate-keys"));
    assert_eq!(r.json(), json!({"keyType": "Primary"}));
}

#[tokio::test]
async fn deployment_routes_and_logs() {
    let server = MockServer::start(|r| match r.method.as_str() {
        "POST" => (201, deployment_json("Creating")),
        "PUT" => (200, deployment_json("Updating")),
        "DELETE" => (202, String::new()),
        _ if r.path.ends_with("/logs") => (200, json!({"content": "line1\nline2"}).to_string()),
        _ if r.path.ends_with("/deployments") => (200, format!("[{}]", deployment_json("Succeeded"))),
        _ => (200, deployment_json("Succeeded")),
    })
    .await;
    let c = client(&server);
    let created = c.get_deployment("iris-ep", "blue").await.unwrap();
    assert_eq!((created.spec.name.as_str(), created.provisioning_state.as_str()), ("blue", "Succeeded"));
    let spec = created.spec;
    assert_eq!(c.create_deployment("iris-ep", &spec).await.unwrap().provisioning_state, "Creating");
    let r = server.last();
    assert_call(&r, "POST", &format!("{WS}/online-endpoints/iris-ep/deployments"));
    assert_eq!(r.json()["model"], "azureml:iris:1");
    assert!(r.json().get("$schema").is_none());
    c.update_deployment("iris-ep", "blue", &spec).await.unwrap();
    assert_call(&server.last(), "PUT", &format!("{WS}/online-endpoints/iris-ep/deployments/blue"));
    assert_eq!(c.list_deployments("iris-ep").await.unwrap().len(), 1);
    c.delete_deployment("iris-ep", "blue").await.unwrap();
    assert_call(&server.last(), "DELETE", &format!("{WS}/online-endpoints/iris-ep/deployments/blue"));
    let logs = c.get_deployment_logs("iris-ep", "blue", Some(10), Some(1)).await.unwrap();
    assert_eq!(logs.content, "line1\nline2");
    let r = server.last();
    assert_call(&r, "GET", &format!("{WS}/online-endpoints/iris-ep/deployments/blue/logs"));
    assert_eq!(r.query.as_deref(), Some("lines=10&replica=1"));
    c.get_deployment_logs("iris-ep", "blue", None, None).await.unwrap();
    assert_eq!(server.last().query, None);
}

fn rollout_json(state: &str) -> String {
    json!({
        "id": "r-1", "endpoint": "iris-ep", "to": "green", "steps": [10, 100], "interval_s": 30,
        "max_error_rate": 0.01, "min_requests": 10, "state": state, "step_index": 1,
        "original_traffic": {"blue": 100}, "message": "error rate 0.2 above 0.01",
        "history": [{"weight": 10, "requests": 40, "errors": 8, "error_rate": 0.2, "p99_ms": 12.5,
            "passed": false, "reason": "error rate 0.2 above 0.01", "finished_at": "t"}],
        "created_at": "t", "updated_at": "t"
    })
    .to_string()
}

#[tokio::test]
async fn rollout_routes() {
    let server = MockServer::start(|r| match (r.method.as_str(), r.path.rsplit('/').next().unwrap()) {
        ("POST", "rollouts") => (201, rollout_json("Running")),
        ("POST", "abort") => (200, rollout_json("Aborted")),
        _ if r.path.contains("never") => {
            (404, json!({"error": {"code": "NotFound", "message": "no rollout"}}).to_string())
        }
        _ => (200, rollout_json("RolledBack")),
    })
    .await;
    let c = client(&server);
    let spec = RolloutSpec {
        to: "green".into(),
        steps: vec![10, 100],
        interval_s: 30,
        max_error_rate: 0.01,
        max_p99_latency_ms: None,
        min_agreement: Some(0.99),
        min_requests: 10,
    };
    let started = c.start_rollout("iris-ep", &spec).await.unwrap();
    assert_eq!((started.state, started.spec.to.as_str(), started.step_index), (RolloutState::Running, "green", 1));
    let r = server.last();
    assert_call(&r, "POST", &format!("{WS}/online-endpoints/iris-ep/rollouts"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(
        r.json(),
        json!({"to": "green", "steps": [10, 100], "interval_s": 30, "max_error_rate": 0.01,
            "min_agreement": 0.99, "min_requests": 10})
    );
    let latest = c.get_rollout("iris-ep").await.unwrap();
    assert_eq!(latest.state, RolloutState::RolledBack);
    assert_eq!(latest.history[0].reason.as_deref(), Some("error rate 0.2 above 0.01"));
    assert_call(&server.last(), "GET", &format!("{WS}/online-endpoints/iris-ep/rollouts/latest"));
    assert_eq!(c.abort_rollout("iris-ep").await.unwrap().state, RolloutState::Aborted);
    let r = server.last();
    assert_call(&r, "POST", &format!("{WS}/online-endpoints/iris-ep/rollouts/latest/abort"));
    assert!(r.body.is_empty(), "abort sends no body");
    assert!(c.get_rollout("never").await.unwrap_err().is_not_found());
}

#[tokio::test]
async fn invoke_posts_to_the_data_plane_with_the_endpoint_key() {
    let server = MockServer::start(|r| {
        if r.header("azureml-model-deployment") == Some("green") {
            (424, "{\"message\":\"boom\"}".into())
        } else {
            (200, "[1, 2]".into())
        }
    })
    .await;
    let c = client(&server);
    let answer = c.invoke("iris-ep", "ep-key", b"{\"data\": [1]}".to_vec(), "application/json", None).await.unwrap();
    assert_eq!((answer.status, answer.text().as_str()), (200, "[1, 2]"));
    let r = server.last();
    assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/endpoints/iris-ep/score"));
    assert_eq!(r.header("authorization"), Some("Bearer ep-key"), "the endpoint key, not the admin token");
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.body, b"{\"data\": [1]}");
    let answer = c.invoke("iris-ep", "ep-key", Vec::new(), "application/json", Some("green")).await.unwrap();
    assert!(!answer.is_success());
    assert_eq!(answer.status, 424);
}

#[tokio::test]
async fn error_bodies_become_api_errors() {
    let server = MockServer::start(|r| {
        if r.path.contains("missing") {
            (404, "not json at all".into())
        } else {
            let body = json!({"error": {"code": "ValidationFailed", "message": "invalid deployment",
                "details": [{"field": "instance_count", "message": "0: expected 1 to 50"}]}});
            (400, body.to_string())
        }
    })
    .await;
    let c = client(&server);
    let err = c.get_endpoint("iris-ep").await.unwrap_err();
    assert!(matches!(&err, ClientError::Api { status: 400, .. }), "{err:?}");
    assert_eq!(err.to_string(), "invalid deployment: instance_count: 0: expected 1 to 50");
    let err = c.get_endpoint("missing").await.unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    assert!(err.to_string().contains("HTTP 404") && err.to_string().contains("not json at all"), "{err}");
}

#[tokio::test]
async fn a_server_that_is_not_there_is_unreachable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let c = SluiceClient::new(&url, Some("secret-token".into())).unwrap();
    let err = c.list_endpoints().await.unwrap_err();
    assert!(err.is_unreachable(), "{err:?}");
    let text = err.to_string();
    assert_eq!(
        text,
        format!("cannot reach the Sluice server at {url}: is it running? (start it with `sluice server`)")
    );
    assert!(!format!("{err:?}").contains("secret-token"));
}

#[tokio::test]
async fn a_2xx_with_the_wrong_shape_is_a_decode_error() {
    let server = MockServer::start(|_| (200, "{\"unexpected\": true}".into())).await;
    let err = client(&server).get_endpoint("iris-ep").await.unwrap_err();
    assert!(matches!(err, ClientError::Decode { status: 200, .. }), "{err:?}");
    assert!(
        err.to_string().starts_with(&format!("unexpected answer from {WS}/online-endpoints/iris-ep (HTTP 200)")),
        "{err}"
    );
}
