//! Hugging Face safetensors folders of llama-architecture models, written as GGUF for llama.cpp.
//!
//! A user adds a folder as `transformers` saves it (`config.json`, `model.safetensors` or
//! sharded `model-*.safetensors` with `model.safetensors.index.json`, `tokenizer.json`,
//! `tokenizer_config.json`); [`inspect`] checks it without reading the weights and
//! [`convert`] streams it into a GGUF file that the llama.cpp engine loads like any other.
//! It does what llama.cpp's `convert_hf_to_gguf.py` does for `LlamaForCausalLM` with a
//! byte-level BPE tokenizer (SmolLM, Llama 3, GPT-2 style): the same metadata keys and tensor
//! names, the query and key rows put into llama.cpp's rotary layout, norms as F32, every other
//! tensor kept in its own type (F32, F16 or BF16, no quantisation).

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use std::os::unix::fs::FileExt;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::LlmError;

mod gguf;
mod safetensors;
#[doc(hidden)]
pub mod tiny_llama;
mod tokenizer;

use gguf::{GgmlType, MetaValue};
use safetensors::{Dtype, TensorEntry, to_f32, weight_files};
use tokenizer::tokenizer_metadata;

/// The hyper-parameters of a llama-architecture checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaConfig {
    pub hidden_size: u64,
    pub intermediate_size: u64,
    pub layers: u64,
    pub heads: u64,
    pub kv_heads: u64,
    pub head_dim: u64,
    pub vocab_size: u64,
    pub context_length: u64,
    pub rms_norm_eps: f32,
    pub rope_theta: f32,
    pub tied_embeddings: bool,
}

/// A checked folder: what [`convert`] will write.
#[derive(Debug, Clone)]
pub struct HfModel {
    pub dir: PathBuf,
    pub name: String,
    pub config: LlamaConfig,
    pub has_chat_template: bool,
    metadata: Vec<(String, MetaValue)>,
    /// GGUF name, source file, source name, whether the rows are permuted (query and key).
    tensors: Vec<PlannedTensor>,
}

#[derive(Debug, Clone)]
struct PlannedTensor {
    gguf_name: String,
    file: PathBuf,
    hf_name: String,
    /// HF shape, outermost first.
    shape: Vec<u64>,
    source: Dtype,
    /// Where its data starts in `file`.
    start: u64,
    target: GgmlType,
    /// Heads whose rows are reordered for llama.cpp's rotary layout (query: heads, key: kv heads).
    permute_heads: Option<u64>,
}

/// Whether `path` is a folder that looks like a Hugging Face causal-LM checkpoint (it has a
/// `config.json`); [`inspect`] says whether it can be served.
pub fn is_hf_folder(path: &Path) -> bool {
    path.is_dir() && path.join("config.json").is_file()
}

fn read_json(path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", file_name(path)))?;
    serde_json::from_str(&text).map_err(|e| format!("{} is not valid JSON: {e}", file_name(path)))
}

fn file_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| path.display().to_string())
}

/// The largest size a `config.json` field may give (vocabulary, widths, layers, heads): far above
/// any released model (Gemma's vocabulary is 256,000), low enough that a hostile value cannot make
/// the converter allocate without bound.
const MAX_SIZE: u64 = 1 << 20;

fn uint(config: &Value, key: &str) -> Result<Option<u64>, String> {
    let max = if key == "max_position_embeddings" { u64::from(u32::MAX) } else { MAX_SIZE };
    match config.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .filter(|n| *n > 0 && *n <= max)
            .map(Some)
            .ok_or_else(|| format!("config.json: {key} must be an integer from 1 to {max}, got {v}")),
    }
}

fn required(config: &Value, key: &str) -> Result<u64, String> {
    uint(config, key)?.ok_or_else(|| format!("config.json has no {key}"))
}

fn float(config: &Value, key: &str, default: f64) -> Result<f32, String> {
    match config.get(key) {
        None | Some(Value::Null) => Ok(default as f32),
        Some(v) => v
            .as_f64()
            .filter(|f| f.is_finite() && *f > 0.0)
            .map(|f| f as f32)
            .ok_or_else(|| format!("config.json: {key} must be a positive number, got {v}")),
    }
}

