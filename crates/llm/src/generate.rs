//! Text generation on llama.cpp with continuous batching.
//!
//! One dedicated OS thread owns the llama.cpp context. Requests wait in a bounded FIFO
//! queue; the engine admits them while a sequence slot is free and the KV-cache budget can
//! hold what they may need, and every step decodes ONE batch holding the next token of
//! every running sequence plus prompt chunks of newly admitted ones.

use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::Instant;

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaModel};
use llama_cpp_2::token::LlamaToken;
use tokio::sync::mpsc;

use crate::error::{LlmError, SubmitError};
use crate::sampling::Sampler;
use crate::text::{StopMatcher, StopResult, Utf8Stream};

/// Most tokens decoded in one llama.cpp call (prompt chunks plus one token per sequence).
const BATCH_TOKENS: u32 = 512;
/// llama.cpp's limit on parallel sequences in one context.
const MAX_SEQUENCES: u32 = 64;

/// How a [`Generator`] is sized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratorConfig {
    /// Per-sequence context (prompt + generated tokens). Default: the model's training
    /// context capped at 2048.
    pub context_length: Option<u32>,
    /// Sequences decoded together (continuous batching). Default 8.
    pub max_batch_sequences: u32,
    /// Total KV-cache budget in tokens across sequences. Default
    /// `context_length * max_batch_sequences`.
    pub kv_cache_tokens: Option<u32>,
    /// Requests waiting for a batch slot; beyond this, `submit` answers
    /// [`SubmitError::QueueFull`]. Default 64.
    pub queue_capacity: usize,
    /// CPU threads for llama.cpp. Default: the available parallelism.
    pub threads: Option<u32>,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        GeneratorConfig {
            context_length: None,
            max_batch_sequences: 8,
            kv_cache_tokens: None,
            queue_capacity: 64,
            threads: None,
        }
    }
}

/// What was loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelInfo {
    /// `general.name` from the GGUF metadata, or the file stem.
    pub name: String,
    /// `general.architecture` (for example `llama`).
    pub architecture: String,
    /// Effective per-sequence context length.
    pub context_length: u32,
    /// The context length the model was trained with.
    pub training_context_length: u32,
    /// Hidden size.
    pub embedding_length: u32,
    /// Whether the GGUF carries a chat template.
    pub has_chat_template: bool,
}

/// One chat message for [`Generator::apply_chat_template`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        ChatMessage { role: role.into(), content: content.into() }
    }
}

/// One generation request.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationRequest {
    /// The full prompt text; special tokens written in it (e.g. `<|im_start|>`) are parsed.
    pub prompt: String,
    /// Add the model's own leading special tokens (BOS) when its tokenizer asks for them.
    pub add_bos: bool,
    /// Most tokens to generate.
    pub max_tokens: u32,
    /// 0 means greedy.
    pub temperature: f32,
    /// Nucleus sampling mass (1.0 = off).
    pub top_p: f32,
    /// RNG seed for sampling; `None` picks a random one.
    pub seed: Option<u64>,
    /// Generation stops when one of these appears; it is not emitted.
    pub stop: Vec<String>,
    /// Generation ends with [`FinishReason::Deadline`] once this passes.
    pub deadline: Option<Instant>,
}

impl GenerationRequest {
    /// A greedy request with no stop strings and no deadline.
    pub fn new(prompt: impl Into<String>, max_tokens: u32) -> Self {
        GenerationRequest {
            prompt: prompt.into(),
            add_bos: true,
            max_tokens,
            temperature: 0.0,
            top_p: 1.0,
            seed: None,
            stop: Vec::new(),
            deadline: None,
        }
    }
}

/// Why a generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FinishReason {
    /// An end-of-generation token or a stop string.
    Stop,
    /// `max_tokens` reached or the sequence's context is full.
    Length,
    /// The request's deadline passed.
    Deadline,
}

/// Events of one generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GenerationEvent {
    /// Exactly one per generated token; `text` is the newly releasable text, possibly empty
    /// (a token that ends mid-character, or text held back as a possible stop-string start).
    /// End-of-generation tokens produce no event and are not counted.
    Token { text: String },
    /// The last event.
    /// `cached_tokens` of the prompt were reused from an earlier request's KV cells.
    Done { finish_reason: FinishReason, prompt_tokens: u32, completion_tokens: u32, cached_tokens: u32 },
}

