//! The LLM replica (`sluice replica-llm`): a chat or text-generation model (GGUF, run by `sluice-llm`'s
//! continuous-batching engine) or a sentence-embedding model behind the Azure AI Model Inference API, which
//! is OpenAI-shaped.
//!
//! | route | serves |
//! |---|---|
//! | `GET /` | health (200 `Healthy`) |
//! | `GET /info` | `{model_name, model_type, model_provider_name: "Sluice"}` |
//! | `GET /metrics` | the engine's counters (Prometheus text) |
//! | `POST /chat/completions`, `/v1/chat/completions` | chat models |
//! | `POST /completions`, `/v1/completions` | chat and text-generation models (raw text prompt) |
//! | `POST /embeddings`, `/v1/embeddings` | embedding models |
//!
//! A route the model's task does not serve answers 404. There is no authentication: the gateway in front
//! checks keys and meters tokens, reading `x-sluice-prompt-tokens` / `x-sluice-completion-tokens` and, for
//! streams, the per-token chunks and the final `usage` (see [`stream`]). The gateway may pass the request's
//! remaining budget in `x-sluice-deadline-ms`; generation stops there (a non-streaming answer becomes 408, a
//! stream ends with `finish_reason: "length"`).
//!
//! Layout: `params`, `generate` and `embed` validate requests without an engine; `response` and `stream` build
//! answers; `generation`, `embeddings` and `metrics` are the handlers; `routes` the router; `replica` the
//! process.

pub mod embed;
mod embeddings;
pub mod error;
pub mod generate;
mod generation;
mod metrics;
pub mod params;
mod replica;
pub mod response;
mod routes;
mod state;
pub mod stream;

pub use generation::{COMPLETION_TOKENS_HEADER, PROMPT_TOKENS_HEADER};
pub use metrics::render as render_metrics;
pub use replica::{LlmReplicaArgs, llm_replica_main, load};
pub use routes::router;
pub use state::{DEFAULT_MAX_REQUEST_BYTES, EmbeddingEngine, Engine, LlmState, Task};
