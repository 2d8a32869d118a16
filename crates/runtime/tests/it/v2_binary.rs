//! The binary tensor data extension: raw little-endian inputs and outputs after a JSON header.

use serde_json::{Value, json};
use sluice_runtime::ModelFormat;

use crate::support::TestServer;

const ROWS: [f32; 8] = [5.1, 3.5, 1.4, 0.2, 6.3, 3.3, 6.0, 2.5];

fn binary_request(header: &Value, blob: &[u8]) -> (Vec<u8>, usize) {
    let mut body = serde_json::to_vec(header).expect("encode");
    let length = body.len();
    body.extend_from_slice(blob);
    (body, length)
}

#[tokio::test]
async fn binary_inputs_and_outputs_round_trip() {
    let server = TestServer::start(ModelFormat::Triton, "examples/iris/model_repository").await;
    let blob: Vec<u8> = ROWS.iter().flat_map(|x| x.to_le_bytes()).collect();
    let header = json!({
        "inputs": [{"name": "input", "shape": [2, 4], "datatype": "FP32", "parameters": {"binary_data_size": blob.len()}}],
        "outputs": [{"name": "label", "parameters": {"binary_data": true}}, {"name": "probabilities"}]
    });
    let (body, length) = binary_request(&header, &blob);
    let response = server
        .client
        .post(server.url("/v2/models/iris/infer"))
        .header("Inference-Header-Content-Length", length)
        .header("Content-Type", "application/octet-stream")
        .body(body)
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status().as_u16(), 200);
    let header_length: usize = response
        .headers()
        .get("inference-header-content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Inference-Header-Content-Length in the response");
    let bytes = response.bytes().await.expect("body");
    let (json_part, binary_part) = bytes.split_at(header_length);
    let header: Value = serde_json::from_slice(json_part).expect("JSON header");
    assert_eq!(header["outputs"][0]["parameters"]["binary_data_size"], 16);
    assert!(header["outputs"][0].get("data").is_none());
    assert_eq!(header["outputs"][1]["shape"], json!([2, 3]));
    let labels: Vec<i64> =
        binary_part.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8]))).collect();
    assert_eq!(labels, vec![0, 2]);
    server.stop().await;
}

#[tokio::test]
async fn binary_data_output_flag_and_bad_sizes() {
    let server = TestServer::start(ModelFormat::Triton, "examples/iris/model_repository").await;
    let request = json!({
        "parameters": {"binary_data_output": true},
        "inputs": [{"name": "input", "shape": [2, 4], "datatype": "FP32", "data": ROWS}]
    });
    let response = server.client.post(server.url("/v2/models/iris/infer")).json(&request).send().await.expect("POST");
    assert_eq!(response.status().as_u16(), 200);
    let header_length: usize = response
        .headers()
        .get("inference-header-content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Inference-Header-Content-Length in the response");
    let bytes = response.bytes().await.expect("body");
    // Two INT64 labels and six FP32 probabilities follow the JSON header.
    assert_eq!(bytes.len(), header_length + 2 * 8 + 6 * 4);

    let header = json!({"inputs": [{"name": "input", "shape": [2, 4], "datatype": "FP32", "parameters": {"binary_data_size": 64}}]});
    let (body, length) = binary_request(&header, &[0u8; 12]);
    let response = server
        .client
        .post(server.url("/v2/models/iris/infer"))
        .header("Inference-Header-Content-Length", length)
        .body(body)
        .send()
        .await
        .expect("POST");
    let (status, body) = crate::support::decode(response).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "input 'input': binary_data_size 64 exceeds the 12 bytes of binary data left");

    // A flag that is not a boolean is refused, not read as false.
    for (request, message) in [
        (
            json!({"parameters": {"binary_data_output": "yes"},
                   "inputs": [{"name": "input", "shape": [2, 4], "datatype": "FP32", "data": ROWS}]}),
            "parameter 'binary_data_output' must be true or false, not \"yes\"",
        ),
        (
            json!({"inputs": [{"name": "input", "shape": [2, 4], "datatype": "FP32", "data": ROWS}],
                   "outputs": [{"name": "label", "parameters": {"binary_data": 1}}]}),
            "output 'label': parameter 'binary_data' must be true or false, not 1",
        ),
    ] {
        let response =
            server.client.post(server.url("/v2/models/iris/infer")).json(&request).send().await.expect("POST");
        let (status, body) = crate::support::decode(response).await;
        assert_eq!(status, 400);
        assert_eq!(body["error"], message);
    }
    server.stop().await;
}
