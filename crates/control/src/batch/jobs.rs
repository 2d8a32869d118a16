//! Jobs: invoking a batch endpoint (`POST /batch-endpoints/{endpoint}/jobs`, the data plane's
//! `/endpoints/{endpoint}/jobs` reads into the same [`create_job`]), listing, showing,
//! canceling, and fetching a job's output and logs.

use super::Batch;
use super::endpoints::{default_deployment, load};
use super::plan::{JobPlan, mini_batches};
use super::storage::{self, Location};
use crate::error::Json;
use crate::models::check_workspace;
use crate::{ApiError, clock};
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde::Deserialize;
use sluice_api::batch::job::{BatchJob, BatchJobCreate, FailedFile, JobInput, JobLogs, JobOutput, JobProgress};
use sluice_api::{FieldError, InputTypeWire};
use sluice_domain::ProvisioningState;
use sluice_domain::batch::{JobStatus, job_name};
use sluice_domain::compute::Priority;
use sluice_store::{BatchJobRow, JobTransition, StoreError};
use std::path::PathBuf;
use std::sync::Arc;

/// Failed files a job lists at most.
const MAX_FAILED_FILES: usize = 100;

pub fn routes() -> Router<Arc<Batch>> {
    Router::new()
        .route("/api/v1/workspaces/{workspace}/batch-endpoints/{endpoint}/jobs", get(list_for_endpoint).post(invoke))
        .route("/api/v1/workspaces/{workspace}/jobs", get(list))
        .route("/api/v1/workspaces/{workspace}/jobs/{name}", get(show))
        .route("/api/v1/workspaces/{workspace}/jobs/{name}/cancel", post(cancel))
        .route("/api/v1/workspaces/{workspace}/jobs/{name}/outputs", get(outputs))
        .route("/api/v1/workspaces/{workspace}/jobs/{name}/logs", get(logs))
}

fn field(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::validation(vec![FieldError { field: field.into(), message: message.into() }])
}

/// A location as the API takes it: an absolute path, a `file://` URL, or an `s3://` URL.
fn location(field_name: &str, text: &str) -> Result<Location, ApiError> {
    match Location::parse(text) {
        Some(Ok(l)) => Ok(l),
        Some(Err(e)) => Err(field(field_name, e)),
        None => Err(field(
            field_name,
            format!(
                "{text:?}: expected an absolute path on the server's machine, an s3://BUCKET/PREFIX URL, an uploaded artifact (sha256:<hex>) or a data asset (azureml:NAME:VERSION, azureml:NAME@latest); datastore and https URIs are not supported yet"
            ),
        )),
    }
}

/// The input's location and what it holds (its files, listed in path order); checks the type.
async fn resolve_input(batch: &Batch, input: &JobInput) -> Result<(Location, InputTypeWire, Vec<String>), ApiError> {
    let text = input.path.trim();
    let root = if text.starts_with("sha256:") {
        let artifacts = &batch.control.artifacts;
        let top = artifacts
            .top_level(text)
            .ok_or_else(|| field("input.path", format!("{text:?} is not an uploaded artifact")))?;
        Location::Local(artifacts.path_of(text, &top).ok_or_else(|| field("input.path", "malformed artifact id"))?)
    } else {
        location("input.path", text)?
    };
    if let Location::Local(path) = &root {
        std::fs::metadata(path).map_err(|e| field("input.path", format!("{}: {e}", path.display())))?;
    }
    let listing = storage::list(&root).await.map_err(|e| field("input.path", e))?;
    let actual = if listing.is_folder { InputTypeWire::UriFolder } else { InputTypeWire::UriFile };
    match input.input_type {
        Some(t) if t != actual => Err(field(
            "input.type",
            format!(
                "{} is a {}, not a {}",
                root.display(),
                if listing.is_folder { "folder" } else { "file" },
                t.as_str()
            ),
        )),
        _ => Ok((root, actual, listing.files)),
    }
}

