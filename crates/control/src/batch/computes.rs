//! `/computes`: named compute pools that batch deployments' `compute: azureml:NAME` draws
//! instances from. A fresh install has one, [`DEFAULT_POOL`], as large as the server's batch
//! worker cap. `show` makes the queue visible: the jobs holding the pool's instances now and the
//! ones waiting for it, in the order they will start.

use super::Batch;
use crate::error::Json;
use crate::models::check_workspace;
use crate::{ApiError, clock};
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use sluice_api::FieldError;
use sluice_api::batch::BatchDeploymentSpec;
use sluice_api::compute::{Compute, ComputeSpec, validate};
use sluice_domain::batch::{JobStatus, compute_name};
use sluice_domain::compute::DEFAULT_POOL;
use sluice_store::{BatchJobRow, ComputeRow, StoreError};
use std::sync::Arc;

pub fn routes() -> Router<Arc<Batch>> {
    Router::new()
        .route("/api/v1/workspaces/{workspace}/computes", get(list).post(create))
        .route("/api/v1/workspaces/{workspace}/computes/{name}", get(show).put(update).delete(remove))
}

/// Stores the default pool when the workspace has none (a fresh install).
pub(super) async fn seed_default(batch: &Batch) {
    let spec = ComputeSpec {
        description: Some("The default pool; its instances share this server's batch worker cap.".into()),
        ..ComputeSpec::named(DEFAULT_POOL, batch.config.pool_workers.max(1) as u32)
    };
    let now = clock::now_rfc3339();
    let row = ComputeRow {
        workspace: sluice_api::DEFAULT_WORKSPACE.into(),
        name: spec.name.clone(),
        spec_json: serde_json::to_string(&spec).unwrap_or_default(),
        created_at: now.clone(),
        updated_at: now,
    };
    match batch.control.store.insert_first_compute(&row).await {
        Ok(true) => tracing::info!(compute = DEFAULT_POOL, "created the default compute pool"),
        Ok(false) => {}
        Err(e) => tracing::error!(error = %e, "cannot create the default compute pool"),
    }
}

/// The pools' `max_instances`, by name.
pub(super) async fn capacities(batch: &Batch, ws: &str) -> Result<Vec<(String, u32)>, StoreError> {
    Ok(batch
        .control
        .store
        .list_computes(Some(ws))
        .await?
        .iter()
        .filter_map(|r| serde_json::from_str::<ComputeSpec>(&r.spec_json).ok())
        .filter_map(|s| validate(&s).ok())
        .map(|p| (p.name, p.max_instances))
        .collect())
}

/// Checks that a deployment's `compute` names an existing pool.
pub(super) async fn check_exists(batch: &Batch, ws: &str, compute: &str) -> Result<(), ApiError> {
    if batch.control.store.get_compute(ws, compute).await?.is_some() {
        return Ok(());
    }
    Err(ApiError::validation(vec![FieldError {
        field: "compute".into(),
        message: format!(
            "compute {compute:?} not found: create it (sluice compute create --name {compute} --type amlcompute --max-instances N) or use azureml:{DEFAULT_POOL}"
        ),
    }]))
}

/// Jobs waiting to start, in queue order (read once per answer, however many pools it shows).
async fn waiting_jobs(batch: &Batch) -> Result<Vec<BatchJobRow>, ApiError> {
    let waiting = [JobStatus::NotStarted.as_str(), JobStatus::Queued.as_str()];
    Ok(batch.control.store.batch_jobs_with_status(&waiting).await?)
}

fn to_wire(batch: &Batch, row: &ComputeRow, waiting: &[BatchJobRow]) -> Result<Compute, ApiError> {
    let spec: ComputeSpec = serde_json::from_str(&row.spec_json).map_err(|e| ApiError::Internal(e.to_string()))?;
    let pool = validate(&spec).map_err(|_| ApiError::Internal(format!("stored compute {:?} is invalid", row.name)))?;
    let (running_jobs, current_instances) = batch.running_on(&row.workspace, &row.name);
    let queued_jobs = waiting
        .iter()
        .filter(|j| j.workspace == row.workspace && j.compute == row.name && !running_jobs.contains(&j.name))
        .map(|j| j.name.clone())
        .collect();
    Ok(Compute {
        id: format!("azureml:{}", row.name),
        name: row.name.clone(),
        compute_type: spec.compute_type.to_ascii_lowercase(),
        description: spec.description,
        tags: spec.tags,
        size: spec.size,
        location: spec.location,
        tier: spec.tier,
        min_instances: pool.min_instances,
        max_instances: pool.max_instances,
        idle_time_before_scale_down: pool.idle_time_before_scale_down_s,
        provisioning_state: "Succeeded".into(),
        current_instances,
        running_jobs,
        queued_jobs,
        created_at: row.created_at.clone(),
        updated_at: row.updated_at.clone(),
    })
}

async fn existing(batch: &Batch, ws: &str, name: &str) -> Result<ComputeRow, ApiError> {
    check_workspace(ws)?;
    batch
        .control
        .store
        .get_compute(ws, name)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("compute {name:?} not found")))
}

fn stored(mut spec: ComputeSpec) -> Result<(ComputeSpec, String), ApiError> {
    let pool = validate(&spec).map_err(ApiError::validation)?;
    spec.name = pool.name;
    spec.compute_type = spec.compute_type.to_ascii_lowercase();
    let json = serde_json::to_string(&spec).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok((spec, json))
}

/// Create a compute pool (Azure ML's `amlcompute`).
#[utoipa::path(post, path = "/api/v1/workspaces/{workspace}/computes", tag = "computes",
    params(("workspace" = String, Path)), request_body = ComputeSpec,
    responses((status = 201, body = Compute), (status = 400, body = sluice_api::ErrorBody), (status = 409, body = sluice_api::ErrorBody)))]
