//! The schemas and examples of the swagger documents, derived from a model's tensors and MLflow
//! signature; `swagger` assembles them into the OpenAPI and Swagger documents.

use serde_json::{Map, Value, json};

use super::swagger::EXAMPLE_VALUES;
use crate::datatype::DataType;
use crate::mlflow::{ColumnSpec, MlflowSchema};
use crate::model::{ModelInfo, TensorSpec, shape_text};
use crate::tensor::element_count;

/// How `/score` reads a model's body, in words.
pub(super) fn kind(model: &ModelInfo) -> &'static str {
    match model.mlflow.as_ref().map(|s| &s.inputs) {
        None => "Triton layout",
        Some(Some(MlflowSchema::Columns(_))) => "MLflow, with a column signature",
        Some(Some(MlflowSchema::Tensors(_))) => "MLflow, with a tensor signature",
        Some(None) => "MLflow, without a signature",
    }
}

/// `{"input_data": <schema>}`, with the example repeated at the top as inference-schema does.
pub(super) fn service_input(input_data: Value) -> Value {
    let example = input_data.get("example").cloned();
    let mut schema = json!({
        "type": "object",
        "required": ["input_data"],
        "properties": { "input_data": input_data },
    });
    if let Some(example) = example {
        schema["example"] = json!({ "input_data": example });
    }
    schema
}

/// The JSON schema of one element.
pub(super) fn leaf(datatype: DataType) -> Value {
    let int = |format: &str, min: i64, max: i64| json!({ "type": "integer", "format": format, "minimum": min, "maximum": max });
    match datatype {
        DataType::Bool => json!({ "type": "boolean" }),
        DataType::Bytes => json!({ "type": "string" }),
        DataType::Fp32 => json!({ "type": "number", "format": "float" }),
        DataType::Fp64 => json!({ "type": "number", "format": "double" }),
        DataType::Int8 => int("int32", i8::MIN.into(), i8::MAX.into()),
        DataType::Int16 => int("int32", i16::MIN.into(), i16::MAX.into()),
        DataType::Int32 => json!({ "type": "integer", "format": "int32" }),
        DataType::Int64 => json!({ "type": "integer", "format": "int64" }),
        DataType::Uint8 => int("int32", 0, u8::MAX.into()),
        DataType::Uint16 => int("int32", 0, u16::MAX.into()),
        DataType::Uint32 => int("int64", 0, u32::MAX.into()),
        DataType::Uint64 => json!({ "type": "integer", "minimum": 0, "maximum": u64::MAX }),
    }
}

/// A zero of `datatype`, for examples.
pub(super) fn zero(datatype: DataType) -> Value {
    match datatype {
        DataType::Bool => json!(false),
        DataType::Bytes => json!(""),
        DataType::Fp32 | DataType::Fp64 => json!(0.0),
        _ => json!(0),
    }
}

/// The shape examples use: -1 becomes 1.
pub(super) fn example_shape(shape: &[i64]) -> Vec<i64> {
    shape.iter().map(|d| if *d < 0 { 1 } else { *d }).collect()
}

/// Nested lists of `shape` (a scalar for rank 0), with fixed dimensions as `minItems`/`maxItems`.
pub(super) fn nested_schema(datatype: DataType, shape: &[i64]) -> Value {
    match shape.split_first() {
        None => leaf(datatype),
        Some((dim, rest)) => {
            let mut schema = json!({ "type": "array", "items": nested_schema(datatype, rest) });
            if *dim >= 0 {
                schema["minItems"] = json!(dim);
                schema["maxItems"] = json!(dim);
            }
            schema
        }
    }
}

/// Zeros nested to `shape` (fixed; no -1).
pub(super) fn nested_zeros(datatype: DataType, shape: &[i64]) -> Value {
    match shape.split_first() {
        None => zero(datatype),
        Some((dim, rest)) => {
            let count = usize::try_from(*dim).unwrap_or(0);
            Value::Array((0..count).map(|_| nested_zeros(datatype, rest)).collect())
        }
    }
}