/// An input naming a data asset (`azureml:NAME:VERSION`, `azureml:NAME@latest`) becomes the
/// asset's artifact, pinned: returns the input to read and the path the job shows (the asset's
/// `azureml:NAME:VERSION`, or the input's own path).
async fn data_asset_input(batch: &Batch, ws: &str, input: &JobInput) -> Result<(JobInput, String), ApiError> {
    let Some(reference) = sluice_api::data::reference(&input.path) else {
        return Ok((input.clone(), input.path.clone()));
    };
    let (name, version) = reference.map_err(|m| field("input.path", m))?;
    let asset = crate::data_assets::resolve(&batch.control, ws, &name, version.as_deref()).await?;
    let pinned = format!("azureml:{}:{}", asset.name, asset.version);
    if let Some(t) = input.input_type.filter(|t| t.as_str() != asset.data_type) {
        return Err(field("input.type", format!("data asset {pinned} is a {}, not a {}", asset.data_type, t.as_str())));
    }
    Ok((JobInput { input_type: input.input_type, path: asset.artifact }, pinned))
}

/// Plans and records a job (and its mini-batches) in one transaction; it starts when the
/// scheduler has room.
pub(super) async fn create_job(
    batch: &Arc<Batch>,
    ws: &str,
    endpoint: &str,
    body: BatchJobCreate,
) -> Result<BatchJob, ApiError> {
    let ep = load(batch, ws, endpoint).await?;
    let store = &batch.control.store;
    let deployment = match body.deployment_name.clone().or_else(|| default_deployment(&ep)) {
        Some(d) => d,
        None => {
            return Err(field(
                "deployment_name",
                format!("batch endpoint {endpoint:?} has no default deployment: name one (--deployment-name)"),
            ));
        }
    };
    let dep = store.get_batch_deployment(ws, endpoint, &deployment).await?.ok_or_else(|| {
        ApiError::NotFound(format!("batch deployment {deployment:?} not found in batch endpoint {endpoint:?}"))
    })?;
    if dep.provisioning_state != ProvisioningState::Succeeded.as_str() {
        let why = dep.message.as_deref().map(|m| format!(": {m}")).unwrap_or_default();
        return Err(ApiError::Conflict(format!(
            "batch deployment {deployment:?} is {}{why}; jobs run on Succeeded deployments",
            dep.provisioning_state
        )));
    }
    let mut plan = JobPlan::of_deployment(batch, &dep).await.map_err(ApiError::BadRequest)?;
    plan.apply_overrides(&body)?;
    let priority = match &body.priority {
        Some(p) => Priority::parse(p).map_err(|e| field("priority", e.0))?,
        None => Priority::default(),
    };
    super::computes::check_exists(batch, ws, &plan.compute).await?;
    let name = match &body.name {
        Some(n) => job_name(n).map_err(|e| field("name", e.0))?,
        None => format!("batchjob-{}", uuid::Uuid::new_v4()),
    };
    let (input, shown) = data_asset_input(batch, ws, &body.input).await?;
    let job_dir = batch.jobs_root().join(&name);
    let output_dir = match &body.output_path {
        Some(p) => match location("output_path", p)? {
            Location::Local(dir) if dir.is_file() => {
                return Err(field("output_path", format!("{} is a file: expected a folder", dir.display())));
            }
            l => l.display(),
        },
        None => job_dir.join("outputs").display().to_string(),
    };
    let (root, input_type, files) = resolve_input(batch, &input).await?;
    if files.is_empty() {
        return Err(field("input.path", format!("{} holds no files", root.display())));
    }
    let batches = mini_batches(&files, plan.settings.mini_batch_size);
    let input = serde_json::json!({ "type": input_type.as_str(), "path": shown, "root": root.display() });
    let row = BatchJobRow {
        workspace: ws.to_owned(),
        name: name.clone(),
        seq: 0,
        endpoint: endpoint.to_owned(),
        deployment,
        plan_json: serde_json::to_string(&plan).map_err(|e| ApiError::Internal(e.to_string()))?,
        input_json: input.to_string(),
        job_dir: job_dir.display().to_string(),
        output_dir,
        status: JobStatus::NotStarted.as_str().into(),
        message: None,
        output_file: None,
        created_at: clock::now_rfc3339(),
        started_at: None,
        ended_at: None,
        priority: priority.rank(),
        compute: plan.compute.clone(),
    };
    let row = match store.insert_batch_job(&row, &batches).await {
        Ok(r) => r,
        Err(StoreError::Conflict) => return Err(ApiError::Conflict(format!("job {name:?} already exists"))),
        Err(e) => return Err(e.into()),
    };
    batch.wake();
    to_wire(batch, &row, &[]).await
}

