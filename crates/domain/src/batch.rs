//! Batch endpoints, batch deployments and their jobs: validated settings, job states and the
//! rules of a job's progress (error threshold, worker count).

use crate::{CodeRef, EnvironmentChoice, ModelRef, ResourceName, RuleError};
use std::collections::BTreeMap;

/// A batch endpoint whose fields passed every rule.
#[derive(Debug, Clone)]
pub struct ValidBatchEndpoint {
    pub name: ResourceName,
    /// `defaults.deployment_name`: the deployment an invocation without one uses.
    pub default_deployment: Option<ResourceName>,
}

/// A batch deployment whose fields passed every rule that needs no other resource.
#[derive(Debug, Clone)]
pub struct ValidBatchDeployment {
    pub name: ResourceName,
    pub endpoint_name: ResourceName,
    pub model: ModelRef,
    /// The `run(mini_batch)` driver; `None` for an MLflow model scored without code.
    pub code: Option<CodeRef>,
    pub environment: Option<EnvironmentChoice>,
    /// The compute pool's name (`azureml:` stripped).
    pub compute: String,
    pub settings: BatchSettings,
}

/// What the scheduler does with a batch deployment's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputAction {
    /// Every returned row is appended, in input order, to `output_file_name`.
    AppendRow,
    /// The script writes its own files; nothing is merged.
    SummaryOnly,
}

/// What a job's input names: a folder (every file below it) or one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputType {
    UriFolder,
    UriFile,
}

/// `settings.logging_level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoggingLevel {
    Debug,
    Info,
    Warning,
}

impl LoggingLevel {
    /// The name Python's `logging` module uses.
    pub fn python_name(self) -> &'static str {
        match self {
            Self::Debug => "DEBUG",
            Self::Info => "INFO",
            Self::Warning => "WARNING",
        }
    }
}

/// A batch deployment's settings with Azure ML's defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchSettings {
    /// Files per `run()` call.
    pub mini_batch_size: u32,
    pub instance_count: u32,
    pub max_concurrency_per_instance: u32,
    pub output_action: OutputAction,
    pub output_file_name: String,
    /// Attempts after the first one a failing mini-batch gets.
    pub max_retries: u32,
    /// Seconds one attempt at a mini-batch may take before its worker is killed.
    pub timeout_s: u32,
    /// Failed items tolerated; `None` (Azure's -1) ignores every failure.
    pub error_threshold: Option<u64>,
    pub logging_level: LoggingLevel,
    pub environment_variables: BTreeMap<String, String>,
}

impl Default for BatchSettings {
    fn default() -> Self {
        Self {
            mini_batch_size: 10,
            instance_count: 1,
            max_concurrency_per_instance: 1,
            output_action: OutputAction::AppendRow,
            output_file_name: "predictions.csv".into(),
            max_retries: 3,
            timeout_s: 30,
            error_threshold: None,
            logging_level: LoggingLevel::Info,
            environment_variables: BTreeMap::new(),
        }
    }
}

impl BatchSettings {
    /// Worker processes a job of this deployment asks for: `instance_count` ×
    /// `max_concurrency_per_instance`.
    pub fn workers(&self) -> u32 {
        self.instance_count.saturating_mul(self.max_concurrency_per_instance)
    }

    /// Whether `failed_items` failures fail the job (the count *exceeds* the threshold).
    pub fn threshold_crossed(&self, failed_items: u64) -> bool {
        self.error_threshold.is_some_and(|t| failed_items > t)
    }
}

/// Limits on batch settings.
pub mod batch_limits {
    pub const MAX_MINI_BATCH_SIZE: u32 = 100_000;
    pub const MAX_CONCURRENCY_PER_INSTANCE: u32 = 64;
    pub const MAX_RETRIES: u32 = 100;
    /// One day, in seconds.
    pub const MAX_TIMEOUT_S: u32 = 86_400;
}

