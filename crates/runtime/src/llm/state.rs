//! What the LLM replica's handlers share: the model's name and task, and the engine that serves it.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use sluice_llm::{Embedder, Generator};
use tokio::sync::Semaphore;

use super::error::ApiError;

/// What the replica's model does; picks the routes it answers and `/info`'s `model_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Task {
    /// `/chat/completions` (the model's chat template) and `/completions` (raw text).
    ChatCompletion,
    /// `/completions` only.
    TextGeneration,
    /// `/embeddings` only.
    Embeddings,
}

impl Task {
    /// `/info`'s `model_type`.
    pub fn model_type(self) -> &'static str {
        match self {
            Task::ChatCompletion => "chat_completion",
            Task::TextGeneration => "text_generation",
            Task::Embeddings => "embeddings",
        }
    }
}

/// The engine behind the routes.
pub enum Engine {
    Generator(Generator),
    Embedder(EmbeddingEngine),
}

/// An embedder with bounded admission: at most `queue_capacity` requests admitted (waiting or running), and one
/// batch computing at a time (the embedder uses every thread it was given for one batch).
pub struct EmbeddingEngine {
    pub embedder: Embedder,
    pub queue_capacity: usize,
    pub admission: Arc<Semaphore>,
    pub running: Arc<Semaphore>,
    pub counters: EmbeddingCounters,
}

impl EmbeddingEngine {
    pub fn new(embedder: Embedder, queue_capacity: usize) -> Self {
        Self {
            embedder,
            queue_capacity,
            admission: Arc::new(Semaphore::new(queue_capacity.max(1))),
            running: Arc::new(Semaphore::new(1)),
            counters: EmbeddingCounters::default(),
        }
    }
}

/// Counters of the embeddings engine, for `/metrics` (they only grow).
#[derive(Debug, Default)]
pub struct EmbeddingCounters {
    pub requests_completed: AtomicU64,
    pub prompt_tokens: AtomicU64,
    pub inputs: AtomicU64,
}

/// Counters every task shares.
#[derive(Debug, Default)]
pub struct RequestCounters {
    /// Requests refused because the engine's queue was full (429).
    pub rejected_queue_full: AtomicU64,
    /// Requests whose deadline passed (408 or a stream cut short).
    pub deadline_exceeded: AtomicU64,
}

/// The handlers' shared state.
pub struct LlmState {
    /// The catalog name: `model` in every answer and `/info`'s `model_name`.
    pub name: String,
    pub task: Task,
    pub engine: Engine,
    /// Bodies above this get 413.
    pub max_request_bytes: usize,
    pub counters: RequestCounters,
}

/// The default body limit: 4 MiB.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;

impl LlmState {
    pub fn new(name: String, task: Task, engine: Engine) -> Arc<Self> {
        Arc::new(Self {
            name,
            task,
            engine,
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            counters: RequestCounters::default(),
        })
    }

    /// The generator, if the task serves `route` (`/completions` on any generation task, `/chat/completions`
    /// on chat models); 404 otherwise.
    pub fn generator(&self, route: &str, chat: bool) -> Result<&Generator, ApiError> {
        match (&self.engine, self.task) {
            (Engine::Generator(generator), Task::ChatCompletion) => Ok(generator),
            (Engine::Generator(generator), Task::TextGeneration) if !chat => Ok(generator),
            _ => Err(self.unsupported(route)),
        }
    }

    /// The embeddings engine, or 404 on a generation model.
    pub fn embedder(&self, route: &str) -> Result<&EmbeddingEngine, ApiError> {
        match &self.engine {
            Engine::Embedder(engine) => Ok(engine),
            Engine::Generator(_) => Err(self.unsupported(route)),
        }
    }

    fn unsupported(&self, route: &str) -> ApiError {
        ApiError::not_found(format!(
            "the model '{}' is a {} model and does not serve {route}",
            self.name,
            self.task.model_type()
        ))
    }
}