/// Names of the jobs waiting to start, in queue order (priority, then arrival).
async fn queue(batch: &Batch) -> Result<Vec<String>, ApiError> {
    let waiting = [JobStatus::NotStarted.as_str(), JobStatus::Queued.as_str()];
    Ok(batch.control.store.batch_jobs_with_status(&waiting).await?.into_iter().map(|j| j.name).collect())
}

pub(super) async fn to_wire(batch: &Batch, row: &BatchJobRow, queue: &[String]) -> Result<BatchJob, ApiError> {
    let store = &batch.control.store;
    let plan: Option<JobPlan> = serde_json::from_str(&row.plan_json).ok();
    let settings = plan.as_ref().map(|p| p.settings.effective()).unwrap_or_default();
    let counts = store.mini_batch_counts(&row.workspace, &row.name).await?;
    let mut failed_files = Vec::new();
    if counts.failed_items > 0 {
        for mb in store.mini_batches(&row.workspace, &row.name, None).await? {
            let Some(json) = &mb.failed_files_json else { continue };
            let files: Vec<FailedFile> = serde_json::from_str(json).unwrap_or_default();
            failed_files.extend(files);
            if failed_files.len() >= MAX_FAILED_FILES {
                failed_files.truncate(MAX_FAILED_FILES);
                break;
            }
        }
    }
    let input: serde_json::Value = serde_json::from_str(&row.input_json).unwrap_or_default();
    let status = JobStatus::parse(&row.status);
    let ended_short = matches!(status, Some(JobStatus::Failed | JobStatus::Canceled));
    Ok(BatchJob {
        name: row.name.clone(),
        job_type: "batch".into(),
        endpoint_name: row.endpoint.clone(),
        deployment_name: row.deployment.clone(),
        status: row.status.clone(),
        message: row.message.clone(),
        partial: ended_short && counts.committed > 0,
        queue_position: queue.iter().position(|n| *n == row.name).map(|i| i as u32 + 1),
        priority: Priority::from_rank(row.priority).as_str().into(),
        compute: format!("azureml:{}", row.compute),
        input: JobInput {
            input_type: input.get("type").and_then(|t| t.as_str()).and_then(InputTypeWire::parse),
            path: input.get("path").and_then(|p| p.as_str()).unwrap_or_default().to_owned(),
        },
        output: JobOutput {
            path: row.output_dir.clone(),
            file_name: settings.output_file_name.clone(),
            file: row.output_file.clone(),
            parts_path: PathBuf::from(&row.job_dir).join("parts").display().to_string(),
        },
        settings,
        progress: JobProgress {
            total_mini_batches: counts.total as u64,
            completed_mini_batches: counts.committed as u64,
            failed_mini_batches: counts.failed as u64,
            total_files: counts.files as u64,
            succeeded_items: counts.items as u64,
            failed_items: counts.failed_items as u64,
        },
        failed_files,
        created_at: row.created_at.clone(),
        started_at: row.started_at.clone(),
        ended_at: row.ended_at.clone(),
    })
}

