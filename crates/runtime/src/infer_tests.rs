//! Unit tests for request checking and shape resolution.

use std::path::PathBuf;

use super::*;
use crate::datatype::DataType;
use crate::tensor::TensorData;

fn iris(max_batch_size: u32) -> ModelInfo {
    let spec =
        |name: &str, datatype, shape: Vec<i64>| TensorSpec { name: name.into(), datatype, shape, model_shape: None };
    ModelInfo {
        name: "iris".into(),
        version: "1".into(),
        platform: "onnxruntime_onnx".into(),
        max_batch_size,
        inputs: vec![spec("input", DataType::Fp32, vec![-1, 4])],
        outputs: vec![spec("label", DataType::Int64, vec![-1]), spec("probabilities", DataType::Fp32, vec![-1, 3])],
        batching: None,
        mlflow: None,
        source: PathBuf::from("model.onnx"),
    }
}

fn job(name: &str, shape: Vec<i64>, data: TensorData) -> InferenceJob {
    InferenceJob { inputs: vec![NamedTensor { name: name.into(), shape, data }], outputs: vec![] }
}

fn check_err(info: &ModelInfo, job: &InferenceJob, expected: &str) {
    let e = check_job(info, job).unwrap_err();
    assert_eq!(e.code, ErrorCode::BadRequest);
    assert_eq!(e.message, expected);
}

#[test]
fn accepts_a_valid_request() {
    let j = job("input", vec![2, 4], TensorData::Fp32(vec![0.0; 8]));
    check_job(&iris(0), &j).unwrap();
}

#[test]
fn rejects_bad_requests_with_clear_messages() {
    let info = iris(0);
    check_err(
        &info,
        &job("x", vec![1, 4], TensorData::Fp32(vec![0.0; 4])),
        "unknown input 'x' for model 'iris' (inputs: input)",
    );
    check_err(
        &info,
        &job("input", vec![1, 4], TensorData::Fp64(vec![0.0; 4])),
        "input 'input' has datatype FP64 but model 'iris' expects FP32",
    );
    check_err(
        &info,
        &job("input", vec![2, 4], TensorData::Fp32(vec![0.0; 7])),
        "input 'input' has 7 data elements but its shape [2, 4] needs 8",
    );
    check_err(
        &info,
        &job("input", vec![1, 5], TensorData::Fp32(vec![0.0; 5])),
        "input 'input' has shape [1, 5] but model 'iris' expects [-1, 4]",
    );
    check_err(
        &info,
        &job("input", vec![-1, 4], TensorData::Fp32(vec![])),
        "input 'input' has invalid shape [-1, 4] (dimensions must be non-negative)",
    );
    check_err(
        &info,
        &job("input", vec![i64::MAX, 4], TensorData::Fp32(vec![])),
        "input 'input' has invalid shape [9223372036854775807, 4] (the product of its dimensions is too large)",
    );
    let mut twice = job("input", vec![1, 4], TensorData::Fp32(vec![0.0; 4]));
    twice.inputs.push(twice.inputs[0].clone());
    check_err(&info, &twice, "input 'input' is given more than once");
    let none = InferenceJob { inputs: vec![], outputs: vec![] };
    check_err(&info, &none, "missing input 'input' for model 'iris' (expected FP32 with shape [-1, 4])");
    let mut unknown_out = job("input", vec![1, 4], TensorData::Fp32(vec![0.0; 4]));
    unknown_out.outputs = vec!["proba".into()];
    check_err(&info, &unknown_out, "unknown output 'proba' for model 'iris' (outputs: label, probabilities)");
}

#[test]
fn enforces_max_batch_size() {
    let info = iris(2);
    check_job(&info, &job("input", vec![2, 4], TensorData::Fp32(vec![0.0; 8]))).unwrap();
    check_err(
        &info,
        &job("input", vec![3, 4], TensorData::Fp32(vec![0.0; 12])),
        "input 'input' has batch size 3 but model 'iris' accepts 1 to 2",
    );
}

#[test]
fn resolves_shapes() {
    assert_eq!(resolve_shape(&[-1, 4], 8), Some(vec![2, 4]));
    assert_eq!(resolve_shape(&[-1, 4], 7), None);
    assert_eq!(resolve_shape(&[2, 4], 8), Some(vec![2, 4]));
    assert_eq!(resolve_shape(&[2, 4], 9), None);
    assert_eq!(resolve_shape(&[-1, -1], 8), None);
    assert_eq!(resolve_shape(&[3], 3), Some(vec![3]));
    assert_eq!(resolve_shape(&[], 1), Some(vec![]));
    assert_eq!(resolve_shape(&[-1, 0], 0), Some(vec![0, 0]));
}
