//! What a job runs, frozen when it is invoked: the model's and code's files, the environment,
//! the settings after the invocation's overrides; and the listing of its input into mini-batches.

use super::Batch;
use crate::ApiError;
use serde::{Deserialize, Serialize};
use sluice_api::FieldError;
use sluice_api::batch::job::BatchJobCreate;
use sluice_api::batch::{BatchDeploymentSpec, EffectiveBatchSettings, validate};
use sluice_domain::batch::{BatchSettings, OutputAction, batch_limits};
use sluice_domain::{EnvironmentChoice, limits};
use sluice_store::BatchDeploymentRow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A job's plan (stored as the job's `plan_json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobPlan {
    /// `azureml:NAME:VERSION`.
    pub model: String,
    pub model_type: String,
    pub model_artifact: String,
    pub model_path: String,
    /// The code folder's artifact and the batch driver in it; `None` scores an MLflow model.
    pub code: Option<PlanCode>,
    /// The environment's fields (a registered one copied in); `None` is the default Python, or
    /// the model's own `conda.yaml` for an MLflow model.
    pub environment: Option<serde_json::Value>,
    /// The compute pool (absent in plans written before pools existed: the default one).
    #[serde(default = "default_pool")]
    pub compute: String,
    pub settings: PlanSettings,
}

fn default_pool() -> String {
    sluice_domain::compute::DEFAULT_POOL.to_owned()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlanCode {
    pub artifact: String,
    pub scoring_script: String,
}

/// The settings a job runs with.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlanSettings {
    pub mini_batch_size: u32,
    pub instance_count: u32,
    pub max_concurrency_per_instance: u32,
    pub append_row: bool,
    pub output_file_name: String,
    pub max_retries: u32,
    pub timeout_s: u32,
    pub error_threshold: Option<u64>,
    /// `DEBUG`, `INFO` or `WARNING`.
    pub logging_level: String,
    pub environment_variables: BTreeMap<String, String>,
}

impl PlanSettings {
    fn from_domain(s: &BatchSettings) -> Self {
        Self {
            mini_batch_size: s.mini_batch_size,
            instance_count: s.instance_count,
            max_concurrency_per_instance: s.max_concurrency_per_instance,
            append_row: s.output_action == OutputAction::AppendRow,
            output_file_name: s.output_file_name.clone(),
            max_retries: s.max_retries,
            timeout_s: s.timeout_s,
            error_threshold: s.error_threshold,
            logging_level: s.logging_level.python_name().to_owned(),
            environment_variables: s.environment_variables.clone(),
        }
    }

    pub fn threshold_crossed(&self, failed_items: u64) -> bool {
        self.error_threshold.is_some_and(|t| failed_items > t)
    }

    pub fn effective(&self) -> EffectiveBatchSettings {
        EffectiveBatchSettings {
            mini_batch_size: self.mini_batch_size,
            instance_count: self.instance_count,
            max_concurrency_per_instance: self.max_concurrency_per_instance,
            output_action: if self.append_row { "append_row" } else { "summary_only" }.into(),
            output_file_name: self.output_file_name.clone(),
            max_retries: self.max_retries,
            timeout: self.timeout_s,
            error_threshold: self.error_threshold.map_or(-1, |t| i64::try_from(t).unwrap_or(i64::MAX)),
            logging_level: self.logging_level.to_ascii_lowercase(),
        }
    }
}

/// Effective settings of a stored deployment (for `show`).
pub fn effective_settings(spec: &BatchDeploymentSpec) -> EffectiveBatchSettings {
    let settings = validate::deployment(spec).map(|v| v.settings).unwrap_or_default();
    PlanSettings::from_domain(&settings).effective()
}

impl JobPlan {
    /// The plan of a stored (validated, model-pinned) deployment.
    pub async fn of_deployment(batch: &Batch, row: &BatchDeploymentRow) -> Result<Self, String> {
        let spec: BatchDeploymentSpec =
            serde_json::from_str(&row.spec_json).map_err(|e| format!("stored spec unreadable: {e}"))?;
        let valid = validate::deployment(&spec)
            .map_err(|errs| errs.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))?;
        let store = &batch.control.store;
        let model = store
            .get_model(&row.workspace, &row.model_name, &row.model_version)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("model {}:{} no longer exists", row.model_name, row.model_version))?;
        let environment = match &valid.environment {
            None => None,
            Some(EnvironmentChoice::Inline(_)) => spec.environment.clone(),
            Some(EnvironmentChoice::Registered { name, version }) => {
                let version = version.as_deref().ok_or("the environment reference was not pinned to a version")?;
                let env = store
                    .get_environment(&row.workspace, name, version)
                    .await
                    .map_err(|e| e.to_string())?
                    .ok_or_else(|| format!("environment {name}:{version} no longer exists"))?;
                Some(serde_json::from_str(&env.spec_json).map_err(|e| e.to_string())?)
            }
        };
        Ok(Self {
            model: format!("azureml:{}:{}", model.name, model.version),
            model_type: model.model_type,
            model_artifact: model.artifact,
            model_path: model.path,
            code: valid.code.map(|c| PlanCode { artifact: c.code, scoring_script: c.scoring_script }),
            environment,
            compute: valid.compute.clone(),
            settings: PlanSettings::from_domain(&valid.settings),
        })
    }

    /// Applies an invocation's overrides (Azure's `params_override`), naming any bad one.
    pub fn apply_overrides(&mut self, body: &BatchJobCreate) -> Result<(), ApiError> {
        let mut errors = Vec::new();
        let mut check = |field: &str, value: Option<u32>, min: u32, max: u32, slot: &mut u32| {
            if let Some(v) = value {
                if (min..=max).contains(&v) {
                    *slot = v;
                } else {
                    errors.push(FieldError { field: field.into(), message: format!("{v}: expected {min} to {max}") });
                }
            }
        };
        let s = &mut self.settings;
        check("mini_batch_size", body.mini_batch_size, 1, batch_limits::MAX_MINI_BATCH_SIZE, &mut s.mini_batch_size);
        check("instance_count", body.instance_count, 1, limits::MAX_INSTANCE_COUNT, &mut s.instance_count);
        check("max_retries", body.max_retries, 0, batch_limits::MAX_RETRIES, &mut s.max_retries);
        check("timeout", body.timeout, 1, batch_limits::MAX_TIMEOUT_S, &mut s.timeout_s);
        match body.error_threshold {
            None => {}
            Some(-1) => s.error_threshold = None,
            Some(t) if t >= 0 => s.error_threshold = Some(t as u64),
            Some(t) => errors.push(FieldError {
                field: "error_threshold".into(),
                message: format!("{t}: expected -1 (ignore failures) or 0 or more"),
            }),
        }
        if let Some(name) = &body.output_file_name {
            match sluice_domain::batch::output_file_name(name) {
                Ok(n) => s.output_file_name = n,
                Err(e) => errors.push(FieldError { field: "output_file_name".into(), message: e.0 }),
            }
        }
        if errors.is_empty() { Ok(()) } else { Err(ApiError::validation(errors)) }
    }
}

/// Every regular file of an input: a folder's files sorted by their path below it, or the file
/// itself. Blocking: call it from `spawn_blocking`.
pub fn list_input(root: &Path) -> std::io::Result<Vec<PathBuf>> {
    let meta = std::fs::metadata(root)?;
    if meta.is_file() {
        return Ok(vec![root.to_owned()]);
    }
    let mut files = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            let path = entry.path();
            if kind.is_dir() {
                stack.push(path);
            } else if kind.is_file() || (kind.is_symlink() && path.is_file()) {
                files.push(path);
            }
        }
    }
    // Sorted by the relative path as text, so `a/b.csv` < `a0.csv` is decided the same way on
    // every machine.
    files.sort_by(|a, b| a.strip_prefix(root).unwrap_or(a).cmp(b.strip_prefix(root).unwrap_or(b)));
    Ok(files)
}

/// Splits files (paths or object URLs) into mini-batches of `size`: each as (JSON array of
/// files, file count).
pub fn mini_batches(files: &[String], size: u32) -> Vec<(String, i64)> {
    files
        .chunks(size.max(1) as usize)
        .map(|chunk| (serde_json::to_string(chunk).unwrap_or_else(|_| "[]".into()), chunk.len() as i64))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_are_listed_in_path_order_and_split() {
        let dir = tempfile::tempdir().unwrap();
        for f in ["b.csv", "a/z.csv", "a/c.csv", "c.csv"] {
            let p = dir.path().join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, "x").unwrap();
        }
        let files = list_input(dir.path()).unwrap();
        let rel: Vec<String> =
            files.iter().map(|f| f.strip_prefix(dir.path()).unwrap().display().to_string()).collect();
        assert_eq!(rel, ["a/c.csv", "a/z.csv", "b.csv", "c.csv"]);
        let files: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
        let batches = mini_batches(&files, 3);
        assert_eq!(batches.iter().map(|b| b.1).collect::<Vec<_>>(), [3, 1]);
        let first: Vec<String> = serde_json::from_str(&batches[0].0).unwrap();
        assert!(first[2].ends_with("b.csv"));
        assert_eq!(list_input(&dir.path().join("c.csv")).unwrap().len(), 1);
        assert!(list_input(&dir.path().join("missing")).is_err());
    }
}
