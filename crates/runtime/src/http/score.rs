//! Azure ML MLflow no-code `/score` and MLflow scoring-server `/invocations`.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, header};
use serde_json::{Map, Value, json};

use super::errors::{Envelope, ErrorResponse};
use super::{AppState, body_or_error, offload};
use crate::error::{ErrorCode, InferError};
use crate::infer::check_job;
use crate::mlflow_input::{ScoreData, parse_input_data, parse_invocations, to_job};
use crate::mlflow_output::format_predictions;

/// `POST /score`: the body is `{"input_data": ..., "params"?: ...}`; the answer is a bare JSON array (records for
/// DataFrame input) or, for tensor input to a model with several outputs, an object of named outputs.
///
/// A Triton-style repository with one model has no MLflow signature: its scoring URI takes the same KServe v2
/// infer body as `/v2/models/<model>/infer`, so `online-endpoint invoke` works for it too.
pub async fn score(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    if let Some(model) = state.models.single().filter(|m| m.info.mlflow.is_none()) {
        let name = model.info.name.clone();
        return super::v2::infer(State(state), axum::extract::Path(name), headers, body).await;
    }
    match predict(&state, &headers, body, Envelope::Azure).await {
        Ok(predictions) => Json(predictions).into_response(),
        Err(e) => ErrorResponse(Envelope::Azure, e).into_response(),
    }
}

/// `POST /invocations`: one of `dataframe_split`, `dataframe_records`, `instances`, `inputs`; the answer is
/// `{"predictions": ...}`.
pub async fn invocations(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match predict(&state, &headers, body, Envelope::Mlflow).await {
        Ok(predictions) => Json(json!({ "predictions": predictions })).into_response(),
        Err(e) => ErrorResponse(Envelope::Mlflow, e).into_response(),
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"))
}

async fn predict(
    state: &AppState,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    envelope: Envelope,
) -> Result<Value, InferError> {
    if !is_json(headers) {
        return Err(InferError::new(ErrorCode::UnsupportedMediaType, "Expects Content-Type to be application/json"));
    }
    let model = state.models.single().cloned().ok_or_else(|| {
        InferError::not_found(format!("this replica serves {} models; use /v2/models/<name>/infer", state.models.len()))
    })?;
    let body = body_or_error(body, state.max_request_bytes)?;
    let info_model = Arc::clone(&model);
    let (job, form) = offload(body.len(), move || {
        let value: Value = serde_json::from_slice(&body)
            .map_err(|e| InferError::bad_request(format!("the body is not valid JSON: {e}")))?;
        let Value::Object(map) = value else {
            return Err(InferError::bad_request("the body must be a JSON object"));
        };
        to_job(&info_model.info, parse_body(map, envelope)?)
    })
    .await?;
    check_job(&model.info, &job)?;
    let outputs = state.pool.submit(model, job).await?;
    format_predictions(outputs, form)
}

fn parse_body(mut map: Map<String, Value>, envelope: Envelope) -> Result<ScoreData, InferError> {
    match envelope {
        Envelope::Mlflow => parse_invocations(map),
        _ => match map.remove("input_data") {
            Some(input_data) => parse_input_data(input_data),
            None => Err(InferError::bad_request("A value is not provided for the 'input_data' parameter.")),
        },
    }
}