pub async fn create(
    State(batch): State<Arc<Batch>>,
    Path(ws): Path<String>,
    Json(spec): Json<ComputeSpec>,
) -> Result<(StatusCode, axum::Json<Compute>), ApiError> {
    check_workspace(&ws)?;
    let (spec, spec_json) = stored(spec)?;
    let now = clock::now_rfc3339();
    let row =
        ComputeRow { workspace: ws, name: spec.name.clone(), spec_json, created_at: now.clone(), updated_at: now };
    match batch.control.store.insert_compute(&row).await {
        Ok(()) => {}
        Err(StoreError::Conflict) => {
            return Err(ApiError::Conflict(format!("compute {:?} already exists; use update", row.name)));
        }
        Err(e) => return Err(e.into()),
    }
    batch.wake();
    Ok((StatusCode::CREATED, axum::Json(to_wire(&batch, &row, &waiting_jobs(&batch).await?)?)))
}

/// Replace a pool's spec (e.g. `max_instances`); waiting jobs see the new size at once.
#[utoipa::path(put, path = "/api/v1/workspaces/{workspace}/computes/{name}", tag = "computes",
    params(("workspace" = String, Path), ("name" = String, Path)), request_body = ComputeSpec,
    responses((status = 200, body = Compute), (status = 400, body = sluice_api::ErrorBody), (status = 404, body = sluice_api::ErrorBody)))]
pub async fn update(
    State(batch): State<Arc<Batch>>,
    Path((ws, name)): Path<(String, String)>,
    Json(spec): Json<ComputeSpec>,
) -> Result<axum::Json<Compute>, ApiError> {
    let mut row = existing(&batch, &ws, &name).await?;
    if compute_name(&spec.name).ok().as_deref() != Some(name.as_str()) {
        return Err(ApiError::validation(vec![FieldError {
            field: "name".into(),
            message: format!("{:?} does not match the compute being updated ({name:?})", spec.name),
        }]));
    }
    let (_, spec_json) = stored(spec)?;
    row.spec_json = spec_json;
    row.updated_at = clock::now_rfc3339();
    if !batch.control.store.update_compute(&row).await? {
        return Err(ApiError::NotFound(format!("compute {name:?} not found")));
    }
    batch.wake();
    Ok(axum::Json(to_wire(&batch, &row, &waiting_jobs(&batch).await?)?))
}

/// Show a pool: its size, the instances in use, and the jobs running on it and waiting for it.
#[utoipa::path(get, path = "/api/v1/workspaces/{workspace}/computes/{name}", tag = "computes",
    params(("workspace" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = Compute), (status = 404, body = sluice_api::ErrorBody)))]
pub async fn show(
    State(batch): State<Arc<Batch>>,
    Path((ws, name)): Path<(String, String)>,
) -> Result<axum::Json<Compute>, ApiError> {
    let row = existing(&batch, &ws, &name).await?;
    Ok(axum::Json(to_wire(&batch, &row, &waiting_jobs(&batch).await?)?))
}

/// List compute pools.
#[utoipa::path(get, path = "/api/v1/workspaces/{workspace}/computes", tag = "computes",
    params(("workspace" = String, Path)), responses((status = 200, body = Vec<Compute>)))]
pub async fn list(
    State(batch): State<Arc<Batch>>,
    Path(ws): Path<String>,
) -> Result<axum::Json<Vec<Compute>>, ApiError> {
    check_workspace(&ws)?;
    let waiting = waiting_jobs(&batch).await?;
    let rows = batch.control.store.list_computes(Some(&ws)).await?;
    Ok(axum::Json(rows.iter().map(|row| to_wire(&batch, row, &waiting)).collect::<Result<_, _>>()?))
}

/// Delete a pool. Refused while a batch deployment names it or a job that has not ended uses it.
#[utoipa::path(delete, path = "/api/v1/workspaces/{workspace}/computes/{name}", tag = "computes",
    params(("workspace" = String, Path), ("name" = String, Path)),
    responses((status = 204), (status = 404, body = sluice_api::ErrorBody), (status = 409, body = sluice_api::ErrorBody)))]
pub async fn remove(
    State(batch): State<Arc<Batch>>,
    Path((ws, name)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    existing(&batch, &ws, &name).await?;
    let store = &batch.control.store;
    let users: Vec<String> = store
        .list_batch_deployments(None)
        .await?
        .into_iter()
        .filter(|d| d.workspace == ws)
        .filter(|d| {
            serde_json::from_str::<BatchDeploymentSpec>(&d.spec_json)
                .ok()
                .and_then(|s| s.compute)
                .and_then(|c| compute_name(&c).ok())
                .is_some_and(|c| c == name)
        })
        .map(|d| format!("{}/{}", d.endpoint, d.name))
        .collect();
    if !users.is_empty() {
        return Err(ApiError::Conflict(format!(
            "compute {name:?} is used by batch deployments {}; point them at another compute or delete them first",
            users.join(", ")
        )));
    }
    let active = [JobStatus::NotStarted.as_str(), JobStatus::Queued.as_str(), JobStatus::Running.as_str()];
    let jobs: Vec<String> = store
        .batch_jobs_with_status(&active)
        .await?
        .into_iter()
        .filter(|j| j.workspace == ws && j.compute == name)
        .map(|j| j.name)
        .collect();
    if !jobs.is_empty() {
        return Err(ApiError::Conflict(format!(
            "compute {name:?} has jobs that have not ended ({}); cancel them first",
            jobs.join(", ")
        )));
    }
    store.delete_compute(&ws, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}
