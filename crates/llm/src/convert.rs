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

#[doc(hidden)]
pub mod tiny_llama;

/// GGUF's default data alignment.
const ALIGNMENT: u64 = 32;

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GgmlType {
    F32 = 0,
    F16 = 1,
    Bf16 = 30,
}

impl GgmlType {
    fn size(self) -> u64 {
        match self {
            GgmlType::F32 => 4,
            GgmlType::F16 | GgmlType::Bf16 => 2,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum MetaValue {
    U32(u32),
    F32(f32),
    Bool(bool),
    Str(String),
    StrArray(Vec<String>),
    I32Array(Vec<i32>),
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

/// llama.cpp's name for the pre-tokenizer a `tokenizer.json` describes.
fn pre_tokenizer_name(tokenizer: &Value) -> Result<&'static str, String> {
    const LLAMA3: &str = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
    let pre = tokenizer.get("pre_tokenizer").unwrap_or(&Value::Null);
    let kind = |v: &Value| v.get("type").and_then(Value::as_str).unwrap_or("").to_owned();
    let byte_level_regex =
        |v: &Value| kind(v) == "ByteLevel" && v.get("use_regex").and_then(Value::as_bool).unwrap_or(true);
    if byte_level_regex(pre) {
        return Ok("gpt-2");
    }
    if kind(pre) == "Sequence" {
        let parts: Vec<&Value> =
            pre.get("pretokenizers").and_then(Value::as_array).map(|a| a.iter().collect()).unwrap_or_default();
        if let [digits, byte_level] = parts.as_slice()
            && kind(digits) == "Digits"
            && digits.get("individual_digits").and_then(Value::as_bool) == Some(true)
            && byte_level_regex(byte_level)
        {
            return Ok("smollm");
        }
        if let [split, byte_level] = parts.as_slice()
            && kind(split) == "Split"
            && split.pointer("/pattern/Regex").and_then(Value::as_str) == Some(LLAMA3)
            && kind(byte_level) == "ByteLevel"
        {
            return Ok("llama-bpe");
        }
    }
    Err(format!(
        "tokenizer.json's pre-tokenizer ({}) is not one this converter knows (GPT-2 byte-level, SmolLM, \
         Llama 3); convert the model to GGUF with llama.cpp's convert_hf_to_gguf.py",
        if pre.is_null() { "none".to_owned() } else { kind(pre) }
    ))
}

/// A special token named in `tokenizer_config.json`, as a string or as `{"content": ...}`.
fn token_text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content").and_then(Value::as_str).map(str::to_owned),
        _ => None,
    }
}

/// The tokenizer's metadata, in GGUF's `tokenizer.*` keys.
fn tokenizer_metadata(dir: &Path, vocab_size: u64, config: &Value) -> Result<(Vec<(String, MetaValue)>, bool), String> {
    let tokenizer = read_json(&dir.join("tokenizer.json"))?;
    let model = tokenizer.get("model").ok_or("tokenizer.json has no model")?;
    if model.get("type").and_then(Value::as_str) != Some("BPE")
        || model.get("byte_fallback").and_then(Value::as_bool) == Some(true)
    {
        return Err("tokenizer.json is not a byte-level BPE tokenizer (SentencePiece-style tokenizers are not \
                    supported); convert the model to GGUF with llama.cpp's convert_hf_to_gguf.py"
            .into());
    }
    let pre = pre_tokenizer_name(&tokenizer)?;
    let vocab = model.get("vocab").and_then(Value::as_object).ok_or("tokenizer.json has no model.vocab")?;
    let size = usize::try_from(vocab_size).map_err(|_| "vocab_size is too large")?;
    let mut tokens: Vec<Option<String>> = vec![None; size];
    let mut types = vec![1i32; size];
    let mut ids: HashMap<String, u32> = HashMap::new();
    let mut put = |text: &str, id: u64, kind: i32, tokens: &mut Vec<Option<String>>| -> Result<(), String> {
        let slot = usize::try_from(id).ok().filter(|i| *i < size).ok_or_else(|| {
            format!("tokenizer.json: token {text:?} has id {id}, beyond config.json's vocab_size {vocab_size}")
        })?;
        tokens[slot] = Some(text.to_owned());
        types[slot] = kind;
        ids.insert(text.to_owned(), slot as u32);
        Ok(())
    };
    for (text, id) in vocab {
        put(text, id.as_u64().ok_or("tokenizer.json: a vocab id is not a number")?, 1, &mut tokens)?;
    }
    for added in tokenizer.get("added_tokens").and_then(Value::as_array).into_iter().flatten() {
        let (Some(text), Some(id)) =
            (added.get("content").and_then(Value::as_str), added.get("id").and_then(Value::as_u64))
        else {
            return Err("tokenizer.json: an added token has no content or id".into());
        };
        let special = added.get("special").and_then(Value::as_bool).unwrap_or(false);
        put(text, id, if special { 3 } else { 4 }, &mut tokens)?;
    }
    let tokens: Vec<String> = tokens
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            t.unwrap_or_else(|| {
                types[i] = 5;
                format!("[PAD{i}]")
            })
        })
        .collect();
    let merges: Vec<String> = model
        .get("merges")
        .and_then(Value::as_array)
        .ok_or("tokenizer.json has no model.merges")?
        .iter()
        .map(|m| match m {
            Value::String(s) => Ok(s.clone()),
            Value::Array(pair) => match pair.as_slice() {
                [Value::String(a), Value::String(b)] => Ok(format!("{a} {b}")),
                _ => Err("tokenizer.json: a merge is not a pair of strings".to_owned()),
            },
            _ => Err("tokenizer.json: a merge is not a string or a pair".to_owned()),
        })
        .collect::<Result<_, _>>()?;

    let tokenizer_config = match dir.join("tokenizer_config.json") {
        p if p.is_file() => read_json(&p)?,
        _ => Value::Null,
    };
    let mut meta = vec![
        ("tokenizer.ggml.model".to_owned(), MetaValue::Str("gpt2".into())),
        ("tokenizer.ggml.pre".to_owned(), MetaValue::Str(pre.into())),
        ("tokenizer.ggml.tokens".to_owned(), MetaValue::StrArray(tokens)),
        ("tokenizer.ggml.token_type".to_owned(), MetaValue::I32Array(types)),
        ("tokenizer.ggml.merges".to_owned(), MetaValue::StrArray(merges)),
    ];
    for (key, config_key, gguf_key) in [
        ("bos_token", "bos_token_id", "tokenizer.ggml.bos_token_id"),
        ("eos_token", "eos_token_id", "tokenizer.ggml.eos_token_id"),
        ("unk_token", "unk_token_id", "tokenizer.ggml.unknown_token_id"),
        ("pad_token", "pad_token_id", "tokenizer.ggml.padding_token_id"),
    ] {
        let id = match token_text(tokenizer_config.get(key)) {
            Some(text) => Some(
                *ids.get(&text)
                    .ok_or_else(|| format!("tokenizer_config.json: {key} {text:?} is not in the vocabulary"))?,
            ),
            None => config
                .get(config_key)
                .and_then(Value::as_u64)
                .and_then(|id| u32::try_from(id).ok())
                .filter(|id| u64::from(*id) < vocab_size),
        };
        if let Some(id) = id {
            meta.push((gguf_key.to_owned(), MetaValue::U32(id)));
        }
    }
    if let Some(add_bos) = tokenizer_config.get("add_bos_token").and_then(Value::as_bool) {
        meta.push(("tokenizer.ggml.add_bos_token".to_owned(), MetaValue::Bool(add_bos)));
    }
    let template = tokenizer_config.get("chat_template").and_then(Value::as_str).filter(|t| !t.trim().is_empty());
    if let Some(template) = template {
        meta.push(("tokenizer.chat_template".to_owned(), MetaValue::Str(template.to_owned())));
    }
    Ok((meta, template.is_some()))
}

