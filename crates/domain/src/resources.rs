//! Validated resources: what inner code accepts once the edge has checked a spec.

use crate::{AuthMode, InstanceType, ModelRef, ResourceName};
use std::collections::BTreeMap;

/// An online endpoint whose fields passed every rule that needs no other resource. Traffic is
/// checked against the endpoint's deployments by [`crate::Traffic::new`] where they are known.
#[derive(Debug, Clone)]
pub struct ValidEndpoint {
    pub name: ResourceName,
    pub auth_mode: AuthMode,
    pub traffic: BTreeMap<String, i64>,
    pub mirror_traffic: BTreeMap<String, i64>,
}

/// What a deployment's replicas run.
#[derive(Debug, Clone)]
pub struct ValidDeployment {
    pub name: ResourceName,
    pub endpoint_name: ResourceName,
    pub model: ModelRef,
    pub instance_type: InstanceType,
    pub instance_count: u32,
    pub request_timeout_ms: u64,
    pub max_concurrent_requests_per_instance: u32,
    pub max_queue_wait_ms: u64,
    pub environment_variables: BTreeMap<String, String>,
    /// A scoring script to run (in Python workers) instead of serving the model natively.
    pub code: Option<CodeRef>,
    /// The Python packages the scoring script needs, from the environment's conda file.
    pub environment: Option<crate::PipPlan>,
}

/// `code_configuration`: the uploaded code folder and the script in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeRef {
    /// The code folder's artifact (`sha256:<hex>`) or, before upload, its path.
    pub code: String,
    /// Relative to the code folder, without `..`.
    pub scoring_script: String,
}
