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
    /// A scoring script to run (in Python workers) instead of serving the model natively; with
    /// a custom container, only its folder is used (the command's working directory).
    pub code: Option<CodeRef>,
    /// The environment: Python packages for the scoring script, or a custom container.
    pub environment: Option<EnvironmentChoice>,
    pub scale: ScaleSettings,
    /// Payload logging (`data_collector`), off unless a collection is enabled.
    pub data_collection: Option<DataCollection>,
}

/// `code_configuration`: the uploaded code folder and the script in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeRef {
    /// The code folder's artifact (`sha256:<hex>`) or, before upload, its path.
    pub code: String,
    /// Relative to the code folder, without `..`.
    pub scoring_script: String,
}

/// A deployment's `environment`: written inline, or a registered one (`azureml:NAME:VERSION`).
#[derive(Debug, Clone)]
pub enum EnvironmentChoice {
    Inline(ValidEnvironment),
    /// `version` is `None` for `@latest`, which the control plane pins when the spec is stored.
    Registered {
        name: String,
        version: Option<String>,
    },
}

/// An environment whose fields passed every rule.
#[derive(Debug, Clone, Default)]
pub struct ValidEnvironment {
    /// The Python packages to install, from the conda file.
    pub pip: Option<crate::PipPlan>,
    /// A custom container (`inference_config`), run as a command on the local backend.
    pub container: Option<ContainerCommand>,
    /// Kept for container backends; the local backend does not pull images.
    pub image: Option<String>,
}

/// `inference_config` plus the command that starts the server (a Sluice field: on the local
/// backend there is no image to take the entry point from).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerCommand {
    pub command: Vec<String>,
    pub liveness: Route,
    pub readiness: Route,
    pub scoring: Route,
}

/// One `{port, path}` route of `inference_config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub port: u16,
    pub path: String,
}

/// `scale_settings`: a fixed `instance_count`, or replicas scaled on measured concurrency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ScaleSettings {
    #[default]
    Default,
    TargetUtilization(Autoscale),
}

/// `scale_settings: {type: target_utilization, ...}` (Azure ML's Kubernetes fields, with
/// Sluice's `stabilization_window` and `cold_start_timeout_ms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Autoscale {
    /// 0 scales the deployment to zero when idle and back on the first request.
    pub min_instances: u32,
    pub max_instances: u32,
    /// Wanted (in-flight + queued) / (replicas × max_concurrent_requests_per_instance), percent.
    pub target_utilization_percentage: u32,
    /// Seconds between decisions.
    pub polling_interval_s: u32,
    /// Seconds the load must stay low before replicas are removed (and idle before zero).
    pub stabilization_window_s: u32,
    /// How long a request to a deployment scaled to zero is held for a replica to start.
    pub cold_start_timeout_ms: u64,
}

/// `data_collector` with payload logging on: which payloads, how many, how files roll.
#[derive(Debug, Clone, PartialEq)]
pub struct DataCollection {
    /// Share of requests recorded, 0 to 1.
    pub sampling_rate: f64,
    pub rolling: Rolling,
    /// The reserved `request` and `response` collections.
    pub request: bool,
    pub response: bool,
    /// Request headers recorded with each request (lower case); credentials never are.
    pub capture_headers: Vec<String>,
}

/// How often a new file is started (`rolling_rate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rolling {
    Minute,
    Hour,
    Day,
}
