//! KServe v2 inference request and response bodies, and their conversion to and from an `InferenceJob`.

use axum::body::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::binary;
use crate::datatype::DataType;
use crate::error::InferError;
use crate::infer::InferenceJob;
use crate::model::ModelInfo;
use crate::tensor::{JsonData, NamedTensor, TensorData};

#[derive(Debug, Deserialize)]
pub struct InferRequest {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub parameters: Option<Map<String, Value>>,
    pub inputs: Vec<RequestInput>,
    #[serde(default)]
    pub outputs: Option<Vec<RequestOutput>>,
}

#[derive(Debug, Deserialize)]
pub struct RequestInput {
    pub name: String,
    pub shape: Vec<i64>,
    pub datatype: String,
    #[serde(default)]
    pub parameters: Option<Map<String, Value>>,
    #[serde(default)]
    pub data: Option<JsonData>,
}

#[derive(Debug, Deserialize)]
pub struct RequestOutput {
    pub name: String,
    #[serde(default)]
    pub parameters: Option<Map<String, Value>>,
}

#[derive(Debug, Serialize)]
pub struct InferResponse {
    pub model_name: String,
    pub model_version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub outputs: Vec<ResponseOutput>,
}

#[derive(Debug, Serialize)]
pub struct ResponseOutput {
    pub name: String,
    pub datatype: &'static str,
    pub shape: Vec<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Map<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<TensorData>,
}

/// A decoded request: the job, plus what the response needs (the id and which outputs go in binary).
#[derive(Debug)]
pub struct DecodedRequest {
    pub id: Option<String>,
    pub job: InferenceJob,
    /// Output names to send as binary data.
    pub binary_outputs: Vec<String>,
    /// Whether outputs not named in the request are sent as binary (`binary_data_output: true`).
    pub binary_by_default: bool,
}

/// A boolean parameter (`binary_data`, `binary_data_output`); any other JSON type is refused, as
/// Triton refuses it, rather than read as false.
fn flag(parameters: Option<&Map<String, Value>>, key: &str, output: Option<&str>) -> Result<Option<bool>, InferError> {
    match parameters.and_then(|p| p.get(key)) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => {
            let of = output.map(|name| format!("output '{name}': ")).unwrap_or_default();
            Err(InferError::bad_request(format!("{of}parameter '{key}' must be true or false, not {other}")))
        }
    }
}