/// The events of one submitted request. Dropping it cancels the generation: the sequence
/// leaves the batch at the next step and its KV cells are freed. A stream that ends
/// (`next` returns `None`) without a `Done` event means the engine failed.
#[derive(Debug)]
pub struct GenerationStream {
    pub prompt_tokens: u32,
    rx: mpsc::UnboundedReceiver<GenerationEvent>,
}

impl GenerationStream {
    /// The next event; `None` after `Done`.
    pub async fn next(&mut self) -> Option<GenerationEvent> {
        self.rx.recv().await
    }

    /// The next event, blocking the calling thread. Do not call from async code.
    pub fn blocking_next(&mut self) -> Option<GenerationEvent> {
        self.rx.blocking_recv()
    }
}

/// Counters of the engine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineStats {
    pub active_sequences: u32,
    pub waiting: u32,
    pub prompt_tokens_total: u64,
    pub generated_tokens_total: u64,
    pub completed_total: u64,
    pub cancelled_total: u64,
    pub kv_cache_tokens_used: u32,
    pub kv_cache_tokens_budget: u32,
    /// Prompt tokens whose KV cells were reused from an earlier sequence (prefix cache).
    pub prompt_cached_tokens_total: u64,
}

/// A loaded GGUF model with its batching engine. Cheap to clone; the engine thread stops
/// when the last clone is dropped.
#[derive(Clone)]
pub struct Generator {
    inner: Arc<Inner>,
}

struct Inner {
    model: Arc<LlamaModel>,
    info: ModelInfo,
    queue_capacity: usize,
    shared: Arc<Shared>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let mut st = self.shared.lock();
        st.shutdown = true;
        drop(st);
        self.shared.wake.notify_all();
    }
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Default)]
struct State {
    queue: VecDeque<Pending>,
    shutdown: bool,
    stopped: bool,
    stats: EngineStats,
}

struct Pending {
    tokens: Vec<LlamaToken>,
    request: GenerationRequest,
    tx: mpsc::UnboundedSender<GenerationEvent>,
    reserve: u32,
}

fn backend() -> Result<&'static LlamaBackend, String> {
    static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            llama_cpp_2::send_logs_to_tracing(llama_cpp_2::LogOptions::default());
            LlamaBackend::init().map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(Clone::clone)
}

struct EngineConfig {
    context_length: u32,
    kv_budget: u32,
    max_sequences: u32,
    /// Each sequence has its own KV stream, so a free slot can keep its cells for the next
    /// prompt that starts the same way (off with a shared pool: kept cells would take room
    /// from running sequences).
    prefix_cache: bool,
}