/// The folder on this machine that holds the job's output: its output path, or for a remote
/// one the job's own `outputs/`, which is uploaded when the job is done.
pub(super) fn local_output_dir(row: &BatchJobRow) -> PathBuf {
    if sluice_api::batch::job::is_object_store_url(&row.output_dir) {
        PathBuf::from(&row.job_dir).join("outputs")
    } else {
        PathBuf::from(&row.output_dir)
    }
}

async fn existing(batch: &Batch, ws: &str, name: &str) -> Result<BatchJobRow, ApiError> {
    check_workspace(ws)?;
    batch
        .control
        .store
        .get_batch_job(ws, name)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("job {name:?} not found")))
}

pub(super) async fn list_rows(batch: &Batch, rows: Vec<BatchJobRow>) -> Result<Vec<BatchJob>, ApiError> {
    let queue = queue(batch).await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        out.push(to_wire(batch, row, &queue).await?);
    }
    Ok(out)
}

/// Invoke a batch endpoint: the job is planned (its input listed and split into mini-batches)
/// and returned at once; it starts when the compute pool has room.
#[utoipa::path(post, path = "/api/v1/workspaces/{workspace}/batch-endpoints/{endpoint}/jobs", tag = "batch-endpoints",
    params(("workspace" = String, Path), ("endpoint" = String, Path)), request_body = BatchJobCreate,
    responses((status = 201, body = BatchJob), (status = 400, body = sluice_api::ErrorBody), (status = 404, body = sluice_api::ErrorBody), (status = 409, body = sluice_api::ErrorBody)))]
pub async fn invoke(
    State(batch): State<Arc<Batch>>,
    Path((ws, endpoint)): Path<(String, String)>,
    Json(body): Json<BatchJobCreate>,
) -> Result<(StatusCode, axum::Json<BatchJob>), ApiError> {
    let job = create_job(&batch, &ws, &endpoint, body).await?;
    Ok((StatusCode::CREATED, axum::Json(job)))
}

/// A batch endpoint's jobs in arrival order, with the waiting ones' queue positions.
#[utoipa::path(get, path = "/api/v1/workspaces/{workspace}/batch-endpoints/{endpoint}/jobs", tag = "batch-endpoints",
    params(("workspace" = String, Path), ("endpoint" = String, Path)), responses((status = 200, body = Vec<BatchJob>), (status = 404, body = sluice_api::ErrorBody)))]
pub async fn list_for_endpoint(
    State(batch): State<Arc<Batch>>,
    Path((ws, endpoint)): Path<(String, String)>,
) -> Result<axum::Json<Vec<BatchJob>>, ApiError> {
    load(&batch, &ws, &endpoint).await?;
    let rows = batch.control.store.list_batch_jobs(&ws, Some(&endpoint)).await?;
    Ok(axum::Json(list_rows(&batch, rows).await?))
}

/// Every batch job in arrival order.
#[utoipa::path(get, path = "/api/v1/workspaces/{workspace}/jobs", tag = "jobs",
    params(("workspace" = String, Path)), responses((status = 200, body = Vec<BatchJob>)))]
pub async fn list(
    State(batch): State<Arc<Batch>>,
    Path(ws): Path<String>,
) -> Result<axum::Json<Vec<BatchJob>>, ApiError> {
    check_workspace(&ws)?;
    let rows = batch.control.store.list_batch_jobs(&ws, None).await?;
    Ok(axum::Json(list_rows(&batch, rows).await?))
}

/// Show a job: its status, progress, failed files and output.
#[utoipa::path(get, path = "/api/v1/workspaces/{workspace}/jobs/{name}", tag = "jobs",
    params(("workspace" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = BatchJob), (status = 404, body = sluice_api::ErrorBody)))]
pub async fn show(
    State(batch): State<Arc<Batch>>,
    Path((ws, name)): Path<(String, String)>,
) -> Result<axum::Json<BatchJob>, ApiError> {
    let row = existing(&batch, &ws, &name).await?;
    Ok(axum::Json(to_wire(&batch, &row, &queue(&batch).await?).await?))
}

