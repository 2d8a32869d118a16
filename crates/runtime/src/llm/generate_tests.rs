//! Request validation for `/chat/completions` and `/completions`, without a model.

use serde_json::{Value, json};

use super::*;

fn chat(body: Value) -> Result<TextRequest, ApiError> {
    parse_chat(body.as_object().expect("object").clone(), ExtraParameters::Error)
}

fn completions(body: Value) -> Result<TextRequest, ApiError> {
    parse_completions(body.as_object().expect("object").clone(), ExtraParameters::Error)
}

/// Asserts a 422 with `code` whose `detail.loc` is `loc`.
fn assert_422(result: Result<TextRequest, ApiError>, code: &str, loc: Value) -> ApiError {
    let error = result.expect_err("should be refused");
    assert_eq!((error.status.as_u16(), error.code), (422, code), "{}", error.message);
    assert_eq!(error.body()["detail"]["loc"], loc, "{}", error.message);
    error
}

fn message(role: &str, content: &str) -> ChatMessage {
    ChatMessage { role: role.to_owned(), content: content.to_owned() }
}

#[test]
fn minimal_chat_gets_the_defaults() {
    let request = chat(json!({"messages": [{"role": "user", "content": "hi"}]})).unwrap();
    assert_eq!(
        request,
        TextRequest {
            prompt: Prompt::Messages(vec![message("user", "hi")]),
            max_tokens: DEFAULT_MAX_TOKENS,
            temperature: 1.0,
            top_p: 1.0,
            seed: None,
            stop: vec![],
            stream: false,
            include_usage: false,
        }
    );
}

#[test]
fn every_supported_chat_parameter() {
    let request = chat(json!({
        "messages": [
            {"role": "developer", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}], "name": "x"},
            {"role": "assistant", "content": null, "tool_calls": []},
            {"role": "tool", "content": "42", "tool_call_id": "c1"}
        ],
        "model": "anything", "user": "u1", "max_tokens": 7, "temperature": 0, "top_p": 0.5, "seed": -1,
        "stop": ["\n", "END"], "stream": true, "stream_options": {"include_usage": true}, "n": 1,
        "frequency_penalty": 0, "presence_penalty": 0.0, "response_format": {"type": "text"}, "tools": [],
        "tool_choice": "none", "parallel_tool_calls": false, "logprobs": false, "top_logprobs": 0,
        "logit_bias": {}
    }))
    .unwrap();
    assert_eq!(
        request.prompt,
        Prompt::Messages(vec![
            message("system", "be brief"),
            message("user", "a\nb"),
            message("assistant", ""),
            message("tool", "42")
        ])
    );
    assert_eq!((request.max_tokens, request.temperature, request.top_p), (7, 0.0, 0.5));
    assert_eq!(request.seed, Some(u64::MAX));
    assert_eq!(request.stop, vec!["\n".to_owned(), "END".to_owned()]);
    assert!(request.stream && request.include_usage);
}

#[test]
fn max_completion_tokens_is_max_tokens() {
    let request = chat(json!({"messages": [{"role": "user", "content": "hi"}], "max_completion_tokens": 3})).unwrap();
    assert_eq!(request.max_tokens, 3);
}

#[test]
fn unknown_keys_are_refused_with_their_location_and_value() {
    let error = assert_422(
        chat(json!({"messages": [{"role": "user", "content": "hi"}], "foo": {"bar": 1}})),
        "extra_parameters_not_allowed",
        json!(["body", "foo"]),
    );
    assert_eq!(error.body()["detail"]["input"], json!({"bar": 1}));
    let dropped = parse_chat(
        json!({"messages": [{"role": "user", "content": "hi"}], "foo": 1}).as_object().unwrap().clone(),
        ExtraParameters::Drop,
    );
    assert!(dropped.is_ok());
}

#[test]
fn unsupported_features_are_422_parameter_not_supported() {
    let base = || json!({"messages": [{"role": "user", "content": "hi"}]});
    let with = |key: &str, value: Value| {
        let mut body = base();
        body[key] = value;
        chat(body)
    };
    let error = assert_422(
        with("response_format", json!({"type": "json_object"})),
        "parameter_not_supported",
        json!(["body", "response_format"]),
    );
    assert_eq!(error.body()["detail"]["input"], "json_object");
    let tool = json!([{"type": "function", "function": {"name": "f"}}]);
    assert_422(with("tools", tool), "parameter_not_supported", json!(["body", "tools"]));
    assert_422(with("tool_choice", json!("auto")), "parameter_not_supported", json!(["body", "tool_choice"]));
    assert_422(with("n", json!(2)), "parameter_not_supported", json!(["body", "n"]));
    assert_422(with("logprobs", json!(true)), "parameter_not_supported", json!(["body", "logprobs"]));
    assert_422(with("presence_penalty", json!(0.5)), "parameter_not_supported", json!(["body", "presence_penalty"]));
    assert_422(with("logit_bias", json!({"1": 5})), "parameter_not_supported", json!(["body", "logit_bias"]));
}

