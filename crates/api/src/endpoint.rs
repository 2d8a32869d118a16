//! Online endpoints: a stable scoring URL, an auth mode and a traffic map, and their credentials.

use crate::AuthModeWire;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// What a user writes (Azure ML's `managedOnlineEndpoint` YAML) and what `create`/`update` send.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OnlineEndpointSpec {
    #[serde(rename = "$schema", default, skip_serializing)]
    pub schema: Option<String>,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    #[serde(default = "default_auth_mode")]
    pub auth_mode: AuthModeWire,
    /// Percent of live traffic per deployment; integers summing to 100 (or all 0).
    #[serde(default)]
    #[schema(value_type = BTreeMap<String, i64>)]
    pub traffic: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    #[schema(value_type = BTreeMap<String, i64>)]
    pub mirror_traffic: BTreeMap<String, serde_json::Value>,
    /// Accepted for compatibility (Kubernetes endpoints); kept, not used by the local backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compute: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object)]
    pub identity: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_network_access: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

fn default_auth_mode() -> AuthModeWire {
    AuthModeWire::Key
}

/// An online endpoint as `show` reports it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OnlineEndpoint {
    pub name: String,
    pub description: Option<String>,
    pub tags: BTreeMap<String, String>,
    pub auth_mode: AuthModeWire,
    pub traffic: BTreeMap<String, u32>,
    pub mirror_traffic: BTreeMap<String, u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compute: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object)]
    pub identity: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_network_access: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    pub provisioning_state: String,
    pub scoring_uri: String,
    pub openapi_uri: String,
    pub created_at: String,
    pub updated_at: String,
    /// Live and mirrored traffic each deployment has served since the server started.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub deployment_stats: BTreeMap<String, DeploymentTrafficStats>,
}

/// What the gateway measured for one deployment.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct DeploymentTrafficStats {
    pub requests: u64,
    /// Answers that were the deployment's fault: 5xx, 408 and 424.
    pub errors: u64,
    pub error_rate: f64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// Requests refused with 429 because the deployment was at its concurrency limit and its
    /// queue was full (not counted in `requests`).
    #[serde(default)]
    pub refused: u64,
    /// Requests being served now, and waiting for a slot.
    #[serde(default)]
    pub in_flight: u64,
    #[serde(default)]
    pub queued: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<MirrorStats>,
}

/// Mirrored copies a deployment received, and how its answers compared with the live ones.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct MirrorStats {
    pub requests: u64,
    pub errors: u64,
    /// Copies dropped because the mirror was saturated.
    pub shed: u64,
    pub p99_ms: Option<f64>,
    /// Copies whose output could be compared with the live output, and those that agreed.
    pub compared: u64,
    pub agreed: u64,
    pub agreement: Option<f64>,
}

/// `get-credentials` for `auth_mode: key`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EndpointKeys {
    pub primary_key: String,
    pub secondary_key: String,
}

/// `get-credentials` for `auth_mode: aml_token`; times are epoch seconds as in Azure's REST API.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EndpointToken {
    pub access_token: String,
    pub expiry_time_utc: i64,
    pub refresh_after_time_utc: i64,
    pub token_type: String,
}

/// Either credential, as `get-credentials` answers.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum EndpointCredentials {
    Keys(EndpointKeys),
    Token(EndpointToken),
}

/// Body of `regenerate-keys`; `keyValue` equal to the current key (as Azure's SDK sends) or
/// absent means "generate a fresh one".
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegenerateKeys {
    pub key_type: KeyType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_value: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum KeyType {
    #[serde(alias = "primary")]
    Primary,
    #[serde(alias = "secondary")]
    Secondary,
}
