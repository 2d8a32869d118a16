//! The LLM replica's router: health, `/info`, `/metrics`, the generation and embedding routes (each with and
//! without `/v1`), and JSON 404/405 answers in the API's error shape.

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{HeaderMap, Method, StatusCode, Uri};
use serde_json::{Map, Value, json};

use super::embeddings::embeddings;
use super::error::ApiError;
use super::generation::{chat_completions, completions};
use super::metrics;
use super::params::{ExtraParameters, check_api_version, deadline, parse_object};
use super::state::LlmState;

/// The replica's routes on `state`.
pub fn router(state: Arc<LlmState>) -> Router {
    let limit = state.max_request_bytes;
    Router::new()
        .route("/", get(|| async { "Healthy" }))
        .route("/info", get(info))
        .route("/metrics", get(metrics::metrics))
        .route("/chat/completions", post(chat_completions))
        .route("/v1/chat/completions", post(chat_completions))
        .route("/completions", post(completions))
        .route("/v1/completions", post(completions))
        .route("/embeddings", post(embeddings))
        .route("/v1/embeddings", post(embeddings))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // Applied while the body is read, so an oversized upload is cut off early.
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

async fn info(State(state): State<Arc<LlmState>>) -> Json<Value> {
    Json(json!({
        "model_name": state.name,
        "model_type": state.task.model_type(),
        "model_provider_name": "Sluice",
    }))
}

async fn not_found(uri: Uri) -> Response {
    ApiError::not_found(format!("no route for {}", uri.path())).into_response()
}

async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not allowed on {}", uri.path()),
    )
    .into_response()
}

/// What every inference request yields once its envelope is checked: the body's fields, the unknown-key
/// policy, and the deadline.
pub struct Prelude {
    pub body: Map<String, Value>,
    pub policy: ExtraParameters,
    pub deadline: Option<Instant>,
}

/// Checks `api-version`, `extra-parameters`, `x-sluice-deadline-ms` and the body (size, JSON object).
pub fn prelude(
    query: &RawQuery,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    limit: usize,
) -> Result<Prelude, ApiError> {
    let received = Instant::now();
    check_api_version(query.0.as_deref())?;
    let policy = ExtraParameters::from_headers(headers)?;
    let deadline = deadline(headers, received)?;
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::payload_too_large(limit)
        } else {
            ApiError::bad_request(format!("cannot read the request body: {}", rejection.body_text()))
        }
    })?;
    Ok(Prelude { body: parse_object(&body)?, policy, deadline })
}
