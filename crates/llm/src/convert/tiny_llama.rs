//! A tiny llama-architecture checkpoint in Hugging Face's safetensors layout, for tests of
//! [`super::convert`] (this crate's and the server's). Not for serving.

use std::path::Path;

use candle_core::quantized::gguf_file;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

pub const HIDDEN: usize = 64;
pub const HEADS: usize = 4;
pub const KV_HEADS: usize = 2;
pub const LAYERS: usize = 2;
pub const FFN: usize = 128;

fn meta<'a>(content: &'a gguf_file::Content, key: &str) -> Result<&'a gguf_file::Value, String> {
    content.metadata.get(key).ok_or_else(|| format!("the GGUF has no {key}"))
}

fn strings(content: &gguf_file::Content, key: &str) -> Result<Vec<String>, String> {
    match meta(content, key)? {
        gguf_file::Value::Array(items) => {
            items.iter().map(|v| v.to_string().cloned().map_err(|e| e.to_string())).collect()
        }
        other => Err(format!("{key}: {other:?}")),
    }
}

fn id(content: &gguf_file::Content, key: &str) -> Result<u32, String> {
    meta(content, key)?.to_u32().map_err(|e| e.to_string())
}

/// Writes a safetensors file by hand: F32 tensors, and BF16 where asked (the norms).
fn write_safetensors(path: &Path, tensors: &[(String, Vec<usize>, Vec<f32>, bool)]) -> Result<(), String> {
    let mut header = serde_json::Map::new();
    let mut data = Vec::new();
    for (name, shape, values, bf16) in tensors {
        let start = data.len();
        for v in values {
            if *bf16 {
                data.extend_from_slice(&half::bf16::from_f32(*v).to_le_bytes());
            } else {
                data.extend_from_slice(&v.to_le_bytes());
            }
        }
        header.insert(
            name.clone(),
            json!({"dtype": if *bf16 { "BF16" } else { "F32" }, "shape": shape, "data_offsets": [start, data.len()]}),
        );
    }
    let mut header = serde_json::to_vec(&Value::Object(header)).map_err(|e| e.to_string())?;
    header.resize(header.len().div_ceil(8) * 8, b' ');
    let mut file = (header.len() as u64).to_le_bytes().to_vec();
    file.extend_from_slice(&header);
    file.extend_from_slice(&data);
    std::fs::write(path, file).map_err(|e| e.to_string())
}

/// Writes a tiny llama (random weights from a fixed seed, 2 layers of width 64, grouped-query
/// attention, tied embeddings, BF16 norms) in the layout `transformers` saves, with the tokenizer
/// and chat template of the GGUF at `tokenizer_from` (SmolLM2's). Returns the ids of the tokens
/// that end a generation (the control tokens and EOS).
pub fn write(dir: &Path, tokenizer_from: &Path) -> Result<Vec<u32>, String> {
    write_as(dir, tokenizer_from, false)
}

/// [`write`], with every matrix in BF16 as most published checkpoints are (`torch_dtype: bfloat16`).
pub fn write_bf16(dir: &Path, tokenizer_from: &Path) -> Result<Vec<u32>, String> {
    write_as(dir, tokenizer_from, true)
}

