//! Server-sent events for `stream: true`.
//!
//! Framing is exactly `data: <json>\n\n` per event and `data: [DONE]\n\n` at the end: no `event:`, `id:` or
//! comment lines, which azure-ai-inference's parser refuses. **Contract with the gateway** (it bills from the
//! stream): one chunk per generated token carrying the token's text (`delta.content` for chat, `text` for
//! completions, with `finish_reason: null`); the first token's chunk also carries `role: "assistant"`; then one
//! final chunk with an empty delta (chat) or empty text (completions), the `finish_reason` and `usage`; then,
//! with `stream_options.include_usage`, a usage-only chunk with `choices: []` (OpenAI's shape); then `[DONE]`.
//! A stream the engine ends without its `Done` event ends with an `error` event and no `[DONE]`.

use std::collections::VecDeque;
use std::convert::Infallible;

use axum::body::{Body, Bytes};
use serde_json::{Value, json};
use sluice_llm::{GenerationEvent, GenerationStream};

use super::error::ApiError;
use super::response::{Api, Envelope, Usage, finish_reason};

/// The end of every successful stream.
pub const DONE: &[u8] = b"data: [DONE]\n\n";

/// One event: `data: <json>\n\n`.
pub fn frame(json: &str) -> Bytes {
    let mut out = Vec::with_capacity(json.len() + 8);
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(json.as_bytes());
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

/// Turns engine events into SSE frames for one response (no IO, so it is tested alone).
#[derive(Debug)]
pub struct SseWriter {
    envelope: Envelope,
    include_usage: bool,
    /// Token chunks sent so far.
    tokens: u32,
    /// The common start of every chunk: `{"id":..,"object":..,"created":..,"model":..,"choices":[{"index":0,`.
    head: String,
    finished: bool,
}

impl SseWriter {
    pub fn new(envelope: Envelope, include_usage: bool) -> Self {
        let head = format!(
            "{{\"id\":{},\"object\":\"{}\",\"created\":{},\"model\":{},\"choices\":[{{\"index\":0,",
            Value::from(envelope.id.as_str()),
            envelope.object(true),
            envelope.created,
            Value::from(envelope.model.as_str()),
        );
        Self { envelope, include_usage, tokens: 0, head, finished: false }
    }

    /// Token chunks written so far.
    pub fn tokens(&self) -> u32 {
        self.tokens
    }

    /// Whether the stream has ended (after `Done` or a failure).
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// The frames for one engine event; `None` means the engine's stream ended.
    pub fn on_event(&mut self, event: Option<GenerationEvent>) -> Vec<Bytes> {
        if self.finished {
            return Vec::new();
        }
        match event {
            Some(GenerationEvent::Token { text }) => vec![self.token(&text)],
            Some(GenerationEvent::Done { finish_reason: reason, prompt_tokens, completion_tokens, cached_tokens }) => {
                self.finished = true;
                let usage = Usage { prompt_tokens, completion_tokens, cached_tokens };
                let mut frames = vec![self.last(finish_reason(reason), usage)];
                if self.include_usage {
                    frames.push(self.usage_only(usage));
                }
                frames.push(Bytes::from_static(DONE));
                frames
            }
            None => {
                self.finished = true;
                let error = ApiError::internal("the engine stopped before the answer was complete");
                tracing::warn!(tokens = self.tokens, "generation stream ended without its final event");
                vec![frame(&json!({ "error": error.body()["error"] }).to_string())]
            }
        }
    }

    fn token(&mut self, text: &str) -> Bytes {
        let text = Value::from(text);
        let first = self.tokens == 0;
        self.tokens += 1;
        let json = match (self.envelope.api, first) {
            (Api::Chat, true) => {
                format!(
                    "{}\"delta\":{{\"role\":\"assistant\",\"content\":{text}}},\"finish_reason\":null}}]}}",
                    self.head
                )
            }
            (Api::Chat, false) => format!("{}\"delta\":{{\"content\":{text}}},\"finish_reason\":null}}]}}", self.head),
            (Api::Completions, _) => {
                format!("{}\"text\":{text},\"finish_reason\":null,\"logprobs\":null}}]}}", self.head)
            }
        };
        frame(&json)
    }

    fn last(&self, reason: &str, usage: Usage) -> Bytes {
        let choice = match self.envelope.api {
            // A response with no token at all still names the assistant's role once.
            Api::Chat if self.tokens == 0 => {
                json!({ "index": 0, "delta": { "role": "assistant" }, "finish_reason": reason })
            }
            Api::Chat => json!({ "index": 0, "delta": {}, "finish_reason": reason }),
            Api::Completions => json!({ "index": 0, "text": "", "finish_reason": reason, "logprobs": null }),
        };
        frame(&self.chunk(vec![choice], Some(usage)).to_string())
    }

    fn usage_only(&self, usage: Usage) -> Bytes {
        frame(&self.chunk(Vec::new(), Some(usage)).to_string())
    }

    fn chunk(&self, choices: Vec<Value>, usage: Option<Usage>) -> Value {
        let mut chunk = json!({
            "id": self.envelope.id,
            "object": self.envelope.object(true),
            "created": self.envelope.created,
            "model": self.envelope.model,
            "choices": choices,
        });
        if let Some(usage) = usage {
            chunk["usage"] = usage.to_json();
        }
        chunk
    }
}

/// The response body of a streaming request. It owns the engine's stream, so when the client goes away and
/// the server drops the body, the stream is dropped and generation stops.
pub fn sse_body(stream: GenerationStream, writer: SseWriter) -> Body {
    struct State {
        stream: Option<GenerationStream>,
        writer: SseWriter,
        pending: VecDeque<Bytes>,
    }
    let state = State { stream: Some(stream), writer, pending: VecDeque::new() };
    let frames = futures_util::stream::unfold(state, |mut state| async move {
        loop {
            if let Some(frame) = state.pending.pop_front() {
                return Some((Ok::<_, Infallible>(frame), state));
            }
            let stream = state.stream.as_mut()?;
            let event = stream.next().await;
            state.pending.extend(state.writer.on_event(event));
            if state.writer.is_finished() {
                // Release the engine's sequence before the last frames are written.
                state.stream = None;
            }
        }
    });
    Body::from_stream(frames)
}

#[cfg(test)]
#[path = "stream_tests.rs"]
mod tests;