/// The safetensors files of a folder and which file holds each tensor.
fn weight_files(dir: &Path) -> Result<BTreeMap<String, (PathBuf, TensorEntry)>, String> {
    let index = dir.join("model.safetensors.index.json");
    let files: Vec<PathBuf> = if index.is_file() {
        let index = read_json(&index)?;
        let map = index
            .get("weight_map")
            .and_then(Value::as_object)
            .ok_or("model.safetensors.index.json has no weight_map")?;
        let mut names: Vec<&str> = map.values().filter_map(Value::as_str).collect();
        names.sort_unstable();
        names.dedup();
        names
            .into_iter()
            .map(|n| {
                let p = Path::new(n);
                if p.components().count() != 1 {
                    return Err(format!("model.safetensors.index.json names {n:?}, which is not a file in the folder"));
                }
                Ok(dir.join(p))
            })
            .collect::<Result<_, _>>()?
    } else if dir.join("model.safetensors").is_file() {
        vec![dir.join("model.safetensors")]
    } else {
        return Err("the folder has no model.safetensors (nor model.safetensors.index.json for sharded weights)".into());
    };
    let mut where_is = BTreeMap::new();
    for file in files {
        for (name, entry) in read_header(&file)? {
            where_is.insert(name, (file.clone(), entry));
        }
    }
    Ok(where_is)
}

