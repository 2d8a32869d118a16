//! Unit tests for JSON tensor decoding and encoding.

use serde_json::json;

use super::*;

fn decode(dt: DataType, v: Value) -> Result<(TensorData, Vec<usize>), String> {
    TensorData::from_json(dt, &v)
}

#[test]
fn flat_and_nested_lists_decode() {
    let (d, s) = decode(DataType::Fp32, json!([1, 2.5, 3, 4])).unwrap();
    assert_eq!(d, TensorData::Fp32(vec![1.0, 2.5, 3.0, 4.0]));
    assert_eq!(s, vec![4]);
    let (d, s) = decode(DataType::Int64, json!([[1, 2], [3, 4], [5, 6]])).unwrap();
    assert_eq!(d, TensorData::Int64(vec![1, 2, 3, 4, 5, 6]));
    assert_eq!(s, vec![3, 2]);
    let (d, s) = decode(DataType::Bytes, json!([["a"], ["b"]])).unwrap();
    assert_eq!(d, TensorData::Bytes(vec!["a".into(), "b".into()]));
    assert_eq!(s, vec![2, 1]);
    let (d, s) = decode(DataType::Bool, json!(true)).unwrap();
    assert_eq!(d, TensorData::Bool(vec![true]));
    assert!(s.is_empty());
    let (d, s) = decode(DataType::Fp64, json!([[], []])).unwrap();
    assert!(d.is_empty());
    assert_eq!(s, vec![2, 0]);
}

#[test]
fn integer_ranges_are_checked() {
    assert_eq!(decode(DataType::Uint8, json!([0, 255])).unwrap().0, TensorData::Uint8(vec![0, 255]));
    let e = decode(DataType::Uint8, json!([0, 256])).unwrap_err();
    assert_eq!(e, "element 1 is 256, which is not a valid UINT8 value");
    assert!(decode(DataType::Int8, json!([-129])).is_err());
    assert!(decode(DataType::Uint64, json!([-1])).is_err());
    assert_eq!(decode(DataType::Uint64, json!([u64::MAX])).unwrap().0, TensorData::Uint64(vec![u64::MAX]));
    assert_eq!(decode(DataType::Int32, json!([2.0])).unwrap().0, TensorData::Int32(vec![2]));
    assert!(decode(DataType::Int32, json!([2.5])).is_err());
    assert!(decode(DataType::Int64, json!([1e300])).is_err());
}

#[test]
fn wrong_kinds_are_named() {
    let e = decode(DataType::Fp32, json!([[1, 2], [3, "x"]])).unwrap_err();
    assert_eq!(e, "element 3 is \"x\", which is not a valid FP32 value");
    assert!(decode(DataType::Bool, json!([1])).is_err());
    assert!(decode(DataType::Bytes, json!([1])).is_err());
    assert!(decode(DataType::Fp32, json!([null])).is_err());
    assert!(decode(DataType::Fp32, json!({"a": 1})).is_err());
    let long = "y".repeat(100);
    let e = decode(DataType::Fp32, json!([long])).unwrap_err();
    assert!(e.len() < 120, "{e}");
}

#[test]
fn ragged_lists_are_rejected() {
    for v in [json!([[1, 2], [3]]), json!([[1, 2], 3]), json!([1, [2, 3]]), json!([[[1]], [2]])] {
        let e = decode(DataType::Fp32, v.clone()).unwrap_err();
        assert!(e.contains("ragged"), "{v}: {e}");
    }
}

