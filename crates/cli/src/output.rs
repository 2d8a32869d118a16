//! Printing results as JSON (the default, like `az`), YAML, or a table of a few key columns.

use crate::error::CliError;
use crate::traffic::describe;
use comfy_table::{Table, presets};
use serde::Serialize;
use sluice_api::deployment::{ModelField, OnlineDeployment};
use sluice_api::endpoint::{EndpointCredentials, OnlineEndpoint};
use sluice_api::environment::Environment;
use sluice_api::model::Model;
use sluice_api::usage::{UsageRecord, UsageReport};
use std::io::Write;

/// `-o/--output`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Json,
    Yaml,
    Table,
}

/// A resource's key columns for `-o table`.
pub(crate) trait Row {
    const HEADERS: &'static [&'static str];
    fn row(&self) -> Vec<String>;
}

impl Row for Model {
    const HEADERS: &'static [&'static str] = &["name", "version", "type", "path", "artifact", "created_at"];
    fn row(&self) -> Vec<String> {
        let artifact: String = self.artifact.chars().take(19).collect();
        vec![
            self.name.clone(),
            self.version.clone(),
            self.model_type.as_str().to_owned(),
            self.path.clone(),
            artifact,
            self.created_at.clone(),
        ]
    }
}

impl Row for UsageRecord {
    const HEADERS: &'static [&'static str] =
        &["hour", "kind", "endpoint", "deployment", "instance_type", "instance_s", "compute_s", "tokens", "cost"];
    fn row(&self) -> Vec<String> {
        vec![
            self.hour.clone(),
            self.kind.clone(),
            self.endpoint.clone(),
            if self.key_name.is_empty() {
                self.deployment.clone()
            } else {
                format!("{} ({})", self.deployment, self.key_name)
            },
            self.instance_type.clone(),
            format!("{:.1}", self.instance_seconds),
            format!("{:.1}", self.compute_seconds),
            self.tokens.to_string(),
            format!("{:.4}", self.cost),
        ]
    }
}

impl Row for UsageReport {
    const HEADERS: &'static [&'static str] = &["instance_s", "compute_s", "tokens", "cost", "currency"];
    fn row(&self) -> Vec<String> {
        vec![
            format!("{:.1}", self.total_instance_seconds),
            format!("{:.1}", self.total_compute_seconds),
            self.total_tokens.to_string(),
            format!("{:.4}", self.total_cost),
            self.currency.clone(),
        ]
    }
}

impl Row for Environment {
    const HEADERS: &'static [&'static str] = &["name", "version", "kind", "build", "created_at"];
    fn row(&self) -> Vec<String> {
        let kind = if self.spec.get("inference_config").is_some() {
            "custom container"
        } else if self.spec.get("conda_file").is_some() {
            "conda"
        } else {
            "image"
        };
        vec![self.name.clone(), self.version.clone(), kind.into(), self.build.state.clone(), self.created_at.clone()]
    }
}

impl Row for OnlineEndpoint {
    const HEADERS: &'static [&'static str] =
        &["name", "auth_mode", "provisioning_state", "traffic", "mirror_traffic", "scoring_uri"];
    fn row(&self) -> Vec<String> {
        vec![
            self.name.clone(),
            self.auth_mode.as_str().to_owned(),
            self.provisioning_state.clone(),
            describe(&self.traffic),
            describe(&self.mirror_traffic),
            self.scoring_uri.clone(),
        ]
    }
}

impl Row for OnlineDeployment {
    const HEADERS: &'static [&'static str] =
        &["name", "endpoint_name", "model", "instance_type", "replicas", "provisioning_state"];
    fn row(&self) -> Vec<String> {
        let model = match &self.spec.model {
            Some(ModelField::Reference(r)) => r.clone(),
            Some(ModelField::Inline(m)) => m.path.clone(),
            None => String::new(),
        };
        vec![
            self.spec.name.clone(),
            self.spec.endpoint_name.clone().unwrap_or_default(),
            model,
            self.spec.instance_type.clone().unwrap_or_default(),
            format!("{}/{}", self.replicas.ready, self.replicas.desired),
            self.provisioning_state.clone(),
        ]
    }
}

impl Row for EndpointCredentials {
    const HEADERS: &'static [&'static str] = &["primaryKey / accessToken", "secondaryKey / expiryTimeUtc"];
    fn row(&self) -> Vec<String> {
        match self {
            Self::Keys(k) => vec![k.primary_key.clone(), k.secondary_key.clone()],
            Self::Token(t) => vec![t.access_token.clone(), t.expiry_time_utc.to_string()],
        }
    }
}

/// Prints one resource.
pub(crate) fn print_one<T: Serialize + Row>(format: OutputFormat, value: &T) -> Result<(), CliError> {
    match format {
        OutputFormat::Table => print_text(&table(std::slice::from_ref(value))),
        _ => print_text(&serialize(format, value)?),
    }
}

/// Prints a list of resources.
pub(crate) fn print_list<T: Serialize + Row>(format: OutputFormat, values: &[T]) -> Result<(), CliError> {
    match format {
        OutputFormat::Table => print_text(&table(values)),
        _ => print_text(&serialize(format, &values)?),
    }
}

fn serialize<T: Serialize + ?Sized>(format: OutputFormat, value: &T) -> Result<String, CliError> {
    let text = match format {
        OutputFormat::Yaml => serde_yaml::to_string(value).map_err(|e| e.to_string()),
        _ => serde_json::to_string_pretty(value).map_err(|e| e.to_string()),
    };
    text.map_err(|e| CliError::usage(format!("cannot format the result: {e}")))
}

fn table<T: Row>(values: &[T]) -> String {
    let mut t = Table::new();
    t.load_preset(presets::UTF8_HORIZONTAL_ONLY).set_header(T::HEADERS.to_vec());
    for v in values {
        t.add_row(v.row());
    }
    t.to_string()
}

/// Writes `text` and a final newline to stdout; a closed pipe (`| head`) is not an error.
pub(crate) fn print_text(text: &str) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    let nl = if text.ends_with('\n') || text.is_empty() { "" } else { "\n" };
    match write!(out, "{text}{nl}").and_then(|_| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(CliError::usage(format!("cannot write to stdout: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> Model {
        serde_json::from_value(serde_json::json!({
            "id": "azureml:iris:1", "name": "iris", "version": "1", "type": "triton_model",
            "artifact": "sha256:0123456789abcdef0123456789", "path": "model_repository",
            "description": null, "tags": {}, "created_at": "2026-01-01T00:00:00Z"
        }))
        .unwrap()
    }

    #[test]
    fn tables_show_key_columns() {
        let text = table(&[model()]);
        for want in ["name", "version", "iris", "triton_model", "sha256:0123456789ab", "model_repository"] {
            assert!(text.contains(want), "{want} missing in\n{text}");
        }
        assert!(!text.contains("sha256:0123456789abcdef"), "artifact is shortened\n{text}");
    }

    #[test]
    fn json_is_pretty_and_yaml_is_yaml() {
        let json = serialize(OutputFormat::Json, &model()).unwrap();
        assert!(json.starts_with("{\n  \"id\": \"azureml:iris:1\""), "{json}");
        let yaml = serialize(OutputFormat::Yaml, &vec![model()]).unwrap();
        assert!(yaml.starts_with("- id: azureml:iris:1\n"), "{yaml}");
    }
}