/// Element types this converter reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dtype {
    F32,
    F16,
    Bf16,
}

impl Dtype {
    fn size(self) -> u64 {
        match self {
            Dtype::F32 => 4,
            Dtype::F16 | Dtype::Bf16 => 2,
        }
    }
}

/// One tensor of a safetensors file: its type, shape and byte range (from the file's start).
#[derive(Debug, Clone)]
struct TensorEntry {
    dtype: Result<Dtype, String>,
    shape: Vec<u64>,
    start: u64,
    end: u64,
}

/// The largest safetensors header read (the format's own limit is 100 MB).
const MAX_HEADER: u64 = 100 << 20;

/// Reads a safetensors file's header: an 8-byte little-endian length, then a JSON object of
/// `name: {dtype, shape, data_offsets}` (offsets relative to the end of the header).
fn read_header(path: &Path) -> Result<HashMap<String, TensorEntry>, String> {
    let name = file_name(path);
    let file = File::open(path).map_err(|e| format!("cannot open {name}: {e}"))?;
    let size = file.metadata().map_err(|e| format!("cannot read {name}: {e}"))?.len();
    let mut len = [0u8; 8];
    file.read_exact_at(&mut len, 0).map_err(|_| format!("{name} is not a safetensors file (too short)"))?;
    let len = u64::from_le_bytes(len);
    if len > MAX_HEADER || 8 + len > size {
        return Err(format!("{name} is not a safetensors file (header length {len})"));
    }
    let mut header = vec![0u8; len as usize];
    file.read_exact_at(&mut header, 8).map_err(|e| format!("cannot read {name}: {e}"))?;
    let header: serde_json::Map<String, Value> =
        serde_json::from_slice(&header).map_err(|e| format!("{name} is not a safetensors file: {e}"))?;
    let mut entries = HashMap::new();
    for (tensor, info) in header {
        if tensor == "__metadata__" {
            continue;
        }
        let bad = || format!("{name}: tensor {tensor} has a malformed header entry");
        let dtype = match info.get("dtype").and_then(Value::as_str).ok_or_else(bad)? {
            "F32" => Ok(Dtype::F32),
            "F16" => Ok(Dtype::F16),
            "BF16" => Ok(Dtype::Bf16),
            other => Err(format!("tensor {tensor} is {other}; only F32, F16 and BF16 weights are supported")),
        };
        let shape: Vec<u64> = info
            .get("shape")
            .and_then(Value::as_array)
            .ok_or_else(bad)?
            .iter()
            .map(|d| d.as_u64().ok_or_else(bad))
            .collect::<Result<_, _>>()?;
        let offsets = info.get("data_offsets").and_then(Value::as_array).ok_or_else(bad)?;
        let (Some(begin), Some(end)) =
            (offsets.first().and_then(Value::as_u64), offsets.get(1).and_then(Value::as_u64))
        else {
            return Err(bad());
        };
        let (start, end) = (8 + len + begin, 8 + len + end);
        if begin > end || end > size {
            return Err(format!("{name}: tensor {tensor} lies outside the file (truncated download?)"));
        }
        entries.insert(tensor, TensorEntry { dtype, shape, start, end });
    }
    Ok(entries)
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

fn write_str(w: &mut impl Write, s: &str) -> std::io::Result<()> {
    w.write_all(&(s.len() as u64).to_le_bytes())?;
    w.write_all(s.as_bytes())
}

fn write_value(w: &mut impl Write, value: &MetaValue) -> std::io::Result<()> {
    const U32: u32 = 4;
    const I32: u32 = 5;
    const F32: u32 = 6;
    const BOOL: u32 = 7;
    const STRING: u32 = 8;
    const ARRAY: u32 = 9;
    match value {
        MetaValue::U32(v) => {
            w.write_all(&U32.to_le_bytes())?;
            w.write_all(&v.to_le_bytes())
        }
        MetaValue::F32(v) => {
            w.write_all(&F32.to_le_bytes())?;
            w.write_all(&v.to_le_bytes())
        }
        MetaValue::Bool(v) => {
            w.write_all(&BOOL.to_le_bytes())?;
            w.write_all(&[u8::from(*v)])
        }
        MetaValue::Str(s) => {
            w.write_all(&STRING.to_le_bytes())?;
            write_str(w, s)
        }
        MetaValue::StrArray(items) => {
            w.write_all(&ARRAY.to_le_bytes())?;
            w.write_all(&STRING.to_le_bytes())?;
            w.write_all(&(items.len() as u64).to_le_bytes())?;
            items.iter().try_for_each(|s| write_str(w, s))
        }
        MetaValue::I32Array(items) => {
            w.write_all(&ARRAY.to_le_bytes())?;
            w.write_all(&I32.to_le_bytes())?;
            w.write_all(&(items.len() as u64).to_le_bytes())?;
            items.iter().try_for_each(|v| w.write_all(&v.to_le_bytes()))
        }
    }
}

fn padding(offset: u64) -> u64 {
    (ALIGNMENT - offset % ALIGNMENT) % ALIGNMENT
}

/// One element of `data` (in `from`'s encoding) as F32.
fn to_f32(from: Dtype, bytes: &[u8]) -> f32 {
    match from {
        Dtype::F16 => half::f16::from_le_bytes([bytes[0], bytes[1]]).to_f32(),
        Dtype::Bf16 => half::bf16::from_le_bytes([bytes[0], bytes[1]]).to_f32(),
        _ => f32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]),
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

    let mut head = Vec::new();
    head.extend_from_slice(b"GGUF");
    head.extend_from_slice(&3u32.to_le_bytes());
    head.extend_from_slice(&(model.tensors.len() as u64).to_le_bytes());
    head.extend_from_slice(&(model.metadata.len() as u64).to_le_bytes());
    for (key, value) in &model.metadata {
        write_str(&mut head, key).map_err(io)?;
        write_value(&mut head, value).map_err(io)?;
    }
    let mut offset = 0u64;
    for t in &model.tensors {
        write_str(&mut head, &t.gguf_name).map_err(io)?;
        head.extend_from_slice(&(t.shape.len() as u32).to_le_bytes());
        // GGUF lists dimensions innermost first.
        for d in t.shape.iter().rev() {
            head.extend_from_slice(&d.to_le_bytes());
        }
        head.extend_from_slice(&(t.target as u32).to_le_bytes());
        head.extend_from_slice(&offset.to_le_bytes());
        let bytes = t.shape.iter().product::<u64>() * t.target.size();
        offset += bytes + padding(bytes);
    }
    head.resize(head.len() + padding(head.len() as u64) as usize, 0);
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
        w.write_all(&vec![0u8; padding(bytes) as usize]).map_err(io)?;
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
    fn pre_tokenizers_map_to_llama_cpp_names_and_unknown_ones_are_refused() {
        let smollm = serde_json::json!({"pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": true},
            {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}]}});
        assert_eq!(pre_tokenizer_name(&smollm).unwrap(), "smollm");
        let gpt2 = serde_json::json!({"pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false}});
        assert_eq!(pre_tokenizer_name(&gpt2).unwrap(), "gpt-2");
        let metaspace = serde_json::json!({"pre_tokenizer": {"type": "Metaspace"}});
        let err = pre_tokenizer_name(&metaspace).unwrap_err();
        assert!(err.contains("Metaspace") && err.contains("convert_hf_to_gguf"), "{err}");
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
