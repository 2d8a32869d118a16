//! `/batch-endpoints`: create, update (description, tags, default deployment), show, list and
//! delete. A batch endpoint needs no process of its own, so it is `Succeeded` once stored.

use super::Batch;
use crate::error::Json;
use crate::models::check_workspace;
use crate::{ApiError, clock};
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use sluice_api::FieldError;
use sluice_api::batch::{BatchEndpoint, BatchEndpointDefaults, BatchEndpointSpec, validate};
use sluice_domain::ProvisioningState;
use sluice_domain::batch::JobStatus;
use sluice_store::{BatchEndpointRow, StoreError};
use std::sync::Arc;

pub fn routes() -> Router<Arc<Batch>> {
    Router::new()
        .route("/api/v1/workspaces/{workspace}/batch-endpoints", get(list).post(create))
        .route("/api/v1/workspaces/{workspace}/batch-endpoints/{name}", get(show).put(update).delete(remove))
}

pub(super) fn to_wire(batch: &Batch, row: &BatchEndpointRow) -> BatchEndpoint {
    let spec: Option<BatchEndpointSpec> = serde_json::from_str(&row.spec_json).ok();
    BatchEndpoint {
        name: row.name.clone(),
        description: spec.as_ref().and_then(|s| s.description.clone()),
        tags: spec.as_ref().map(|s| s.tags.clone()).unwrap_or_default(),
        auth_mode: sluice_api::AuthModeWire::AadToken,
        defaults: spec.and_then(|s| s.defaults).unwrap_or_default(),
        provisioning_state: row.provisioning_state.clone(),
        scoring_uri: format!("{}/endpoints/{}/jobs", batch.control.public_url, row.name),
        created_at: row.created_at.clone(),
        updated_at: row.updated_at.clone(),
    }
}

/// The stored endpoint, or 404.
pub(super) async fn load(batch: &Batch, ws: &str, name: &str) -> Result<BatchEndpointRow, ApiError> {
    check_workspace(ws)?;
    batch
        .control
        .store
        .get_batch_endpoint(ws, name)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("batch endpoint {name:?} not found")))
}

/// The endpoint's default deployment (`defaults.deployment_name`).
pub(super) fn default_deployment(row: &BatchEndpointRow) -> Option<String> {
    serde_json::from_str::<BatchEndpointSpec>(&row.spec_json).ok()?.defaults?.deployment_name
}

/// Makes `deployment` the endpoint's default.
pub(super) async fn set_default(batch: &Batch, row: &BatchEndpointRow, deployment: &str) -> Result<(), ApiError> {
    let mut spec: BatchEndpointSpec =
        serde_json::from_str(&row.spec_json).map_err(|e| ApiError::Internal(e.to_string()))?;
    spec.defaults = Some(BatchEndpointDefaults { deployment_name: Some(deployment.to_owned()) });
    let mut row = row.clone();
    row.spec_json = serde_json::to_string(&spec).map_err(|e| ApiError::Internal(e.to_string()))?;
    row.updated_at = clock::now_rfc3339();
    batch.control.store.update_batch_endpoint(&row).await?;
    Ok(())
}

/// Create a batch endpoint (its name must not be an online endpoint's).
#[utoipa::path(post, path = "/api/v1/workspaces/{workspace}/batch-endpoints", tag = "batch-endpoints",
    params(("workspace" = String, Path)), request_body = BatchEndpointSpec,
    responses((status = 201, body = BatchEndpoint), (status = 400, body = sluice_api::ErrorBody), (status = 409, body = sluice_api::ErrorBody)))]
pub async fn create(
    State(batch): State<Arc<Batch>>,
    Path(ws): Path<String>,
    Json(spec): Json<BatchEndpointSpec>,
) -> Result<(StatusCode, axum::Json<BatchEndpoint>), ApiError> {
    check_workspace(&ws)?;
    validate::endpoint(&spec).map_err(ApiError::validation)?;
    if batch.control.store.get_endpoint(&ws, &spec.name).await?.is_some() {
        return Err(ApiError::Conflict(format!(
            "{:?} is an online endpoint's name; online and batch endpoints share one namespace",
            spec.name
        )));
    }
    let now = clock::now_rfc3339();
    let row = BatchEndpointRow {
        workspace: ws,
        name: spec.name.clone(),
        spec_json: serde_json::to_string(&spec).map_err(|e| ApiError::Internal(e.to_string()))?,
        provisioning_state: ProvisioningState::Succeeded.as_str().into(),
        created_at: now.clone(),
        updated_at: now,
    };
    match batch.control.store.insert_batch_endpoint(&row).await {
        Ok(()) => Ok((StatusCode::CREATED, axum::Json(to_wire(&batch, &row)))),
        Err(StoreError::Conflict) => {
            Err(ApiError::Conflict(format!("batch endpoint {:?} already exists; use update", row.name)))
        }
        Err(e) => Err(e.into()),
    }
}

