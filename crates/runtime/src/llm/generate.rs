//! `/chat/completions` and `/completions` bodies, validated into a [`TextRequest`] with no engine in sight.
//!
//! Choices where the APIs leave room: `max_tokens` defaults to [`DEFAULT_MAX_TOKENS`] (generation also ends
//! when the context is full, with `finish_reason: "length"`); `max_completion_tokens` is read as
//! `max_tokens`; penalties, `logprobs`, `logit_bias`, `n`, `best_of`, `echo`, `suffix`, tools and JSON output
//! are accepted only at the values that change nothing (0, false, 1, empty), anything else is 422
//! `parameter_not_supported`; `model` and `user` are accepted and ignored (the replica serves one model).

use serde_json::{Map, Value};
use sluice_llm::ChatMessage;

use super::error::{ApiError, Loc, body_loc};
use super::params::{ExtraParameters, Fields, kind};

/// Tokens generated when the request names no `max_tokens`.
pub const DEFAULT_MAX_TOKENS: u32 = 512;
/// The most `stop` sequences one request may give (as OpenAI).
pub const MAX_STOP_SEQUENCES: usize = 4;

/// Keys `/chat/completions` defines; anything else is an extra parameter.
const CHAT_KEYS: &[&str] = &[
    "messages",
    "model",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "stop",
    "seed",
    "stream",
    "stream_options",
    "n",
    "frequency_penalty",
    "presence_penalty",
    "response_format",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "functions",
    "function_call",
    "logprobs",
    "top_logprobs",
    "logit_bias",
    "user",
];

/// Keys `/completions` defines.
const COMPLETION_KEYS: &[&str] = &[
    "prompt",
    "model",
    "max_tokens",
    "temperature",
    "top_p",
    "stop",
    "seed",
    "stream",
    "stream_options",
    "n",
    "best_of",
    "echo",
    "suffix",
    "frequency_penalty",
    "presence_penalty",
    "logprobs",
    "logit_bias",
    "user",
];

/// What the model is asked to continue.
#[derive(Debug, Clone, PartialEq)]
pub enum Prompt {
    /// A conversation, rendered with the model's chat template.
    Messages(Vec<ChatMessage>),
    /// Raw text, tokenized as is.
    Text(String),
}

/// A validated generation request.
#[derive(Debug, Clone, PartialEq)]
pub struct TextRequest {
    pub prompt: Prompt,
    /// Explicit, else [`DEFAULT_MAX_TOKENS`].
    pub max_tokens: u32,
    pub temperature: f32,
    pub top_p: f32,
    pub seed: Option<u64>,
    pub stop: Vec<String>,
    pub stream: bool,
    /// `stream_options.include_usage`: an extra usage-only chunk before `[DONE]`.
    pub include_usage: bool,
}

/// Validates a `/chat/completions` body.
pub fn parse_chat(body: Map<String, Value>, policy: ExtraParameters) -> Result<TextRequest, ApiError> {
    let mut fields = Fields::new(body, CHAT_KEYS, policy)?;
    let messages = fields.take("messages").ok_or_else(|| ApiError::missing(body_loc("messages")))?;
    let prompt = Prompt::Messages(parse_messages(&messages)?);
    let max_tokens = match fields.whole("max_completion_tokens", 1)? {
        Some(n) => Some(n),
        None => fields.whole("max_tokens", 1)?,
    };
    refuse_unless(
        &mut fields,
        "response_format",
        |v| v.get("type") == Some(&Value::from("text")),
        |v| v.get("type").cloned().unwrap_or_else(|| v.clone()),
    )?;
    refuse_unless(&mut fields, "tools", is_empty, Value::clone)?;
    refuse_unless(&mut fields, "functions", is_empty, Value::clone)?;
    refuse_unless(&mut fields, "tool_choice", |v| v == "none", Value::clone)?;
    refuse_unless(&mut fields, "function_call", |v| v == "none", Value::clone)?;
    fields.boolean("parallel_tool_calls")?;
    refuse_unless(&mut fields, "logprobs", |v| v == &Value::Bool(false), Value::clone)?;
    refuse_unless(&mut fields, "top_logprobs", |v| v == 0, Value::clone)?;
    common(fields, prompt, max_tokens)
}

