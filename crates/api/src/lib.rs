//! Wire types of the management REST API and the YAML files users write, with OpenAPI schemas.
//!
//! **API boundary.** Field names are snake_case as in Azure ML's YAML and `az ml` output; enums
//! read case-insensitively (`AMLToken` = `aml_token`). [`validate`] maps these types onto the
//! rules in `sluice-domain`, naming the field that broke one.

pub mod batch;
pub mod collector;
pub mod compute;
pub mod data;
pub mod deployment;
pub mod endpoint;
mod enums;
pub mod environment;
pub mod error;
pub mod model;
pub mod rollout;
mod scale;
pub mod serverless;
pub mod usage;
pub mod validate;
pub mod yaml;

pub use enums::{AuthModeWire, InputTypeWire, LoggingLevelWire, ModelTypeWire, OutputActionWire};
pub use error::{ErrorBody, ErrorCode, ErrorDetail, FieldError};

/// The workspace every install starts with.
pub const DEFAULT_WORKSPACE: &str = "default";
