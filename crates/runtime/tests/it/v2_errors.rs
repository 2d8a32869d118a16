//! Bad requests: KServe-style `{"error": ...}` bodies that name the tensor and what was expected.

use serde_json::{Value, json};
use sluice_runtime::{ModelFormat, ServerConfig};

use crate::support::TestServer;

const IRIS: &str = "examples/iris/model_repository";

fn iris_input(shape: Value, datatype: &str, data: Value) -> Value {
    json!({"inputs": [{"name": "input", "shape": shape, "datatype": datatype, "data": data}]})
}

async fn expect_error(server: &TestServer, path: &str, body: &Value, status: u16, message: &str) {
    let (actual, response) = server.post_json(path, body).await;
    assert_eq!(actual, status, "{response}");
    let text = response["error"].as_str().unwrap_or_else(|| panic!("no error field in {response}"));
    assert!(text.contains(message), "'{text}' does not contain '{message}'");
}

#[tokio::test]
async fn bad_inputs_are_400_with_clear_messages() {
    let server = TestServer::start(ModelFormat::Triton, IRIS).await;
    let infer = "/v2/models/iris/infer";
    let cases = [
        (
            iris_input(json!([1, 3]), "FP32", json!([1, 2, 3])),
            "input 'input' has shape [1, 3] but model 'iris' expects [-1, 4]",
        ),
        (
            iris_input(json!([2, 4]), "FP32", json!([1, 2, 3, 4])),
            "input 'input' has 4 data elements but its shape [2, 4] needs 8",
        ),
        (
            iris_input(json!([1, 4]), "FP64", json!([1, 2, 3, 4])),
            "input 'input' has datatype FP64 but model 'iris' expects FP32",
        ),
        (iris_input(json!([1, 4]), "FLOAT", json!([1, 2, 3, 4])), "input 'input' has unsupported datatype 'FLOAT'"),
        (
            iris_input(json!([1, 4]), "FP32", json!([1, 2, "x", 4])),
            "input 'input': element 2 is \"x\", which is not a valid FP32 value",
        ),
        (iris_input(json!([1, 4]), "FP32", json!([[1, 2], [3]])), "ragged"),
        (iris_input(json!([-1, 4]), "FP32", json!([])), "invalid shape [-1, 4]"),
        (iris_input(json!([4611686018427387904_i64, 4]), "FP32", json!([1])), "invalid shape"),
        (
            json!({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}),
            "unknown input 'x' for model 'iris' (inputs: input)",
        ),
        (json!({"inputs": []}), "missing input 'input'"),
        (json!({"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32"}]}), "input 'input' has no 'data'"),
        (
            json!({"inputs": [{"name": "input", "shape": "1,4", "datatype": "FP32", "data": []}]}),
            "at 'inputs[0].shape'",
        ),
        (json!({"input": []}), "missing field `inputs`"),
        (json!([1, 2]), "invalid inference request"),
    ];
    for (body, message) in cases {
        expect_error(&server, infer, &body, 400, message).await;
    }
    let mut unknown_output = iris_input(json!([1, 4]), "FP32", json!([1, 2, 3, 4]));
    unknown_output["outputs"] = json!([{"name": "proba"}]);
    expect_error(
        &server,
        infer,
        &unknown_output,
        400,
        "unknown output 'proba' for model 'iris' (outputs: label, probabilities)",
    )
    .await;

    let response = server.client.post(server.url(infer)).body("{not json").send().await.expect("POST");
    assert_eq!(response.status().as_u16(), 400);
    server.stop().await;
}

/// `POST /v2/models/{model}/infer` is answered in front of the router (`http::app`); what it gives
/// back must still get the router's answer.
#[tokio::test]
async fn the_infer_route_answers_like_the_router_around_it() {
    let server = TestServer::start(ModelFormat::Triton, IRIS).await;
    let ok = iris_input(json!([1, 4]), "FP32", json!([1, 2, 3, 4]));
    let (status, plain) = server.post_json("/v2/models/iris/infer", &ok).await;
    assert_eq!(status, 200, "{plain}");
    // A percent-encoded name goes to the router, which decodes it: the same answer.
    assert_eq!(server.post_json("/v2/models/ir%69s/infer", &ok).await, (200, plain.clone()));
    assert_eq!(server.post_json("/v2/models/iris/versions/1/infer", &ok).await, (200, plain));
    let response = server.client.get(server.url("/v2/models/iris/infer")).send().await.expect("GET");
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "POST");
    let body: serde_json::Value = response.json().await.expect("a JSON error body");
    assert_eq!(body, json!({"error": "GET is not allowed on /v2/models/iris/infer"}));
    assert_eq!(server.post_json("/v2/models/iris/infer/", &ok).await.0, 404);
    expect_error(&server, "/v2/models/iris/infer", &json!({"inputs": 3}), 400, "inputs").await;
    server.stop().await;
}

#[tokio::test]
async fn unknown_models_versions_and_routes_are_404() {
    let server = TestServer::start(ModelFormat::Triton, IRIS).await;
    let ok = iris_input(json!([1, 4]), "FP32", json!([1, 2, 3, 4]));
    expect_error(&server, "/v2/models/nope/infer", &ok, 404, "unknown model 'nope' (models: iris)").await;
    expect_error(
        &server,
        "/v2/models/iris/versions/2/infer",
        &ok,
        404,
        "model 'iris' has no version '2' (serving version 1)",
    )
    .await;
    let (status, body) = server.get("/v2/models/nope").await;
    assert_eq!((status, body["error"].is_string()), (404, true));
    assert_eq!(server.get("/v2/models/nope/ready").await.0, 404);
    let (status, body) = server.get("/v2/nothing/here").await;
    assert_eq!(status, 404);
    assert_eq!(body, json!({"error": "no route for /v2/nothing/here"}));
    server.stop().await;
}

#[tokio::test]
async fn oversized_bodies_are_413() {
    let config = ServerConfig { max_request_bytes: 1024, ..ServerConfig::default() };
    let server = TestServer::start_with(ModelFormat::Triton, IRIS, config).await;
    let big = iris_input(json!([100, 4]), "FP32", json!(vec![1.0; 400]));
    expect_error(&server, "/v2/models/iris/infer", &big, 413, "exceeds the limit of 1024 bytes").await;
    let small = iris_input(json!([1, 4]), "FP32", json!([1, 2, 3, 4]));
    assert_eq!(server.post_json("/v2/models/iris/infer", &small).await.0, 200);
    server.stop().await;
}