/// Validates a `/completions` body.
pub fn parse_completions(body: Map<String, Value>, policy: ExtraParameters) -> Result<TextRequest, ApiError> {
    let mut fields = Fields::new(body, COMPLETION_KEYS, policy)?;
    let prompt = match fields.take("prompt") {
        None => return Err(ApiError::missing(body_loc("prompt"))),
        Some(Value::String(text)) => text,
        Some(Value::Array(items)) if items.len() == 1 && items[0].is_string() => {
            items[0].as_str().unwrap_or_default().to_owned()
        }
        Some(value @ Value::Array(_)) => {
            return Err(ApiError::not_supported(body_loc("prompt"), &value, "give one prompt as a string"));
        }
        Some(other) => return Err(ApiError::invalid_value(body_loc("prompt"), &other, "must be a string")),
    };
    let max_tokens = fields.whole("max_tokens", 1)?;
    refuse_unless(&mut fields, "best_of", |v| v == 1, Value::clone)?;
    refuse_unless(&mut fields, "echo", |v| v == &Value::Bool(false), Value::clone)?;
    refuse_unless(&mut fields, "suffix", |v| v == "", Value::clone)?;
    // Completions' `logprobs` is a count; only its absence is supported.
    refuse_unless(&mut fields, "logprobs", |_| false, Value::clone)?;
    common(fields, Prompt::Text(prompt), max_tokens)
}

/// The sampling and streaming parameters both routes share.
fn common(mut fields: Fields, prompt: Prompt, max_tokens: Option<u32>) -> Result<TextRequest, ApiError> {
    fields.string("model")?;
    fields.string("user")?;
    let temperature = fields.number("temperature", 0.0, 2.0)?.unwrap_or(1.0) as f32;
    let top_p = fields.number("top_p", 0.0, 1.0)?.unwrap_or(1.0) as f32;
    for penalty in ["frequency_penalty", "presence_penalty"] {
        if let Some(value) = fields.number(penalty, -2.0, 2.0)?
            && value != 0.0
        {
            return Err(ApiError::not_supported(body_loc(penalty), &Value::from(value), "only 0 is supported"));
        }
    }
    refuse_unless(&mut fields, "n", |v| v == 1, Value::clone)?;
    refuse_unless(&mut fields, "logit_bias", is_empty, Value::clone)?;
    let seed = match fields.take("seed") {
        None => None,
        Some(value) => match (value.as_u64(), value.as_i64()) {
            (Some(n), _) => Some(n),
            // Negative seeds are valid in OpenAI's API; their bits make an equally good seed.
            (None, Some(n)) => Some(n as u64),
            _ => return Err(ApiError::invalid_value(body_loc("seed"), &value, "must be an integer")),
        },
    };
    let stop = parse_stop(fields.take("stop"))?;
    let stream = fields.boolean("stream")?.unwrap_or(false);
    let include_usage = match fields.take("stream_options") {
        None => false,
        Some(Value::Object(options)) => match options.get("include_usage") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                let loc = vec![Value::from("body"), Value::from("stream_options"), Value::from("include_usage")];
                return Err(ApiError::invalid_value(loc, other, "must be true or false"));
            }
        },
        Some(other) => return Err(ApiError::invalid_value(body_loc("stream_options"), &other, "must be an object")),
    };
    Ok(TextRequest {
        prompt,
        max_tokens: max_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
        temperature,
        top_p,
        seed,
        stop,
        stream,
        include_usage,
    })
}

/// Takes `key` and answers 422 `parameter_not_supported` unless it is absent or `supported`; `input` picks
/// what the error's `detail.input` shows.
fn refuse_unless(
    fields: &mut Fields,
    key: &str,
    supported: impl Fn(&Value) -> bool,
    input: impl Fn(&Value) -> Value,
) -> Result<(), ApiError> {
    match fields.take(key) {
        Some(value) if !supported(&value) => {
            let why = match key {
                "response_format" => "only {\"type\": \"text\"} is served".to_owned(),
                "tools" | "functions" | "tool_choice" | "function_call" | "parallel_tool_calls" => {
                    "this model server does not support tool calls".to_owned()
                }
                _ => format!("this model server does not support {key} = {value}"),
            };
            Err(ApiError::not_supported(body_loc(key), &input(&value), why))
        }
        _ => Ok(()),
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Array(items) => items.is_empty(),
        Value::Object(map) => map.is_empty(),
        _ => false,
    }
}

