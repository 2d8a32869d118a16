//! Online deployments: a model on replicas behind an endpoint, as Azure ML's
//! `managedOnlineDeployment` YAML describes it.

use crate::ModelTypeWire;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// What a user writes and what `create`/`update` send.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OnlineDeploymentSpec {
    #[serde(rename = "$schema", default, skip_serializing)]
    pub schema: Option<String>,
    pub name: String,
    #[serde(default)]
    pub endpoint_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schema(value_type = Object)]
    pub properties: BTreeMap<String, serde_json::Value>,
    /// `azureml:NAME:VERSION`, `azureml:NAME@latest`, or an inline model (the CLI registers
    /// inline models and sends the reference).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelField>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_mount_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_configuration: Option<CodeConfiguration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object)]
    pub environment: Option<serde_json::Value>,
    /// Values may be written as numbers or booleans (`WORKER_COUNT: 2`); they are kept as text.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty", deserialize_with = "scalar_strings")]
    pub environment_variables: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_type: Option<String>,
    #[serde(default = "one")]
    #[schema(value_type = i64)]
    pub instance_count: serde_json::Value,
    #[serde(default)]
    pub request_settings: RequestSettings,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub liveness_probe: Option<ProbeSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness_probe: Option<ProbeSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object)]
    pub scale_settings: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_insights_enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress_public_network_access: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object)]
    pub data_collector: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object)]
    pub resources: Option<serde_json::Value>,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub deployment_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_network_connection: Option<bool>,
}

/// A map whose values are strings, numbers or booleans, read as strings.
fn scalar_strings<'de, D: serde::Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    let raw = BTreeMap::<String, serde_json::Value>::deserialize(d)?;
    raw.into_iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => Ok((k, s)),
            serde_json::Value::Number(n) => Ok((k, n.to_string())),
            serde_json::Value::Bool(b) => Ok((k, b.to_string())),
            other => Err(serde::de::Error::custom(format!("{k}: {other} is not a string, number or boolean"))),
        })
        .collect()
}

fn one() -> serde_json::Value {
    serde_json::Value::from(1)
}

/// `model:` as a reference or an inline definition.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum ModelField {
    Reference(String),
    Inline(InlineModel),
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InlineModel {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub version: Option<serde_json::Value>,
    pub path: String,
    #[serde(rename = "type", default)]
    pub model_type: Option<ModelTypeWire>,
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CodeConfiguration {
    pub code: String,
    /// Required, except with a custom container (`environment.inference_config`), where the
    /// code folder is only the command's working directory.
    #[serde(default)]
    pub scoring_script: String,
}

/// Azure ML's `request_settings`, with its defaults.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestSettings {
    #[serde(default = "default_timeout")]
    pub request_timeout_ms: u64,
    #[serde(default = "default_concurrency")]
    pub max_concurrent_requests_per_instance: u32,
    #[serde(default = "default_queue_wait")]
    pub max_queue_wait_ms: u64,
}

fn default_timeout() -> u64 {
    5000
}
fn default_concurrency() -> u32 {
    1
}
fn default_queue_wait() -> u64 {
    500
}

impl Default for RequestSettings {
    fn default() -> Self {
        Self {
            request_timeout_ms: default_timeout(),
            max_concurrent_requests_per_instance: default_concurrency(),
            max_queue_wait_ms: default_queue_wait(),
        }
    }
}

/// A liveness or readiness probe, in seconds, with Azure ML's defaults.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProbeSettings {
    #[serde(default = "d10")]
    pub initial_delay: u32,
    #[serde(default = "d10")]
    pub period: u32,
    #[serde(default = "d2")]
    pub timeout: u32,
    #[serde(default = "d1")]
    pub success_threshold: u32,
    #[serde(default = "d30")]
    pub failure_threshold: u32,
}

fn d10() -> u32 {
    10
}
fn d2() -> u32 {
    2
}
fn d1() -> u32 {
    1
}
fn d30() -> u32 {
    30
}

/// An online deployment as `show` reports it: the spec as stored plus its state.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OnlineDeployment {
    #[serde(flatten)]
    pub spec: OnlineDeploymentSpec,
    pub provisioning_state: String,
    /// Why the deployment failed, or what it is waiting for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    pub replicas: ReplicaCounts,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct ReplicaCounts {
    pub desired: u32,
    pub ready: u32,
    /// Each replica the backend tracks (both generations during a rolling replacement).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub instances: Vec<ReplicaState>,
}

/// One replica as `show` reports it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct ReplicaState {
    pub index: u32,
    pub generation: u64,
    /// `Starting`, `Ready`, `NotReady`, `Restarting`, `Failed` or `Stopping`.
    pub state: String,
    pub restarts: u32,
    /// Why it is restarting, not ready or failed, e.g. `restarting: failed liveness 3 times (last: ...)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// How its last run ended, e.g. `exit status: 3`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_exit: Option<String>,
}

/// Answer of `get-logs`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeploymentLogs {
    pub content: String,
}
