//! KServe v2 inference and metadata against the Triton-format example models.

use serde_json::{Value, json};
use sluice_runtime::ModelFormat;

use crate::support::{TestServer, assert_json_close, read_json, two_workers};

const IRIS: &str = "examples/iris/model_repository";

#[tokio::test]
async fn iris_request_gives_the_expected_outputs() {
    let server = TestServer::start(ModelFormat::Triton, IRIS).await;
    let (status, body) = server.post_json("/v2/models/iris/infer", &read_json("examples/iris/request.json")).await;
    assert_eq!(status, 200, "{body}");
    assert_json_close(&body, &read_json("examples/iris/expected.json"), "response");
    assert_eq!(body["model_version"], "1");
    assert_eq!(body["outputs"][0]["data"], json!([0, 2]));
    server.stop().await;
}

#[tokio::test]
async fn health_server_and_model_metadata() {
    let server = TestServer::start(ModelFormat::Triton, IRIS).await;
    assert_eq!(server.get("/v2/health/live").await, (200, json!({"live": true})));
    assert_eq!(server.get("/v2/health/ready").await, (200, json!({"ready": true})));
    assert_eq!(server.get("/").await, (200, Value::String("Healthy".into())));
    let (status, meta) = server.get("/v2").await;
    assert_eq!(status, 200);
    assert_eq!(meta["name"], "sluice");
    assert!(meta["extensions"].as_array().is_some_and(|e| e.contains(&json!("binary_tensor_data"))));

    let expected = json!({
        "name": "iris",
        "versions": ["1"],
        "platform": "onnxruntime_onnx",
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}],
        "outputs": [
            {"name": "label", "datatype": "INT64", "shape": [-1]},
            {"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]}
        ]
    });
    assert_eq!(server.get("/v2/models/iris").await, (200, expected.clone()));
    assert_eq!(server.get("/v2/models/iris/versions/1").await, (200, expected));
    assert_eq!(server.get("/v2/models/iris/ready").await, (200, json!({"name": "iris", "ready": true})));
    assert_eq!(server.get("/v2/models/iris/versions/1/ready").await.0, 200);
    server.stop().await;
}

#[tokio::test]
async fn nested_data_output_subset_and_id() {
    let server = TestServer::start(ModelFormat::Triton, IRIS).await;
    let request = json!({
        "id": "req-42",
        "inputs": [{"name": "input", "shape": [2, 4], "datatype": "FP32",
                    "data": [[5.1, 3.5, 1.4, 0.2], [6.3, 3.3, 6.0, 2.5]]}],
        "outputs": [{"name": "label"}]
    });
    let (status, body) = server.post_json("/v2/models/iris/versions/1/infer", &request).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"model_name": "iris", "model_version": "1", "id": "req-42",
               "outputs": [{"name": "label", "datatype": "INT64", "shape": [2], "data": [0, 2]}]})
    );
    server.stop().await;
}

#[tokio::test]
async fn concurrent_requests_on_two_workers_all_succeed() {
    let server = TestServer::start_with(ModelFormat::Triton, IRIS, two_workers()).await;
    let request = read_json("examples/iris/request.json");
    let calls = (0..32).map(|_| server.post_json("/v2/models/iris/infer", &request));
    for (status, body) in futures_util::future::join_all(calls).await {
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["outputs"][0]["data"], json!([0, 2]));
    }
    server.stop().await;
}

#[tokio::test]
async fn cnn_and_lr_models() {
    let server = TestServer::start(ModelFormat::Triton, "testdata/models/cnn/model_repository").await;
    let image =
        json!({"inputs": [{"name": "image", "shape": [2, 1, 28, 28], "datatype": "FP32", "data": vec![0.5; 2 * 784]}]});
    let (status, body) = server.post_json("/v2/models/cnn/infer", &image).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["outputs"][0]["name"], "probs");
    assert_eq!(body["outputs"][0]["shape"], json!([2, 10]));
    assert_eq!(body["outputs"][0]["data"].as_array().map(Vec::len), Some(20));
    server.stop().await;

    let server = TestServer::start(ModelFormat::Triton, "testdata/models/lr20/model_repository").await;
    let (status, body) = server.post_json("/v2/models/lr/infer", &read_json("testdata/models/lr20/v2_X.json")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["outputs"][0]["shape"], json!([1]));
    assert_eq!(body["outputs"][1]["shape"], json!([1, 3]));
    server.stop().await;
}
