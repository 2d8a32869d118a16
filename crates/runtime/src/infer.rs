//! One inference: checking a request's tensors against the model, and running it on an ONNX Runtime session.

use std::collections::HashSet;

use ort::session::{OutputSelector, RunOptions};

use crate::error::{ErrorCode, InferError};
use crate::model::{LoadedModel, ModelInfo, TensorSpec, shape_text, shapes_compatible};
use crate::ort_tensor::{from_ort, to_ort};
use crate::tensor::{NamedTensor, element_count};

/// Decoded inputs and the outputs to return, ready for a worker.
#[derive(Debug, Clone, PartialEq)]
pub struct InferenceJob {
    pub inputs: Vec<NamedTensor>,
    /// Output names to compute and return; empty means all of the model's outputs.
    pub outputs: Vec<String>,
}

/// Checks names, datatypes, shapes, element counts and the batch size, so that ONNX Runtime only sees valid
/// requests. Every message names the tensor and says what was expected.
pub fn check_job(info: &ModelInfo, job: &InferenceJob) -> Result<(), InferError> {
    let model = &info.name;
    let mut seen = HashSet::new();
    let mut batch: Option<(i64, &str)> = None;
    for input in &job.inputs {
        let name = input.name.as_str();
        if !seen.insert(name) {
            return Err(InferError::bad_request(format!("input '{name}' is given more than once")));
        }
        let Some(spec) = info.input(name) else {
            return Err(InferError::bad_request(format!(
                "unknown input '{name}' for model '{model}' (inputs: {})",
                info.input_names()
            )));
        };
        let datatype = input.data.datatype();
        if datatype != spec.datatype {
            return Err(InferError::bad_request(format!(
                "input '{name}' has datatype {datatype} but model '{model}' expects {}",
                spec.datatype
            )));
        }
        let Some(count) = element_count(&input.shape) else {
            let why = if input.shape.iter().any(|d| *d < 0) {
                "dimensions must be non-negative"
            } else {
                "the product of its dimensions is too large"
            };
            return Err(InferError::bad_request(format!(
                "input '{name}' has invalid shape {} ({why})",
                shape_text(&input.shape)
            )));
        };
        if count != input.data.len() {
            return Err(InferError::bad_request(format!(
                "input '{name}' has {} data elements but its shape {} needs {count}",
                input.data.len(),
                shape_text(&input.shape)
            )));
        }
        if !shapes_compatible(&input.shape, &spec.shape) {
            return Err(InferError::bad_request(format!(
                "input '{name}' has shape {} but model '{model}' expects {}",
                shape_text(&input.shape),
                shape_text(&spec.shape)
            )));
        }
        if info.max_batch_size > 0 {
            let size = input.shape.first().copied().unwrap_or(0);
            if size < 1 || size > i64::from(info.max_batch_size) {
                return Err(InferError::bad_request(format!(
                    "input '{name}' has batch size {size} but model '{model}' accepts 1 to {}",
                    info.max_batch_size
                )));
            }
            match batch {
                Some((other, other_name)) if other != size => {
                    return Err(InferError::bad_request(format!(
                        "input '{name}' has batch size {size} but input '{other_name}' has {other}"
                    )));
                }
                _ => batch = Some((size, name)),
            }
        }
    }
    if let Some(missing) = info.inputs.iter().find(|s| !seen.contains(s.name.as_str())) {
        return Err(InferError::bad_request(format!(
            "missing input '{}' for model '{model}' (expected {} with shape {})",
            missing.name,
            missing.datatype,
            shape_text(&missing.shape)
        )));
    }
    if let Some(unknown) = job.outputs.iter().find(|o| info.output(o).is_none()) {
        return Err(InferError::bad_request(format!(
            "unknown output '{unknown}' for model '{model}' (outputs: {})",
            info.output_names()
        )));
    }
    Ok(())
}