/// Update a batch endpoint: description, tags and `defaults.deployment_name` (which must name
/// one of its deployments).
#[utoipa::path(put, path = "/api/v1/workspaces/{workspace}/batch-endpoints/{name}", tag = "batch-endpoints",
    params(("workspace" = String, Path), ("name" = String, Path)), request_body = BatchEndpointSpec,
    responses((status = 200, body = BatchEndpoint), (status = 400, body = sluice_api::ErrorBody), (status = 404, body = sluice_api::ErrorBody)))]
pub async fn update(
    State(batch): State<Arc<Batch>>,
    Path((ws, name)): Path<(String, String)>,
    Json(spec): Json<BatchEndpointSpec>,
) -> Result<axum::Json<BatchEndpoint>, ApiError> {
    let mut row = load(&batch, &ws, &name).await?;
    if spec.name != name {
        return Err(ApiError::validation(vec![FieldError {
            field: "name".into(),
            message: format!("{:?} does not match the endpoint being updated ({name:?})", spec.name),
        }]));
    }
    let valid = validate::endpoint(&spec).map_err(ApiError::validation)?;
    if let Some(d) = &valid.default_deployment
        && batch.control.store.get_batch_deployment(&ws, &name, d.as_str()).await?.is_none()
    {
        return Err(ApiError::validation(vec![FieldError {
            field: "defaults.deployment_name".into(),
            message: format!("deployment {d} not found in batch endpoint {name:?}"),
        }]));
    }
    row.spec_json = serde_json::to_string(&spec).map_err(|e| ApiError::Internal(e.to_string()))?;
    row.updated_at = clock::now_rfc3339();
    if !batch.control.store.update_batch_endpoint(&row).await? {
        return Err(ApiError::NotFound(format!("batch endpoint {name:?} not found")));
    }
    Ok(axum::Json(to_wire(&batch, &row)))
}

/// Show a batch endpoint.
#[utoipa::path(get, path = "/api/v1/workspaces/{workspace}/batch-endpoints/{name}", tag = "batch-endpoints",
    params(("workspace" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = BatchEndpoint), (status = 404, body = sluice_api::ErrorBody)))]
pub async fn show(
    State(batch): State<Arc<Batch>>,
    Path((ws, name)): Path<(String, String)>,
) -> Result<axum::Json<BatchEndpoint>, ApiError> {
    let row = load(&batch, &ws, &name).await?;
    Ok(axum::Json(to_wire(&batch, &row)))
}

/// List batch endpoints.
#[utoipa::path(get, path = "/api/v1/workspaces/{workspace}/batch-endpoints", tag = "batch-endpoints",
    params(("workspace" = String, Path)), responses((status = 200, body = Vec<BatchEndpoint>)))]
pub async fn list(
    State(batch): State<Arc<Batch>>,
    Path(ws): Path<String>,
) -> Result<axum::Json<Vec<BatchEndpoint>>, ApiError> {
    check_workspace(&ws)?;
    let rows = batch.control.store.list_batch_endpoints(&ws).await?;
    Ok(axum::Json(rows.iter().map(|r| to_wire(&batch, r)).collect()))
}

/// Delete a batch endpoint and its deployments; its jobs stay as history. Refused while one of
/// its jobs has not ended.
#[utoipa::path(delete, path = "/api/v1/workspaces/{workspace}/batch-endpoints/{name}", tag = "batch-endpoints",
    params(("workspace" = String, Path), ("name" = String, Path)),
    responses((status = 204), (status = 404, body = sluice_api::ErrorBody), (status = 409, body = sluice_api::ErrorBody)))]
pub async fn remove(
    State(batch): State<Arc<Batch>>,
    Path((ws, name)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    load(&batch, &ws, &name).await?;
    let active: Vec<String> = batch
        .control
        .store
        .list_batch_jobs(&ws, Some(&name))
        .await?
        .into_iter()
        .filter(|j| JobStatus::parse(&j.status).is_some_and(|s| !s.is_terminal()))
        .map(|j| j.name)
        .collect();
    if !active.is_empty() {
        return Err(ApiError::Conflict(format!(
            "batch endpoint {name:?} has jobs that have not ended ({}); cancel them first (sluice job cancel --name ...)",
            active.join(", ")
        )));
    }
    batch.control.store.delete_batch_endpoint(&ws, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}
