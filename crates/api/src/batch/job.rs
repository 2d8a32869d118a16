//! Batch jobs: what an invocation asks for, and the job resource with its state and progress.

use crate::InputTypeWire;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Body of `POST /batch-endpoints/{endpoint}/jobs` (what `sluice batch-endpoint invoke` sends;
/// the data plane's Azure ML bodies are read into this too).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchJobCreate {
    /// The deployment to run on; the endpoint's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_name: Option<String>,
    /// The job's name; `batchjob-<uuid>` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub input: JobInput,
    /// A folder on the server's machine (absolute path) for the job's output; the job's own
    /// folder in the data directory when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_path: Option<String>,
    // Overrides of the deployment's settings for this job (Azure's `params_override`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_file_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mini_batch_size: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_count: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_threshold: Option<i64>,
    /// `low`, `medium` (default) or `high`: waiting jobs start in priority order, then in
    /// arrival order (Azure ML's `queue_settings.priority`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<String>,
}

/// Whether a job's input or output path names an object store (`s3://bucket/prefix`), which the
/// server reads with its own credentials, rather than a path or an uploaded artifact.
pub fn is_object_store_url(text: &str) -> bool {
    let text = text.trim();
    text.starts_with("s3://") || text.starts_with("s3a://")
}

/// A job's one data input.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobInput {
    /// `uri_folder` or `uri_file`; taken from what `path` is when absent.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub input_type: Option<InputTypeWire>,
    /// An uploaded artifact (`sha256:<hex>`, what the CLI sends after uploading a local folder
    /// or file), a registered data asset (`azureml:NAME:VERSION`, `azureml:NAME@latest`; a job
    /// shows the version it pinned), or an absolute path on the server's machine (`/data/in`,
    /// `file:///data/in`).
    pub path: String,
}

/// A batch job: one invocation of a batch endpoint.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BatchJob {
    pub name: String,
    /// `batch`.
    #[serde(rename = "type")]
    pub job_type: String,
    pub endpoint_name: String,
    pub deployment_name: String,
    /// `NotStarted`, `Queued`, `Running`, `Completed`, `Failed` or `Canceled`.
    pub status: String,
    /// Why the job failed or was canceled, or what it waits for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The job ended without merging its output: committed mini-batches' rows are under
    /// `output.parts_path`, the merged file was not written.
    pub partial: bool,
    /// 1 for the next job to start, while the job waits for capacity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_position: Option<u32>,
    /// `low`, `medium` or `high`.
    pub priority: String,
    /// The compute pool it draws instances from (`azureml:<name>`).
    pub compute: String,
    pub input: JobInput,
    pub output: JobOutput,
    pub settings: crate::batch::EffectiveBatchSettings,
    pub progress: JobProgress,
    /// Files that could not be scored (at most 100 are listed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_files: Vec<FailedFile>,
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<String>,
}

/// Where a job writes.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JobOutput {
    /// The output folder (also `AZUREML_BI_OUTPUT_PATH` for the script).
    pub path: String,
    pub file_name: String,
    /// The merged `append_row` output, once written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Where each committed mini-batch's rows are kept until the merge.
    pub parts_path: String,
}

/// How far a job has got.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JobProgress {
    pub total_mini_batches: u64,
    /// Mini-batches whose output is committed.
    pub completed_mini_batches: u64,
    /// Mini-batches that failed every attempt.
    pub failed_mini_batches: u64,
    pub total_files: u64,
    /// Rows or elements `run` returned.
    pub succeeded_items: u64,
    /// Items that failed; counted against `error_threshold`.
    pub failed_items: u64,
}

/// A file that could not be scored, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FailedFile {
    pub file: String,
    pub error: String,
}

/// Answer of `GET /jobs/{name}/logs`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JobLogs {
    pub content: String,
}

/// The data plane's job resource (`POST /endpoints/{endpoint}/jobs`): Azure's clients read
/// `name`, `id`, `type` and `properties.status`; scripts also read `status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AzureJobResource {
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub resource_type: String,
    pub status: String,
    pub properties: BatchJob,
}

impl AzureJobResource {
    pub fn new(job: BatchJob) -> Self {
        Self {
            id: format!("azureml:jobs/{}", job.name),
            name: job.name.clone(),
            resource_type: "Microsoft.MachineLearningServices/workspaces/jobs".into(),
            status: job.status.clone(),
            properties: job,
        }
    }
}