pub(super) fn tensor_description(datatype: DataType, shape: &[i64]) -> String {
    let any = if shape.contains(&-1) { " (-1: any size)" } else { "" };
    format!("A {datatype} tensor of shape {}{any}, as nested lists.", shape_text(shape))
}

/// The values an example of these tensors holds, if small enough to show.
pub(super) fn example_fits<'a>(shapes: impl IntoIterator<Item = &'a [i64]>) -> bool {
    let mut total = 0usize;
    for shape in shapes {
        match element_count(&example_shape(shape)) {
            Some(count) => total = total.saturating_add(count),
            None => return false,
        }
    }
    total <= EXAMPLE_VALUES
}

/// `input_data` as named tensors: `{"<input>": [[...]], ...}`, every input required, no others.
pub(super) fn named_tensors_schema(inputs: &[TensorSpec]) -> Value {
    let mut properties = Map::new();
    for spec in inputs {
        let mut schema = nested_schema(spec.datatype, &spec.shape);
        schema["description"] = json!(tensor_description(spec.datatype, &spec.shape));
        if !spec.shape.is_empty() {
            schema["format"] = json!("numpy.ndarray");
        }
        properties.insert(spec.name.clone(), schema);
    }
    let names: Vec<&str> = inputs.iter().map(|s| s.name.as_str()).collect();
    let mut description = String::from("The model's inputs by name.");
    if inputs.len() == 1 {
        description.push_str(" A bare list is also accepted for the single input.");
    }
    let mut schema = json!({
        "type": "object",
        "required": names,
        "properties": properties,
        "additionalProperties": false,
        "description": description,
    });
    if example_fits(inputs.iter().map(|s| s.shape.as_slice())) {
        let example: Map<String, Value> =
            inputs.iter().map(|s| (s.name.clone(), nested_zeros(s.datatype, &example_shape(&s.shape)))).collect();
        schema["example"] = Value::Object(example);
    }
    schema
}

/// An MLflow column type's name (`double`, `long`, `string`).
pub(super) fn column_type_name(datatype: DataType) -> String {
    match datatype {
        DataType::Bool => "boolean".into(),
        DataType::Bytes => "string".into(),
        DataType::Fp32 => "float".into(),
        DataType::Fp64 => "double".into(),
        DataType::Int32 => "integer".into(),
        DataType::Int64 => "long".into(),
        other => other.v2_name().to_lowercase(),
    }
}

/// The schema every cell of a row satisfies: the shared JSON type of the columns, or none when they differ.
pub(super) fn cell_schema(columns: &[ColumnSpec]) -> Value {
    let mut types: Vec<DataType> = Vec::new();
    for column in columns {
        if !types.contains(&column.datatype) {
            types.push(column.datatype);
        }
    }
    let numeric = |t: &DataType| !matches!(t, DataType::Bool | DataType::Bytes);
    match types.as_slice() {
        [one] => leaf(*one),
        many if many.iter().all(numeric) => {
            if many.iter().any(|t| t.is_float()) {
                json!({ "type": "number" })
            } else {
                json!({ "type": "integer" })
            }
        }
        _ => json!({ "description": "A value of its column's type." }),
    }
}

