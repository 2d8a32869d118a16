//! Usage records and what they cost: instance-seconds of online deployments, compute-seconds of
//! batch jobs, tokens of serverless endpoints per key, with prices per unit from the server's
//! config.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// Prices per unit (config file key `prices`). An instance type without its own price uses
/// `default`; everything is 0 unless configured.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Prices {
    #[serde(default = "usd")]
    pub currency: String,
    /// Per instance-hour, by instance type (`default` for the rest).
    #[serde(default)]
    pub instance_hour: BTreeMap<String, f64>,
    /// Per compute-hour of batch jobs, by instance type (`default` for the rest).
    #[serde(default)]
    pub batch_compute_hour: BTreeMap<String, f64>,
    /// Per 1,000 tokens of serverless endpoints.
    #[serde(default)]
    pub per_1k_tokens: f64,
    /// The built-in catalog models' prices per 1,000 tokens, by model id or name; replaces the
    /// catalog's own price in `model-catalog show` and in serverless usage.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub catalog: BTreeMap<String, TokenPrices>,
}

/// A catalog model's prices per 1,000 tokens.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TokenPrices {
    pub input_per_1k: f64,
    pub output_per_1k: f64,
}

fn usd() -> String {
    "USD".to_owned()
}

impl Prices {
    fn of(map: &BTreeMap<String, f64>, instance_type: &str) -> f64 {
        map.get(instance_type).or_else(|| map.get("default")).copied().unwrap_or(0.0)
    }

    /// What a record cost.
    pub fn cost(&self, r: &UsageRecord) -> f64 {
        r.instance_seconds / 3600.0 * Self::of(&self.instance_hour, &r.instance_type)
            + r.compute_seconds / 3600.0 * Self::of(&self.batch_compute_hour, &r.instance_type)
            + r.tokens as f64 / 1000.0 * self.per_1k_tokens
    }
}

/// One hour of one deployment's (or serverless key's) usage.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UsageRecord {
    /// `online`, `batch` or `serverless`.
    pub kind: String,
    pub endpoint: String,
    pub deployment: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub key_name: String,
    pub instance_type: String,
    /// The hour's start, RFC 3339 UTC.
    pub hour: String,
    pub instance_seconds: f64,
    pub compute_seconds: f64,
    pub tokens: i64,
    pub cost: f64,
}

/// Answer of `GET /usage`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UsageReport {
    pub records: Vec<UsageRecord>,
    pub total_instance_seconds: f64,
    pub total_compute_seconds: f64,
    pub total_tokens: i64,
    pub total_cost: f64,
    pub currency: String,
}