/// Cancel a job that has not ended: its workers are killed; committed mini-batches' rows stay
/// in the job's parts folder and the output is not merged (the job reports `partial`).
#[utoipa::path(post, path = "/api/v1/workspaces/{workspace}/jobs/{name}/cancel", tag = "jobs",
    params(("workspace" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = BatchJob), (status = 404, body = sluice_api::ErrorBody), (status = 409, body = sluice_api::ErrorBody)))]
pub async fn cancel(
    State(batch): State<Arc<Batch>>,
    Path((ws, name)): Path<(String, String)>,
) -> Result<axum::Json<BatchJob>, ApiError> {
    let row = existing(&batch, &ws, &name).await?;
    let now = clock::now_rfc3339();
    let active = [JobStatus::NotStarted.as_str(), JobStatus::Queued.as_str(), JobStatus::Running.as_str()];
    let t = JobTransition {
        message: Some(
            "canceled: the output was not merged; committed mini-batches' rows are in the job's parts folder",
        ),
        ended: true,
        ..JobTransition::to(JobStatus::Canceled.as_str(), &now)
    };
    if !batch.control.store.transition_batch_job((&ws, &name), &active, &t).await? {
        let row = existing(&batch, &ws, &name).await?;
        return Err(ApiError::Conflict(format!("job {name:?} has already ended ({})", row.status)));
    }
    batch.stop_runner(&ws, &name);
    batch.wake();
    let row = existing(&batch, &ws, &row.name).await?;
    Ok(axum::Json(to_wire(&batch, &row, &[]).await?))
}

/// The job's output folder as a gzip'd tar (`sluice job download`).
#[utoipa::path(get, path = "/api/v1/workspaces/{workspace}/jobs/{name}/outputs", tag = "jobs",
    params(("workspace" = String, Path), ("name" = String, Path)),
    responses((status = 200, content_type = "application/gzip", body = Vec<u8>), (status = 404, body = sluice_api::ErrorBody)))]
pub async fn outputs(
    State(batch): State<Arc<Batch>>,
    Path((ws, name)): Path<(String, String)>,
) -> Result<axum::response::Response, ApiError> {
    let row = existing(&batch, &ws, &name).await?;
    let bytes = super::output::archive(local_output_dir(&row))
        .await
        .map_err(|e| ApiError::Internal(format!("cannot pack the job's output: {e}")))?;
    Ok(([(axum::http::header::CONTENT_TYPE, "application/gzip")], bytes).into_response())
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct LogsQuery {
    /// Lines from the end of each worker's log (default 200, at most 10000).
    lines: Option<usize>,
}

/// The ends of the job's worker logs (what the batch driver printed, tracebacks).
#[utoipa::path(get, path = "/api/v1/workspaces/{workspace}/jobs/{name}/logs", tag = "jobs",
    params(("workspace" = String, Path), ("name" = String, Path), LogsQuery),
    responses((status = 200, body = JobLogs), (status = 404, body = sluice_api::ErrorBody)))]
pub async fn logs(
    State(batch): State<Arc<Batch>>,
    Path((ws, name)): Path<(String, String)>,
    Query(q): Query<LogsQuery>,
) -> Result<axum::Json<JobLogs>, ApiError> {
    let row = existing(&batch, &ws, &name).await?;
    let lines = q.lines.unwrap_or(200).min(10_000);
    let dir = PathBuf::from(&row.job_dir).join("logs");
    let mut names: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries.filter_map(Result::ok).map(|e| e.path()).collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    let mut content = String::new();
    for path in names {
        let file = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        content.push_str(&format!("== {file} ==\n{}\n", super::worker::tail(&path, lines).await));
    }
    Ok(axum::Json(JobLogs { content }))
}
