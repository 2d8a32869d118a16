//! Batch endpoints and batch deployments, as Azure ML's `batchEndpoint` and
//! `modelBatchDeployment` YAML describe them; jobs are in [`job`], the data plane's invocation
//! bodies in [`invoke`], and the mapping onto domain rules in [`validate`].

pub mod invoke;
pub mod job;
pub mod validate;

use crate::deployment::{CodeConfiguration, ModelField};
use crate::{AuthModeWire, LoggingLevelWire, OutputActionWire};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// What a user writes for `sluice batch-endpoint create` (Azure ML's `batchEndpoint` YAML).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchEndpointSpec {
    #[serde(rename = "$schema", default, skip_serializing)]
    pub schema: Option<String>,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// Only `aad_token`: invocations authenticate with the caller's own (management) credential.
    #[serde(default = "aad_token")]
    pub auth_mode: AuthModeWire,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defaults: Option<BatchEndpointDefaults>,
}

fn aad_token() -> AuthModeWire {
    AuthModeWire::AadToken
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchEndpointDefaults {
    /// The deployment an invocation that names none runs on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_name: Option<String>,
}

/// A batch endpoint as `show` reports it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BatchEndpoint {
    pub name: String,
    pub description: Option<String>,
    pub tags: BTreeMap<String, String>,
    pub auth_mode: AuthModeWire,
    pub defaults: BatchEndpointDefaults,
    pub provisioning_state: String,
    /// Where jobs are invoked: `POST {scoring_uri}` with Azure ML's body.
    pub scoring_uri: String,
    pub created_at: String,
    pub updated_at: String,
}

/// What a user writes for `sluice batch-deployment create` (Azure ML's `modelBatchDeployment`
/// YAML). Settings sit under `settings`, or at the root as in the legacy schema (no `type`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchDeploymentSpec {
    #[serde(rename = "$schema", default, skip_serializing)]
    pub schema: Option<String>,
    pub name: String,
    #[serde(default)]
    pub endpoint_name: Option<String>,
    /// `model` (the default); `pipeline` deployments are not supported.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub deployment_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schema(value_type = Object)]
    pub properties: BTreeMap<String, serde_json::Value>,
    /// `azureml:NAME:VERSION`, `azureml:NAME@latest`, or an inline model (the CLI registers it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelField>,
    /// The `run(mini_batch)` driver; not needed for MLflow models.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_configuration: Option<CodeConfiguration>,
    /// An inline environment (`conda_file`) or `azureml:NAME:VERSION`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object)]
    pub environment: Option<serde_json::Value>,
    /// `azureml:<compute name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compute: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<BatchResources>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<BatchSettingsSpec>,
    // The legacy schema's settings, at the root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mini_batch_size: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency_per_instance: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_action: Option<OutputActionWire>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_file_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_settings: Option<RetrySettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_threshold: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logging_level: Option<LoggingLevelWire>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "optional_scalar_strings")]
    pub environment_variables: Option<BTreeMap<String, String>>,
}

/// A map whose values are strings, numbers or booleans, read as strings (`WORKERS: 2`).
fn optional_scalar_strings<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<BTreeMap<String, String>>, D::Error> {
    let raw = BTreeMap::<String, serde_json::Value>::deserialize(d)?;
    raw.into_iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => Ok((k, s)),
            serde_json::Value::Number(n) => Ok((k, n.to_string())),
            serde_json::Value::Bool(b) => Ok((k, b.to_string())),
            other => Err(serde::de::Error::custom(format!("{k}: {other} is not a string, number or boolean"))),
        })
        .collect::<Result<_, _>>()
        .map(Some)
}

/// `resources`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchResources {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_count: Option<u32>,
}

/// `settings` of a `type: model` deployment; every field optional, Azure's defaults apply.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchSettingsSpec {
    /// Files per `run()` call (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mini_batch_size: Option<u32>,
    /// Worker processes per instance (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency_per_instance: Option<u32>,
    /// Also accepted here, as Azure's SDK does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_count: Option<u32>,
    /// `append_row` (default) or `summary_only`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_action: Option<OutputActionWire>,
    /// Default `predictions.csv`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_file_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_settings: Option<RetrySettings>,
    /// Failed items tolerated before the job fails; -1 (default) ignores failures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_threshold: Option<i64>,
    /// `info` (default), `warning` or `debug`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logging_level: Option<LoggingLevelWire>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "optional_scalar_strings")]
    pub environment_variables: Option<BTreeMap<String, String>>,
}

/// `retry_settings`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetrySettings {
    /// Retries of a failing mini-batch (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<u32>,
    /// Seconds one attempt may take (default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u32>,
}

/// A batch deployment as `show` reports it: the spec as stored (model pinned, code uploaded),
/// its state, and the settings jobs get (Azure's defaults filled in).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BatchDeployment {
    #[serde(flatten)]
    pub spec: BatchDeploymentSpec,
    pub provisioning_state: String,
    /// Why the deployment failed, or what it is waiting for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    pub effective_settings: EffectiveBatchSettings,
    pub created_at: String,
    pub updated_at: String,
}

/// Settings with defaults applied, as a job runs with them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EffectiveBatchSettings {
    pub mini_batch_size: u32,
    pub instance_count: u32,
    pub max_concurrency_per_instance: u32,
    pub output_action: String,
    pub output_file_name: String,
    pub max_retries: u32,
    pub timeout: u32,
    pub error_threshold: i64,
    pub logging_level: String,
}

impl From<&sluice_domain::batch::BatchSettings> for EffectiveBatchSettings {
    fn from(s: &sluice_domain::batch::BatchSettings) -> Self {
        Self {
            mini_batch_size: s.mini_batch_size,
            instance_count: s.instance_count,
            max_concurrency_per_instance: s.max_concurrency_per_instance,
            output_action: OutputActionWire::from(s.output_action).as_str().to_owned(),
            output_file_name: s.output_file_name.clone(),
            max_retries: s.max_retries,
            timeout: s.timeout_s,
            error_threshold: s.error_threshold.map_or(-1, |t| i64::try_from(t).unwrap_or(i64::MAX)),
            logging_level: LoggingLevelWire::from(s.logging_level).as_str().to_owned(),
        }
    }
}
