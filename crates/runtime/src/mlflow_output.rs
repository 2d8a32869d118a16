//! Model outputs as MLflow predictions: records for DataFrame input, bare tensors otherwise.

use serde_json::{Map, Value};

use crate::error::InferError;
use crate::mlflow_input::PredictionForm;
use crate::model::shape_text;
use crate::tensor::{NamedTensor, TensorData};

/// Formats outputs the way MLflow's ONNX flavor and Azure ML's `/score` do.
///
/// - DataFrame input gives one record per row, `[{"label": 0, "probabilities": [...]}, ...]` (MLflow builds a
///   DataFrame with a column per output and Azure returns it in records orient). A `[rows]` or `[rows, 1]` output
///   becomes a scalar per record; wider outputs a list per record.
/// - Tensor input gives the single output as a bare nested list, or `{"<output>": [...], ...}` for several.
pub fn format_predictions(outputs: Vec<NamedTensor>, form: PredictionForm) -> Result<Value, InferError> {
    match form {
        PredictionForm::Records { rows } => records(outputs, rows),
        PredictionForm::Tensors => {
            if outputs.len() == 1 {
                let output = outputs.into_iter().next().ok_or_else(|| InferError::internal("no output"))?;
                return nested(&output.data, &output.shape);
            }
            let mut map = Map::new();
            for output in outputs {
                let value = nested(&output.data, &output.shape)?;
                map.insert(output.name, value);
            }
            Ok(Value::Object(map))
        }
    }
}

fn records(outputs: Vec<NamedTensor>, rows: usize) -> Result<Value, InferError> {
    let mut records: Vec<Map<String, Value>> = (0..rows).map(|_| Map::new()).collect();
    for output in outputs {
        let leading = output.shape.first().and_then(|d| usize::try_from(*d).ok());
        if leading != Some(rows) {
            return Err(InferError::internal(format!(
                "output '{}' has shape {}, which does not split into {rows} rows",
                output.name,
                shape_text(&output.shape)
            )));
        }
        let row_shape = &output.shape[1..];
        let per_row = output.data.len().checked_div(rows).unwrap_or(0);
        let scalar = row_shape.iter().all(|d| *d == 1);
        for (r, record) in records.iter_mut().enumerate() {
            let slice = output.data.slice(r * per_row, (r + 1) * per_row);
            let value = if scalar {
                flat(&slice)?.into_iter().next().unwrap_or(Value::Null)
            } else {
                nested(&slice, row_shape)?
            };
            record.insert(output.name.clone(), value);
        }
    }
    Ok(Value::Array(records.into_iter().map(Value::Object).collect()))
}

fn flat(data: &TensorData) -> Result<Vec<Value>, InferError> {
    match serde_json::to_value(data) {
        Ok(Value::Array(items)) => Ok(items),
        Ok(_) => Err(InferError::internal("a tensor did not encode as a list")),
        Err(e) => Err(InferError::internal(format!("cannot encode a tensor: {e}"))),
    }
}

/// A flat buffer as nested JSON lists of `shape` (a scalar for an empty shape).
pub fn nested(data: &TensorData, shape: &[i64]) -> Result<Value, InferError> {
    let items = flat(data)?;
    let dims: Vec<usize> = shape.iter().map(|d| usize::try_from(*d).unwrap_or(0)).collect();
    if dims.iter().product::<usize>() != items.len() {
        return Err(InferError::internal(format!(
            "a tensor of shape {} holds {} values",
            shape_text(shape),
            items.len()
        )));
    }
    Ok(build(&mut items.into_iter(), &dims))
}

fn build(items: &mut impl Iterator<Item = Value>, dims: &[usize]) -> Value {
    match dims.split_first() {
        None => items.next().unwrap_or(Value::Null),
        Some((dim, rest)) => Value::Array((0..*dim).map(|_| build(items, rest)).collect()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn tensor(name: &str, shape: Vec<i64>, data: TensorData) -> NamedTensor {
        NamedTensor { name: name.into(), shape, data }
    }

    #[test]
    fn nests_by_shape() {
        let d = TensorData::Int64(vec![1, 2, 3, 4, 5, 6]);
        assert_eq!(nested(&d, &[2, 3]).unwrap(), json!([[1, 2, 3], [4, 5, 6]]));
        assert_eq!(nested(&d, &[6]).unwrap(), json!([1, 2, 3, 4, 5, 6]));
        assert_eq!(nested(&TensorData::Int64(vec![7]), &[]).unwrap(), json!(7));
        assert_eq!(nested(&TensorData::Int64(vec![]), &[2, 0]).unwrap(), json!([[], []]));
        assert!(nested(&d, &[4, 2]).is_err());
    }

    #[test]
    fn records_per_row() {
        let outputs = vec![
            tensor("label", vec![2], TensorData::Int64(vec![0, 2])),
            tensor("probabilities", vec![2, 2], TensorData::Fp64(vec![0.75, 0.25, 0.5, 0.5])),
            tensor("score", vec![2, 1], TensorData::Fp64(vec![1.5, 2.5])),
        ];
        let v = format_predictions(outputs, PredictionForm::Records { rows: 2 }).unwrap();
        assert_eq!(
            v,
            json!([
                {"label": 0, "probabilities": [0.75, 0.25], "score": 1.5},
                {"label": 2, "probabilities": [0.5, 0.5], "score": 2.5}
            ])
        );
        let wrong = vec![tensor("label", vec![3], TensorData::Int64(vec![0, 1, 2]))];
        assert!(format_predictions(wrong, PredictionForm::Records { rows: 2 }).is_err());
    }

    #[test]
    fn tensors_bare_or_named() {
        let one = vec![tensor("label", vec![2], TensorData::Int64(vec![0, 2]))];
        assert_eq!(format_predictions(one, PredictionForm::Tensors).unwrap(), json!([0, 2]));
        let two = vec![
            tensor("label", vec![1], TensorData::Int64(vec![1])),
            tensor("p", vec![1, 2], TensorData::Fp64(vec![0.5, 0.5])),
        ];
        assert_eq!(format_predictions(two, PredictionForm::Tensors).unwrap(), json!({"label": [1], "p": [[0.5, 0.5]]}));
    }
}
