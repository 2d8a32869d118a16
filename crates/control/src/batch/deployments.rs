//! `/batch-endpoints/{endpoint}/deployments`: create or replace (as Azure ML's batch deployment
//! `create` does), show, list and delete. Creating is long-running: the deployment's files are
//! checked and its environment built before it is `Succeeded` (see `provision`).

use super::Batch;
use super::endpoints::{default_deployment, load, set_default};
use crate::error::Json;
use crate::models::{check_workspace, resolve};
use crate::{ApiError, clock, registered_environments};
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use sluice_api::FieldError;
use sluice_api::batch::{BatchDeployment, BatchDeploymentSpec, validate};
use sluice_api::deployment::ModelField;
use sluice_domain::batch::{JobStatus, ValidBatchDeployment};
use sluice_domain::{EnvironmentChoice, ProvisioningState, limits};
use sluice_store::BatchDeploymentRow;
use std::sync::Arc;

pub fn routes() -> Router<Arc<Batch>> {
    Router::new().route("/api/v1/workspaces/{workspace}/batch-endpoints/{endpoint}/deployments", get(list)).route(
        "/api/v1/workspaces/{workspace}/batch-endpoints/{endpoint}/deployments/{name}",
        get(show).put(create_or_update).delete(remove),
    )
}

fn to_wire(row: BatchDeploymentRow) -> BatchDeployment {
    let mut spec: BatchDeploymentSpec = serde_json::from_str(&row.spec_json).unwrap_or_else(|_| {
        serde_json::from_value(serde_json::json!({ "name": row.name })).expect("a spec with only a name")
    });
    spec.endpoint_name = Some(row.endpoint.clone());
    BatchDeployment {
        effective_settings: super::plan::effective_settings(&spec),
        spec,
        provisioning_state: row.provisioning_state,
        message: row.message,
        created_at: row.created_at,
        updated_at: row.updated_at,
    }
}

fn field(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::validation(vec![FieldError { field: field.into(), message: message.into() }])
}

/// Validates a spec sent to `endpoint`, resolves its model and environment, and returns the
/// stored form (references pinned) with the model version.
async fn prepare(
    batch: &Batch,
    ws: &str,
    endpoint: &str,
    mut spec: BatchDeploymentSpec,
) -> Result<(BatchDeploymentSpec, ValidBatchDeployment, String), ApiError> {
    match &spec.endpoint_name {
        Some(e) if e != endpoint => {
            return Err(field("endpoint_name", format!("{e:?} does not match the endpoint in the URL ({endpoint:?})")));
        }
        _ => spec.endpoint_name = Some(endpoint.to_owned()),
    }
    let valid = validate::deployment(&spec).map_err(ApiError::validation)?;
    super::computes::check_exists(batch, ws, &valid.compute).await?;
    let control = &batch.control;
    let model = resolve(control, ws, valid.model.name.as_str(), valid.model.version.as_ref().map(|v| v.as_str()))
        .await
        .map_err(|e| field("model", e.to_string()))?;
    if let Some(EnvironmentChoice::Registered { name, version }) = &valid.environment {
        let row = registered_environments::resolve(control, ws, name, version.as_deref())
            .await
            .map_err(|e| field("environment", e.to_string()))?;
        let env = registered_environments::valid(&row).map_err(ApiError::BadRequest)?;
        if env.container.is_some() {
            return Err(field(
                "environment",
                format!("{}:{} is a custom container, which serves online deployments only", row.name, row.version),
            ));
        }
        spec.environment = Some(serde_json::Value::String(format!("azureml:{}:{}", row.name, row.version)));
    }
    if valid.code.is_none() && model.model_type != "mlflow_model" {
        return Err(field(
            "code_configuration",
            format!(
                "model {}:{} is a {}: give a batch driver (code_configuration with init() and run(mini_batch)), or register an MLflow model to score it without code",
                model.name, model.version, model.model_type
            ),
        ));
    }
    if let Some(code) = &valid.code
        && control.artifacts.top_level(&code.code).is_none()
    {
        return Err(field(
            "code_configuration.code",
            format!(
                "{:?} is not an uploaded code folder: upload it to /artifacts first and send its id (the CLI does this)",
                code.code
            ),
        ));
    }
    spec.model = Some(ModelField::Reference(format!("azureml:{}:{}", model.name, model.version)));
    Ok((spec, valid, model.version))
}

/// Create a batch deployment, or replace an existing one's spec (long-running: poll `show`
/// until `provisioning_state` is terminal). The endpoint's first deployment becomes its default.
#[utoipa::path(put, path = "/api/v1/workspaces/{workspace}/batch-endpoints/{endpoint}/deployments/{name}", tag = "batch-deployments",
    params(("workspace" = String, Path), ("endpoint" = String, Path), ("name" = String, Path)), request_body = BatchDeploymentSpec,
    responses((status = 201, body = BatchDeployment), (status = 200, body = BatchDeployment), (status = 400, body = sluice_api::ErrorBody), (status = 404, body = sluice_api::ErrorBody)))]