#[test]
fn serialises_flat() {
    let d = TensorData::Fp32(vec![1.5, f32::NAN, 0.984_703_2]);
    assert_eq!(serde_json::to_string(&d).unwrap(), "[1.5,null,0.9847031831741333]");
    let d = TensorData::Bytes(vec!["a\"b".into()]);
    assert_eq!(serde_json::to_string(&d).unwrap(), r#"["a\"b"]"#);
    assert_eq!(serde_json::to_string(&TensorData::Int64(vec![])).unwrap(), "[]");
}

#[test]
fn element_count_guards_overflow_and_negatives() {
    assert_eq!(element_count(&[2, 3]), Some(6));
    assert_eq!(element_count(&[]), Some(1));
    assert_eq!(element_count(&[-1, 3]), None);
    assert_eq!(element_count(&[i64::MAX, i64::MAX]), None);
}

#[test]
fn slices() {
    let d = TensorData::Int32(vec![1, 2, 3, 4]);
    assert_eq!(d.slice(1, 3), TensorData::Int32(vec![2, 3]));
    assert_eq!(d.slice(3, 9), TensorData::Int32(vec![]));
}

#[test]
fn appends_and_splits_for_batching() {
    let mut d = TensorData::Fp32(vec![1.0, 2.0]);
    assert!(d.append(TensorData::Fp32(vec![3.0])));
    assert!(!d.append(TensorData::Int64(vec![4])), "a different element type is refused");
    assert_eq!(d, TensorData::Fp32(vec![1.0, 2.0, 3.0]));
    let parts = d.clone().split(&[1, 0, 2]).unwrap();
    assert_eq!(parts, vec![TensorData::Fp32(vec![1.0]), TensorData::Fp32(vec![]), TensorData::Fp32(vec![2.0, 3.0])]);
    assert_eq!(d.clone().split(&[1, 1]), None, "counts must cover every element");
    assert_eq!(d.split(&[usize::MAX, 4]), None);
    let s = TensorData::Bytes(vec!["a".into(), "b".into()]).split(&[1, 1]).unwrap();
    assert_eq!(s[1], TensorData::Bytes(vec!["b".into()]));
}

fn request_data(datatype: DataType, json: &str) -> Result<TensorData, String> {
    let data: JsonData = serde_json::from_str(json).expect("JSON");
    TensorData::from_request_data(datatype, data)
}

#[test]
fn flat_numbers_take_the_fast_path_and_decode_as_the_tree_does() {
    let data: JsonData = serde_json::from_str("[1, 2.5, -3]").unwrap();
    assert_eq!(data, JsonData::Numbers(vec![1.0, 2.5, -3.0]));
    for (datatype, json) in [
        (DataType::Fp32, "[0.45353662967681885, 1e-3, -2, 3.4e38]"),
        (DataType::Fp64, "[0.1, 2, -7.25]"),
        (DataType::Int64, "[1, -2, 3.0, 9007199254740991]"),
        (DataType::Uint8, "[0, 255]"),
        (DataType::Int32, "[2147483647, -2147483648]"),
    ] {
        let tree = TensorData::from_json(datatype, &serde_json::from_str(json).unwrap()).unwrap().0;
        assert_eq!(request_data(datatype, json).unwrap(), tree, "{datatype} {json}");
    }
}

#[test]
fn anything_else_decodes_and_fails_as_before() {
    // Not flat numbers: the tree path, unchanged.
    assert_eq!(request_data(DataType::Fp32, "[[1, 2], [3, 4]]").unwrap(), TensorData::Fp32(vec![1.0, 2.0, 3.0, 4.0]));
    assert_eq!(request_data(DataType::Bool, "[true, false]").unwrap(), TensorData::Bool(vec![true, false]));
    assert_eq!(request_data(DataType::Bytes, r#"["a"]"#).unwrap(), TensorData::Bytes(vec!["a".into()]));
    assert_eq!(request_data(DataType::Fp32, "5").unwrap(), TensorData::Fp32(vec![5.0]));
    // Integers beyond 2^53 keep their exact value.
    assert_eq!(
        request_data(DataType::Int64, "[1, 9007199254740993]").unwrap(),
        TensorData::Int64(vec![1, 9007199254740993])
    );
    assert_eq!(request_data(DataType::Uint64, "[18446744073709551615]").unwrap(), TensorData::Uint64(vec![u64::MAX]));
    // Numbers that do not fit the type name the element, as the tree path does.
    let e = request_data(DataType::Int32, "[1, 2.5]").unwrap_err();
    assert!(e.contains("element 1 is 2.5, which is not a valid INT32 value"), "{e}");
    let e = request_data(DataType::Uint8, "[256]").unwrap_err();
    assert!(e.contains("element 0 is 256"), "{e}");
    let e = request_data(DataType::Bool, "[1]").unwrap_err();
    assert!(e.contains("not a valid BOOL value"), "{e}");
    let e = request_data(DataType::Fp32, r#"[1, "x"]"#).unwrap_err();
    assert!(e.contains("element 1 is \"x\""), "{e}");
}