fn llama_config(config: &Value) -> Result<LlamaConfig, String> {
    let architectures: Vec<&str> = config
        .get("architectures")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let model_type = config.get("model_type").and_then(Value::as_str).unwrap_or("");
    if !(architectures.contains(&"LlamaForCausalLM") || (architectures.is_empty() && model_type == "llama")) {
        return Err(format!(
            "config.json describes {} (model_type {model_type:?}); safetensors generation models must be \
             LlamaForCausalLM (SmolLM, Llama, TinyLlama...); convert others to GGUF with llama.cpp's \
             convert_hf_to_gguf.py and add the .gguf file",
            if architectures.is_empty() { "no architecture".to_owned() } else { architectures.join(", ") }
        ));
    }
    if config.get("rope_scaling").is_some_and(|v| !v.is_null()) {
        return Err("config.json sets rope_scaling, which this converter does not support; convert the model \
                    to GGUF with llama.cpp's convert_hf_to_gguf.py"
            .into());
    }
    for flag in ["attention_bias", "mlp_bias"] {
        if config.get(flag).and_then(Value::as_bool) == Some(true) {
            return Err(format!("config.json sets {flag}, which this converter does not support"));
        }
    }
    let hidden_size = required(config, "hidden_size")?;
    let heads = required(config, "num_attention_heads")?;
    let kv_heads = uint(config, "num_key_value_heads")?.unwrap_or(heads);
    let head_dim = uint(config, "head_dim")?.unwrap_or(hidden_size / heads);
    if heads % kv_heads != 0 || head_dim % 2 != 0 || head_dim * heads != hidden_size {
        return Err(format!(
            "config.json: {heads} attention heads, {kv_heads} key/value heads and head size {head_dim} do not \
             fit hidden_size {hidden_size}"
        ));
    }
    Ok(LlamaConfig {
        hidden_size,
        intermediate_size: required(config, "intermediate_size")?,
        layers: required(config, "num_hidden_layers")?,
        heads,
        kv_heads,
        head_dim,
        vocab_size: required(config, "vocab_size")?,
        context_length: uint(config, "max_position_embeddings")?.unwrap_or(2048),
        rms_norm_eps: float(config, "rms_norm_eps", 1e-6)?,
        rope_theta: float(config, "rope_theta", 10_000.0)?,
        tied_embeddings: config.get("tie_word_embeddings").and_then(Value::as_bool).unwrap_or(false),
    })
}

fn tensor_plan(
    config: &LlamaConfig,
    where_is: &BTreeMap<String, (PathBuf, TensorEntry)>,
) -> Result<Vec<PlannedTensor>, String> {
    let c = config;
    let (h, kv) = (c.hidden_size, c.kv_heads * c.head_dim);
    let mut wanted: Vec<(String, String, Vec<u64>, Option<u64>)> = vec![
        ("model.embed_tokens.weight".into(), "token_embd.weight".into(), vec![c.vocab_size, h], None),
        ("model.norm.weight".into(), "output_norm.weight".into(), vec![h], None),
    ];
    if !c.tied_embeddings || where_is.contains_key("lm_head.weight") {
        wanted.push(("lm_head.weight".into(), "output.weight".into(), vec![c.vocab_size, h], None));
    }
    for i in 0..c.layers {
        let (p, b) = (format!("model.layers.{i}."), format!("blk.{i}."));
        for (hf, gg, shape, permute) in [
            ("input_layernorm.weight", "attn_norm.weight", vec![h], None),
            ("self_attn.q_proj.weight", "attn_q.weight", vec![c.heads * c.head_dim, h], Some(c.heads)),
            ("self_attn.k_proj.weight", "attn_k.weight", vec![kv, h], Some(c.kv_heads)),
            ("self_attn.v_proj.weight", "attn_v.weight", vec![kv, h], None),
            ("self_attn.o_proj.weight", "attn_output.weight", vec![h, c.heads * c.head_dim], None),
            ("post_attention_layernorm.weight", "ffn_norm.weight", vec![h], None),
            ("mlp.gate_proj.weight", "ffn_gate.weight", vec![c.intermediate_size, h], None),
            ("mlp.up_proj.weight", "ffn_up.weight", vec![c.intermediate_size, h], None),
            ("mlp.down_proj.weight", "ffn_down.weight", vec![h, c.intermediate_size], None),
        ] {
            wanted.push((format!("{p}{hf}"), format!("{b}{gg}"), shape, permute));
        }
    }
    let mut plan = Vec::with_capacity(wanted.len());
    for (hf_name, gguf_name, shape, permute_heads) in wanted {
        let (file, info) = where_is.get(&hf_name).ok_or_else(|| format!("the weights have no tensor {hf_name}"))?;
        if info.shape != shape {
            return Err(format!("tensor {hf_name} has shape {:?}, config.json implies {shape:?}", info.shape));
        }
        let source = info.dtype.clone()?;
        let bytes = shape.iter().try_fold(source.size(), |n, d| n.checked_mul(*d));
        if bytes != Some(info.end - info.start) {
            return Err(format!("tensor {hf_name}: its byte range does not match its shape and type"));
        }
        let target = match (source, shape.len()) {
            (_, 1) | (Dtype::F32, _) => GgmlType::F32,
            (Dtype::F16, _) => GgmlType::F16,
            (Dtype::Bf16, _) => GgmlType::Bf16,
        };
        plan.push(PlannedTensor {
            gguf_name,
            file: file.clone(),
            hf_name,
            shape,
            source,
            start: info.start,
            target,
            permute_heads,
        });
    }
    Ok(plan)
}

