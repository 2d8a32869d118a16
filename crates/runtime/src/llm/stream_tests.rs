//! SSE framing and the one-chunk-per-token contract, driven with synthetic engine events.

use serde_json::{Value, json};
use sluice_llm::{FinishReason, GenerationEvent};

use super::*;

fn token(text: &str) -> Option<GenerationEvent> {
    Some(GenerationEvent::Token { text: text.to_owned() })
}

fn done(reason: FinishReason, completion_tokens: u32) -> Option<GenerationEvent> {
    Some(GenerationEvent::Done { finish_reason: reason, prompt_tokens: 9, completion_tokens, cached_tokens: 0 })
}

/// Runs `events` through a writer and splits the output into events, checking the framing on the way.
fn run(api: Api, include_usage: bool, events: Vec<Option<GenerationEvent>>) -> (Vec<Value>, bool) {
    let mut writer = SseWriter::new(Envelope::new(api, "smol\"2"), include_usage);
    let mut raw = Vec::new();
    for event in events {
        for frame in writer.on_event(event) {
            raw.extend_from_slice(&frame);
        }
    }
    let text = String::from_utf8(raw).unwrap();
    assert!(text.ends_with("\n\n"), "{text:?}");
    let mut chunks = Vec::new();
    let mut saw_done = false;
    for event in text.split_terminator("\n\n") {
        assert!(!event.contains('\n'), "one line per event: {event:?}");
        let data = event.strip_prefix("data: ").unwrap_or_else(|| panic!("not a data line: {event:?}"));
        assert!(!saw_done, "nothing after [DONE]");
        if data == "[DONE]" {
            saw_done = true;
        } else {
            chunks.push(serde_json::from_str(data).unwrap_or_else(|e| panic!("{data}: {e}")));
        }
    }
    (chunks, saw_done)
}

#[test]
fn chat_stream_sends_one_content_chunk_per_token_then_usage() {
    let events = vec![token("Hel"), token(""), token("lo \"x\"\n"), done(FinishReason::Stop, 3)];
    let (chunks, done) = run(Api::Chat, false, events);
    assert!(done);
    assert_eq!(chunks.len(), 4);
    let with_content = chunks.iter().filter(|c| c["choices"][0]["delta"].get("content").is_some()).count();
    assert_eq!(with_content, 3);
    assert_eq!(chunks[0]["choices"][0]["delta"], json!({"role": "assistant", "content": "Hel"}));
    assert_eq!(chunks[1]["choices"][0]["delta"], json!({"content": ""}));
    assert_eq!(chunks[2]["choices"][0]["delta"], json!({"content": "lo \"x\"\n"}));
    for chunk in &chunks[..3] {
        assert_eq!(chunk["object"], "chat.completion.chunk");
        assert_eq!(chunk["model"], "smol\"2");
        assert_eq!(chunk["id"], chunks[3]["id"]);
        assert_eq!(chunk["choices"][0]["finish_reason"], Value::Null);
        assert!(chunk.get("usage").is_none());
    }
    assert_eq!(chunks[3]["choices"][0], json!({"index": 0, "delta": {}, "finish_reason": "stop"}));
    assert_eq!(
        chunks[3]["usage"],
        json!({"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12, "prompt_tokens_details": {"cached_tokens": 0}})
    );
}

#[test]
fn include_usage_adds_a_choiceless_chunk() {
    let (chunks, done) = run(Api::Chat, true, vec![token("a"), done(FinishReason::Length, 1)]);
    assert!(done);
    assert_eq!(chunks.len(), 3);
    assert_eq!(chunks[1]["choices"][0]["finish_reason"], "length");
    assert_eq!(chunks[2]["choices"], json!([]));
    assert_eq!(chunks[2]["usage"]["completion_tokens"], 1);
}

#[test]
fn a_tokenless_answer_still_names_the_role() {
    let (chunks, _) = run(Api::Chat, false, vec![done(FinishReason::Stop, 0)]);
    assert_eq!(chunks.len(), 1);
    assert_eq!(chunks[0]["choices"][0]["delta"], json!({"role": "assistant"}));
}

#[test]
fn completions_stream_uses_text_choices() {
    let (chunks, done) = run(Api::Completions, false, vec![token("x"), token("y"), done(FinishReason::Deadline, 2)]);
    assert!(done);
    assert_eq!(chunks[0]["object"], "text_completion");
    assert_eq!(chunks[0]["choices"][0], json!({"index": 0, "text": "x", "finish_reason": null, "logprobs": null}));
    assert_eq!(chunks[2]["choices"][0]["finish_reason"], "length");
    assert_eq!(chunks[2]["choices"][0]["text"], "");
    assert_eq!(chunks[2]["usage"]["total_tokens"], 11);
}

#[test]
fn an_engine_failure_ends_with_an_error_event_and_no_done() {
    let (chunks, done) = run(Api::Chat, false, vec![token("a"), None, token("ignored")]);
    assert!(!done);
    assert_eq!(chunks.len(), 2);
    assert_eq!(chunks[1]["error"]["code"], "internal_error");
}
