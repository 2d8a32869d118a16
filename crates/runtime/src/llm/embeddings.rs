//! The `/embeddings` handler: validate, wait for the embedder (bounded queue, deadline), embed on a blocking
//! thread, answer in the asked encoding.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode};
use sluice_llm::LlmError;

use super::embed::{embeddings_body, parse_embeddings};
use super::error::ApiError;
use super::generation::PROMPT_TOKENS_HEADER;
use super::routes::prelude;
use super::state::LlmState;

pub async fn embeddings(
    State(state): State<Arc<LlmState>>,
    query: RawQuery,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    embed(&state, query, headers, body).await.unwrap_or_else(IntoResponse::into_response)
}

async fn embed(
    state: &LlmState,
    query: RawQuery,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let engine = state.embedder("/embeddings")?;
    let prelude = prelude(&query, &headers, body, state.max_request_bytes)?;
    let request = parse_embeddings(prelude.body, prelude.policy, engine.embedder.info().dimensions)?;
    // Admission is bounded: a full queue answers 429 at once rather than growing.
    let Ok(_admitted) = engine.admission.clone().try_acquire_owned() else {
        state.counters.rejected_queue_full.fetch_add(1, Ordering::Relaxed);
        return Err(ApiError::queue_full(engine.queue_capacity));
    };
    let running = engine.running.clone().acquire_owned();
    let permit = match prelude.deadline {
        Some(deadline) => match tokio::time::timeout_at(deadline.into(), running).await {
            Ok(permit) => permit,
            Err(_) => {
                state.counters.deadline_exceeded.fetch_add(1, Ordering::Relaxed);
                return Err(ApiError::deadline_exceeded());
            }
        },
        None => running.await,
    }
    .map_err(|_| ApiError::unavailable("the embedder is stopping"))?;
    let embedder = engine.embedder.clone();
    let inputs = request.inputs;
    let input_count = inputs.len() as u64;
    // The permit goes with the work, so a client that leaves does not let a second batch start beside it.
    let result = tokio::task::spawn_blocking(move || {
        let result = embedder.embed(&inputs);
        drop(permit);
        result
    })
    .await
    .map_err(|e| ApiError::internal(format!("the embedding task failed: {e}")))?;
    let embeddings = result.map_err(embed_error)?;
    let counters = &engine.counters;
    counters.requests_completed.fetch_add(1, Ordering::Relaxed);
    counters.inputs.fetch_add(input_count, Ordering::Relaxed);
    counters.prompt_tokens.fetch_add(u64::from(embeddings.prompt_tokens), Ordering::Relaxed);
    let body = embeddings_body(&state.name, &embeddings.vectors, request.encoding, embeddings.prompt_tokens);
    let mut response = (StatusCode::OK, axum::Json(body)).into_response();
    response.headers_mut().insert(PROMPT_TOKENS_HEADER, HeaderValue::from(embeddings.prompt_tokens));
    Ok(response)
}

fn embed_error(error: LlmError) -> ApiError {
    match error {
        LlmError::InputTooLong { index, tokens, limit } => ApiError::context_length_exceeded(format!(
            "input[{index}] holds {tokens} tokens; this model reads at most {limit} tokens per input"
        )),
        other => ApiError::internal(format!("embedding failed: {other}")),
    }
}
