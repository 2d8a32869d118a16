//! Progressive rollouts: traffic moved to a deployment step by step, each step gated on what the
//! gateway measured, rolled back to where it started when a gate fails.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// Body of `POST /online-endpoints/{name}/rollouts`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RolloutSpec {
    /// The deployment that ends with 100 % of live traffic.
    pub to: String,
    /// Percent of live traffic for `to` at each step; increasing, ending at 100.
    #[serde(default = "default_steps")]
    pub steps: Vec<u32>,
    /// How long each step runs before its gates are checked, in seconds.
    #[serde(default = "default_interval")]
    pub interval_s: u64,
    /// Largest share (0..1) of `to`'s requests that may fail (5xx, 408, 424) in a step.
    #[serde(default = "default_error_rate")]
    pub max_error_rate: f64,
    /// Largest p99 latency of `to` in a step, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_p99_latency_ms: Option<f64>,
    /// Smallest share (0..1) of mirrored answers of `to` that agreed with the live ones, checked
    /// before the first step: mirror traffic to `to` first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_agreement: Option<f64>,
    /// Requests `to` must have served in a step before its gates are judged; until then the
    /// step goes on.
    #[serde(default = "default_min_requests")]
    pub min_requests: u64,
}

fn default_steps() -> Vec<u32> {
    vec![10, 25, 50, 100]
}
fn default_interval() -> u64 {
    60
}
fn default_error_rate() -> f64 {
    0.01
}
fn default_min_requests() -> u64 {
    10
}

/// Where a rollout is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum RolloutState {
    Running,
    /// `to` has 100 % of live traffic.
    Succeeded,
    /// A gate failed; traffic is back where it started.
    RolledBack,
    /// Stopped by a user; traffic is back where it started.
    Aborted,
}

impl RolloutState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "Running",
            Self::Succeeded => "Succeeded",
            Self::RolledBack => "RolledBack",
            Self::Aborted => "Aborted",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Running, Self::Succeeded, Self::RolledBack, Self::Aborted].into_iter().find(|v| v.as_str() == s)
    }

    pub fn is_terminal(self) -> bool {
        self != Self::Running
    }
}

/// What one finished step measured and decided.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RolloutStep {
    /// Percent of live traffic `to` had during the step.
    pub weight: u32,
    pub requests: u64,
    pub errors: u64,
    pub error_rate: f64,
    pub p99_ms: Option<f64>,
    pub passed: bool,
    /// Why the step failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub finished_at: String,
}

/// A rollout as `rollout show` reports it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Rollout {
    pub id: String,
    pub endpoint: String,
    #[serde(flatten)]
    pub spec: RolloutSpec,
    pub state: RolloutState,
    /// Index into `steps` of the step running now (or the last one run).
    pub step_index: usize,
    /// The live split before the rollout began; restored on rollback or abort.
    pub original_traffic: BTreeMap<String, u32>,
    /// Why the rollout ended, or what the current step is waiting for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    pub history: Vec<RolloutStep>,
    pub created_at: String,
    pub updated_at: String,
}
