//! `sluice replica-llm`: loads a GGUF generator or an embedding model, binds, prints
//! `SLUICE_REPLICA_LISTENING <addr>` once ready, and serves until SIGTERM. A model that cannot be loaded exits
//! 3 with a one-line reason on stderr.

use axum::serve::ListenerExt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use sluice_llm::{Embedder, EmbedderConfig, Generator, GeneratorConfig};

use super::routes::router;
use super::state::{DEFAULT_MAX_REQUEST_BYTES, EmbeddingEngine, Engine, LlmState, Task};
use crate::replica::{EXIT_LOAD_FAILED, EXIT_SERVER_FAILED, announce, shutdown_signal};

/// Arguments of `sluice replica-llm`.
#[derive(Debug, Clone, clap::Args)]
pub struct LlmReplicaArgs {
    /// The catalog model's name: `model` in every answer and `/info`'s `model_name`.
    #[arg(long)]
    pub name: String,
    /// What the model does, which picks the routes it serves.
    #[arg(long, value_enum)]
    pub task: Task,
    /// A `.gguf` file (chat-completion, text-generation) or an embedding model folder (embeddings).
    #[arg(long, value_name = "PATH")]
    pub model: PathBuf,
    /// Address to listen on; port 0 picks a free port (printed on the ready line).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0", alias = "listen")]
    pub addr: SocketAddr,
    /// Context length in tokens (default: the model's training context, as the engine caps it).
    #[arg(long, value_name = "N")]
    pub context_length: Option<u32>,
    /// Sequences generated together in one batch.
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_batch_sequences: u32,
    /// Requests that may wait for a sequence slot (or the embedder) before more get 429.
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub queue_capacity: usize,
    /// KV cache size in tokens shared by all sequences (default: chosen by the engine).
    #[arg(long, value_name = "N")]
    pub kv_cache_tokens: Option<u32>,
    /// Compute threads (default: chosen by the engine).
    #[arg(long, value_name = "N")]
    pub threads: Option<u32>,
    /// Largest accepted request body; larger ones get 413.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_REQUEST_BYTES)]
    pub max_request_bytes: usize,
}

/// Runs the replica to completion; exits 0 after SIGTERM/SIGINT, 3 when the model cannot be loaded, 1 when the
/// server fails.
pub fn llm_replica_main(args: LlmReplicaArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("sluice-llm").build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_SERVER_FAILED);
        }
    };
    let loading = args.clone();
    let engine = match runtime.block_on(runtime.spawn_blocking(move || load(&loading))) {
        Ok(Ok(engine)) => engine,
        Ok(Err(reason)) => {
            eprintln!("error: {}", one_line(&reason));
            return ExitCode::from(EXIT_LOAD_FAILED);
        }
        Err(e) => {
            eprintln!("error: loading the model failed: {}", one_line(&e.to_string()));
            return ExitCode::from(EXIT_LOAD_FAILED);
        }
    };
    let mut state = LlmState::new(args.name.clone(), args.task, engine);
    if let Some(state) = Arc::get_mut(&mut state) {
        state.max_request_bytes = args.max_request_bytes;
    }
    let served = runtime.block_on(serve(state, args.addr));
    drop(runtime);
    match served {
        Ok(()) => {
            tracing::info!("replica stopped");
            ExitCode::SUCCESS
        }
        Err(reason) => {
            eprintln!("error: {}", one_line(&reason));
            ExitCode::from(EXIT_SERVER_FAILED)
        }
    }
}

/// Loads the model the arguments name (blocking).
pub fn load(args: &LlmReplicaArgs) -> Result<Engine, String> {
    if !args.model.exists() {
        return Err(format!("the model path {} does not exist", args.model.display()));
    }
    let started = std::time::Instant::now();
    let engine = match args.task {
        Task::ChatCompletion | Task::TextGeneration => {
            let config = GeneratorConfig {
                context_length: args.context_length,
                max_batch_sequences: args.max_batch_sequences,
                kv_cache_tokens: args.kv_cache_tokens,
                queue_capacity: args.queue_capacity,
                threads: args.threads,
            };
            let generator = Generator::load(&args.model, config)
                .map_err(|e| format!("cannot load the model {}: {e}", args.model.display()))?;
            if args.task == Task::ChatCompletion && !generator.info().has_chat_template {
                return Err(format!(
                    "the model {} has no chat template, so it cannot serve chat-completion; use --task \
                     text-generation",
                    args.model.display()
                ));
            }
            let info = generator.info();
            tracing::info!(
                name = %args.name, architecture = %info.architecture, context_length = info.context_length,
                ms = started.elapsed().as_millis() as u64, "generator loaded"
            );
            Engine::Generator(generator)
        }
        Task::Embeddings => {
            let embedder = Embedder::load(&args.model, EmbedderConfig { threads: args.threads })
                .map_err(|e| format!("cannot load the embedding model {}: {e}", args.model.display()))?;
            tracing::info!(
                name = %args.name, dimensions = embedder.info().dimensions,
                ms = started.elapsed().as_millis() as u64, "embedder loaded"
            );
            Engine::Embedder(EmbeddingEngine::new(embedder, args.queue_capacity))
        }
    };
    Ok(engine)
}

async fn serve(state: Arc<LlmState>, addr: SocketAddr) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let shutdown = shutdown_signal().map_err(|e| format!("cannot install the SIGTERM handler: {e}"))?;
    let address = listener.local_addr().map_err(|e| format!("cannot read the bound address: {e}"))?;
    announce(address).map_err(|e| format!("cannot write the ready line to stdout: {e}"))?;
    axum::serve(listener.tap_io(crate::http::no_delay), router(state))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| format!("the server failed: {e}"))
}

/// The supervisor shows the last stderr line as the start failure's reason: keep it to one.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