fn parse_stop(value: Option<Value>) -> Result<Vec<String>, ApiError> {
    let stops = match value {
        None => return Ok(Vec::new()),
        Some(Value::String(s)) => vec![Value::String(s)],
        Some(Value::Array(items)) if items.len() <= MAX_STOP_SEQUENCES => items,
        Some(value @ Value::Array(_)) => {
            return Err(ApiError::invalid_value(
                body_loc("stop"),
                &value,
                format!("may hold at most {MAX_STOP_SEQUENCES} sequences"),
            ));
        }
        Some(other) => {
            return Err(ApiError::invalid_value(body_loc("stop"), &other, "must be a string or an array of strings"));
        }
    };
    stops
        .into_iter()
        .enumerate()
        .map(|(i, stop)| match stop {
            Value::String(s) if !s.is_empty() => Ok(s),
            other => Err(ApiError::invalid_value(
                vec![Value::from("body"), Value::from("stop"), Value::from(i)],
                &other,
                "must be a non-empty string",
            )),
        })
        .collect()
}

fn parse_messages(value: &Value) -> Result<Vec<ChatMessage>, ApiError> {
    let Value::Array(items) = value else {
        return Err(ApiError::invalid_value(body_loc("messages"), value, "must be an array of messages"));
    };
    if items.is_empty() {
        return Err(ApiError::invalid_value(body_loc("messages"), value, "must hold at least one message"));
    }
    items.iter().enumerate().map(|(i, item)| parse_message(i, item)).collect()
}

fn message_loc(i: usize, rest: &[Value]) -> Loc {
    let mut loc = vec![Value::from("body"), Value::from("messages"), Value::from(i)];
    loc.extend_from_slice(rest);
    loc
}

fn parse_message(i: usize, item: &Value) -> Result<ChatMessage, ApiError> {
    let Value::Object(message) = item else {
        return Err(ApiError::invalid_value(
            message_loc(i, &[]),
            item,
            format!("must be an object, not {}", kind(item)),
        ));
    };
    let role = match message.get("role") {
        None | Some(Value::Null) => return Err(ApiError::missing(message_loc(i, &[Value::from("role")]))),
        Some(Value::String(role)) => match role.as_str() {
            "system" | "user" | "assistant" | "tool" => role.clone(),
            // OpenAI's newer name for the system role.
            "developer" => "system".to_owned(),
            _ => {
                return Err(ApiError::invalid_value(
                    message_loc(i, &[Value::from("role")]),
                    &Value::from(role.as_str()),
                    "must be one of system, user, assistant, tool",
                ));
            }
        },
        Some(other) => {
            return Err(ApiError::invalid_value(message_loc(i, &[Value::from("role")]), other, "must be a string"));
        }
    };
    if let Some(calls) = message.get("tool_calls").filter(|v| !v.is_null() && !is_empty(v)) {
        return Err(ApiError::not_supported(
            message_loc(i, &[Value::from("tool_calls")]),
            calls,
            "this model server does not support tool calls",
        ));
    }
    let content_loc = || message_loc(i, &[Value::from("content")]);
    let content = match message.get("content") {
        None | Some(Value::Null) if role == "assistant" => String::new(),
        None | Some(Value::Null) => return Err(ApiError::missing(content_loc())),
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(parts)) => {
            let mut texts = Vec::with_capacity(parts.len());
            for (j, part) in parts.iter().enumerate() {
                let part_loc = || message_loc(i, &[Value::from("content"), Value::from(j)]);
                match (part.get("type").and_then(Value::as_str), part.get("text")) {
                    (Some("text"), Some(Value::String(text))) => texts.push(text.as_str()),
                    (Some("text"), _) => {
                        let mut loc = part_loc();
                        loc.push(Value::from("text"));
                        return Err(ApiError::invalid_value(loc, part, "must be a string"));
                    }
                    (Some(other), _) => {
                        return Err(ApiError::not_supported(
                            part_loc(),
                            &Value::from(other),
                            "this model reads text only; content parts must be {\"type\": \"text\", \"text\": ...}",
                        ));
                    }
                    (None, _) => {
                        return Err(ApiError::invalid_value(part_loc(), part, "must be an object with a 'type'"));
                    }
                }
            }
            texts.join("\n")
        }
        Some(other) => {
            return Err(ApiError::invalid_value(content_loc(), other, "must be a string or an array of content parts"));
        }
    };
    Ok(ChatMessage { role, content })
}

#[cfg(test)]
#[path = "generate_tests.rs"]
mod tests;
