//! `GET /swagger.json`: the documents for the example models, whose example bodies the real routes accept.
//!
//! With `SLUICE_SWAGGER_DUMP=<folder>` each document, example and `/score` answer is also written there, for
//! checking with an OpenAPI validator.

use std::fs;
use std::path::Path;

use serde_json::{Value, json};
use sluice_runtime::ModelFormat;

use crate::support::{TestServer, example};

/// Fetches the document for each `?version=` form and checks the labels; returns the 2.0 and 3.0 documents.
async fn documents(server: &TestServer, case: &str) -> (Value, Value) {
    let mut found = Vec::new();
    for (query, label) in [
        ("", "2.0"),
        ("?version=2", "2.0"),
        ("?version=2.0", "2.0"),
        ("?version=3", "3.0.3"),
        ("?version=3.0", "3.0.3"),
        ("?version=3.1", "3.1.0"),
    ] {
        let response = server.client.get(server.url(&format!("/swagger.json{query}"))).send().await.expect("GET");
        assert_eq!(response.status().as_u16(), 200, "{query}");
        let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).map(str::to_owned);
        assert_eq!(content_type.as_deref(), Some("application/json"), "{query}");
        let doc: Value = response.json().await.expect("JSON");
        let key = if label == "2.0" { "swagger" } else { "openapi" };
        assert_eq!(doc[key], label, "{query}");
        dump(&format!("{case}-{}.json", if query.is_empty() { "default" } else { &query[9..] }), &doc);
        found.push(doc);
    }
    let v3 = found[3].clone();
    (found.swap_remove(0), v3)
}

fn dump(name: &str, value: &Value) {
    if let Some(folder) = std::env::var_os("SLUICE_SWAGGER_DUMP") {
        let path = Path::new(&folder).join(name);
        fs::write(&path, serde_json::to_vec_pretty(value).expect("encode")).expect("write dump");
    }
}

/// Posts `ServiceInput`'s example to `/score` and checks the answer is a 200; returns it.
async fn score_example(server: &TestServer, case: &str, doc: &Value) -> Value {
    let body = &doc["definitions"]["ServiceInput"]["example"];
    assert!(body.is_object(), "no ServiceInput example in {doc}");
    let (status, answer) = server.post_json("/score", body).await;
    assert_eq!(status, 200, "{body} gave {answer}");
    dump(&format!("{case}-score-response.json"), &json!({ "request": body, "response": answer }));
    answer
}

/// Posts the v2 example for `model` (the schema's example, or the named 3.0 example) to its infer route.
async fn infer_example(server: &TestServer, model: &str, body: &Value) {
    assert!(body.is_object(), "no v2 example for {model}");
    let (status, answer) = server.post_json(&format!("/v2/models/{model}/infer"), body).await;
    assert_eq!(status, 200, "{body} gave {answer}");
    assert_eq!(answer["model_name"], model);
}

/// The metadata example is what `GET /v2/models/<model>` answers.
async fn metadata_example(server: &TestServer, model: &str, doc: &Value) {
    let (status, metadata) = server.get(&format!("/v2/models/{model}")).await;
    assert_eq!(status, 200);
    assert_eq!(doc["definitions"]["V2ModelMetadata"]["example"], metadata);
}

#[tokio::test]
async fn triton_examples_are_accepted_by_score_and_v2() {
    for (case, repository, model) in [
        ("lr20", "testdata/models/lr20/model_repository", "lr"),
        ("cnn", "testdata/models/cnn/model_repository", "cnn"),
    ] {
        let server = TestServer::start(ModelFormat::Triton, repository).await;
        let (v2, v3) = documents(&server, case).await;
        assert_eq!(v2["info"]["title"], model);
        assert_eq!(v2["paths"]["/v2/models/{model}/infer"]["post"]["parameters"][0]["enum"], json!([model]));
        let answer = score_example(&server, case, &v2).await;
        assert_eq!(answer["model_name"], model, "/score answers with the v2 body: {answer}");
        let names: Vec<&str> =
            answer["outputs"].as_array().unwrap().iter().filter_map(|o| o["name"].as_str()).collect();
        let expected = &v2["definitions"]["V2RequestOutput"]["properties"]["name"]["enum"];
        assert_eq!(json!(names), *expected);
        infer_example(&server, model, &v2["definitions"]["V2InferenceRequest"]["example"]).await;
        infer_example(&server, model, &v3["components"]["schemas"]["V2InferenceRequest"]["example"]).await;
        metadata_example(&server, model, &v2).await;
        server.stop().await;
    }
}

#[tokio::test]
async fn the_mlflow_example_documents_the_split_orient() {
    let server = TestServer::start(ModelFormat::Mlflow, "examples/iris-mlflow/model").await;
    let (v2, _) = documents(&server, "iris-mlflow").await;
    let input_data = &v2["definitions"]["ServiceInput"]["example"]["input_data"];
    assert_eq!(input_data["columns"], json!(["sepal_length", "sepal_width", "petal_length", "petal_width"]));
    let answer = score_example(&server, "iris-mlflow", &v2).await;
    let record = &answer[0];
    assert!(record["label"].is_i64(), "{answer}");
    assert_eq!(v2["definitions"]["ServiceOutput"]["items"]["properties"]["label"]["type"], "integer");
    infer_example(&server, "model", &v2["definitions"]["V2InferenceRequest"]["example"]).await;
    metadata_example(&server, "model", &v2).await;
    server.stop().await;
}