impl Generator {
    /// Loads a GGUF model and starts its engine thread. Blocking.
    pub fn load(path: &Path, config: GeneratorConfig) -> Result<Generator, LlmError> {
        if !path.is_file() {
            return Err(LlmError::load(path, "no such file"));
        }
        if config.max_batch_sequences == 0 || config.max_batch_sequences > MAX_SEQUENCES {
            return Err(LlmError::load(
                path,
                format!(
                    "max_batch_sequences must be between 1 and {MAX_SEQUENCES}, got {}",
                    config.max_batch_sequences
                ),
            ));
        }
        let backend = backend().map_err(|e| LlmError::load(path, format!("llama.cpp: {e}")))?;
        let model = LlamaModel::load_from_file(backend, path, &LlamaModelParams::default())
            .map_err(|e| LlmError::load(path, format!("{e} (not a GGUF model llama.cpp can read)")))?;
        let training = model.n_ctx_train();
        let context_length = config.context_length.unwrap_or(training.min(2048));
        if context_length < 2 {
            return Err(LlmError::load(path, format!("context_length must be at least 2, got {context_length}")));
        }
        let kv_budget = config.kv_cache_tokens.unwrap_or(context_length.saturating_mul(config.max_batch_sequences));
        if kv_budget < context_length {
            return Err(LlmError::load(
                path,
                format!("kv_cache_tokens ({kv_budget}) must be at least context_length ({context_length})"),
            ));
        }
        let threads = config
            .threads
            .filter(|t| *t > 0)
            .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get() as u32).unwrap_or(1));
        let name = model
            .meta_val_str("general.name")
            .ok()
            .filter(|s| !s.trim().is_empty())
            .unwrap_or_else(|| path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default());
        let info = ModelInfo {
            name,
            architecture: model.meta_val_str("general.architecture").unwrap_or_default(),
            context_length,
            training_context_length: training,
            embedding_length: u32::try_from(model.n_embd()).unwrap_or(0),
            has_chat_template: model.chat_template(None).is_ok(),
        };

        // With one KV stream per sequence (llama.cpp's non-unified cache, each stream holding
        // kv_budget / max_batch_sequences cells) attention of a sequence never sees other
        // sequences' cells, so greedy output is the same alone or batched (tested). A budget
        // smaller than context_length * max_batch_sequences needs one shared (unified) pool,
        // where masked-out cells of other sequences change float rounding in attention and
        // greedy output may differ slightly between alone and batched runs.
        let unified_kv = kv_budget < context_length.saturating_mul(config.max_batch_sequences);
        let ctx_params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(kv_budget))
            .with_n_batch(BATCH_TOKENS)
            .with_n_ubatch(BATCH_TOKENS)
            .with_n_seq_max(config.max_batch_sequences)
            .with_kv_unified(unified_kv)
            .with_n_threads(threads as i32)
            .with_n_threads_batch(threads as i32);

        let model = Arc::new(model);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                stats: EngineStats { kv_cache_tokens_budget: kv_budget, ..EngineStats::default() },
                ..State::default()
            }),
            wake: Condvar::new(),
        });
        let engine_config = EngineConfig {
            context_length,
            kv_budget,
            max_sequences: config.max_batch_sequences,
            prefix_cache: !unified_kv,
        };
        let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
        let thread_model = Arc::clone(&model);
        let thread_shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("sluice-llm-engine".into())
            .spawn(move || engine_thread(thread_model, ctx_params, thread_shared, engine_config, ready_tx))
            .map_err(|e| LlmError::load(path, format!("cannot start the engine thread: {e}")))?;
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                return Err(LlmError::load(
                    path,
                    format!("cannot create a llama.cpp context with {kv_budget} KV tokens: {e}"),
                ));
            }
            Err(_) => return Err(LlmError::load(path, "the engine thread died while starting")),
        }
        Ok(Generator { inner: Arc::new(Inner { model, info, queue_capacity: config.queue_capacity, shared }) })
    }

    pub fn info(&self) -> &ModelInfo {
        &self.inner.info
    }

    /// Formats messages with the model's chat template (from the GGUF metadata, rendered by
    /// llama.cpp's built-in template engine) and appends the assistant generation prompt.
    pub fn apply_chat_template(&self, messages: &[ChatMessage]) -> Result<String, LlmError> {
        let model = &self.inner.model;
        let template =
            model.chat_template(None).map_err(|_| LlmError::NoChatTemplate { model: self.inner.info.name.clone() })?;
        let messages = messages
            .iter()
            .map(|m| LlamaChatMessage::new(m.role.clone(), m.content.clone()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| LlmError::InvalidInput(format!("chat message: {e}")))?;
        model.apply_chat_template(&template, &messages, true).map_err(|e| LlmError::ChatTemplate(e.to_string()))
    }

    /// Tokens of `text` (special tokens written in it are parsed, no BOS added).
    pub fn count_tokens(&self, text: &str) -> Result<u32, LlmError> {
        Ok(self.tokenize(text, false).len() as u32)
    }

    fn tokenize(&self, text: &str, add_bos: bool) -> Vec<LlamaToken> {
        self.inner.model.vocab().tokenize(text.as_bytes(), add_bos, true)
    }

    /// Queues a request. Tokenises the prompt on the calling thread but never waits for the
    /// engine, so it may be called from async code.
    pub fn submit(&self, request: GenerationRequest) -> Result<GenerationStream, SubmitError> {
        let tokens = self.tokenize(&request.prompt, request.add_bos);
        if tokens.is_empty() {
            return Err(SubmitError::EmptyPrompt);
        }
        let prompt_tokens = u32::try_from(tokens.len()).unwrap_or(u32::MAX);
        let limit = self.inner.info.context_length;
        if prompt_tokens.saturating_add(1) > limit {
            return Err(SubmitError::PromptTooLong { prompt_tokens, limit });
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let stream = GenerationStream { prompt_tokens, rx };
        let mut st = self.inner.shared.lock();
        if st.stopped || st.shutdown {
            return Err(SubmitError::Stopped);
        }
        if request.max_tokens == 0 {
            let _ = tx.send(GenerationEvent::Done {
                finish_reason: FinishReason::Length,
                prompt_tokens,
                completion_tokens: 0,
                cached_tokens: 0,
            });
            st.stats.completed_total += 1;
            return Ok(stream);
        }
        if st.queue.len() >= self.inner.queue_capacity {
            return Err(SubmitError::QueueFull { capacity: self.inner.queue_capacity });
        }
        let reserve = prompt_tokens.saturating_add(request.max_tokens).min(limit);
        st.queue.push_back(Pending { tokens, request, tx, reserve });
        drop(st);
        self.inner.shared.wake.notify_all();
        Ok(stream)
    }

    pub fn stats(&self) -> EngineStats {
        let st = self.inner.shared.lock();
        let mut stats = st.stats.clone();
        stats.waiting = st.queue.len() as u32;
        stats
    }
}

impl std::fmt::Debug for Generator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generator").field("info", &self.inner.info).finish_non_exhaustive()
    }
}

