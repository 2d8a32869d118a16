//! Sentence embeddings with candle's `BertModel` on a sentence-transformers folder.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config as BertConfig};
use tokenizers::Tokenizer;

use crate::error::LlmError;

/// Most sequences run through the model at once.
const BATCH_SEQUENCES: usize = 16;

/// How an [`Embedder`] runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EmbedderConfig {
    /// CPU threads for the matrix products. Default: the available parallelism.
    pub threads: Option<u32>,
}

/// What was loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbedderInfo {
    /// The folder name.
    pub name: String,
    /// Length of each vector.
    pub dimensions: u32,
    /// Longest input in tokens (including the special tokens), `max_seq_length`.
    pub max_tokens: u32,
}

/// Result of [`Embedder::embed`].
#[derive(Debug, Clone, PartialEq)]
pub struct Embeddings {
    /// One vector per input, in input order.
    pub vectors: Vec<Vec<f32>>,
    /// Tokens of all inputs, special tokens included.
    pub prompt_tokens: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pooling {
    Mean,
    Cls,
    Max,
    MeanSqrtLen,
}

/// A loaded sentence-embedding model. Cheap to clone.
#[derive(Clone)]
pub struct Embedder {
    inner: Arc<EmbedInner>,
}

struct EmbedInner {
    model: BertModel,
    tokenizer: Tokenizer,
    info: EmbedderInfo,
    pooling: Pooling,
    normalize: bool,
    pool: Option<rayon::ThreadPool>,
}

impl std::fmt::Debug for Embedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedder")
            .field("info", &self.inner.info)
            .field("pooling", &self.inner.pooling)
            .field("normalize", &self.inner.normalize)
            .finish_non_exhaustive()
    }
}

fn read_json(path: &Path) -> Result<serde_json::Value, LlmError> {
    let text = std::fs::read_to_string(path).map_err(|e| LlmError::load(path, format!("cannot read: {e}")))?;
    serde_json::from_str(&text).map_err(|e| LlmError::load(path, format!("invalid JSON: {e}")))
}

/// The sentence-transformers modules: (pooling folder, normalize).
fn read_modules(dir: &Path) -> Result<(Option<PathBuf>, bool), LlmError> {
    let path = dir.join("modules.json");
    if !path.is_file() {
        let pooling = dir.join("1_Pooling");
        return Ok((pooling.is_dir().then_some(pooling), false));
    }
    let modules = read_json(&path)?;
    let Some(list) = modules.as_array() else {
        return Err(LlmError::load(&path, "expected a JSON array of modules"));
    };
    let mut pooling = None;
    let mut normalize = false;
    for module in list {
        let kind = module.get("type").and_then(|v| v.as_str()).unwrap_or("");
        let sub = module.get("path").and_then(|v| v.as_str()).unwrap_or("");
        match kind.rsplit('.').next().unwrap_or("") {
            "Transformer" => {}
            "Pooling" => pooling = Some(dir.join(sub)),
            "Normalize" => normalize = true,
            other => {
                return Err(LlmError::load(
                    &path,
                    format!("unsupported sentence-transformers module {other:?} ({kind})"),
                ));
            }
        }
    }
    Ok((pooling, normalize))
}

fn read_pooling(folder: Option<&Path>) -> Result<Pooling, LlmError> {
    let Some(folder) = folder else {
        return Ok(Pooling::Mean);
    };
    let path = folder.join("config.json");
    let config = read_json(&path)?;
    let flag = |key: &str| config.get(key).and_then(|v| v.as_bool()).unwrap_or(false);
    let chosen: Vec<Pooling> = [
        ("pooling_mode_mean_tokens", Pooling::Mean),
        ("pooling_mode_cls_token", Pooling::Cls),
        ("pooling_mode_max_tokens", Pooling::Max),
        ("pooling_mode_mean_sqrt_len_tokens", Pooling::MeanSqrtLen),
    ]
    .into_iter()
    .filter(|(key, _)| flag(key))
    .map(|(_, p)| p)
    .collect();
    match chosen.as_slice() {
        [one] => Ok(*one),
        [] => Ok(Pooling::Mean),
        _ => Err(LlmError::load(&path, "several pooling modes at once are not supported")),
    }
}

impl Embedder {
    /// Loads a sentence-transformers folder (`config.json`, `model.safetensors`,
    /// `tokenizer.json`, `modules.json`, `1_Pooling/config.json`,
    /// `sentence_bert_config.json`). Blocking.
    pub fn load(dir: &Path, config: EmbedderConfig) -> Result<Embedder, LlmError> {
        if !dir.is_dir() {
            return Err(LlmError::load(dir, "no such folder"));
        }
        let config_path = dir.join("config.json");
        let bert_config: BertConfig = serde_json::from_value(read_json(&config_path)?)
            .map_err(|e| LlmError::load(&config_path, format!("not a BERT config: {e}")))?;
        let (pooling_dir, normalize) = read_modules(dir)?;
        let pooling = read_pooling(pooling_dir.as_deref())?;

        let st_config = dir.join("sentence_bert_config.json");
        let max_seq = if st_config.is_file() {
            read_json(&st_config)?.get("max_seq_length").and_then(|v| v.as_u64())
        } else {
            None
        };
        let max_tokens = max_seq
            .unwrap_or(bert_config.max_position_embeddings as u64)
            .min(bert_config.max_position_embeddings as u64) as u32;

        let tokenizer_path = dir.join("tokenizer.json");
        let mut tokenizer = Tokenizer::from_file(&tokenizer_path).map_err(|e| LlmError::load(&tokenizer_path, e))?;
        tokenizer.with_padding(None);
        tokenizer.with_truncation(None).map_err(|e| LlmError::load(&tokenizer_path, e))?;

        let weights_path = dir.join("model.safetensors");
        let data =
            std::fs::read(&weights_path).map_err(|e| LlmError::load(&weights_path, format!("cannot read: {e}")))?;
        let vb = VarBuilder::from_buffered_safetensors(data, DType::F32, &Device::Cpu)
            .map_err(|e| LlmError::load(&weights_path, e))?;
        let model = BertModel::load(vb, &bert_config).map_err(|e| LlmError::load(&weights_path, e))?;

        let pool = match config.threads.filter(|t| *t > 0) {
            Some(threads) => Some(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(threads as usize)
                    .thread_name(|i| format!("sluice-embed-{i}"))
                    .build()
                    .map_err(|e| LlmError::load(dir, format!("cannot start threads: {e}")))?,
            ),
            None => None,
        };
        let name = dir.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        Ok(Embedder {
            inner: Arc::new(EmbedInner {
                model,
                tokenizer,
                info: EmbedderInfo { name, dimensions: bert_config.hidden_size as u32, max_tokens },
                pooling,
                normalize,
                pool,
            }),
        })
    }

