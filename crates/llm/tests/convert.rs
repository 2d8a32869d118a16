//! A Hugging Face safetensors llama folder, converted to GGUF and served by the llama.cpp
//! engine, generates what an independent implementation of the same checkpoint generates:
//! candle's `llama` model reading the safetensors directly (Hugging Face's rotary layout,
//! its own tokenizer from `tokenizer.json`). The folder is a small llama with random weights
//! and SmolLM2's real tokenizer and chat template (taken from the SmolLM2 GGUF), so the
//! conversion of the vocabulary, merges, pre-tokenizer and special tokens is exercised too.

mod common;

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::llama::{Cache, Llama, LlamaConfig};
use serde_json::{Value, json};
use sluice_llm::convert::tiny_llama;
use sluice_llm::{GenerationEvent, GenerationRequest, Generator, GeneratorConfig, convert};

fn write_folder(dir: &Path) -> Vec<u32> {
    tiny_llama::write(dir, &common::smollm2()).expect("write the tiny llama folder")
}

/// Greedy generation with candle on the safetensors themselves; stops at an end token.
fn candle_greedy(dir: &Path, prompt: &[u32], max_tokens: usize, stop: &[u32]) -> Vec<u32> {
    let config: LlamaConfig = serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    let config = config.into_config(false);
    let device = Device::Cpu;
    let data = std::fs::read(dir.join("model.safetensors")).unwrap();
    let vb = VarBuilder::from_buffered_safetensors(data, DType::F32, &device).unwrap();
    let model = Llama::load(vb, &config).unwrap();
    let mut cache = Cache::new(true, DType::F32, &config, &device).unwrap();
    let mut out = Vec::new();
    let mut input = prompt.to_vec();
    let mut position = 0;
    while out.len() < max_tokens {
        let x = Tensor::new(input.as_slice(), &device).unwrap().unsqueeze(0).unwrap();
        let logits = model.forward(&x, position, &mut cache).unwrap().squeeze(0).unwrap();
        position += input.len();
        let next = logits.argmax(0).unwrap().to_scalar::<u32>().unwrap();
        if stop.contains(&next) {
            break;
        }
        out.push(next);
        input = vec![next];
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_safetensors_llama_converts_to_gguf_and_generates_what_candle_generates_from_the_safetensors() {
    let dir = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let eog = write_folder(dir.path());

    let model = convert::inspect(dir.path()).expect("inspect");
    assert_eq!(model.name, "tiny-llama");
    assert!(model.has_chat_template);
    assert_eq!((model.config.heads, model.config.kv_heads, model.config.layers), (4, 2, 2));
    let gguf = convert::converted(dir.path(), cache.path()).expect("convert");
    assert!(gguf.starts_with(cache.path().join("converted")), "{}", gguf.display());
    // Converted once: the same folder maps to the same file, which is not rewritten.
    let written = std::fs::metadata(&gguf).unwrap().modified().unwrap();
    assert_eq!(convert::converted(dir.path(), cache.path()).unwrap(), gguf);
    assert_eq!(std::fs::metadata(&gguf).unwrap().modified().unwrap(), written);

    let generator = Generator::load(&gguf, GeneratorConfig { context_length: Some(256), ..GeneratorConfig::default() })
        .expect("llama.cpp loads the converted file");
    assert_eq!(generator.info().architecture, "llama");
    assert!(generator.info().has_chat_template);

    let tokenizer = tokenizers::Tokenizer::from_file(dir.path().join("tokenizer.json")).unwrap();
    for prompt in ["The 3 quick brown foxes jumped over 12 lazy dogs.", "def add(a, b):\n    return a + b\n"] {
        let ids = tokenizer.encode(prompt, false).unwrap().get_ids().to_vec();
        let request = GenerationRequest { add_bos: false, ..GenerationRequest::new(prompt, 24) };
        let mut stream = generator.submit(request).expect("submit");
        assert_eq!(stream.prompt_tokens as usize, ids.len(), "llama.cpp and tokenizers split {prompt:?} alike");
        let mut text = String::new();
        let mut completion = 0;
        while let Some(event) = stream.next().await {
            match event {
                GenerationEvent::Token { text: piece } => text.push_str(&piece),
                GenerationEvent::Done { completion_tokens, .. } => completion = completion_tokens,
            }
        }
        let expected = candle_greedy(dir.path(), &ids, 24, &eog);
        assert!(!expected.is_empty());
        assert_eq!(completion as usize, expected.len(), "{prompt:?}: {text:?}");
        assert_eq!(text, tokenizer.decode(&expected, false).unwrap(), "{prompt:?}");
    }

    // The chat template came along: a chat prompt renders with SmolLM2's ChatML markers.
    let chat = generator.apply_chat_template(&[sluice_llm::ChatMessage::new("user", "hi")]).unwrap();
    assert!(chat.contains("<|im_start|>user\nhi<|im_end|>"), "{chat}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bf16_checkpoint_keeps_its_matrices_in_bf16_and_llama_cpp_serves_it() {
    let dir = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    tiny_llama::write_bf16(dir.path(), &common::smollm2()).unwrap();
    let gguf = convert::converted(dir.path(), cache.path()).expect("convert");
    // BF16 matrices stay BF16 (2 bytes a weight): the file is about half the F32 one's size.
    let weights = std::fs::metadata(dir.path().join("model.safetensors")).unwrap().len();
    let converted = std::fs::metadata(&gguf).unwrap().len();
    assert!(converted < weights + (4 << 20), "{converted} bytes from {weights}");
    let generator = Generator::load(&gguf, GeneratorConfig { context_length: Some(256), ..GeneratorConfig::default() })
        .expect("llama.cpp loads BF16 weights");
    let run = || async {
        let request = GenerationRequest { add_bos: false, ..GenerationRequest::new("The 3 quick brown foxes", 16) };
        let mut stream = generator.submit(request).expect("submit");
        let (mut text, mut tokens) = (String::new(), 0);
        while let Some(event) = stream.next().await {
            match event {
                GenerationEvent::Token { text: piece } => text.push_str(&piece),
                GenerationEvent::Done { completion_tokens, .. } => tokens = completion_tokens,
            }
        }
        (text, tokens)
    };
    let (first, tokens) = run().await;
    assert!(tokens > 0, "generated nothing");
    assert_eq!(run().await, (first, tokens), "greedy output repeats");
}

#[test]
fn a_folder_with_missing_or_misshapen_tensors_is_refused_with_the_tensor_named() {
    let dir = tempfile::tempdir().unwrap();
    write_folder(dir.path());
    let config = dir.path().join("config.json");
    let mut c: Value = serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    c["num_hidden_layers"] = json!(3);
    std::fs::write(&config, serde_json::to_vec(&c).unwrap()).unwrap();
    let err = convert::inspect(dir.path()).unwrap_err().to_string();
    assert!(err.contains("model.layers.2.") && err.contains("no tensor"), "{err}");

    c["num_hidden_layers"] = json!(2);
    c["intermediate_size"] = json!(96);
    std::fs::write(&config, serde_json::to_vec(&c).unwrap()).unwrap();
    let err = convert::inspect(dir.path()).unwrap_err().to_string();
    assert!(err.contains("mlp.gate_proj.weight") && err.contains("shape"), "{err}");

    // Untied embeddings need their own output projection.
    c["intermediate_size"] = json!(tiny_llama::FFN);
    c["tie_word_embeddings"] = json!(false);
    std::fs::write(&config, serde_json::to_vec(&c).unwrap()).unwrap();
    let err = convert::inspect(dir.path()).unwrap_err().to_string();
    assert!(err.contains("lm_head.weight"), "{err}");

    c["tie_word_embeddings"] = json!(true);
    std::fs::write(&config, serde_json::to_vec(&c).unwrap()).unwrap();
    let weights = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&weights).unwrap();
    std::fs::write(&weights, &bytes[..bytes.len() / 2]).unwrap();
    let err = convert::inspect(dir.path()).unwrap_err().to_string();
    assert!(err.contains("outside the file"), "{err}");
}
