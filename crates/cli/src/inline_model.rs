//! Inline models in a deployment YAML (`model: {path, type}`): checked locally, then uploaded
//! and registered so the deployment can be sent with `model: azureml:NAME:VERSION`.

use crate::error::CliError;
use crate::spec_file::{SpecDoc, version_text};
use sluice_api::deployment::InlineModel;
use sluice_api::model::{Model, ModelCreate};
use sluice_api::{FieldError, ModelTypeWire};
use sluice_client::SluiceClient;
use sluice_domain::{ModelName, ModelVersion};
use std::io::IsTerminal;

/// Stands in for an inline model while the rest of a deployment is validated.
pub(crate) const PLACEHOLDER_REF: &str = "azureml:inline-model:1";

/// The name an inline model is registered under when it gives none.
pub(crate) fn default_name(endpoint: &str, deployment: &str) -> String {
    format!("{endpoint}-{deployment}-model")
}

/// Problems with an inline model that can be found without the server.
pub(crate) fn check(doc: &SpecDoc, model: &InlineModel) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if let Some(Err(e)) = model.name.as_deref().map(ModelName::parse) {
        errors.push(FieldError { field: "model.name".into(), message: e.0 });
    }
    match model.version.as_ref().map(|v| (v, version_text(v))) {
        Some((v, None)) => errors
            .push(FieldError { field: "model.version".into(), message: format!("{v}: expected a version such as 1") }),
        Some((_, Some(v))) => {
            if let Err(e) = ModelVersion::parse(&v) {
                errors.push(FieldError { field: "model.version".into(), message: e.0 });
            }
        }
        None => {}
    }
    let path = doc.resolve(&model.path);
    if !path.exists() {
        errors.push(FieldError {
            field: "model.path".into(),
            message: format!(
                "{}: no such file or folder (paths are relative to the YAML file's folder)",
                path.display()
            ),
        });
    }
    errors
}

/// Uploads and registers `model`, returning `azureml:NAME:VERSION`. Without a version, an
/// existing version with the same files and type is reused, so re-running `update` with an
/// unchanged folder registers nothing new; otherwise the next free integer is taken.
pub(crate) async fn register(
    client: &SluiceClient,
    doc: &SpecDoc,
    model: &InlineModel,
    endpoint: &str,
    deployment: &str,
) -> Result<String, CliError> {
    let name = model.name.clone().unwrap_or_else(|| default_name(endpoint, deployment));
    let model_type = model.model_type.unwrap_or(ModelTypeWire::CustomModel);
    let path = doc.resolve(&model.path);
    let artifact = client.upload_dir_or_file(&path).await.map_err(|e| CliError::client_from(&doc.label, e))?;
    let same_files = |m: &Model| m.artifact == artifact.artifact && m.model_type == model_type;
    let version = match model.version.as_ref().and_then(version_text) {
        Some(v) => v,
        None => {
            let existing = match client.list_model_versions(&name).await {
                Ok(v) => v,
                Err(e) if e.is_not_found() => Vec::new(),
                Err(e) => return Err(e.into()),
            };
            if let Some(m) = existing.iter().filter(|m| same_files(m)).max_by_key(|m| version_key(&m.version)) {
                note(&format!("using model azureml:{}:{} (same files)", m.name, m.version));
                return Ok(reference(&m.name, &m.version));
            }
            let highest = existing.iter().filter_map(|m| m.version.parse::<u64>().ok()).max().unwrap_or(0);
            (highest + 1).to_string()
        }
    };
    let body = ModelCreate {
        model_type,
        artifact: artifact.artifact.clone(),
        description: model.description.clone(),
        tags: Default::default(),
    };
    match client.create_model(&name, &version, &body).await {
        Ok(m) => {
            note(&format!("registered model azureml:{}:{} from {}", m.name, m.version, path.display()));
            Ok(reference(&m.name, &m.version))
        }
        Err(e) if e.is_conflict() => {
            let existing = client.get_model(&name, &version).await?;
            if same_files(&existing) {
                Ok(reference(&name, &version))
            } else {
                Err(doc.invalid(vec![FieldError {
                    field: "model.version".into(),
                    message: format!(
                        "model azureml:{name}:{version} already exists with other files: change model.version, or leave it out to take the next free one"
                    ),
                }]))
            }
        }
        Err(e) => Err(CliError::client_from(&doc.label, e)),
    }
}

fn reference(name: &str, version: &str) -> String {
    format!("azureml:{name}:{version}")
}

fn version_key(v: &str) -> (u8, u64, String) {
    ModelVersion::parse(v).map(|v| v.sort_key()).unwrap_or((0, 0, v.to_owned()))
}

/// A progress note for people watching a terminal; scripts get clean stderr.
fn note(text: &str) {
    if std::io::stderr().is_terminal() {
        eprintln!("{text}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inline(path: &str, name: Option<&str>, version: Option<serde_json::Value>) -> InlineModel {
        InlineModel { name: name.map(Into::into), version, path: path.into(), model_type: None, description: None }
    }

    #[test]
    fn inline_models_are_checked_against_the_yaml_folder() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("model")).unwrap();
        let file = dir.path().join("d.yml");
        std::fs::write(&file, "name: blue\n").unwrap();
        let doc = SpecDoc::read(&file).unwrap();
        assert!(check(&doc, &inline("model", None, Some(2.into()))).is_empty());
        let errors = check(&doc, &inline("nope", Some("bad name"), Some(serde_json::json!([1]))));
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["model.name", "model.version", "model.path"]);
        assert!(errors[2].message.contains("nope: no such file"), "{}", errors[2].message);
    }

    #[test]
    fn names_and_versions_follow_azure() {
        assert_eq!(default_name("iris-ep", "blue"), "iris-ep-blue-model");
        assert!(version_key("10") > version_key("9"));
        assert!(version_key("9") > version_key("beta"));
    }
}