/// Checks a folder without reading its weights: the architecture, the tokenizer, and that every
/// tensor llama.cpp needs is there with the shape `config.json` implies.
pub fn inspect(dir: &Path) -> Result<HfModel, LlmError> {
    let fail = |reason: String| LlmError::load(dir, reason);
    if !is_hf_folder(dir) {
        return Err(fail("expected a folder with config.json, tokenizer.json and safetensors weights".into()));
    }
    let raw = read_json(&dir.join("config.json")).map_err(fail)?;
    let config = llama_config(&raw).map_err(fail)?;
    if !dir.join("tokenizer.json").is_file() {
        return Err(fail("the folder has no tokenizer.json".into()));
    }
    let (tokenizer_meta, has_chat_template) = tokenizer_metadata(dir, config.vocab_size, &raw).map_err(fail)?;
    let where_is = weight_files(dir).map_err(fail)?;
    let tensors = tensor_plan(&config, &where_is).map_err(fail)?;
    let name = raw
        .get("_name_or_path")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .map(|n| n.rsplit('/').next().unwrap_or(n).to_owned())
        .unwrap_or_else(|| file_name(dir));
    let c = &config;
    let mut metadata = vec![
        ("general.architecture".to_owned(), MetaValue::Str("llama".into())),
        ("general.name".to_owned(), MetaValue::Str(name.clone())),
        ("llama.context_length".to_owned(), MetaValue::U32(c.context_length as u32)),
        ("llama.embedding_length".to_owned(), MetaValue::U32(c.hidden_size as u32)),
        ("llama.block_count".to_owned(), MetaValue::U32(c.layers as u32)),
        ("llama.feed_forward_length".to_owned(), MetaValue::U32(c.intermediate_size as u32)),
        ("llama.attention.head_count".to_owned(), MetaValue::U32(c.heads as u32)),
        ("llama.attention.head_count_kv".to_owned(), MetaValue::U32(c.kv_heads as u32)),
        ("llama.attention.key_length".to_owned(), MetaValue::U32(c.head_dim as u32)),
        ("llama.attention.value_length".to_owned(), MetaValue::U32(c.head_dim as u32)),
        ("llama.rope.dimension_count".to_owned(), MetaValue::U32(c.head_dim as u32)),
        ("llama.rope.freq_base".to_owned(), MetaValue::F32(c.rope_theta)),
        ("llama.attention.layer_norm_rms_epsilon".to_owned(), MetaValue::F32(c.rms_norm_eps)),
        ("llama.vocab_size".to_owned(), MetaValue::U32(c.vocab_size as u32)),
        ("general.file_type".to_owned(), MetaValue::U32(file_type(&tensors))),
    ];
    metadata.extend(tokenizer_meta);
    Ok(HfModel { dir: dir.to_path_buf(), name, config, has_chat_template, metadata, tensors })
}