/// `input_data` as a split-orient DataFrame, the form Azure ML documents for MLflow models.
pub(super) fn frame_schema(columns: &[ColumnSpec]) -> Value {
    let names: Vec<String> =
        columns.iter().enumerate().map(|(i, c)| c.name.clone().unwrap_or_else(|| i.to_string())).collect();
    let all_named = columns.iter().all(|c| c.name.is_some());
    let described: Vec<String> =
        names.iter().zip(columns).map(|(n, c)| format!("{n} ({})", column_type_name(c.datatype))).collect();
    let mut column_items = json!({ "type": "string" });
    if all_named {
        column_items["enum"] = json!(names);
    }
    let row: Vec<Value> = columns.iter().map(|c| zero(c.datatype)).collect();
    json!({
        "type": "object",
        "format": "pandas.DataFrame:split",
        "description": format!(
            "A DataFrame in split orient with the columns {}. Each row of 'data' lists its values in the order of \
             'columns'.",
            described.join(", ")
        ),
        // Azure ML documents all three; `/score` also takes a frame without `index`.
        "required": ["columns", "index", "data"],
        "properties": {
            "columns": { "type": "array", "items": column_items },
            "index": { "type": "array", "items": { "type": "integer", "format": "int64" } },
            "data": { "type": "array", "items": { "type": "array", "items": cell_schema(columns) } },
        },
        "example": { "columns": names, "index": [0], "data": [row] },
    })
}

/// The outputs `/score` returns (the rule lives in `mlflow_input`).
pub(super) fn served_outputs(model: &ModelInfo) -> Vec<&TensorSpec> {
    crate::mlflow_input::served_outputs(model).iter().filter_map(|n| model.output(n)).collect()
}

/// DataFrame input gives one record per row, with a field per output: a scalar for a `[rows]` or `[rows, 1]`
/// output, a list for wider ones.
pub(super) fn records_schema(model: &ModelInfo) -> Value {
    let mut properties = Map::new();
    for spec in served_outputs(model) {
        let row_shape = spec.shape.get(1..).unwrap_or_default();
        let schema = if row_shape.iter().all(|d| *d == 1) {
            leaf(spec.datatype)
        } else if row_shape.contains(&-1) {
            json!({ "description": format!("A {} value, or nested lists of shape {}.", spec.datatype, shape_text(row_shape)) })
        } else {
            nested_schema(spec.datatype, row_shape)
        };
        properties.insert(spec.name.clone(), schema);
    }
    json!({
        "type": "array",
        "description": "One record per input row.",
        "items": { "type": "object", "properties": properties },
    })
}

/// Tensor input gives the single output as nested lists, or an object of outputs by name.
pub(super) fn tensors_output_schema(model: &ModelInfo) -> Value {
    let tensor = |spec: &TensorSpec| {
        let mut schema = nested_schema(spec.datatype, &spec.shape);
        schema["description"] = json!(tensor_description(spec.datatype, &spec.shape));
        schema
    };
    match served_outputs(model).as_slice() {
        [one] => tensor(one),
        many => {
            let properties: Map<String, Value> = many.iter().map(|s| (s.name.clone(), tensor(s))).collect();
            json!({ "type": "object", "properties": properties, "description": "The model's outputs by name." })
        }
    }
}

/// A v2 infer body with zeros for every input (dynamic dimensions as 1), if small enough to show.
pub(super) fn v2_request_example(model: &ModelInfo) -> Option<Value> {
    if !example_fits(model.inputs.iter().map(|s| s.shape.as_slice())) {
        return None;
    }
    let inputs: Vec<Value> = model
        .inputs
        .iter()
        .map(|spec| {
            let shape = example_shape(&spec.shape);
            let count = element_count(&shape).unwrap_or(0);
            json!({
                "name": spec.name,
                "shape": shape,
                "datatype": spec.datatype.v2_name(),
                "data": vec![zero(spec.datatype); count],
            })
        })
        .collect();
    Some(json!({ "inputs": inputs }))
}

pub(super) fn metadata_example(model: &ModelInfo) -> Value {
    let tensors = |specs: &[TensorSpec]| -> Vec<Value> {
        specs.iter().map(|s| json!({ "name": s.name, "datatype": s.datatype.v2_name(), "shape": s.shape })).collect()
    };
    json!({
        "name": model.name,
        "versions": [model.version],
        "platform": model.platform,
        "inputs": tensors(&model.inputs),
        "outputs": tensors(&model.outputs),
    })
}
