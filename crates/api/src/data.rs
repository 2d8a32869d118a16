//! Data assets: an uploaded folder (`uri_folder`) or file (`uri_file`) registered once
//! (`sluice data create`) and named by batch jobs as `azureml:NAME:VERSION` or
//! `azureml:NAME@latest`.

use crate::InputTypeWire;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// Body of `PUT /data/{name}/versions/{version}`: Azure ML's data asset with `path` replaced by
/// the uploaded artifact (the CLI uploads the folder or file the YAML names).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DataAssetCreate {
    /// `uri_folder` or `uri_file`; must match what the artifact holds.
    #[serde(rename = "type")]
    pub data_type: InputTypeWire,
    /// The uploaded artifact, `sha256:<hex>`.
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

/// A registered data asset version.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DataAsset {
    /// `azureml:NAME:VERSION`.
    pub id: String,
    pub name: String,
    pub version: String,
    /// `uri_folder` or `uri_file`.
    #[serde(rename = "type")]
    pub data_type: String,
    /// The uploaded artifact, `sha256:<hex>`.
    pub path: String,
    /// The folder's or file's name inside the artifact.
    pub artifact_path: String,
    pub description: Option<String>,
    pub tags: BTreeMap<String, String>,
    pub created_at: String,
}

/// A job input that names a data asset: `azureml:NAME:VERSION` or `azureml:NAME@latest`.
/// `None` for anything else (paths, artifacts, `azureml://` datastore URIs); `Some(Err)` for an
/// `azureml:` reference that is malformed.
pub fn reference(s: &str) -> Option<Result<(String, Option<String>), String>> {
    let bare = s.trim().strip_prefix("azureml:")?;
    if bare.starts_with("//") || bare.starts_with('/') {
        return None;
    }
    let parsed = match (bare.split_once('@'), bare.split_once(':')) {
        (Some((n, "latest")), None) => Some((n, None)),
        (None, Some((n, v))) if !v.is_empty() && !v.contains(':') => Some((n, Some(v.to_owned()))),
        _ => None,
    };
    let ok = parsed
        .filter(|(n, _)| !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')));
    Some(
        ok.map(|(n, v)| (n.to_owned(), v))
            .ok_or_else(|| format!("{s:?}: expected a data asset as azureml:NAME:VERSION or azureml:NAME@latest")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_asset_references() {
        assert_eq!(reference("azureml:heart@latest"), Some(Ok(("heart".into(), None))));
        assert_eq!(reference("azureml:heart:3"), Some(Ok(("heart".into(), Some("3".into())))));
        assert_eq!(reference("/data/in"), None);
        assert_eq!(reference("sha256:abc"), None);
        assert_eq!(reference("azureml://datastores/x/paths/y"), None);
        assert!(matches!(reference("azureml:heart"), Some(Err(_))));
        assert!(matches!(reference("azureml:bad name@latest"), Some(Err(_))));
    }
}
