//! Generation tests on the real SmolLM2-135M-Instruct GGUF (provisioned from PyPI).

mod common;

use std::time::{Duration, Instant};

use sluice_llm::{
    ChatMessage, FinishReason, GenerationEvent, GenerationRequest, GenerationStream, Generator, GeneratorConfig,
    SubmitError,
};

fn load(config: GeneratorConfig) -> Generator {
    Generator::load(&common::smollm2(), config).expect("load SmolLM2")
}

fn default_generator() -> Generator {
    load(GeneratorConfig { context_length: Some(512), ..GeneratorConfig::default() })
}

fn chat(generator: &Generator, user: &str) -> String {
    generator.apply_chat_template(&[ChatMessage::new("user", user)]).expect("chat template")
}

#[derive(Debug, Clone, PartialEq)]
struct Output {
    pieces: Vec<String>,
    finish: FinishReason,
    prompt_tokens: u32,
    completion_tokens: u32,
}

impl Output {
    fn text(&self) -> String {
        self.pieces.concat()
    }
}

async fn collect(mut stream: GenerationStream) -> Output {
    let mut pieces = Vec::new();
    loop {
        match stream.next().await.expect("stream ended without Done") {
            GenerationEvent::Token { text } => pieces.push(text),
            GenerationEvent::Done { finish_reason, prompt_tokens, completion_tokens, .. } => {
                assert_eq!(prompt_tokens, stream.prompt_tokens);
                assert_eq!(completion_tokens as usize, pieces.len());
                assert!(stream.next().await.is_none());
                return Output { pieces, finish: finish_reason, prompt_tokens, completion_tokens };
            }
        }
    }
}

async fn run(generator: &Generator, request: GenerationRequest) -> Output {
    collect(generator.submit(request).expect("submit")).await
}

fn greedy(prompt: &str, max_tokens: u32) -> GenerationRequest {
    GenerationRequest { add_bos: false, ..GenerationRequest::new(prompt, max_tokens) }
}

