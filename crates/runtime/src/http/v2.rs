//! KServe v2 / Open Inference Protocol REST handlers: health, server and model metadata, inference.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, header};
use http_body_util::BodyExt;
use serde::Serialize;
use serde_json::json;

use super::errors::{Envelope, ErrorResponse};
use super::v2_wire::{decode_request, encode_response};
use super::{AppState, binary, body_or_error, offload, too_large};
use crate::error::InferError;
use crate::infer::{InferenceJob, check_job};
use crate::model::{LoadedModel, TensorSpec};

/// The extensions this server implements, as listed by `GET /v2`.
pub const EXTENSIONS: [&str; 2] = ["binary_tensor_data", "statistics"];

pub async fn live() -> Json<serde_json::Value> {
    Json(json!({ "live": true }))
}

/// Models are loaded before the listener is bound, so a replica that answers is ready.
pub async fn ready() -> Json<serde_json::Value> {
    Json(json!({ "ready": true }))
}

pub async fn server_metadata() -> Json<serde_json::Value> {
    Json(json!({
        "name": "sluice",
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": EXTENSIONS,
    }))
}

/// Finds a model, and checks the version when the path names one.
pub(crate) fn find_model<'a>(
    state: &'a AppState,
    name: &str,
    version: Option<&str>,
) -> Result<&'a Arc<LoadedModel>, InferError> {
    let model = state.models.get(name).ok_or_else(|| {
        let names: Vec<&str> = state.models.iter().map(|m| m.info.name.as_str()).collect();
        InferError::not_found(format!("unknown model '{name}' (models: {})", names.join(", ")))
    })?;
    match version {
        Some(v) if v != model.info.version => Err(InferError::not_found(format!(
            "model '{name}' has no version '{v}' (serving version {})",
            model.info.version
        ))),
        _ => Ok(model),
    }
}

#[derive(Serialize)]
struct TensorMetadata<'a> {
    name: &'a str,
    datatype: &'static str,
    shape: &'a [i64],
}

#[derive(Serialize)]
struct ModelMetadata<'a> {
    name: &'a str,
    versions: [&'a str; 1],
    platform: &'a str,
    inputs: Vec<TensorMetadata<'a>>,
    outputs: Vec<TensorMetadata<'a>>,
}

fn metadata(model: &LoadedModel) -> Response {
    let info = &model.info;
    Json(ModelMetadata {
        name: &info.name,
        versions: [&info.version],
        platform: &info.platform,
        inputs: tensors(&info.inputs),
        outputs: tensors(&info.outputs),
    })
    .into_response()
}

fn tensors(specs: &[TensorSpec]) -> Vec<TensorMetadata<'_>> {
    specs.iter().map(|s| TensorMetadata { name: &s.name, datatype: s.datatype.v2_name(), shape: &s.shape }).collect()
}

fn v2_error(e: InferError) -> Response {
    ErrorResponse(Envelope::V2, e).into_response()
}

pub async fn model_metadata(State(state): State<Arc<AppState>>, Path(model): Path<String>) -> Response {
    find_model(&state, &model, None).map_or_else(v2_error, |m| metadata(m))
}

pub async fn model_metadata_versioned(
    State(state): State<Arc<AppState>>,
    Path((model, version)): Path<(String, String)>,
) -> Response {
    find_model(&state, &model, Some(&version)).map_or_else(v2_error, |m| metadata(m))
}

fn readiness(model: &LoadedModel) -> Response {
    Json(json!({ "name": model.info.name, "ready": true })).into_response()
}

pub async fn model_ready(State(state): State<Arc<AppState>>, Path(model): Path<String>) -> Response {
    find_model(&state, &model, None).map_or_else(v2_error, |m| readiness(m))
}

pub async fn model_ready_versioned(
    State(state): State<Arc<AppState>>,
    Path((model, version)): Path<(String, String)>,
) -> Response {
    find_model(&state, &model, Some(&version)).map_or_else(v2_error, |m| readiness(m))
}

