//! Response bodies of the generation routes: ids, finish reasons, usage and the non-streaming objects.

use serde_json::{Value, json};
use sluice_llm::FinishReason;

/// Which generation route answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// `/chat/completions`: `chat.completion` objects.
    Chat,
    /// `/completions`: `text_completion` objects.
    Completions,
}

impl Api {
    /// A fresh response id: `chatcmpl-<uuid>` or `cmpl-<uuid>`.
    pub fn new_id(self) -> String {
        let prefix = match self {
            Api::Chat => "chatcmpl",
            Api::Completions => "cmpl",
        };
        format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
    }
}

/// Token counts of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    /// Prompt tokens served from the engine's prefix cache (OpenAI's
    /// `prompt_tokens_details.cached_tokens`).
    pub cached_tokens: u32,
}

impl Usage {
    pub fn to_json(self) -> Value {
        json!({
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": u64::from(self.prompt_tokens) + u64::from(self.completion_tokens),
            "prompt_tokens_details": { "cached_tokens": self.cached_tokens },
        })
    }
}

/// The API's `finish_reason`. A deadline that cut generation short reads as `length` (the answer was cut, as by
/// `max_tokens`); non-streaming requests past their deadline get 408 instead.
pub fn finish_reason(reason: FinishReason) -> &'static str {
    match reason {
        FinishReason::Stop => "stop",
        FinishReason::Length | FinishReason::Deadline => "length",
    }
}

/// Seconds since the Unix epoch, for `created`.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Identity of one response, shared by all its chunks.
#[derive(Debug, Clone)]
pub struct Envelope {
    pub api: Api,
    pub id: String,
    pub created: u64,
    pub model: String,
}

impl Envelope {
    pub fn new(api: Api, model: &str) -> Self {
        Self { api, id: api.new_id(), created: unix_now(), model: model.to_owned() }
    }

    /// The whole (non-streaming) answer.
    pub fn complete(&self, text: String, reason: &str, usage: Usage) -> Value {
        let choice = match self.api {
            Api::Chat => json!({
                "index": 0,
                "message": { "role": "assistant", "content": text },
                "finish_reason": reason,
                "logprobs": null,
            }),
            Api::Completions => json!({ "index": 0, "text": text, "finish_reason": reason, "logprobs": null }),
        };
        json!({
            "id": self.id,
            "object": self.object(false),
            "created": self.created,
            "model": self.model,
            "choices": [choice],
            "usage": usage.to_json(),
        })
    }

    pub fn object(&self, chunk: bool) -> &'static str {
        match (self.api, chunk) {
            (Api::Chat, false) => "chat.completion",
            (Api::Chat, true) => "chat.completion.chunk",
            (Api::Completions, _) => "text_completion",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_streaming_shapes() {
        let chat = Envelope::new(Api::Chat, "smol");
        assert!(chat.id.starts_with("chatcmpl-"));
        let usage = Usage { prompt_tokens: 5, completion_tokens: 2, cached_tokens: 4 };
        let body = chat.complete("Hi!".into(), "stop", usage);
        assert_eq!(body["object"], "chat.completion");
        assert_eq!(body["model"], "smol");
        assert_eq!(body["choices"][0]["message"], json!({"role": "assistant", "content": "Hi!"}));
        assert_eq!(body["choices"][0]["finish_reason"], "stop");
        assert_eq!(
            body["usage"],
            json!({"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7, "prompt_tokens_details": {"cached_tokens": 4}})
        );
        assert!(body["created"].as_u64().unwrap() > 1_700_000_000);

        let text = Envelope::new(Api::Completions, "smol");
        assert!(text.id.starts_with("cmpl-"));
        let body = text.complete("once".into(), "length", usage);
        assert_eq!(body["object"], "text_completion");
        assert_eq!(
            body["choices"][0],
            json!({"index": 0, "text": "once", "finish_reason": "length", "logprobs": null})
        );
    }

    #[test]
    fn deadline_reads_as_length() {
        assert_eq!(finish_reason(FinishReason::Deadline), "length");
        assert_eq!(finish_reason(FinishReason::Stop), "stop");
    }
}