/// llama.cpp's `general.file_type`: 0 all F32, 1 mostly F16, 32 mostly BF16.
fn file_type(tensors: &[PlannedTensor]) -> u32 {
    if tensors.iter().any(|t| t.target == GgmlType::Bf16) {
        32
    } else if tensors.iter().any(|t| t.target == GgmlType::F16) {
        1
    } else {
        0
    }
}

/// Writes one tensor's data: rows reordered for the rotary layout where asked, norms widened to F32.
fn write_tensor(w: &mut impl Write, t: &PlannedTensor, data: &[u8]) -> Result<(), String> {
    let elem = t.source.size();
    let count: u64 = t.shape.iter().product();
    if data.len() as u64 != count * elem {
        return Err(format!("tensor {} holds {} bytes, expected {}", t.hf_name, data.len(), count * elem));
    }
    let io = |e: std::io::Error| format!("cannot write tensor {}: {e}", t.gguf_name);
    if t.target == GgmlType::F32 && t.source != Dtype::F32 {
        let mut out = Vec::with_capacity(count as usize * 4);
        for chunk in data.chunks_exact(elem as usize) {
            out.extend_from_slice(&to_f32(t.source, chunk).to_le_bytes());
        }
        return w.write_all(&out).map_err(io);
    }
    let Some(heads) = t.permute_heads else {
        return w.write_all(data).map_err(io);
    };
    // convert_hf_to_gguf's permute: rows (heads, 2, head_dim / 2) become (heads, head_dim / 2, 2),
    // so the two halves of each head that HF's rotate_half pairs become adjacent rows, the pairs
    // llama.cpp's rotary embedding rotates.
    let rows = t.shape[0];
    let row_bytes = (data.len() as u64 / rows) as usize;
    let head_dim = rows / heads;
    let half_dim = head_dim / 2;
    for head in 0..heads {
        for j in 0..half_dim {
            for part in 0..2 {
                let src = (head * head_dim + part * half_dim + j) as usize;
                w.write_all(&data[src * row_bytes..(src + 1) * row_bytes]).map_err(io)?;
            }
        }
    }
    Ok(())
}

/// Writes the checked folder as a GGUF file at `out` (through a temporary file next to it, so a
/// reader never sees half a file).
pub fn convert(model: &HfModel, out: &Path) -> Result<(), LlmError> {
    let fail = |reason: String| LlmError::load(&model.dir, reason);
    let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| LlmError::io(format!("cannot create {}", parent.display()), e))?;
    let tmp = tempfile::NamedTempFile::new_in(parent)
        .map_err(|e| LlmError::io(format!("cannot write in {}", parent.display()), e))?;
    let mut w = BufWriter::with_capacity(1 << 20, tmp.as_file());
    let io = |e: std::io::Error| LlmError::io(format!("cannot write {}", out.display()), e);

    let tensors: Vec<(&str, &[u64], GgmlType)> =
        model.tensors.iter().map(|t| (t.gguf_name.as_str(), t.shape.as_slice(), t.target)).collect();
    let head = gguf::header(&model.metadata, &tensors);
    w.write_all(&head).map_err(io)?;

    let mut files: HashMap<&Path, File> = HashMap::new();
    let mut data = Vec::new();
    for t in &model.tensors {
        if !files.contains_key(t.file.as_path()) {
            let file = File::open(&t.file).map_err(|e| LlmError::io(format!("cannot open {}", t.file.display()), e))?;
            files.insert(&t.file, file);
        }
        data.resize((t.shape.iter().product::<u64>() * t.source.size()) as usize, 0);
        files[t.file.as_path()]
            .read_exact_at(&mut data, t.start)
            .map_err(|e| LlmError::io(format!("cannot read {} from {}", t.hf_name, t.file.display()), e))?;
        write_tensor(&mut w, t, &data).map_err(fail)?;
        let bytes = t.shape.iter().product::<u64>() * t.target.size();
        w.write_all(&vec![0u8; gguf::padding(bytes) as usize]).map_err(io)?;
    }
    w.flush().map_err(io)?;
    drop(w);
    tmp.as_file().sync_all().map_err(io)?;
    tmp.persist(out).map_err(|e| io(e.error))?;
    Ok(())
}