#[test]
fn out_of_range_values_are_422_invalid_parameter_value() {
    let base = || json!({"messages": [{"role": "user", "content": "hi"}]});
    let with = |key: &str, value: Value| {
        let mut body = base();
        body[key] = value;
        chat(body)
    };
    assert_422(with("temperature", json!(2.5)), "invalid_parameter_value", json!(["body", "temperature"]));
    assert_422(with("temperature", json!("hot")), "invalid_parameter_value", json!(["body", "temperature"]));
    assert_422(with("top_p", json!(-0.1)), "invalid_parameter_value", json!(["body", "top_p"]));
    assert_422(with("max_tokens", json!(0)), "invalid_parameter_value", json!(["body", "max_tokens"]));
    assert_422(with("max_tokens", json!(1.5)), "invalid_parameter_value", json!(["body", "max_tokens"]));
    assert_422(with("stop", json!(["a", "b", "c", "d", "e"])), "invalid_parameter_value", json!(["body", "stop"]));
    assert_422(with("stop", json!(["a", ""])), "invalid_parameter_value", json!(["body", "stop", 1]));
    assert_422(with("seed", json!("1")), "invalid_parameter_value", json!(["body", "seed"]));
    assert_422(with("stream", json!("yes")), "invalid_parameter_value", json!(["body", "stream"]));
    assert_422(
        with("stream_options", json!({"include_usage": 1})),
        "invalid_parameter_value",
        json!(["body", "stream_options", "include_usage"]),
    );
    assert_422(with("model", json!(3)), "invalid_parameter_value", json!(["body", "model"]));
}

#[test]
fn messages_are_checked_one_by_one() {
    assert_422(chat(json!({})), "missing_parameter", json!(["body", "messages"]));
    assert_422(chat(json!({"messages": []})), "invalid_parameter_value", json!(["body", "messages"]));
    assert_422(chat(json!({"messages": "hi"})), "invalid_parameter_value", json!(["body", "messages"]));
    assert_422(
        chat(json!({"messages": [{"content": "hi"}]})),
        "missing_parameter",
        json!(["body", "messages", 0, "role"]),
    );
    assert_422(
        chat(json!({"messages": [{"role": "user", "content": "a"}, {"role": "robot", "content": "b"}]})),
        "invalid_parameter_value",
        json!(["body", "messages", 1, "role"]),
    );
    assert_422(
        chat(json!({"messages": [{"role": "user"}]})),
        "missing_parameter",
        json!(["body", "messages", 0, "content"]),
    );
    let image = json!({"messages": [{"role": "user", "content": [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    ]}]});
    let error = assert_422(chat(image), "parameter_not_supported", json!(["body", "messages", 0, "content", 1]));
    assert_eq!(error.body()["detail"]["input"], "image_url");
    assert_422(
        chat(json!({"messages": [{"role": "assistant", "content": null, "tool_calls": [{"id": "1"}]}]})),
        "parameter_not_supported",
        json!(["body", "messages", 0, "tool_calls"]),
    );
}

#[test]
fn completions_take_one_text_prompt() {
    let request = completions(json!({"prompt": "Once upon", "max_tokens": 5, "echo": false, "best_of": 1})).unwrap();
    assert_eq!(request.prompt, Prompt::Text("Once upon".to_owned()));
    assert_eq!(request.max_tokens, 5);
    let request = completions(json!({"prompt": ["one"]})).unwrap();
    assert_eq!(request.prompt, Prompt::Text("one".to_owned()));
    assert_422(completions(json!({})), "missing_parameter", json!(["body", "prompt"]));
    assert_422(completions(json!({"prompt": ["a", "b"]})), "parameter_not_supported", json!(["body", "prompt"]));
    assert_422(completions(json!({"prompt": [1, 2, 3]})), "parameter_not_supported", json!(["body", "prompt"]));
    assert_422(completions(json!({"prompt": "x", "echo": true})), "parameter_not_supported", json!(["body", "echo"]));
    assert_422(
        completions(json!({"prompt": "x", "logprobs": 2})),
        "parameter_not_supported",
        json!(["body", "logprobs"]),
    );
    // `messages` belongs to chat only.
    assert_422(
        completions(json!({"prompt": "x", "messages": []})),
        "extra_parameters_not_allowed",
        json!(["body", "messages"]),
    );
}
