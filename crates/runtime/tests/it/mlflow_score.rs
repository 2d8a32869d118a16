//! `/score` (Azure ML MLflow no-code) and `/invocations` (MLflow scoring server) on the MLflow example.

use serde_json::json;
use sluice_runtime::ModelFormat;

use crate::support::{TestServer, read_json};

const MODEL: &str = "examples/iris-mlflow/model";

#[tokio::test]
async fn score_split_orient_gives_records() {
    let server = TestServer::start(ModelFormat::Mlflow, MODEL).await;
    let (status, body) = server.post_json("/score", &read_json("examples/iris-mlflow/request.json")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, read_json("examples/iris-mlflow/expected.json"));
    server.stop().await;
}

#[tokio::test]
async fn score_tensor_forms() {
    let server = TestServer::start(ModelFormat::Mlflow, MODEL).await;
    let rows = json!([[5.1, 3.5, 1.4, 0.2], [6.3, 3.3, 6.0, 2.5]]);
    assert_eq!(server.post_json("/score", &json!({"input_data": rows})).await, (200, json!([0, 2])));
    let named = json!({"input_data": {"input": rows}});
    assert_eq!(server.post_json("/score", &named).await, (200, json!([0, 2])));
    server.stop().await;
}

#[tokio::test]
async fn score_errors_use_the_azure_envelope() {
    let server = TestServer::start(ModelFormat::Mlflow, MODEL).await;
    let response = server
        .client
        .post(server.url("/score"))
        .header("Content-Type", "text/plain")
        .body(r#"{"input_data": [[1, 2, 3, 4]]}"#)
        .send()
        .await
        .expect("POST");
    let (status, body) = crate::support::decode(response).await;
    assert_eq!((status, body), (415, json!({"message": "Expects Content-Type to be application/json"})));

    let missing = json!({"input_data": {"columns": ["sepal_length", "sepal_width", "petal_length"], "index": [0], "data": [[1, 2, 3]]}});
    assert_eq!(
        server.post_json("/score", &missing).await,
        (
            400,
            json!({"message": "missing column 'petal_width' (the request has columns: sepal_length, sepal_width, petal_length)"})
        )
    );
    assert_eq!(
        server.post_json("/score", &json!({"data": [[1, 2, 3, 4]]})).await,
        (400, json!({"message": "A value is not provided for the 'input_data' parameter."}))
    );
    assert_eq!(
        server.post_json("/score", &json!({"input_data": [[1, 2, 3]]})).await,
        (400, json!({"message": "input 'input' expects shape [-1, 4] but the data has shape [1, 3]"}))
    );
    assert_eq!(server.post_json("/score", &json!([1])).await.0, 400);
    server.stop().await;
}

#[tokio::test]
async fn invocations_bodies_and_v2_on_the_same_model() {
    let server = TestServer::start(ModelFormat::Mlflow, MODEL).await;
    let records = json!({"dataframe_records": [
        {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
    ]});
    assert_eq!(server.post_json("/invocations", &records).await, (200, json!({"predictions": [{"label": 0}]})));
    let split = json!({"dataframe_split": read_json("examples/iris-mlflow/request.json")["input_data"]});
    assert_eq!(
        server.post_json("/invocations", &split).await,
        (200, json!({"predictions": [{"label": 0}, {"label": 2}]}))
    );
    let (status, body) = server.post_json("/invocations", &json!({"instances": [1], "inputs": [1]})).await;
    assert_eq!((status, body["error_code"].as_str()), (400, Some("BAD_REQUEST")));

    let (status, meta) = server.get("/v2/models/model").await;
    assert_eq!(status, 200);
    assert_eq!(meta["inputs"][0]["name"], "input");
    server.stop().await;
}
