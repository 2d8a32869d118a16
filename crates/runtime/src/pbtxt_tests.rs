//! Unit tests for the `config.pbtxt` parser.

use super::*;

const IRIS: &str = r#"
name: "iris"
platform: "onnxruntime_onnx"
max_batch_size: 8  # rows per request
input [
  {
    name: "input"
    data_type: TYPE_FP32
    dims: [ 4 ]
  }
]
output [
  { name: "label", data_type: TYPE_INT64, dims: [ 1 ], reshape: { shape: [ ] } },
  { name: "probabilities" data_type: TYPE_FP32 dims: [ 3 ] }
]
dynamic_batching {
  max_queue_delay_microseconds: 100
  preferred_batch_size: [ 4, 8 ]
}
instance_group [ { count: 2, kind: KIND_CPU } ]
optimization { execution_accelerators { cpu_execution_accelerator: [ { name: "openvino" } ] } }
"#;

#[test]
fn parses_a_typical_config() {
    let c = parse_model_config(IRIS).unwrap();
    assert_eq!(c.name.as_deref(), Some("iris"));
    assert_eq!(c.platform.as_deref(), Some("onnxruntime_onnx"));
    assert_eq!(c.max_batch_size, 8);
    assert_eq!(c.inputs.len(), 1);
    assert_eq!(c.inputs[0].name, "input");
    assert_eq!(c.inputs[0].data_type, DataType::Fp32);
    assert_eq!(c.inputs[0].dims, vec![4]);
    assert_eq!(c.outputs[0].reshape, Some(vec![]));
    assert_eq!(c.outputs[1].dims, vec![3]);
    let b = c.dynamic_batching.unwrap();
    assert_eq!(b.max_queue_delay_microseconds, 100);
    assert_eq!(b.preferred_batch_size, vec![4, 8]);
}

#[test]
fn accepts_repeated_fields_angle_brackets_and_single_quotes() {
    let text = "backend: 'onnxruntime'\ninput < name: 'a' data_type: TYPE_INT64 dims: 2 dims: -1 >\n\
                input { name: \"b\"; data_type: TYPE_STRING; dims: [1] }";
    let c = parse_model_config(text).unwrap();
    assert_eq!(c.backend.as_deref(), Some("onnxruntime"));
    assert_eq!(c.inputs[0].dims, vec![2, -1]);
    assert_eq!(c.inputs[1].data_type, DataType::Bytes);
    assert_eq!(c.max_batch_size, 0);
}

#[test]
fn empty_config_is_valid() {
    assert_eq!(parse_model_config("# nothing\n").unwrap(), ModelConfig::default());
}

fn check_err(text: &str, line: usize, contains: &str) {
    let e = parse_model_config(text).unwrap_err();
    assert_eq!(e.line, line, "{e}");
    assert!(e.message.contains(contains), "'{}' lacks '{contains}'", e.message);
}

#[test]
fn reports_errors_with_lines() {
    check_err("name: \"x\"\ninput [ { name: \"a\" dims: [1] } ]", 2, "'a' has no 'data_type'");
    check_err("input { name: \"a\" data_type: TYPE_FLOAT dims: 1 }", 1, "unsupported data type 'TYPE_FLOAT'");
    check_err("\n\nmax_batch_size: lots", 3, "'lots' is not a valid number");
    check_err("input { name: \"a\"", 1, "expected '}'");
    check_err("name: \"abc", 1, "unterminated string");
    check_err("dims [1, 2", 1, "expected ']'");
    check_err("name = 3", 1, "expected ':' or '{'");
    check_err("input { name: \"a\" data_type: TYPE_FP32 dims: [-3] }", 1, "invalid dimension -3");
    check_err("max_batch_size: -1", 1, "not a valid number");
    check_err("input: 3", 1, "expected a message");
}

#[test]
fn hostile_input_does_not_panic() {
    let deep = "a {".repeat(10_000);
    check_err(&deep, 1, "too deep");
    for text in ["{", "}", ":", "[", "\"", "a:", "a: [", "a: {", "\u{0}", "a: 'x\\"] {
        assert!(parse_model_config(text).is_err(), "{text:?}");
    }
}
