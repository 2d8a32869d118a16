//! Models: a registered name + version pointing at an uploaded, content-hashed artifact.

use crate::ModelTypeWire;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// The YAML a user writes for `sluice model create --file` (Azure ML's model asset schema).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelYaml {
    #[serde(rename = "$schema", default)]
    pub schema: Option<String>,
    pub name: Option<String>,
    pub version: Option<serde_json::Value>,
    #[serde(rename = "type", default)]
    pub model_type: Option<ModelTypeWire>,
    pub path: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub properties: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    pub stage: Option<String>,
}

/// Body of `PUT /models/{name}/versions/{version}`: the files were uploaded first to
/// `POST /artifacts`, which answered with their content hash.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelCreate {
    #[serde(rename = "type", default = "default_model_type")]
    pub model_type: ModelTypeWire,
    /// `sha256:<hex>` as returned by the artifact upload.
    pub artifact: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

fn default_model_type() -> ModelTypeWire {
    ModelTypeWire::CustomModel
}

/// A registered model version.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Model {
    /// `azureml:NAME:VERSION`.
    pub id: String,
    pub name: String,
    pub version: String,
    #[serde(rename = "type")]
    pub model_type: ModelTypeWire,
    pub artifact: String,
    /// The folder or file name the user registered; kept under the model directory as Azure does.
    pub path: String,
    pub description: Option<String>,
    pub tags: BTreeMap<String, String>,
    pub created_at: String,
}

/// Answer of `POST /artifacts`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Artifact {
    /// `sha256:<hex>` of the uploaded archive.
    pub artifact: String,
    /// The top-level name inside the archive (the registered folder's basename).
    pub path: String,
    pub files: u64,
    pub bytes: u64,
}
