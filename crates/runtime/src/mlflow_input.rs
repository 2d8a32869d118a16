//! MLflow request bodies (`/score`'s `input_data`, `/invocations`' `dataframe_split` and friends) turned into
//! model inputs, and model outputs turned into MLflow-style predictions.

use serde_json::{Map, Value};

use crate::datatype::DataType;
use crate::error::InferError;
use crate::infer::{InferenceJob, resolve_shape};
use crate::mlflow::MlflowSchema;
use crate::model::{ModelInfo, TensorSpec, shape_text, shapes_compatible};
use crate::tensor::{NamedTensor, TensorData};

/// A request payload in one of the shapes MLflow accepts.
#[derive(Debug, Clone, PartialEq)]
pub enum ScoreData {
    /// A DataFrame (split or records orient): named columns, rows of cells.
    Frame { columns: Vec<String>, rows: Vec<Vec<Value>> },
    /// One tensor as nested lists, for a single-input model.
    Tensor(Value),
    /// Named tensors.
    Named(Map<String, Value>),
}

/// How predictions are returned: one record per row for DataFrame input (as MLflow does), tensors otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PredictionForm {
    Records { rows: usize },
    Tensors,
}

fn bad(message: impl Into<String>) -> InferError {
    InferError::bad_request(message)
}

/// Parses Azure ML's `input_data`: split orient `{columns, index, data}`, a list (tensor), or named tensors.
pub fn parse_input_data(value: Value) -> Result<ScoreData, InferError> {
    match value {
        Value::Object(map) if map.contains_key("columns") && map.contains_key("data") => split_frame(map),
        Value::Object(map) => Ok(ScoreData::Named(map)),
        Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_object) => records_frame(items),
        Value::Array(items) => Ok(ScoreData::Tensor(Value::Array(items))),
        other => Err(bad(format!(
            "input_data must be a list (a tensor), an object of named tensors, or a split-orient DataFrame \
             {{\"columns\": [...], \"data\": [[...]]}}; got {}",
            kind(&other)
        ))),
    }
}