// ---------------------------------------------------------------------------------------
// Engine thread
// ---------------------------------------------------------------------------------------

struct Seq {
    slot: i32,
    prompt: Vec<LlamaToken>,
    /// Prompt tokens found in the slot's kept cells (not decoded again).
    cached: u32,
    /// The tokens in the KV cache, by position: its length is the next token's position.
    history: Vec<LlamaToken>,
    /// Sampled token not yet decoded (fed at position `history.len()`).
    next_token: Option<LlamaToken>,
    /// `next_token` is in the batch being decoded.
    fed: bool,
    generated: u32,
    max_tokens: u32,
    reserve: u32,
    sampler: Sampler,
    utf8: Utf8Stream,
    stop: StopMatcher,
    deadline: Option<Instant>,
    tx: mpsc::UnboundedSender<GenerationEvent>,
    logits_index: Option<i32>,
}

impl Seq {
    fn prompt_tokens(&self) -> u32 {
        self.prompt.len() as u32
    }

    fn done(&self, finish_reason: FinishReason) {
        let _ = self.tx.send(GenerationEvent::Done {
            finish_reason,
            prompt_tokens: self.prompt_tokens(),
            completion_tokens: self.generated,
            cached_tokens: self.cached,
        });
    }
}

enum Outcome {
    Finished,
    Cancelled,
    Failed,
}

fn engine_thread(
    model: Arc<LlamaModel>,
    ctx_params: LlamaContextParams,
    shared: Arc<Shared>,
    config: EngineConfig,
    ready: std::sync::mpsc::SyncSender<Result<(), String>>,
) {
    let context = backend().and_then(|b| model.new_context(b, ctx_params).map_err(|e| e.to_string()));
    let mut ctx = match context {
        Ok(ctx) => ctx,
        Err(e) => {
            let _ = ready.send(Err(e));
            shared.lock().stopped = true;
            return;
        }
    };
    let _ = ready.send(Ok(()));
    let mut engine = Engine {
        model: &model,
        shared: &shared,
        slots: (0..config.max_sequences).map(|_| None).collect(),
        kept: (0..config.max_sequences).map(|_| (Vec::new(), 0)).collect(),
        uses: 0,
        config,
        batch: LlamaBatch::new(BATCH_TOKENS as usize, 1),
    };
    engine.run(&mut ctx);
    let mut st = shared.lock();
    st.stopped = true;
    // Pending requests see their stream end without `Done`.
    st.queue.clear();
}

struct Engine<'m> {
    model: &'m LlamaModel,
    shared: &'m Shared,
    config: EngineConfig,
    slots: Vec<Option<Seq>>,
    /// Per free slot: the tokens whose KV cells it kept, and when it was last used.
    kept: Vec<(Vec<LlamaToken>, u64)>,
    uses: u64,
    batch: LlamaBatch<'static>,
}