    pub fn info(&self) -> &EmbedderInfo {
        &self.inner.info
    }

    /// Embeds every input. Blocking (run it on a blocking thread from async code).
    pub fn embed(&self, inputs: &[String]) -> Result<Embeddings, LlmError> {
        match &self.inner.pool {
            Some(pool) => pool.install(|| self.embed_inner(inputs)),
            None => self.embed_inner(inputs),
        }
    }

    fn embed_inner(&self, inputs: &[String]) -> Result<Embeddings, LlmError> {
        let inner = &*self.inner;
        let limit = inner.info.max_tokens;
        let mut encodings = Vec::with_capacity(inputs.len());
        for (index, input) in inputs.iter().enumerate() {
            let encoding =
                inner.tokenizer.encode(input.as_str(), true).map_err(|e| LlmError::Tokenizer(e.to_string()))?;
            let tokens = encoding.get_ids().len() as u32;
            if tokens > limit {
                return Err(LlmError::InputTooLong { index, tokens, limit });
            }
            encodings.push(encoding);
        }
        let prompt_tokens = encodings.iter().map(|e| e.get_ids().len() as u32).sum();

        // Batch inputs of similar length together to keep padding small.
        let mut order: Vec<usize> = (0..encodings.len()).collect();
        order.sort_by_key(|&i| encodings[i].get_ids().len());
        let mut vectors = vec![Vec::new(); encodings.len()];
        for chunk in order.chunks(BATCH_SEQUENCES) {
            let len = chunk.iter().map(|&i| encodings[i].get_ids().len()).max().unwrap_or(0).max(1);
            let mut ids = Vec::with_capacity(chunk.len() * len);
            let mut types = Vec::with_capacity(chunk.len() * len);
            let mut mask = Vec::with_capacity(chunk.len() * len);
            for &i in chunk {
                let e = &encodings[i];
                let n = e.get_ids().len();
                ids.extend_from_slice(e.get_ids());
                types.extend_from_slice(e.get_type_ids());
                mask.extend(std::iter::repeat_n(1u32, n));
                let pad = len - n;
                ids.extend(std::iter::repeat_n(0u32, pad));
                types.extend(std::iter::repeat_n(0u32, pad));
                mask.extend(std::iter::repeat_n(0u32, pad));
            }
            let pooled =
                self.forward(chunk.len(), len, ids, types, mask).map_err(|e| LlmError::Inference(e.to_string()))?;
            for (row, &i) in chunk.iter().enumerate() {
                vectors[i] = pooled[row].clone();
            }
        }
        Ok(Embeddings { vectors, prompt_tokens })
    }

    fn forward(
        &self,
        batch: usize,
        len: usize,
        ids: Vec<u32>,
        types: Vec<u32>,
        mask: Vec<u32>,
    ) -> candle_core::Result<Vec<Vec<f32>>> {
        let inner = &*self.inner;
        let device = Device::Cpu;
        let ids = Tensor::from_vec(ids, (batch, len), &device)?;
        let types = Tensor::from_vec(types, (batch, len), &device)?;
        let mask = Tensor::from_vec(mask, (batch, len), &device)?;
        let hidden = inner.model.forward(&ids, &types, Some(&mask))?; // [B, L, H]
        let maskf = mask.to_dtype(DType::F32)?.unsqueeze(2)?; // [B, L, 1]
        let pooled = match inner.pooling {
            Pooling::Mean | Pooling::MeanSqrtLen => {
                let summed = hidden.broadcast_mul(&maskf)?.sum(1)?; // [B, H]
                let counts = maskf.sum(1)?.clamp(1e-9f32, f32::MAX)?; // [B, 1]
                let counts = if inner.pooling == Pooling::MeanSqrtLen { counts.sqrt()? } else { counts };
                summed.broadcast_div(&counts)?
            }
            Pooling::Cls => hidden.narrow(1, 0, 1)?.squeeze(1)?,
            Pooling::Max => {
                // Padding positions get a very negative value so they never win.
                let penalty = ((maskf.ones_like()? - &maskf)? * -1e9f64)?;
                hidden.broadcast_add(&penalty)?.max(1)?
            }
        };
        let pooled = if inner.normalize {
            let norm = pooled.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12f32, f32::MAX)?;
            pooled.broadcast_div(&norm)?
        } else {
            pooled
        };
        pooled.to_vec2::<f32>()
    }
}

/// Cosine similarity of two vectors (1.0 for identical directions).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    if na == 0.0 || nb == 0.0 { 0.0 } else { dot / (na * nb) }
}