async fn wait_for(mut condition: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + Duration::from_secs(30);
    while Instant::now() < until {
        if condition() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_template_and_deterministic_greedy() {
    let generator = default_generator();
    let info = generator.info().clone();
    assert!(info.has_chat_template);
    assert_eq!(info.architecture, "llama");
    assert_eq!(info.context_length, 512);
    assert!(info.training_context_length >= 2048);
    assert_eq!(info.embedding_length, 576);
    assert!(!info.name.is_empty());

    let prompt = chat(&generator, "What is the capital of France?");
    assert!(prompt.contains("<|im_start|>user\nWhat is the capital of France?<|im_end|>"), "{prompt:?}");
    assert!(prompt.ends_with("<|im_start|>assistant\n"), "generation prompt appended: {prompt:?}");
    assert!(generator.count_tokens(&prompt).unwrap() > 8);

    let first = run(&generator, greedy(&prompt, 32)).await;
    let second = run(&generator, greedy(&prompt, 32)).await;
    assert_eq!(first, second);
    let text = first.text();
    eprintln!("answer: {text:?} ({:?})", first.finish);
    assert!(text.contains("Paris"), "{text:?}");
    assert!(!text.contains("<|im_end|>"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn greedy_is_the_same_alone_and_batched() {
    let generator = default_generator();
    let prompt = chat(&generator, "Write a short poem about the sea.");
    let alone = run(&generator, greedy(&prompt, 48)).await;

    let others =
        ["Explain photosynthesis in two sentences.", "List three prime numbers.", "Tell me a joke about computers."];
    let mut streams = Vec::new();
    for other in others {
        let p = chat(&generator, other);
        streams.push(generator.submit(greedy(&p, 64)).unwrap());
    }
    // Submitted while the others are prefilling/decoding.
    let target = generator.submit(greedy(&prompt, 48)).unwrap();
    let mut handles: Vec<_> = streams.into_iter().map(|s| tokio::spawn(collect(s))).collect();
    handles.push(tokio::spawn(collect(target)));
    let mut outputs = Vec::new();
    for handle in handles {
        outputs.push(handle.await.unwrap());
    }
    let batched = outputs.pop().unwrap();
    assert_eq!(alone.text(), batched.text());
    assert_eq!(alone, batched);

    // And the others are the same as when run alone.
    for (other, batched_output) in others.iter().zip(outputs) {
        let p = chat(&generator, other);
        let alone = run(&generator, greedy(&p, 64)).await;
        assert_eq!(alone, batched_output, "prompt {other:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeded_sampling_is_reproducible() {
    let generator = default_generator();
    let prompt = chat(&generator, "Invent a name for a new planet.");
    let request = |seed| GenerationRequest { temperature: 0.8, top_p: 0.95, seed: Some(seed), ..greedy(&prompt, 24) };
    let a = run(&generator, request(42)).await;
    let b = run(&generator, request(42)).await;
    assert_eq!(a, b);
    let mut differs = false;
    for seed in [1, 2, 3, 4] {
        differs |= run(&generator, request(seed)).await.text() != a.text();
    }
    assert!(differs, "different seeds should give different samples");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_tokens_gives_length() {
    let generator = default_generator();
    let prompt = chat(&generator, "Write a long story about a dragon.");
    let out = run(&generator, greedy(&prompt, 7)).await;
    assert_eq!(out.finish, FinishReason::Length);
    assert_eq!(out.pieces.len(), 7);
    assert_eq!(out.completion_tokens, 7);
    assert_eq!(
        out.prompt_tokens,
        generator.count_tokens(&prompt).unwrap(),
        "prompt tokens match count_tokens for add_bos=false"
    );
    let zero = run(&generator, greedy(&prompt, 0)).await;
    assert_eq!(zero.finish, FinishReason::Length);
    assert_eq!(zero.completion_tokens, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn context_full_gives_length() {
    let generator =
        load(GeneratorConfig { context_length: Some(64), max_batch_sequences: 2, ..GeneratorConfig::default() });
    let prompt = chat(&generator, "Write a long story about a dragon.");
    let prompt_tokens = generator.count_tokens(&prompt).unwrap();
    let out = run(&generator, greedy(&prompt, 500)).await;
    assert_eq!(out.finish, FinishReason::Length);
    assert_eq!(out.completion_tokens, 64 - prompt_tokens);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_string_stops_and_is_not_emitted() {
    let generator = default_generator();
    let prompt = chat(&generator, "Write a long story about a dragon.");
    let free = run(&generator, greedy(&prompt, 40)).await.text();
    // A word from the middle of the free-running output.
    let words: Vec<&str> = free.split_whitespace().collect();
    assert!(words.len() > 8, "{free:?}");
    let stop = words[words.len() / 2].to_string();
    let expected = &free[..free.find(&stop).unwrap()];

    let out =
        run(&generator, GenerationRequest { stop: vec![stop.clone(), "NEVER-APPEARS".into()], ..greedy(&prompt, 40) })
            .await;
    assert_eq!(out.finish, FinishReason::Stop);
    assert_eq!(out.text(), expected, "stop {stop:?} in {free:?}");
    assert!(!out.text().contains(&stop));
    assert!(out.completion_tokens < 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_errors() {
    let generator = load(GeneratorConfig {
        context_length: Some(64),
        max_batch_sequences: 1,
        queue_capacity: 1,
        ..GeneratorConfig::default()
    });
    let long = "the quick brown fox jumps over the lazy dog ".repeat(20);
    match generator.submit(greedy(&long, 4)) {
        Err(e @ SubmitError::PromptTooLong { prompt_tokens, limit }) => {
            assert_eq!(limit, 64);
            assert!(prompt_tokens > 64);
            let message = e.to_string();
            assert!(message.contains("64"), "{message}");
            assert!(message.contains(&prompt_tokens.to_string()), "{message}");
        }
        other => panic!("expected PromptTooLong, got {other:?}"),
    }
    assert!(matches!(generator.submit(greedy("", 4)), Err(SubmitError::EmptyPrompt)));

    // Queue full: one running, one waiting, the third is refused.
    let prompt = chat(&generator, "Count from one to a hundred.");
    let mut running = generator.submit(greedy(&prompt, 40)).unwrap();
    assert!(matches!(running.next().await, Some(GenerationEvent::Token { .. })));
    let waiting = generator.submit(greedy(&prompt, 5)).unwrap();
    match generator.submit(greedy(&prompt, 5)) {
        Err(e @ SubmitError::QueueFull { capacity: 1 }) => {
            assert!(e.to_string().contains("retry"));
        }
        other => panic!("expected QueueFull, got {other:?}"),
    }
    assert_eq!(generator.stats().waiting, 1);
    drop(running);
    let out = collect(waiting).await;
    assert_eq!(out.completion_tokens, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_stream_cancels_it() {
    let generator = default_generator();
    let prompt = chat(&generator, "Write a long story about a dragon.");
    let before = generator.stats();
    let mut stream = generator.submit(greedy(&prompt, 200)).unwrap();
    let other = generator.submit(greedy(&prompt, 30)).unwrap();
    for _ in 0..3 {
        assert!(matches!(stream.next().await, Some(GenerationEvent::Token { .. })));
    }
    drop(stream);
    let out = collect(other).await;
    assert_eq!(out.completion_tokens, 30);
    assert!(
        wait_for(|| generator.stats().cancelled_total == before.cancelled_total + 1).await,
        "{:?}",
        generator.stats()
    );
    assert!(wait_for(|| generator.stats().active_sequences == 0).await);
    let stats = generator.stats();
    assert_eq!(stats.kv_cache_tokens_used, 0, "{stats:?}");
    assert_eq!(stats.completed_total, before.completed_total + 1);

    // Still serving.
    let again = run(&generator, greedy(&prompt, 5)).await;
    assert_eq!(again.completion_tokens, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadline_ends_generation() {
    let generator = default_generator();
    let prompt = chat(&generator, "Write a long story about a dragon.");
    let out = run(
        &generator,
        GenerationRequest { deadline: Some(Instant::now() + Duration::from_millis(150)), ..greedy(&prompt, 2000) },
    )
    .await;
    assert_eq!(out.finish, FinishReason::Deadline);
    assert!(out.completion_tokens < 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_concurrent_streams_complete() {
    let generator = default_generator();
    let topics = ["cats", "rivers", "mountains", "robots", "bread", "music", "winter", "stars"];
    let mut handles = Vec::new();
    for topic in topics {
        let prompt = chat(&generator, &format!("Write one sentence about {topic}."));
        let stream = generator.submit(greedy(&prompt, 24)).unwrap();
        handles.push(tokio::spawn(collect(stream)));
    }
    assert!(generator.stats().active_sequences + generator.stats().waiting <= 8);
    let mut total = 0;
    for handle in handles {
        let out = handle.await.unwrap();
        assert!(out.completion_tokens > 0);
        assert!(matches!(out.finish, FinishReason::Stop | FinishReason::Length));
        total += out.completion_tokens as u64;
    }
    let stats = generator.stats();
    assert_eq!(stats.completed_total, 8);
    assert_eq!(stats.generated_tokens_total, total);
    assert!(wait_for(|| generator.stats().active_sequences == 0).await);
}

#[test]
fn load_failure_names_the_file() {
    let missing = std::path::Path::new("/nonexistent/model.gguf");
    let err = Generator::load(missing, GeneratorConfig::default()).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/model.gguf"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let bogus = dir.path().join("bogus.gguf");
    std::fs::write(&bogus, b"not a gguf file").unwrap();
    let err = Generator::load(&bogus, GeneratorConfig::default()).unwrap_err();
    assert!(err.to_string().contains("bogus.gguf"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_kv_budget_makes_requests_wait() {
    // Room for two sequences' worst case at a time although four slots exist.
    let generator = load(GeneratorConfig {
        context_length: Some(128),
        max_batch_sequences: 4,
        kv_cache_tokens: Some(256),
        ..GeneratorConfig::default()
    });
    let prompt = chat(&generator, "Write a long story about a dragon.");
    let streams: Vec<_> = (0..4).map(|_| generator.submit(greedy(&prompt, 100)).unwrap()).collect();
    assert!(
        wait_for(|| {
            let s = generator.stats();
            s.active_sequences == 2 && s.waiting == 2
        })
        .await,
        "{:?}",
        generator.stats()
    );
    let mut handles: Vec<_> = streams.into_iter().map(|s| tokio::spawn(collect(s))).collect();
    let mut outputs = Vec::new();
    for handle in handles.drain(..) {
        outputs.push(handle.await.unwrap());
    }
    for out in &outputs {
        assert!(out.completion_tokens > 0);
    }
    assert_eq!(generator.stats().completed_total, 4);
    assert_eq!(generator.stats().kv_cache_tokens_budget, 256);
}

/// Prompt tokens the engine reused from kept KV cells, from the `Done` event.
async fn cached_tokens(mut stream: GenerationStream) -> (String, u32) {
    let mut text = String::new();
    loop {
        match stream.next().await.expect("stream ended without Done") {
            GenerationEvent::Token { text: piece } => text.push_str(&piece),
            GenerationEvent::Done { cached_tokens, .. } => return (text, cached_tokens),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prompt_that_starts_like_an_earlier_one_reuses_its_kv_cells_and_answers_the_same() {
    // One slot, so each request lands where the previous one left its cells.
    let config = GeneratorConfig { context_length: Some(512), max_batch_sequences: 1, ..GeneratorConfig::default() };
    let generator = load(config.clone());
    let system = "You are a careful assistant who answers in one short sentence.";
    let ask = |user: &str| {
        generator
            .apply_chat_template(&[ChatMessage::new("system", system), ChatMessage::new("user", user)])
            .expect("chat template")
    };
    let (first, prompt) = (ask("What is the capital of France?"), ask("Name a large river in Africa."));
    let n_prompt = generator.count_tokens(&prompt).unwrap();
    let shared = generator.count_tokens(&ask("")).unwrap();

    let (_, cold) = cached_tokens(generator.submit(greedy(&first, 8)).unwrap()).await;
    assert_eq!(cold, 0, "nothing is cached at first");
    let (warm_text, warm) = cached_tokens(generator.submit(greedy(&prompt, 24)).unwrap()).await;
    assert!(warm >= shared.saturating_sub(8) && warm < n_prompt, "{warm} of {n_prompt} (system prompt {shared})");
    // The same prompt again: everything but the last token comes from the cache.
    let (again_text, again) = cached_tokens(generator.submit(greedy(&prompt, 24)).unwrap()).await;
    assert_eq!(again, n_prompt - 1);
    assert_eq!(generator.stats().prompt_cached_tokens_total, u64::from(warm + again));

    // The answers are the ones a fresh engine gives with nothing cached.
    let fresh = load(config);
    let (fresh_text, none) = cached_tokens(fresh.submit(greedy(&prompt, 24)).unwrap()).await;
    assert_eq!(none, 0);
    assert_eq!(warm_text, fresh_text);
    assert_eq!(again_text, fresh_text);
}