impl Engine<'_> {
    fn run(&mut self, ctx: &mut LlamaContext<'_>) {
        loop {
            if !self.admit(ctx) {
                return;
            }
            self.sweep(ctx);
            if self.slots.iter().all(Option::is_none) {
                continue;
            }
            self.step(ctx);
        }
    }

    fn reserved(&self) -> u32 {
        self.slots.iter().flatten().map(|s| s.reserve).sum()
    }

    fn update_gauges(&self, st: &mut State) {
        st.stats.active_sequences = self.slots.iter().flatten().count() as u32;
        st.stats.kv_cache_tokens_used = self.slots.iter().flatten().map(|s| s.history.len() as u32).sum::<u32>();
    }

    /// Moves waiting requests into free slots; sleeps while there is nothing to do.
    /// Returns false when the engine must stop.
    fn admit(&mut self, ctx: &mut LlamaContext<'_>) -> bool {
        let mut st = self.shared.lock();
        loop {
            if st.shutdown {
                return false;
            }
            let now = Instant::now();
            // Drop cancelled and expired waiting requests.
            let mut cancelled = 0;
            let mut expired = 0;
            st.queue.retain(|p| {
                if p.tx.is_closed() {
                    cancelled += 1;
                    return false;
                }
                if p.request.deadline.is_some_and(|d| d <= now) {
                    let _ = p.tx.send(GenerationEvent::Done {
                        finish_reason: FinishReason::Deadline,
                        prompt_tokens: p.tokens.len() as u32,
                        completion_tokens: 0,
                        cached_tokens: 0,
                    });
                    expired += 1;
                    return false;
                }
                true
            });
            st.stats.cancelled_total += cancelled;
            st.stats.completed_total += expired;

            let mut reserved = self.reserved();
            while let Some(front) = st.queue.front() {
                let Some((slot, reuse)) = self.pick_slot(ctx, &front.tokens) else {
                    break;
                };
                if reserved + front.reserve > self.config.kv_budget {
                    break;
                }
                let Some(p) = st.queue.pop_front() else {
                    break;
                };
                reserved += p.reserve;
                st.stats.prompt_tokens_total += p.tokens.len() as u64;
                st.stats.prompt_cached_tokens_total += reuse as u64;
                let seed = p.request.seed.unwrap_or_else(rand::random);
                self.uses += 1;
                // `pick_slot` left exactly the reused tokens in the slot.
                let history = std::mem::take(&mut self.kept[slot].0);
                self.kept[slot].1 = self.uses;
                self.slots[slot] = Some(Seq {
                    slot: slot as i32,
                    prompt: p.tokens,
                    cached: reuse as u32,
                    history,
                    next_token: None,
                    fed: false,
                    generated: 0,
                    max_tokens: p.request.max_tokens,
                    reserve: p.reserve,
                    sampler: Sampler::new(p.request.temperature, p.request.top_p, seed),
                    utf8: Utf8Stream::default(),
                    stop: StopMatcher::new(p.request.stop),
                    deadline: p.request.deadline,
                    tx: p.tx,
                    logits_index: None,
                });
            }
            self.update_gauges(&mut st);
            if self.slots.iter().any(Option::is_some) {
                return true;
            }
            st = self.shared.wake.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// A free slot for `prompt` and how many of its first tokens that slot's kept KV cells
    /// already hold: the slot with the longest shared prefix, else the least recently used.
    /// At least the last prompt token is always decoded again, for its logits. Cells past the
    /// shared prefix are dropped here (the caller takes the slot).
    fn pick_slot(&mut self, ctx: &mut LlamaContext<'_>, prompt: &[LlamaToken]) -> Option<(usize, usize)> {
        let free = (0..self.slots.len()).filter(|&i| self.slots[i].is_none());
        let shared = |i: usize| self.kept[i].0.iter().zip(prompt).take_while(|(a, b)| a == b).count();
        let (slot, common) =
            free.map(|i| (i, shared(i))).max_by_key(|&(i, common)| (common, std::cmp::Reverse(self.kept[i].1)))?;
        let reuse = common.min(prompt.len().saturating_sub(1));
        if reuse < self.kept[slot].0.len() {
            self.drop_cells(ctx, slot, reuse);
        }
        Some((slot, reuse))
    }

    /// Frees a slot's KV cells from position `from` on.
    fn drop_cells(&mut self, ctx: &mut LlamaContext<'_>, slot: usize, from: usize) {
        self.kept[slot].0.truncate(from);
        if let Err(e) = ctx.clear_kv_cache_seq(Some(slot as u32), Some(from as u32), None) {
            tracing::warn!(error = %e, slot, "clearing KV cells failed");
        }
    }

    /// Removes sequences whose stream was dropped or whose deadline passed.
    fn sweep(&mut self, ctx: &mut LlamaContext<'_>) {
        let now = Instant::now();
        for i in 0..self.slots.len() {
            let outcome = match &self.slots[i] {
                Some(seq) if seq.tx.is_closed() => Outcome::Cancelled,
                Some(seq) if seq.deadline.is_some_and(|d| d <= now) => Outcome::Finished,
                _ => continue,
            };
            let done = matches!(outcome, Outcome::Finished).then_some(FinishReason::Deadline);
            self.remove(ctx, i, outcome, done);
        }
    }

    /// Takes a sequence out of the batch, frees its KV cells, updates the counters and
    /// then (so that a caller who saw `Done` also sees the counters) sends `Done`.
    fn remove(&mut self, ctx: &mut LlamaContext<'_>, index: usize, outcome: Outcome, done: Option<FinishReason>) {
        let Some(mut seq) = self.slots[index].take() else {
            return;
        };
        // The cells stay for a later prompt with the same beginning, unless decoding failed.
        if self.config.prefix_cache && !matches!(outcome, Outcome::Failed) {
            self.kept[index].0 = std::mem::take(&mut seq.history);
        } else {
            self.drop_cells(ctx, index, 0);
        }
        let mut st = self.shared.lock();
        match outcome {
            Outcome::Finished => st.stats.completed_total += 1,
            Outcome::Cancelled => st.stats.cancelled_total += 1,
            Outcome::Failed => {}
        }
        self.update_gauges(&mut st);
        drop(st);
        if let Some(reason) = done {
            seq.done(reason);
        }
    }

    fn step(&mut self, ctx: &mut LlamaContext<'_>) {
        self.batch.clear();
        let mut n: i32 = 0;
        let capacity = BATCH_TOKENS as i32;
        // Running sequences first: one token each.
        for seq in self.slots.iter_mut().flatten() {
            seq.logits_index = None;
            if let Some(token) = seq.next_token
                && n < capacity
                && self.batch.add(token, seq.history.len() as i32, &[seq.slot], true).is_ok()
            {
                seq.logits_index = Some(n);
                seq.fed = true;
                n += 1;
            }
        }
        // Then prompt chunks of sequences still prefilling.
        for seq in self.slots.iter_mut().flatten() {
            let total = seq.prompt.len();
            // Prompt tokens not in the KV cache yet, from the first one missing.
            while seq.history.len() < total && n < capacity {
                let pos = seq.history.len();
                let last = pos + 1 == total;
                if self.batch.add(seq.prompt[pos], pos as i32, &[seq.slot], last).is_err() {
                    break;
                }
                seq.history.push(seq.prompt[pos]);
                if last {
                    seq.logits_index = Some(n);
                }
                n += 1;
            }
        }
        if n == 0 {
            return;
        }
        if let Err(e) = ctx.decode(&mut self.batch) {
            tracing::error!(error = %e, "llama.cpp decode failed; failing the batch");
            for i in 0..self.slots.len() {
                if self.slots[i].is_some() {
                    self.remove(ctx, i, Outcome::Failed, None);
                }
            }
            return;
        }
        let model = self.model;
        let vocab = model.vocab();
        for i in 0..self.slots.len() {
            let Some(seq) = self.slots[i].as_mut() else {
                continue;
            };
            if seq.fed {
                seq.fed = false;
                seq.history.extend(seq.next_token.take());
            }
            let Some(index) = seq.logits_index.take() else {
                continue;
            };
            let logits = ctx.get_logits_ith(index);
            let token = LlamaToken(seq.sampler.sample(logits) as i32);
            if vocab.is_eog(token) {
                self.remove(ctx, i, Outcome::Finished, Some(FinishReason::Stop));
                continue;
            }
            seq.generated += 1;
            self.shared.lock().stats.generated_tokens_total += 1;
            let piece = vocab.token_to_piece(token, false, None);
            let text = seq.utf8.push(&piece);
            let (mut out, mut finish) = match seq.stop.push(&text) {
                StopResult::Continue(s) => (s, None),
                StopResult::Stopped(s) => (s, Some(FinishReason::Stop)),
            };
            if finish.is_none() {
                if seq.generated >= seq.max_tokens || seq.prompt_tokens() + seq.generated >= self.config.context_length
                {
                    finish = Some(FinishReason::Length);
                } else if seq.deadline.is_some_and(|d| d <= Instant::now()) {
                    finish = Some(FinishReason::Deadline);
                }
                if finish.is_some() {
                    // Last token: release everything still held back.
                    let rest = seq.utf8.finish();
                    match seq.stop.push(&rest) {
                        StopResult::Continue(s) => {
                            out.push_str(&s);
                            out.push_str(&seq.stop.flush());
                        }
                        StopResult::Stopped(s) => {
                            out.push_str(&s);
                            finish = Some(FinishReason::Stop);
                        }
                    }
                }
            }
            if seq.tx.send(GenerationEvent::Token { text: out }).is_err() {
                self.remove(ctx, i, Outcome::Cancelled, None);
                continue;
            }
            match finish {
                Some(reason) => self.remove(ctx, i, Outcome::Finished, Some(reason)),
                None => seq.next_token = Some(token),
            }
        }
        let mut st = self.shared.lock();
        self.update_gauges(&mut st);
    }
}
