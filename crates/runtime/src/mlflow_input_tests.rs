//! Unit tests for MLflow request parsing and conversion.

use std::path::PathBuf;

use serde_json::json;

use super::*;
use crate::mlflow::{ColumnSpec, MlflowSignature};

const COLS: [&str; 4] = ["sepal_length", "sepal_width", "petal_length", "petal_width"];

fn iris_mlflow() -> ModelInfo {
    let spec =
        |name: &str, datatype, shape: Vec<i64>| TensorSpec { name: name.into(), datatype, shape, model_shape: None };
    let columns =
        COLS.iter().map(|n| ColumnSpec { name: Some((*n).into()), datatype: DataType::Fp64, required: true }).collect();
    ModelInfo {
        name: "model".into(),
        version: "1".into(),
        platform: "onnxruntime_onnx".into(),
        max_batch_size: 0,
        inputs: vec![spec("input", DataType::Fp32, vec![-1, 4])],
        outputs: vec![spec("label", DataType::Int64, vec![-1]), spec("probabilities", DataType::Fp32, vec![-1, 3])],
        batching: None,
        mlflow: Some(MlflowSignature {
            inputs: Some(MlflowSchema::Columns(columns)),
            outputs: Some(MlflowSchema::Columns(vec![ColumnSpec {
                name: Some("label".into()),
                datatype: DataType::Int64,
                required: true,
            }])),
        }),
        source: PathBuf::from("model.onnx"),
    }
}

fn job_for(input_data: Value) -> Result<(InferenceJob, PredictionForm), InferError> {
    to_job(&iris_mlflow(), parse_input_data(input_data)?)
}

fn err_for(input_data: Value) -> String {
    job_for(input_data).unwrap_err().message
}

#[test]
fn split_frame_follows_signature_order() {
    let (job, form) = job_for(json!({
        "columns": ["petal_width", "sepal_length", "sepal_width", "petal_length"],
        "index": [0],
        "data": [[0.2, 5.1, 3.5, 1.4]]
    }))
    .unwrap();
    assert_eq!(form, PredictionForm::Records { rows: 1 });
    assert_eq!(job.inputs[0].shape, vec![1, 4]);
    assert_eq!(job.inputs[0].data, TensorData::Fp32(vec![5.1, 3.5, 1.4, 0.2]));
    assert_eq!(job.outputs, vec!["label".to_owned()]);
}

#[test]
fn tensor_lists_and_named_tensors() {
    let (job, form) = job_for(json!([[5.1, 3.5, 1.4, 0.2], [6.3, 3.3, 6.0, 2.5]])).unwrap();
    assert_eq!(form, PredictionForm::Tensors);
    assert_eq!(job.inputs[0].shape, vec![2, 4]);
    let (job, _) = job_for(json!([5.1, 3.5, 1.4, 0.2])).unwrap();
    assert_eq!(job.inputs[0].shape, vec![1, 4]);
    let (job, _) = job_for(json!({"input": [[1, 2, 3, 4]]})).unwrap();
    assert_eq!(job.inputs[0].data, TensorData::Fp32(vec![1.0, 2.0, 3.0, 4.0]));
}

#[test]
fn records_orient() {
    let (job, form) = job_for(json!([
        {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
    ]))
    .unwrap();
    assert_eq!(form, PredictionForm::Records { rows: 1 });
    assert_eq!(job.inputs[0].shape, vec![1, 4]);
}

#[test]
fn errors_name_the_problem() {
    let e = err_for(json!({"columns": ["sepal_length", "sepal_width", "petal_length"], "data": [[1, 2, 3]]}));
    assert_eq!(e, "missing column 'petal_width' (the request has columns: sepal_length, sepal_width, petal_length)");
    let e = err_for(json!({"columns": COLS, "data": [[1, 2, "x", 4]]}));
    assert_eq!(e, "column 'petal_length', row 0: \"x\" is not a valid FP32 value");
    let e = err_for(json!({"columns": COLS, "data": [[1, 2, 3]]}));
    assert_eq!(e, "row 0 of 'data' has 3 values but there are 4 columns");
    let e = err_for(json!([[1, 2, 3]]));
    assert_eq!(e, "input 'input' expects shape [-1, 4] but the data has shape [1, 3]");
    let e = err_for(json!({"tokens": [1]}));
    assert_eq!(e, "unknown input 'tokens' (model inputs: input)");
    assert!(err_for(json!(5)).contains("input_data must be a list"));
    assert!(err_for(json!([[1, 2], [3]])).contains("ragged"));
}

#[test]
fn invocations_bodies() {
    let body = |v: Value| match v {
        Value::Object(m) => parse_invocations(m),
        _ => unreachable!(),
    };
    let split = body(json!({"dataframe_split": {"columns": COLS, "data": [[1, 2, 3, 4]]}})).unwrap();
    assert!(matches!(split, ScoreData::Frame { .. }));
    let records = body(json!({"dataframe_records": [{"a": 1}, {"b": 2}]})).unwrap();
    assert_eq!(
        records,
        ScoreData::Frame {
            columns: vec!["a".into(), "b".into()],
            rows: vec![vec![json!(1), Value::Null], vec![Value::Null, json!(2)]]
        }
    );
    assert!(matches!(body(json!({"instances": [[1, 2, 3, 4]]})).unwrap(), ScoreData::Tensor(_)));
    assert!(matches!(body(json!({"inputs": {"input": [[1, 2, 3, 4]]}})).unwrap(), ScoreData::Named(_)));
    let e = body(json!({"inputs": [1], "instances": [1]})).unwrap_err().message;
    assert!(e.contains("exactly one of"), "{e}");
    let e = body(json!({"dataframe_split": [1]})).unwrap_err().message;
    assert_eq!(e, "'dataframe_split' has the wrong form: got a list");
}