fn write_as(dir: &Path, tokenizer_from: &Path, bf16: bool) -> Result<Vec<u32>, String> {
    let mut file = std::fs::File::open(tokenizer_from).map_err(|e| e.to_string())?;
    let gguf = gguf_file::Content::read(&mut file).map_err(|e| e.to_string())?;
    let tokens = strings(&gguf, "tokenizer.ggml.tokens")?;
    let merges = strings(&gguf, "tokenizer.ggml.merges")?;
    let types: Vec<i32> = match meta(&gguf, "tokenizer.ggml.token_type")? {
        gguf_file::Value::Array(items) => {
            items.iter().map(|v| v.to_i32().map_err(|e| e.to_string())).collect::<Result<_, _>>()?
        }
        other => return Err(format!("tokenizer.ggml.token_type: {other:?}")),
    };
    let (bos, eos) = (id(&gguf, "tokenizer.ggml.bos_token_id")?, id(&gguf, "tokenizer.ggml.eos_token_id")?);
    let template = meta(&gguf, "tokenizer.chat_template")?.to_string().map_err(|e| e.to_string())?.clone();
    let vocab = tokens.len();
    let control: Vec<u32> = (0..vocab as u32).filter(|i| types[*i as usize] == 3).collect();

    let vocab_map: serde_json::Map<String, Value> =
        tokens.iter().enumerate().map(|(i, t)| (t.clone(), json!(i))).collect();
    let added: Vec<Value> = control
        .iter()
        .map(|i| {
            json!({"id": i, "content": tokens[*i as usize], "single_word": false, "lstrip": false,
                        "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    let tokenizer = json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": added, "normalizer": null,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": true},
            {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}]},
        "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                  "vocab": vocab_map, "merges": merges}
    });
    std::fs::write(dir.join("tokenizer.json"), serde_json::to_vec(&tokenizer).map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    let tokenizer_config = json!({
        "bos_token": tokens[bos as usize], "eos_token": tokens[eos as usize], "chat_template": template,
        "model_max_length": 2048,
    });
    std::fs::write(
        dir.join("tokenizer_config.json"),
        serde_json::to_vec(&tokenizer_config).map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    let config = json!({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "_name_or_path": "sluice/tiny-llama",
        "hidden_size": HIDDEN, "intermediate_size": FFN, "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS, "num_key_value_heads": KV_HEADS, "vocab_size": vocab,
        "max_position_embeddings": 2048, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
        "tie_word_embeddings": true, "bos_token_id": bos, "eos_token_id": eos, "torch_dtype": if bf16 { "bfloat16" } else { "float32" },
    });
    std::fs::write(dir.join("config.json"), serde_json::to_vec_pretty(&config).map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;

    // Fixed seed: the same weights every run, so the greedy comparison is deterministic.
    let mut rng = StdRng::seed_from_u64(6);
    let mut random = |shape: Vec<usize>, scale: f32| -> (Vec<usize>, Vec<f32>) {
        let n = shape.iter().product();
        (shape, (0..n).map(|_| (rng.random::<f32>() * 2.0 - 1.0) * scale).collect())
    };
    let head_dim = HIDDEN / HEADS;
    let mut tensors = Vec::new();
    let (s, v) = random(vec![vocab, HIDDEN], 1.0);
    tensors.push(("model.embed_tokens.weight".to_owned(), s, v, bf16));
    let (s, v) = random(vec![HIDDEN], 0.5);
    tensors.push(("model.norm.weight".to_owned(), s, v.iter().map(|x| 1.0 + x).collect(), true));
    for i in 0..LAYERS {
        let p = format!("model.layers.{i}.");
        for (name, shape) in [
            ("self_attn.q_proj.weight", vec![HEADS * head_dim, HIDDEN]),
            ("self_attn.k_proj.weight", vec![KV_HEADS * head_dim, HIDDEN]),
            ("self_attn.v_proj.weight", vec![KV_HEADS * head_dim, HIDDEN]),
            ("self_attn.o_proj.weight", vec![HIDDEN, HEADS * head_dim]),
            ("mlp.gate_proj.weight", vec![FFN, HIDDEN]),
            ("mlp.up_proj.weight", vec![FFN, HIDDEN]),
            ("mlp.down_proj.weight", vec![HIDDEN, FFN]),
        ] {
            let (s, v) = random(shape, 0.3);
            tensors.push((format!("{p}{name}"), s, v, bf16));
        }
        for name in ["input_layernorm.weight", "post_attention_layernorm.weight"] {
            let (s, v) = random(vec![HIDDEN], 0.5);
            tensors.push((format!("{p}{name}"), s, v.iter().map(|x| 1.0 + x).collect(), true));
        }
    }
    write_safetensors(&dir.join("model.safetensors"), &tensors)?;
    let mut eog = control;
    eog.push(eos);
    Ok(eog)
}