/// Where [`converted`] puts a folder's GGUF: `<cache_dir>/converted/<key>.gguf`, the key
/// hashing the folder's path and each file's name, size and modification time, so changed
/// weights are converted again.
pub fn converted_path(dir: &Path, cache_dir: &Path) -> Result<PathBuf, LlmError> {
    let dir = dir.canonicalize().map_err(|e| LlmError::io(format!("cannot read {}", dir.display()), e))?;
    let mut hash = Sha256::new();
    hash.update(dir.as_os_str().as_encoded_bytes());
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .map_err(|e| LlmError::io(format!("cannot list {}", dir.display()), e))?
        .filter_map(Result::ok)
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let Ok(meta) = entry.metadata() else { continue };
        hash.update(entry.file_name().as_encoded_bytes());
        hash.update(meta.len().to_le_bytes());
        let modified =
            meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).unwrap_or_default();
        hash.update(modified.as_nanos().to_le_bytes());
    }
    let digest = hash.finalize();
    let key: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
    Ok(cache_dir.join("converted").join(format!("{key}.gguf")))
}

/// The folder's GGUF file (see [`converted_path`]), converted on first use.
pub fn converted(dir: &Path, cache_dir: &Path) -> Result<PathBuf, LlmError> {
    let out = converted_path(dir, cache_dir)?;
    if !out.is_file() {
        let model = inspect(dir)?;
        tracing::info!(folder = %dir.display(), gguf = %out.display(), "converting safetensors weights to GGUF");
        convert(&model, &out)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_rows_are_paired_for_llama_cpp_rotary_layout() {
        // 2 heads of size 4, one column: HF rows h0:[a0 a1 | b0 b1], h1:[...]; llama.cpp wants a0 b0 a1 b1.
        let t = PlannedTensor {
            gguf_name: "q".into(),
            file: PathBuf::new(),
            hf_name: "q".into(),
            shape: vec![8, 1],
            source: Dtype::F32,
            start: 0,
            target: GgmlType::F32,
            permute_heads: Some(2),
        };
        let data: Vec<u8> = (0..8).flat_map(|i| (i as f32).to_le_bytes()).collect();
        let mut out = Vec::new();
        write_tensor(&mut out, &t, &data).unwrap();
        let rows: Vec<f32> = out.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
        assert_eq!(rows, [0.0, 2.0, 1.0, 3.0, 4.0, 6.0, 5.0, 7.0]);
    }

    #[test]
    fn norms_are_widened_to_f32() {
        let t = PlannedTensor {
            gguf_name: "n".into(),
            file: PathBuf::new(),
            hf_name: "n".into(),
            shape: vec![2],
            source: Dtype::Bf16,
            start: 0,
            target: GgmlType::F32,
            permute_heads: None,
        };
        let data: Vec<u8> = [1.5f32, -2.0].iter().flat_map(|f| half::bf16::from_f32(*f).to_le_bytes()).collect();
        let mut out = Vec::new();
        write_tensor(&mut out, &t, &data).unwrap();
        assert_eq!(out, [1.5f32, -2.0].iter().flat_map(|f| f.to_le_bytes()).collect::<Vec<u8>>());
    }

    #[test]
    fn other_architectures_and_rope_scaling_are_refused_with_what_to_do() {
        let err = llama_config(&serde_json::json!({"architectures": ["MistralForCausalLM"]})).unwrap_err();
        assert!(err.contains("MistralForCausalLM") && err.contains("GGUF"), "{err}");
        let err =
            llama_config(&serde_json::json!({"architectures": ["LlamaForCausalLM"], "rope_scaling": {"type": "yarn"}}))
                .unwrap_err();
        assert!(err.contains("rope_scaling"), "{err}");
        let err = llama_config(&serde_json::json!({"architectures": ["LlamaForCausalLM"], "hidden_size": 64,
            "num_attention_heads": 3, "intermediate_size": 8, "num_hidden_layers": 1, "vocab_size": 8}))
        .unwrap_err();
        assert!(err.contains("do not fit"), "{err}");
        let err = llama_config(&serde_json::json!({"architectures": ["LlamaForCausalLM"], "hidden_size": 64,
            "num_attention_heads": 4, "intermediate_size": 8, "num_hidden_layers": 1, "vocab_size": 4_000_000_000u64}))
        .unwrap_err();
        assert!(err.contains("vocab_size") && err.contains("1048576"), "{err}");
    }
}