/// Fills a single -1 in `template` from the element count; `None` if the count does not fit.
pub(crate) fn resolve_shape(template: &[i64], count: usize) -> Option<Vec<i64>> {
    let fixed =
        template.iter().filter(|d| **d >= 0).try_fold(1usize, |acc, d| acc.checked_mul(usize::try_from(*d).ok()?))?;
    match template.iter().filter(|d| **d < 0).count() {
        0 => (fixed == count).then(|| template.to_vec()),
        1 if fixed > 0 && count.is_multiple_of(fixed) => {
            let missing = i64::try_from(count / fixed).ok()?;
            Some(template.iter().map(|d| if *d < 0 { missing } else { *d }).collect())
        }
        1 if fixed == 0 && count == 0 => Some(template.iter().map(|d| (*d).max(0)).collect()),
        _ => None,
    }
}

/// The shape ONNX Runtime sees for a tensor: the client shape, or the configured `reshape` with the batch dimension.
fn model_shape(spec: &TensorSpec, client_shape: &[i64], batch: Option<i64>, count: usize) -> Option<Vec<i64>> {
    let Some(reshape) = &spec.model_shape else {
        return Some(client_shape.to_vec());
    };
    let template: Vec<i64> = batch.into_iter().chain(reshape.iter().copied()).collect();
    resolve_shape(&template, count)
}

fn ort_error(context: &str, e: &ort::Error) -> InferError {
    let code = match e.code() {
        ort::ErrorCode::InvalidArgument => ErrorCode::BadRequest,
        _ => ErrorCode::Internal,
    };
    InferError::new(code, format!("{context}: {}", e.message()))
}

/// Runs a checked job on the session reserved for `worker`. Blocking: call only from an inference thread.
pub fn run_job(model: &LoadedModel, worker: usize, job: InferenceJob) -> Result<Vec<NamedTensor>, InferError> {
    let info = &model.info;
    let batch = (info.max_batch_size > 0).then(|| job.inputs.first().and_then(|i| i.shape.first().copied())).flatten();
    let mut feeds = Vec::with_capacity(job.inputs.len());
    for input in job.inputs {
        let spec = info
            .input(&input.name)
            .ok_or_else(|| InferError::bad_request(format!("unknown input '{}'", input.name)))?;
        let shape = model_shape(spec, &input.shape, batch, input.data.len()).ok_or_else(|| {
            InferError::bad_request(format!(
                "input '{}' with shape {} cannot be reshaped to the model's shape",
                input.name,
                shape_text(&input.shape)
            ))
        })?;
        let value =
            to_ort(input.data, shape).map_err(|e| InferError::bad_request(format!("input '{}': {e}", input.name)))?;
        feeds.push((input.name, value));
    }
    let wanted: Vec<&TensorSpec> = if job.outputs.is_empty() {
        info.outputs.iter().collect()
    } else {
        let mut names: Vec<&str> = Vec::new();
        for o in &job.outputs {
            if !names.contains(&o.as_str()) {
                names.push(o);
            }
        }
        names.into_iter().filter_map(|n| info.output(n)).collect()
    };
    let selector = wanted.iter().fold(OutputSelector::no_default(), |s, o| s.with(o.name.clone()));
    let options = RunOptions::new().map_err(|e| ort_error("cannot create run options", &e))?.with_outputs(selector);
    let mut session = model.session(worker)?;
    let results = session
        .run_with_options(feeds, &options)
        .map_err(|e| ort_error(&format!("model '{}' failed", info.name), &e))?;
    let mut outputs = Vec::with_capacity(wanted.len());
    for spec in wanted {
        let value = results
            .get(&spec.name)
            .ok_or_else(|| InferError::internal(format!("ONNX Runtime returned no output '{}'", spec.name)))?;
        let (shape, data) =
            from_ort(value).map_err(|e| InferError::internal(format!("output '{}': {e}", spec.name)))?;
        let shape = match &spec.model_shape {
            Some(_) => {
                let template: Vec<i64> =
                    batch.into_iter().chain(spec.shape.iter().skip(usize::from(batch.is_some())).copied()).collect();
                resolve_shape(&template, data.len()).ok_or_else(|| {
                    InferError::internal(format!(
                        "output '{}' with shape {} does not fit the configured dims {}",
                        spec.name,
                        shape_text(&shape),
                        shape_text(&spec.shape)
                    ))
                })?
            }
            None => shape,
        };
        outputs.push(NamedTensor { name: spec.name.clone(), shape, data });
    }
    Ok(outputs)
}

#[cfg(test)]
#[path = "infer_tests.rs"]
mod tests;