pub async fn create_or_update(
    State(batch): State<Arc<Batch>>,
    Path((ws, endpoint, name)): Path<(String, String, String)>,
    Json(spec): Json<BatchDeploymentSpec>,
) -> Result<(StatusCode, axum::Json<BatchDeployment>), ApiError> {
    let ep = load(&batch, &ws, &endpoint).await?;
    if spec.name != name {
        return Err(field("name", format!("{:?} does not match the deployment in the URL ({name:?})", spec.name)));
    }
    let (spec, valid, version) = prepare(&batch, &ws, &endpoint, spec).await?;
    let store = &batch.control.store;
    let existing = store.list_batch_deployments(Some((&ws, &endpoint))).await?;
    let exists = existing.iter().any(|d| d.name == name);
    if !exists && existing.len() >= limits::MAX_DEPLOYMENTS_PER_ENDPOINT {
        return Err(ApiError::Conflict(format!(
            "batch endpoint {endpoint:?} already has {} deployments, the limit",
            limits::MAX_DEPLOYMENTS_PER_ENDPOINT
        )));
    }
    let now = clock::now_rfc3339();
    let state = if exists { ProvisioningState::Updating } else { ProvisioningState::Creating };
    let row = BatchDeploymentRow {
        workspace: ws.clone(),
        endpoint: endpoint.clone(),
        name: name.clone(),
        spec_json: serde_json::to_string(&spec).map_err(|e| ApiError::Internal(e.to_string()))?,
        model_name: valid.model.name.as_str().to_owned(),
        model_version: version,
        generation: 1,
        provisioning_state: state.as_str().into(),
        message: None,
        created_at: now.clone(),
        updated_at: now,
    };
    let created = store.upsert_batch_deployment(&row).await?;
    if default_deployment(&ep).is_none() {
        set_default(&batch, &ep, &name).await?;
    }
    batch.wake();
    let row = existing_row(&batch, &ws, &endpoint, &name).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, axum::Json(to_wire(row))))
}

async fn existing_row(batch: &Batch, ws: &str, endpoint: &str, name: &str) -> Result<BatchDeploymentRow, ApiError> {
    check_workspace(ws)?;
    batch.control.store.get_batch_deployment(ws, endpoint, name).await?.ok_or_else(|| {
        ApiError::NotFound(format!("batch deployment {name:?} not found in batch endpoint {endpoint:?}"))
    })
}

/// Show a batch deployment.
#[utoipa::path(get, path = "/api/v1/workspaces/{workspace}/batch-endpoints/{endpoint}/deployments/{name}", tag = "batch-deployments",
    params(("workspace" = String, Path), ("endpoint" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = BatchDeployment), (status = 404, body = sluice_api::ErrorBody)))]
pub async fn show(
    State(batch): State<Arc<Batch>>,
    Path((ws, endpoint, name)): Path<(String, String, String)>,
) -> Result<axum::Json<BatchDeployment>, ApiError> {
    Ok(axum::Json(to_wire(existing_row(&batch, &ws, &endpoint, &name).await?)))
}

/// List a batch endpoint's deployments.
#[utoipa::path(get, path = "/api/v1/workspaces/{workspace}/batch-endpoints/{endpoint}/deployments", tag = "batch-deployments",
    params(("workspace" = String, Path), ("endpoint" = String, Path)), responses((status = 200, body = Vec<BatchDeployment>)))]
pub async fn list(
    State(batch): State<Arc<Batch>>,
    Path((ws, endpoint)): Path<(String, String)>,
) -> Result<axum::Json<Vec<BatchDeployment>>, ApiError> {
    load(&batch, &ws, &endpoint).await?;
    let rows = batch.control.store.list_batch_deployments(Some((&ws, &endpoint))).await?;
    Ok(axum::Json(rows.into_iter().map(to_wire).collect()))
}

/// Delete a batch deployment. Refused while one of its jobs has not ended, and for the
/// endpoint's default while other deployments remain (make another one the default first).
#[utoipa::path(delete, path = "/api/v1/workspaces/{workspace}/batch-endpoints/{endpoint}/deployments/{name}", tag = "batch-deployments",
    params(("workspace" = String, Path), ("endpoint" = String, Path), ("name" = String, Path)),
    responses((status = 204), (status = 404, body = sluice_api::ErrorBody), (status = 409, body = sluice_api::ErrorBody)))]
pub async fn remove(
    State(batch): State<Arc<Batch>>,
    Path((ws, endpoint, name)): Path<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    let ep = load(&batch, &ws, &endpoint).await?;
    existing_row(&batch, &ws, &endpoint, &name).await?;
    let store = &batch.control.store;
    let active: Vec<String> = store
        .list_batch_jobs(&ws, Some(&endpoint))
        .await?
        .into_iter()
        .filter(|j| j.deployment == name && JobStatus::parse(&j.status).is_some_and(|s| !s.is_terminal()))
        .map(|j| j.name)
        .collect();
    if !active.is_empty() {
        return Err(ApiError::Conflict(format!(
            "batch deployment {name:?} has jobs that have not ended ({}); cancel them first",
            active.join(", ")
        )));
    }
    let others = store.list_batch_deployments(Some((&ws, &endpoint))).await?.len() > 1;
    if default_deployment(&ep).as_deref() == Some(name.as_str()) {
        if others {
            return Err(ApiError::Conflict(format!(
                "{name:?} is batch endpoint {endpoint:?}'s default deployment; make another one the default first (sluice batch-endpoint update --name {endpoint} --set defaults.deployment_name=...)"
            )));
        }
        let mut spec: sluice_api::batch::BatchEndpointSpec =
            serde_json::from_str(&ep.spec_json).map_err(|e| ApiError::Internal(e.to_string()))?;
        spec.defaults = None;
        let mut ep = ep;
        ep.spec_json = serde_json::to_string(&spec).map_err(|e| ApiError::Internal(e.to_string()))?;
        ep.updated_at = clock::now_rfc3339();
        store.update_batch_endpoint(&ep).await?;
    }
    store.delete_batch_deployment(&ws, &endpoint, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}
