//! The user's model: names, references, traffic, instance types and their rules. No IO.
//!
//! Every rule a resource must obey lives here as a constructor that either returns a validated
//! value or a [`RuleError`] saying what is expected. Wire formats (YAML, JSON) live in
//! `sluice-api`, which maps its fields onto these constructors.

pub mod batch;
pub mod compute;
mod environment;
mod instance_type;
mod names;
mod references;
mod resources;
mod traffic;

pub use environment::{CondaDependency, PipPlan, pip_plan};
pub use instance_type::{InstanceType, Resources};
pub use names::{ModelName, ModelVersion, ResourceName};
pub use references::ModelRef;
pub use resources::{
    Autoscale, CodeRef, ContainerCommand, DataCollection, EnvironmentChoice, Rolling, Route, ScaleSettings,
    ValidDeployment, ValidEndpoint, ValidEnvironment,
};
pub use traffic::{Traffic, shift_to};

/// A value broke a rule; the message says what is expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RuleError(pub String);

impl RuleError {
    pub fn new(message: impl Into<String>) -> Self {
        RuleError(message.into())
    }
}

/// How a data-plane caller proves who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthMode {
    Key,
    AmlToken,
    AadToken,
}

/// What kind of files a model version holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ModelType {
    CustomModel,
    MlflowModel,
    TritonModel,
}

/// Where a resource is in its lifecycle, as Azure ML reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProvisioningState {
    Creating,
    Updating,
    Succeeded,
    Failed,
    Deleting,
}

impl ProvisioningState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Creating => "Creating",
            Self::Updating => "Updating",
            Self::Succeeded => "Succeeded",
            Self::Failed => "Failed",
            Self::Deleting => "Deleting",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "Creating" => Self::Creating,
            "Updating" => Self::Updating,
            "Succeeded" => Self::Succeeded,
            "Failed" => Self::Failed,
            "Deleting" => Self::Deleting,
            _ => return None,
        })
    }

    /// Whether the reconciler has finished with the resource.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed)
    }
}

/// Limits from Azure ML that Sluice keeps.
pub mod limits {
    /// Deployments one endpoint may hold.
    pub const MAX_DEPLOYMENTS_PER_ENDPOINT: usize = 20;
    /// Replicas one deployment may ask for.
    pub const MAX_INSTANCE_COUNT: u32 = 50;
    /// Largest `request_timeout_ms` (managed endpoints allow 180 s).
    pub const MAX_REQUEST_TIMEOUT_MS: u64 = 180_000;
}

/// Header names of the gateway's exchange with an LLM engine replica (the names only: the domain knows
/// no HTTP types). The gateway sets the deadline; the engine answers with the token counts it metered.
pub mod engine_headers {
    /// Request: the milliseconds left of the request's budget; the engine stops generating there.
    pub const DEADLINE: &str = "x-sluice-deadline-ms";
    /// Response: the prompt's token count (every generation and embedding answer).
    pub const PROMPT_TOKENS: &str = "x-sluice-prompt-tokens";
    /// Response: the generated token count (non-streaming answers; streams carry it in their usage).
    pub const COMPLETION_TOKENS: &str = "x-sluice-completion-tokens";
}

/// The Unix socket a replica listening on loopback port `port` also answers on: a Linux abstract name
/// (leading NUL, as tokio takes it), so it needs no file, is scoped to the network namespace exactly as the
/// loopback port is, and any process that may reach the port may reach it. The gateway reaches a local replica
/// through it (cheaper than TCP on loopback) and falls back to TCP when it does not answer.
pub fn replica_socket_name(port: u16) -> String {
    format!("\0sluice-replica-{port}")
}

/// The abstract Unix socket on which a native replica listening on loopback port `port` takes many requests at
/// once on one connection (`sluice_net::mux`); the gateway prefers it to [`replica_socket_name`] and falls back to
/// that when it does not answer.
pub fn replica_mux_socket_name(port: u16) -> String {
    format!("\0sluice-replica-mux-{port}")
}