/// One model's entry in Triton's statistics extension (`GET /v2/models[/{model}[/versions/{v}]]/stats`).
fn model_stats(model: &LoadedModel) -> serde_json::Value {
    let s = model.stats.snapshot();
    let batch_stats: Vec<serde_json::Value> =
        s.batch_stats.iter().map(|(size, d)| json!({ "batch_size": size, "compute_infer": d })).collect();
    json!({
        "name": model.info.name,
        "version": model.info.version,
        "last_inference": s.last_inference,
        "inference_count": s.inference_count,
        "execution_count": s.execution_count,
        "inference_stats": {
            "success": s.success,
            "fail": s.fail,
            "queue": s.queue,
            "compute_infer": s.compute_infer,
        },
        "batch_stats": batch_stats,
    })
}

pub async fn all_stats(State(state): State<Arc<AppState>>) -> Json<serde_json::Value> {
    let stats: Vec<serde_json::Value> = state.models.iter().map(|m| model_stats(m)).collect();
    Json(json!({ "model_stats": stats }))
}

pub async fn stats(State(state): State<Arc<AppState>>, Path(model): Path<String>) -> Response {
    find_model(&state, &model, None)
        .map_or_else(v2_error, |m| Json(json!({ "model_stats": [model_stats(m)] })).into_response())
}

pub async fn stats_versioned(
    State(state): State<Arc<AppState>>,
    Path((model, version)): Path<(String, String)>,
) -> Response {
    find_model(&state, &model, Some(&version))
        .map_or_else(v2_error, |m| Json(json!({ "model_stats": [model_stats(m)] })).into_response())
}

pub async fn infer(
    State(state): State<Arc<AppState>>,
    Path(model): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let limit = state.max_request_bytes;
    run(state, &model, None, headers, body_or_error(body, limit)).await.unwrap_or_else(v2_error)
}

/// `POST /v2/models/{model}/infer` without the router (`super::app`): `model` as the router would
/// have captured it, the body read here under the same limit.
pub(crate) async fn infer_hot(state: Arc<AppState>, model: &str, req: axum::extract::Request) -> Response {
    let (parts, body) = req.into_parts();
    let limit = state.max_request_bytes;
    let body = match http_body_util::Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large(limit)),
        Err(e) => Err(InferError::bad_request(format!("cannot read the request body: {e}"))),
    };
    run(state, model, None, parts.headers, body).await.unwrap_or_else(v2_error)
}

pub async fn infer_versioned(
    State(state): State<Arc<AppState>>,
    Path((model, version)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let limit = state.max_request_bytes;
    run(state, &model, Some(version), headers, body_or_error(body, limit)).await.unwrap_or_else(v2_error)
}

async fn run(
    state: Arc<AppState>,
    model: &str,
    version: Option<String>,
    headers: HeaderMap,
    body: Result<Bytes, InferError>,
) -> Result<Response, InferError> {
    let model = Arc::clone(find_model(&state, model, version.as_deref())?);
    let body = body?;
    let (json, binary_section) = binary::split_body(&headers, body)?;
    let size = json.len() + binary_section.len();
    let mut decoded = offload(size, move || decode_request(&json, binary_section)).await?;
    check_job(&model.info, &decoded.job)?;
    // The response needs the request's id and output choices, not its input data: move that to the worker.
    let job = InferenceJob { inputs: std::mem::take(&mut decoded.job.inputs), outputs: decoded.job.outputs.clone() };
    let outputs = state.pool.submit(Arc::clone(&model), job).await?;
    let out_size: usize = outputs.iter().map(|o| o.data.len() * 8).sum();
    let encoded = offload(out_size, move || encode_response(&model.info, decoded, outputs)).await?;
    let mut response = encoded.body.into_response();
    let response_headers = response.headers_mut();
    match encoded.header_length {
        Some(length) => {
            response_headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
            response_headers.insert(binary::HEADER_LENGTH, HeaderValue::from(length));
        }
        None => {
            response_headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
    }
    Ok(response)
}