/// A copy of the MLflow example with another signature block (or none).
fn mlflow_variant(signature: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = example("examples/iris-mlflow/model");
    fs::copy(source.join("model.onnx"), dir.path().join("model.onnx")).expect("copy model");
    let text = fs::read_to_string(source.join("MLmodel")).expect("read MLmodel");
    let start = text.find("signature:").expect("signature block");
    let end = text[start..].find("type_hint_from_example").map_or(text.len(), |i| start + i);
    let mlmodel = format!("{}{signature}{}", &text[..start], &text[end..]);
    fs::write(dir.path().join("MLmodel"), mlmodel).expect("write MLmodel");
    dir
}

#[tokio::test]
async fn mlflow_tensor_models_document_named_tensors() {
    let tensors = "signature:\n  inputs: '[{\"type\": \"tensor\", \"tensor-spec\": {\"dtype\": \"float32\", \"shape\": [-1, 4]}, \"name\": \"input\"}]'\n  outputs: null\n";
    for (case, signature) in [("mlflow-tensors", tensors), ("mlflow-unsigned", "")] {
        let dir = mlflow_variant(signature);
        let server = TestServer::start(ModelFormat::Mlflow, dir.path().to_str().expect("utf-8 path")).await;
        let (v2, _) = documents(&server, case).await;
        let input = &v2["definitions"]["ServiceInput"];
        assert_eq!(input["example"], json!({"input_data": {"input": [[0.0, 0.0, 0.0, 0.0]]}}), "{case}");
        let answer = score_example(&server, case, &v2).await;
        // The graph's one servable output (`label`; the probabilities are a map), as a bare tensor.
        assert!(answer.as_array().is_some_and(|a| a.len() == 1 && a[0].is_i64()), "{answer}");
        let output = &v2["definitions"]["ServiceOutput"];
        assert_eq!(output["items"], json!({"type": "integer", "format": "int64"}), "{case}");
        server.stop().await;
    }
}

#[tokio::test]
async fn several_triton_models_have_per_model_examples() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (repository, model) in
        [("testdata/models/lr20/model_repository", "lr"), ("testdata/models/cnn/model_repository", "cnn")]
    {
        let source = example(repository).join(model);
        fs::create_dir_all(dir.path().join(model).join("1")).expect("mkdir");
        fs::copy(source.join("config.pbtxt"), dir.path().join(model).join("config.pbtxt")).expect("copy config");
        fs::copy(source.join("1/model.onnx"), dir.path().join(model).join("1/model.onnx")).expect("copy model");
    }
    let server = TestServer::start(ModelFormat::Triton, dir.path().to_str().expect("utf-8 path")).await;
    let (v2, v3) = documents(&server, "two-models").await;
    assert!(v2["paths"].get("/score").is_none());
    let (status, _) = server.post_json("/score", &json!({"inputs": []})).await;
    assert_eq!(status, 404, "the document is right to leave /score out");
    let infer = &v3["paths"]["/v2/models/{model}/infer"]["post"];
    assert_eq!(infer["parameters"][0]["schema"]["enum"], json!(["cnn", "lr"]));
    for model in ["cnn", "lr"] {
        let body = &infer["requestBody"]["content"]["application/json"]["examples"][model]["value"];
        infer_example(&server, model, body).await;
    }
    server.stop().await;
}

#[tokio::test]
async fn unknown_versions_are_404_with_the_azure_message() {
    let server = TestServer::start(ModelFormat::Triton, "testdata/models/lr20/model_repository").await;
    for (version, shown) in [("5", "5"), ("", ""), ("3.2", "3.2"), ("v3", "v3"), ("%33%2E9", "3.9")] {
        let (status, body) = server.get(&format!("/swagger.json?version={version}")).await;
        let message = format!("Swagger version [{shown}] is not valid. Supported versions: [2, 3, 3.1].");
        assert_eq!((status, body), (404, json!({ "message": message })), "{version}");
    }
    // The first `version` counts; other parameters are ignored.
    let (status, doc) = server.get("/swagger.json?x=1&version=3&version=2").await;
    assert_eq!((status, &doc["openapi"]), (200, &json!("3.0.3")));
    let response = server.client.head(server.url("/swagger.json")).send().await.expect("HEAD");
    assert_eq!(response.status().as_u16(), 200);
    let response = server.client.post(server.url("/swagger.json")).send().await.expect("POST");
    assert_eq!(response.status().as_u16(), 405);
    let body: serde_json::Value = response.json().await.expect("a JSON error body");
    assert_eq!(body, json!({"message": "POST is not allowed on /swagger.json"}));
    server.stop().await;
}