/// `output_file_name`: a plain file name (no folder), 1-255 bytes.
pub fn output_file_name(s: &str) -> Result<String, RuleError> {
    let ok = !s.is_empty()
        && s.len() <= 255
        && s != "."
        && s != ".."
        && !s.contains(['/', '\\', '\0'])
        && !s.starts_with(".sluice");
    if ok {
        Ok(s.to_owned())
    } else {
        Err(RuleError(format!("{s:?}: expected a file name such as predictions.csv, without a folder")))
    }
}

/// `compute`: `azureml:NAME` or `NAME`; the pool's name.
pub fn compute_name(s: &str) -> Result<String, RuleError> {
    let name = s.strip_prefix("azureml:").unwrap_or(s);
    let ok = (2..=32).contains(&name.len())
        && name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(name.to_owned())
    } else {
        Err(RuleError(format!(
            "{s:?}: expected azureml:NAME, a compute name of 2-32 letters, digits, '-' or '_' starting with a letter"
        )))
    }
}

/// A batch job's state, as Azure ML names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobStatus {
    /// Accepted; the scheduler has not looked at it yet.
    NotStarted,
    /// Waiting for worker capacity.
    Queued,
    Running,
    Completed,
    Failed,
    Canceled,
}

impl JobStatus {
    pub const ALL: [Self; 6] =
        [Self::NotStarted, Self::Queued, Self::Running, Self::Completed, Self::Failed, Self::Canceled];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotStarted => "NotStarted",
            Self::Queued => "Queued",
            Self::Running => "Running",
            Self::Completed => "Completed",
            Self::Failed => "Failed",
            Self::Canceled => "Canceled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|j| j.as_str() == s)
    }

    /// Whether the job has ended (nothing will run for it again).
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Canceled)
    }
}

/// A batch job's name: `batchjob-<uuid>` when generated; a given one is 3-64 letters, digits,
/// '-' or '_', starting with a letter.
pub fn job_name(s: &str) -> Result<String, RuleError> {
    let ok = (3..=64).contains(&s.len())
        && s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(s.to_owned())
    } else {
        Err(RuleError(format!(
            "invalid job name {s:?}: expected 3-64 letters, digits, '-' or '_', starting with a letter"
        )))
    }
}

/// How many of a mini-batch's items failed, from a worker's reply: a failed mini-batch fails
/// all its files; a custom script that returned fewer elements than files failed the rest
/// (Azure counts each returned element as one success); MLflow models report failed files.
pub fn failed_items(ok: bool, files: u64, items: u64, failed_files: u64, per_file: bool) -> u64 {
    match (ok, per_file) {
        (false, _) => files,
        (true, true) => failed_files,
        (true, false) => files.saturating_sub(items),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_and_compute_names() {
        assert!(output_file_name("predictions.csv").is_ok());
        for bad in ["", "..", "a/b.csv", ".sluice-merge"] {
            assert!(output_file_name(bad).is_err(), "{bad}");
        }
        assert_eq!(compute_name("azureml:cpu-cluster").unwrap(), "cpu-cluster");
        assert_eq!(compute_name("batch_cluster").unwrap(), "batch_cluster");
        for bad in ["azureml:", "azureml:1x", "a b"] {
            assert!(compute_name(bad).is_err(), "{bad}");
        }
        assert!(job_name("batchjob-0e1c").is_ok());
        assert!(job_name("../x").is_err());
    }

    #[test]
    fn thresholds_and_failed_items() {
        let mut s = BatchSettings::default();
        assert!(!s.threshold_crossed(1_000_000), "-1 ignores every failure");
        s.error_threshold = Some(0);
        assert!(s.threshold_crossed(1));
        assert!(!s.threshold_crossed(0));
        assert_eq!(failed_items(false, 3, 0, 0, false), 3);
        assert_eq!(failed_items(false, 3, 0, 3, true), 3);
        assert_eq!(failed_items(true, 3, 2, 0, false), 1);
        assert_eq!(failed_items(true, 3, 40, 0, false), 0, "a DataFrame of many rows per file");
        assert_eq!(failed_items(true, 3, 40, 1, true), 1);
        assert_eq!(JobStatus::parse("Queued"), Some(JobStatus::Queued));
        assert!(JobStatus::Canceled.is_terminal() && !JobStatus::Running.is_terminal());
    }
}