/// Parses an MLflow `/invocations` body, which must have exactly one of the four input fields.
pub fn parse_invocations(mut body: Map<String, Value>) -> Result<ScoreData, InferError> {
    const FIELDS: [&str; 4] = ["dataframe_split", "dataframe_records", "instances", "inputs"];
    let present: Vec<&str> = FIELDS.into_iter().filter(|f| body.contains_key(*f)).collect();
    let [field] = present.as_slice() else {
        let keys: Vec<&str> = body.keys().map(String::as_str).collect();
        return Err(bad(format!(
            "the body must be a JSON object with exactly one of the fields dataframe_split, dataframe_records, \
             instances, inputs; it has: {}",
            keys.join(", ")
        )));
    };
    let value = body.remove(*field).unwrap_or(Value::Null);
    match (*field, value) {
        ("dataframe_split", Value::Object(map)) => split_frame(map),
        ("dataframe_records", Value::Array(items)) => records_frame(items),
        ("instances" | "inputs", Value::Array(items)) if !items.is_empty() && items.iter().all(Value::is_object) => {
            records_frame(items)
        }
        ("instances" | "inputs", Value::Array(items)) => Ok(ScoreData::Tensor(Value::Array(items))),
        ("instances" | "inputs", Value::Object(map)) => Ok(ScoreData::Named(map)),
        (field, other) => Err(bad(format!("'{field}' has the wrong form: got {}", kind(&other)))),
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn split_frame(mut map: Map<String, Value>) -> Result<ScoreData, InferError> {
    let columns = match map.remove("columns") {
        Some(Value::Array(cols)) => cols
            .into_iter()
            .map(|c| match c {
                Value::String(s) => Ok(s),
                Value::Number(n) => Ok(n.to_string()),
                other => Err(bad(format!("'columns' must hold strings, found {}", kind(&other)))),
            })
            .collect::<Result<Vec<_>, _>>()?,
        _ => return Err(bad("'columns' must be a list of column names")),
    };
    let Some(Value::Array(data)) = map.remove("data") else {
        return Err(bad("'data' must be a list of rows"));
    };
    let rows = data
        .into_iter()
        .enumerate()
        .map(|(i, row)| match row {
            Value::Array(cells) if cells.len() == columns.len() => Ok(cells),
            Value::Array(cells) => Err(bad(format!(
                "row {i} of 'data' has {} values but there are {} columns",
                cells.len(),
                columns.len()
            ))),
            other => Err(bad(format!("row {i} of 'data' must be a list, found {}", kind(&other)))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ScoreData::Frame { columns, rows })
}

fn records_frame(items: Vec<Value>) -> Result<ScoreData, InferError> {
    let mut columns: Vec<String> = Vec::new();
    for item in &items {
        let Value::Object(record) = item else {
            return Err(bad(format!("records must be objects, found {}", kind(item))));
        };
        for key in record.keys() {
            if !columns.contains(key) {
                columns.push(key.clone());
            }
        }
    }
    let rows = items
        .into_iter()
        .map(|item| match item {
            Value::Object(mut record) => columns.iter().map(|c| record.remove(c).unwrap_or(Value::Null)).collect(),
            _ => Vec::new(),
        })
        .collect();
    Ok(ScoreData::Frame { columns, rows })
}

/// Builds the inference job for `data`, casting values to the graph's element types (as MLflow's ONNX flavor does).
pub fn to_job(info: &ModelInfo, data: ScoreData) -> Result<(InferenceJob, PredictionForm), InferError> {
    let (inputs, form) = match data {
        ScoreData::Frame { columns, rows } => {
            (frame_inputs(info, &columns, &rows)?, PredictionForm::Records { rows: rows.len() })
        }
        ScoreData::Tensor(value) => {
            let [spec] = info.inputs.as_slice() else {
                return Err(bad(format!(
                    "model '{}' has {} inputs ({}); send named tensors: {{\"<input name>\": [...], ...}}",
                    info.name,
                    info.inputs.len(),
                    info.input_names()
                )));
            };
            (vec![decode(spec, &value)?], PredictionForm::Tensors)
        }
        ScoreData::Named(map) => {
            if let Some(unknown) = map.keys().find(|k| info.input(k).is_none()) {
                return Err(bad(format!("unknown input '{unknown}' (model inputs: {})", info.input_names())));
            }
            let inputs = info
                .inputs
                .iter()
                .map(|spec| match map.get(&spec.name) {
                    Some(value) => decode(spec, value),
                    None => Err(bad(format!("missing input '{}' (model inputs: {})", spec.name, info.input_names()))),
                })
                .collect::<Result<Vec<_>, _>>()?;
            (inputs, PredictionForm::Tensors)
        }
    };
    Ok((InferenceJob { inputs, outputs: served_outputs(info) }, form))
}

fn decode(spec: &TensorSpec, value: &Value) -> Result<NamedTensor, InferError> {
    let (data, shape) =
        TensorData::from_json(spec.datatype, value).map_err(|e| bad(format!("input '{}': {e}", spec.name)))?;
    Ok(NamedTensor { name: spec.name.clone(), shape: fit_shape(spec, &shape, data.len())?, data })
}

/// Uses the data's own shape when it fits the graph, else fills the graph's one variable dimension (`[4]` becomes
/// `[1, 4]` for a `[-1, 4]` input, a column `[n]` becomes `[n, 1]`).
fn fit_shape(spec: &TensorSpec, shape: &[usize], count: usize) -> Result<Vec<i64>, InferError> {
    let given: Vec<i64> = shape.iter().map(|d| i64::try_from(*d).unwrap_or(i64::MAX)).collect();
    if shapes_compatible(&given, &spec.shape) {
        return Ok(given);
    }
    resolve_shape(&spec.shape, count).ok_or_else(|| {
        bad(format!(
            "input '{}' expects shape {} but the data has shape {}",
            spec.name,
            shape_text(&spec.shape),
            shape_text(&given)
        ))
    })
}

fn frame_inputs(info: &ModelInfo, columns: &[String], rows: &[Vec<Value>]) -> Result<Vec<NamedTensor>, InferError> {
    let column = |name: &str| -> Result<usize, InferError> {
        columns
            .iter()
            .position(|c| c == name)
            .ok_or_else(|| bad(format!("missing column '{name}' (the request has columns: {})", columns.join(", "))))
    };
    let spec = match info.inputs.as_slice() {
        [spec] => spec,
        specs => {
            // Several graph inputs: each is fed by the column of the same name.
            return specs
                .iter()
                .map(|spec| {
                    let index = column(&spec.name)?;
                    let cells: Vec<Value> = rows.iter().map(|r| r.get(index).cloned().unwrap_or(Value::Null)).collect();
                    decode_cells(spec, &Value::Array(cells), &[spec.name.as_str()])
                })
                .collect();
        }
    };
    // One graph input: the selected columns, in signature order, form a [rows, columns] matrix.
    let order: Vec<usize> = match signature_columns(info) {
        Some(names) => names.iter().map(|n| column(n)).collect::<Result<_, _>>()?,
        None => (0..columns.len()).collect(),
    };
    let names: Vec<&str> = order.iter().filter_map(|i| columns.get(*i).map(String::as_str)).collect();
    let matrix: Vec<Value> = rows
        .iter()
        .map(|r| Value::Array(order.iter().map(|i| r.get(*i).cloned().unwrap_or(Value::Null)).collect()))
        .collect();
    Ok(vec![decode_cells(spec, &Value::Array(matrix), &names)?])
}

fn signature_columns(info: &ModelInfo) -> Option<Vec<String>> {
    match info.mlflow.as_ref()?.inputs.as_ref()? {
        MlflowSchema::Columns(cols) if cols.iter().all(|c| c.name.is_some()) => {
            Some(cols.iter().filter_map(|c| c.name.clone()).collect())
        }
        _ => None,
    }
}

/// Decodes a column or matrix; on failure, names the column and row of the first bad cell.
fn decode_cells(spec: &TensorSpec, value: &Value, names: &[&str]) -> Result<NamedTensor, InferError> {
    let (data, shape) = match TensorData::from_json(spec.datatype, value) {
        Ok(decoded) => decoded,
        Err(e) => return Err(bad(locate_bad_cell(spec.datatype, value, names).unwrap_or(e))),
    };
    let shape = if data.is_empty() { vec![0, names.len()] } else { shape };
    Ok(NamedTensor {
        name: spec.name.clone(),
        shape: fit_shape(spec, &shape, data.len()).map_err(|_| {
            bad(format!(
                "model input '{}' expects shape {}; the request has {} rows of {} column(s) ({})",
                spec.name,
                shape_text(&spec.shape),
                shape.first().copied().unwrap_or(0),
                names.len(),
                names.join(", ")
            ))
        })?,
        data,
    })
}

fn locate_bad_cell(datatype: DataType, value: &Value, names: &[&str]) -> Option<String> {
    let rows = value.as_array()?;
    for (r, row) in rows.iter().enumerate() {
        let cells: Vec<&Value> = match row {
            Value::Array(cells) => cells.iter().collect(),
            cell => vec![cell],
        };
        for (c, cell) in cells.into_iter().enumerate() {
            if TensorData::from_json(datatype, cell).is_err() || cell.is_array() {
                let column = names.get(c).copied().unwrap_or("?");
                return Some(format!("column '{column}', row {r}: {cell} is not a valid {datatype} value"));
            }
        }
    }
    None
}

/// The outputs to return: those named in the signature's outputs when they match the graph, else all.
pub(crate) fn served_outputs(info: &ModelInfo) -> Vec<String> {
    let named = info
        .mlflow
        .as_ref()
        .and_then(|s| s.outputs.as_ref())
        .map(|schema| {
            schema.names().into_iter().filter(|n| info.output(n).is_some()).map(str::to_owned).collect::<Vec<_>>()
        })
        .unwrap_or_default();
    if named.is_empty() { info.outputs.iter().map(|o| o.name.clone()).collect() } else { named }
}

#[cfg(test)]
#[path = "mlflow_input_tests.rs"]
mod tests;
