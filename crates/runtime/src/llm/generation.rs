//! The `/chat/completions` and `/completions` handlers: validate, render the prompt and submit it on a
//! blocking thread, then answer whole or as server-sent events.
//!
//! Dropping the [`GenerationStream`] cancels the sequence in the engine, so a handler dropped by a client that
//! went away (non-streaming), or a streaming body dropped by the server, stops generation.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use sluice_llm::{FinishReason, GenerationEvent, GenerationRequest, GenerationStream, Generator, SubmitError};

use super::error::ApiError;
use super::generate::{Prompt, TextRequest, parse_chat, parse_completions};
use super::response::{Api, Envelope, Usage, finish_reason};
use super::routes::prelude;
use super::state::LlmState;
use super::stream::{SseWriter, sse_body};

pub use sluice_domain::engine_headers::{
    COMPLETION_TOKENS as COMPLETION_TOKENS_HEADER, PROMPT_TOKENS as PROMPT_TOKENS_HEADER,
};

pub async fn chat_completions(
    State(state): State<Arc<LlmState>>,
    query: RawQuery,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    generate(&state, Api::Chat, query, headers, body).await.unwrap_or_else(IntoResponse::into_response)
}

pub async fn completions(
    State(state): State<Arc<LlmState>>,
    query: RawQuery,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    generate(&state, Api::Completions, query, headers, body).await.unwrap_or_else(IntoResponse::into_response)
}

async fn generate(
    state: &LlmState,
    api: Api,
    query: RawQuery,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let route = match api {
        Api::Chat => "/chat/completions",
        Api::Completions => "/completions",
    };
    let generator = state.generator(route, api == Api::Chat)?.clone();
    let prelude = prelude(&query, &headers, body, state.max_request_bytes)?;
    let request = match api {
        Api::Chat => parse_chat(prelude.body, prelude.policy)?,
        Api::Completions => parse_completions(prelude.body, prelude.policy)?,
    };
    let (stream_wanted, include_usage) = (request.stream, request.include_usage);
    let deadline = prelude.deadline;
    // Rendering the template and tokenizing a long prompt take milliseconds: off the async threads.
    let stream = tokio::task::spawn_blocking(move || start(&generator, request, deadline))
        .await
        .map_err(|e| ApiError::internal(format!("the prompt could not be prepared: {e}")))?
        .map_err(|e| count_refusal(state, e))?;
    let envelope = Envelope::new(api, &state.name);
    if stream_wanted {
        let prompt_tokens = stream.prompt_tokens;
        let writer = SseWriter::new(envelope, include_usage);
        let mut response = Response::new(sse_body(stream, writer));
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        headers.insert(PROMPT_TOKENS_HEADER, HeaderValue::from(prompt_tokens));
        return Ok(response);
    }
    let answer = collect(stream).await?;
    let usage = answer.usage;
    if answer.reason == FinishReason::Deadline {
        state.counters.deadline_exceeded.fetch_add(1, Ordering::Relaxed);
        // Whoever set the deadline has stopped waiting; the counts still tell the gateway what was spent.
        return Err(ApiError::deadline_exceeded()
            .with_header(PROMPT_TOKENS_HEADER, usage.prompt_tokens)
            .with_header(COMPLETION_TOKENS_HEADER, usage.completion_tokens));
    }
    let body = envelope.complete(answer.text, finish_reason(answer.reason), usage);
    let mut response = (StatusCode::OK, axum::Json(body)).into_response();
    let headers = response.headers_mut();
    headers.insert(PROMPT_TOKENS_HEADER, HeaderValue::from(usage.prompt_tokens));
    headers.insert(COMPLETION_TOKENS_HEADER, HeaderValue::from(usage.completion_tokens));
    Ok(response)
}

fn count_refusal(state: &LlmState, error: ApiError) -> ApiError {
    if error.status == StatusCode::TOO_MANY_REQUESTS {
        state.counters.rejected_queue_full.fetch_add(1, Ordering::Relaxed);
    }
    error
}

/// Renders the prompt and submits it (blocking: template rendering and tokenization).
fn start(generator: &Generator, request: TextRequest, deadline: Option<Instant>) -> Result<GenerationStream, ApiError> {
    let prompt = match request.prompt {
        Prompt::Messages(messages) => generator.apply_chat_template(&messages).map_err(|e| {
            ApiError::bad_request(format!("the messages cannot be rendered with the model's chat template: {e}"))
        })?,
        Prompt::Text(text) => text,
    };
    let request = GenerationRequest {
        prompt,
        add_bos: true,
        max_tokens: request.max_tokens,
        temperature: request.temperature,
        top_p: request.top_p,
        seed: request.seed,
        stop: request.stop,
        deadline,
    };
    generator.submit(request).map_err(submit_error)
}

/// The HTTP answer to an engine's refusal.
pub fn submit_error(error: SubmitError) -> ApiError {
    match error {
        SubmitError::QueueFull { capacity } => ApiError::queue_full(capacity),
        SubmitError::PromptTooLong { prompt_tokens, limit } => ApiError::context_length_exceeded(format!(
            "this model's maximum context length is {limit} tokens; the prompt holds {prompt_tokens} tokens"
        ))
        .with_header(PROMPT_TOKENS_HEADER, prompt_tokens),
        SubmitError::EmptyPrompt => ApiError::bad_request("the prompt is empty"),
        SubmitError::Stopped => ApiError::unavailable("the engine is stopping"),
    }
}

/// A whole answer.
struct Answer {
    text: String,
    reason: FinishReason,
    usage: Usage,
}

async fn collect(mut stream: GenerationStream) -> Result<Answer, ApiError> {
    let mut text = String::new();
    while let Some(event) = stream.next().await {
        match event {
            GenerationEvent::Token { text: piece } => text.push_str(&piece),
            GenerationEvent::Done { finish_reason, prompt_tokens, completion_tokens, cached_tokens } => {
                let usage = Usage { prompt_tokens, completion_tokens, cached_tokens };
                return Ok(Answer { text, reason: finish_reason, usage });
            }
        }
    }
    Err(ApiError::internal("the engine stopped before the answer was complete"))
}