/// Parses and decodes a request body (JSON header plus optional binary section). Does not check it against the
/// model beyond what decoding needs; `check_job` does that.
pub fn decode_request(json: &[u8], binary_section: Bytes) -> Result<DecodedRequest, InferError> {
    // serde_path_to_error tracks the path of every element it visits, which made it the largest cost of a request
    // with a few thousand numbers; so parse plainly first, and again with the path only to explain an error.
    let request: InferRequest = match serde_json::from_slice(json) {
        Ok(request) => request,
        Err(plain) => {
            let deserializer = &mut serde_json::Deserializer::from_slice(json);
            serde_path_to_error::deserialize(deserializer)
                .map_err(|e| {
                    let path = e.path().to_string();
                    let inner = e.into_inner();
                    if path == "." || path.is_empty() {
                        InferError::bad_request(format!("invalid inference request: {inner}"))
                    } else {
                        InferError::bad_request(format!("invalid inference request at '{path}': {inner}"))
                    }
                })
                // Both parsers read the same grammar; should the second accept what the first refused, say so.
                .and_then(|_: InferRequest| {
                    Err(InferError::bad_request(format!("invalid inference request: {plain}")))
                })?
        }
    };
    let mut offset = 0usize;
    let mut inputs = Vec::with_capacity(request.inputs.len());
    for input in request.inputs {
        let name = input.name;
        let datatype = DataType::from_v2_name(&input.datatype).ok_or_else(|| {
            let known: Vec<&str> = DataType::ALL.iter().map(|t| t.v2_name()).collect();
            InferError::bad_request(format!(
                "input '{name}' has unsupported datatype '{}' (expected one of {})",
                input.datatype,
                known.join(", ")
            ))
        })?;
        let binary_size = input.parameters.as_ref().and_then(|p| p.get("binary_data_size"));
        let data = match (binary_size, input.data) {
            (Some(size), None) => {
                let size = size.as_u64().and_then(|s| usize::try_from(s).ok()).ok_or_else(|| {
                    InferError::bad_request(format!("input '{name}': binary_data_size must be a non-negative integer"))
                })?;
                let end = offset.checked_add(size).filter(|end| *end <= binary_section.len()).ok_or_else(|| {
                    InferError::bad_request(format!(
                        "input '{name}': binary_data_size {size} exceeds the {} bytes of binary data left",
                        binary_section.len() - offset
                    ))
                })?;
                let bytes = &binary_section[offset..end];
                offset = end;
                binary::decode(datatype, bytes).map_err(|e| InferError::bad_request(format!("input '{name}': {e}")))?
            }
            (Some(_), Some(_)) => {
                return Err(InferError::bad_request(format!("input '{name}' has both 'data' and binary_data_size")));
            }
            (None, Some(data)) => TensorData::from_request_data(datatype, data)
                .map_err(|e| InferError::bad_request(format!("input '{name}': {e}")))?,
            (None, None) => return Err(InferError::bad_request(format!("input '{name}' has no 'data'"))),
        };
        inputs.push(NamedTensor { name, shape: input.shape, data });
    }
    if offset != binary_section.len() {
        return Err(InferError::bad_request(format!(
            "the body has {} bytes of binary data that no input claims (binary_data_size)",
            binary_section.len() - offset
        )));
    }
    let binary_by_default = flag(request.parameters.as_ref(), "binary_data_output", None)?.unwrap_or(false);
    let requested = request.outputs.unwrap_or_default();
    let mut binary_outputs = Vec::new();
    for output in &requested {
        if flag(output.parameters.as_ref(), "binary_data", Some(&output.name))?.unwrap_or(binary_by_default) {
            binary_outputs.push(output.name.clone());
        }
    }
    Ok(DecodedRequest {
        id: request.id,
        job: InferenceJob { inputs, outputs: requested.into_iter().map(|o| o.name).collect() },
        binary_outputs,
        binary_by_default,
    })
}

/// A response body and, for the binary extension, the length of its JSON header.
pub struct EncodedResponse {
    pub body: Vec<u8>,
    pub header_length: Option<usize>,
}

/// Encodes outputs as JSON, moving the ones asked for in binary to the section after the JSON header.
pub fn encode_response(
    info: &ModelInfo,
    request: DecodedRequest,
    outputs: Vec<NamedTensor>,
) -> Result<EncodedResponse, InferError> {
    let named_explicitly = !request.job.outputs.is_empty();
    let mut blobs = Vec::new();
    let outputs = outputs
        .into_iter()
        .map(|o| {
            let binary =
                if named_explicitly { request.binary_outputs.contains(&o.name) } else { request.binary_by_default };
            let datatype = o.data.datatype().v2_name();
            if binary {
                let blob = binary::encode(&o.data);
                let mut parameters = Map::new();
                parameters.insert("binary_data_size".to_owned(), Value::from(blob.len()));
                blobs.push(blob);
                ResponseOutput { name: o.name, datatype, shape: o.shape, parameters: Some(parameters), data: None }
            } else {
                ResponseOutput { name: o.name, datatype, shape: o.shape, parameters: None, data: Some(o.data) }
            }
        })
        .collect();
    let response =
        InferResponse { model_name: info.name.clone(), model_version: info.version.clone(), id: request.id, outputs };
    let mut body =
        serde_json::to_vec(&response).map_err(|e| InferError::internal(format!("cannot encode the response: {e}")))?;
    if blobs.is_empty() {
        return Ok(EncodedResponse { body, header_length: None });
    }
    let header_length = body.len();
    for blob in blobs {
        body.extend_from_slice(&blob);
    }
    Ok(EncodedResponse { body, header_length: Some(header_length) })
}
