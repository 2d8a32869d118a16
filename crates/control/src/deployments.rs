//! `/online-endpoints/{endpoint}/deployments`: create, update, show, list, delete, logs.

use crate::error::Json;
use crate::models::{check_workspace, resolve};
use crate::{ApiError, Control, clock, registered_environments};
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use serde::Deserialize;
use sluice_api::deployment::{
    DeploymentLogs, ModelField, OnlineDeployment, OnlineDeploymentSpec, ReplicaCounts, ReplicaState,
};
use sluice_api::endpoint::OnlineEndpointSpec;
use sluice_api::{FieldError, validate};
use sluice_backend::ReplicaSetId;
use sluice_domain::{EnvironmentChoice, ProvisioningState, ValidDeployment, limits};
use sluice_store::{DeploymentRow, StoreError};
use std::sync::Arc;

pub fn routes() -> Router<Arc<Control>> {
    Router::new()
        .route("/api/v1/workspaces/{workspace}/online-endpoints/{endpoint}/deployments", get(list).post(create))
        .route(
            "/api/v1/workspaces/{workspace}/online-endpoints/{endpoint}/deployments/{name}",
            get(show).put(update).delete(remove),
        )
        .route("/api/v1/workspaces/{workspace}/online-endpoints/{endpoint}/deployments/{name}/logs", get(logs))
}

/// The backend's id for a deployment's replicas.
pub fn replica_set_id(ws: &str, endpoint: &str, name: &str) -> ReplicaSetId {
    ReplicaSetId(format!("{ws}/{endpoint}/{name}"))
}

fn to_wire(control: &Control, row: DeploymentRow) -> OnlineDeployment {
    let mut spec: OnlineDeploymentSpec = serde_json::from_str(&row.spec_json).unwrap_or_else(|_| empty_spec(&row.name));
    spec.endpoint_name = Some(row.endpoint.clone());
    let status = control.backend.status(&replica_set_id(&row.workspace, &row.endpoint, &row.name));
    let replicas = status
        .map(|s| ReplicaCounts {
            desired: s.desired,
            ready: s.ready,
            instances: s
                .replicas
                .into_iter()
                .map(|r| ReplicaState {
                    index: r.index,
                    generation: r.generation,
                    state: format!("{:?}", r.phase),
                    restarts: r.restarts,
                    message: r.message,
                    last_exit: r.last_exit,
                })
                .collect(),
        })
        .unwrap_or_default();
    OnlineDeployment {
        spec,
        provisioning_state: row.provisioning_state,
        message: row.message,
        replicas,
        created_at: row.created_at,
        updated_at: row.updated_at,
    }
}

fn empty_spec(name: &str) -> OnlineDeploymentSpec {
    serde_json::from_value(serde_json::json!({ "name": name }))
        .expect("a spec with only a name is valid JSON for the type")
}

/// Validates a spec sent to `endpoint`, resolves its model, and returns the stored form.
async fn prepare(
    control: &Control,
    ws: &str,
    endpoint: &str,
    mut spec: OnlineDeploymentSpec,
) -> Result<(OnlineDeploymentSpec, ValidDeployment, String), ApiError> {
    match &spec.endpoint_name {
        Some(e) if e != endpoint => {
            return Err(ApiError::validation(vec![FieldError {
                field: "endpoint_name".into(),
                message: format!("{e:?} does not match the endpoint in the URL ({endpoint:?})"),
            }]));
        }
        _ => spec.endpoint_name = Some(endpoint.to_owned()),
    }
    let valid = validate::deployment(&spec).map_err(ApiError::validation)?;
    let model = resolve(control, ws, valid.model.name.as_str(), valid.model.version.as_ref().map(|v| v.as_str()))
        .await
        .map_err(|e| ApiError::validation(vec![FieldError { field: "model".into(), message: e.to_string() }]))?;
    let environment = match &valid.environment {
        Some(EnvironmentChoice::Registered { name, version }) => {
            let row = registered_environments::resolve(control, ws, name, version.as_deref()).await.map_err(|e| {
                ApiError::validation(vec![FieldError { field: "environment".into(), message: e.to_string() }])
            })?;
            // Pin `@latest` as models are pinned.
            spec.environment = Some(serde_json::Value::String(format!("azureml:{}:{}", row.name, row.version)));
            Some(registered_environments::valid(&row).map_err(ApiError::BadRequest)?)
        }
        Some(EnvironmentChoice::Inline(e)) => Some(e.clone()),
        None => None,
    };
    let container = environment.as_ref().is_some_and(|e| e.container.is_some());
    if model.model_type == "custom_model" && valid.code.is_none() && !container {
        return Err(ApiError::validation(vec![FieldError {
            field: "code_configuration".into(),
            message: format!(
                "model {}:{} is a custom_model: give a scoring script (code_configuration), a custom container (environment.inference_config), or register the model as triton_model or mlflow_model to serve it without code",
                model.name, model.version
            ),
        }]));
    }
    if let Some(code) = &valid.code
        && control.artifacts.top_level(&code.code).is_none()
    {
        return Err(ApiError::validation(vec![FieldError {
            field: "code_configuration.code".into(),
            message: format!(
                "{:?} is not an uploaded code folder: upload it to /artifacts first and send its id (the CLI does this)",
                code.code
            ),
        }]));
    }
    // Pin `@latest` to the version it resolved to, so a later registration changes nothing.
    spec.model = Some(ModelField::Reference(format!("azureml:{}:{}", model.name, model.version)));
    Ok((spec, valid, model.version))
}

async fn live_endpoint(control: &Control, ws: &str, endpoint: &str) -> Result<(), ApiError> {
    check_workspace(ws)?;
    match control.store.get_endpoint(ws, endpoint).await? {
        Some(e) if e.provisioning_state != ProvisioningState::Deleting.as_str() => Ok(()),
        Some(_) => Err(ApiError::Conflict(format!("online endpoint {endpoint:?} is being deleted"))),
        None => Err(ApiError::NotFound(format!("online endpoint {endpoint:?} not found: create it first"))),
    }
}

/// Create a deployment (long-running: poll `show` until `provisioning_state` is terminal).
#[utoipa::path(post, path = "/api/v1/workspaces/{workspace}/online-endpoints/{endpoint}/deployments", tag = "online-deployments",
    params(("workspace" = String, Path), ("endpoint" = String, Path)), request_body = OnlineDeploymentSpec,
    responses((status = 201, body = OnlineDeployment), (status = 400, body = sluice_api::ErrorBody), (status = 404, body = sluice_api::ErrorBody), (status = 409, body = sluice_api::ErrorBody)))]
pub async fn create(
    State(control): State<Arc<Control>>,
    Path((ws, endpoint)): Path<(String, String)>,
    Json(spec): Json<OnlineDeploymentSpec>,
) -> Result<(StatusCode, axum::Json<OnlineDeployment>), ApiError> {
    live_endpoint(&control, &ws, &endpoint).await?;
    let (spec, valid, version) = prepare(&control, &ws, &endpoint, spec).await?;
    if control.store.list_deployments(Some((&ws, &endpoint))).await?.len() >= limits::MAX_DEPLOYMENTS_PER_ENDPOINT {
        return Err(ApiError::Conflict(format!(
            "endpoint {endpoint:?} already has {} deployments, the limit",
            limits::MAX_DEPLOYMENTS_PER_ENDPOINT
        )));
    }
    let now = clock::now_rfc3339();
    let row = DeploymentRow {
        workspace: ws,
        endpoint,
        name: spec.name.clone(),
        spec_json: serde_json::to_string(&spec).map_err(|e| ApiError::Internal(e.to_string()))?,
        model_name: valid.model.name.as_str().to_owned(),
        model_version: version,
        generation: 1,
        provisioning_state: ProvisioningState::Creating.as_str().into(),
        message: None,
        created_at: now.clone(),
        updated_at: now,
    };
    match control.store.insert_deployment(&row).await {
        Ok(()) => {}
        Err(StoreError::Conflict) => {
            return Err(ApiError::Conflict(format!(
                "deployment {:?} already exists in endpoint {:?}; use update",
                row.name, row.endpoint
            )));
        }
        Err(e) => return Err(e.into()),
    }
    control.reconciler.publish_routes().await;
    control.reconciler.wake();
    Ok((StatusCode::CREATED, axum::Json(to_wire(&control, row))))
}

/// Update a deployment; its replicas are replaced without dropping traffic.
#[utoipa::path(put, path = "/api/v1/workspaces/{workspace}/online-endpoints/{endpoint}/deployments/{name}", tag = "online-deployments",
    params(("workspace" = String, Path), ("endpoint" = String, Path), ("name" = String, Path)), request_body = OnlineDeploymentSpec,
    responses((status = 200, body = OnlineDeployment), (status = 400, body = sluice_api::ErrorBody), (status = 404, body = sluice_api::ErrorBody)))]
pub async fn update(
    State(control): State<Arc<Control>>,
    Path((ws, endpoint, name)): Path<(String, String, String)>,
    Json(spec): Json<OnlineDeploymentSpec>,
) -> Result<axum::Json<OnlineDeployment>, ApiError> {
    live_endpoint(&control, &ws, &endpoint).await?;
    let mut row = existing(&control, &ws, &endpoint, &name).await?;
    if spec.name != name {
        return Err(ApiError::validation(vec![FieldError {
            field: "name".into(),
            message: format!("{:?} does not match the deployment being updated ({name:?})", spec.name),
        }]));
    }
    let (spec, valid, version) = prepare(&control, &ws, &endpoint, spec).await?;
    row.spec_json = serde_json::to_string(&spec).map_err(|e| ApiError::Internal(e.to_string()))?;
    row.model_name = valid.model.name.as_str().to_owned();
    row.model_version = version;
    row.provisioning_state = ProvisioningState::Updating.as_str().into();
    row.updated_at = clock::now_rfc3339();
    if !control.store.update_deployment_spec(&row).await? {
        return Err(ApiError::NotFound(format!("deployment {name:?} not found")));
    }
    control.reconciler.wake();
    let row = existing(&control, &ws, &endpoint, &name).await?;
    Ok(axum::Json(to_wire(&control, row)))
}

async fn existing(control: &Control, ws: &str, endpoint: &str, name: &str) -> Result<DeploymentRow, ApiError> {
    check_workspace(ws)?;
    control
        .store
        .get_deployment(ws, endpoint, name)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("deployment {name:?} not found in endpoint {endpoint:?}")))
}

/// Show a deployment.
#[utoipa::path(get, path = "/api/v1/workspaces/{workspace}/online-endpoints/{endpoint}/deployments/{name}", tag = "online-deployments",
    params(("workspace" = String, Path), ("endpoint" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = OnlineDeployment), (status = 404, body = sluice_api::ErrorBody)))]
pub async fn show(
    State(control): State<Arc<Control>>,
    Path((ws, endpoint, name)): Path<(String, String, String)>,
) -> Result<axum::Json<OnlineDeployment>, ApiError> {
    let row = existing(&control, &ws, &endpoint, &name).await?;
    Ok(axum::Json(to_wire(&control, row)))
}

/// List an endpoint's deployments.
#[utoipa::path(get, path = "/api/v1/workspaces/{workspace}/online-endpoints/{endpoint}/deployments", tag = "online-deployments",
    params(("workspace" = String, Path), ("endpoint" = String, Path)), responses((status = 200, body = Vec<OnlineDeployment>)))]
pub async fn list(
    State(control): State<Arc<Control>>,
    Path((ws, endpoint)): Path<(String, String)>,
) -> Result<axum::Json<Vec<OnlineDeployment>>, ApiError> {
    check_workspace(&ws)?;
    if control.store.get_endpoint(&ws, &endpoint).await?.is_none() {
        return Err(ApiError::NotFound(format!("online endpoint {endpoint:?} not found")));
    }
    let rows = control.store.list_deployments(Some((&ws, &endpoint))).await?;
    Ok(axum::Json(rows.into_iter().map(|r| to_wire(&control, r)).collect()))
}

/// Delete a deployment that takes no live traffic (long-running: poll `show` until 404).
#[utoipa::path(delete, path = "/api/v1/workspaces/{workspace}/online-endpoints/{endpoint}/deployments/{name}", tag = "online-deployments",
    params(("workspace" = String, Path), ("endpoint" = String, Path), ("name" = String, Path)),
    responses((status = 202, body = OnlineDeployment), (status = 404, body = sluice_api::ErrorBody), (status = 409, body = sluice_api::ErrorBody)))]
pub async fn remove(
    State(control): State<Arc<Control>>,
    Path((ws, endpoint, name)): Path<(String, String, String)>,
) -> Result<(StatusCode, axum::Json<OnlineDeployment>), ApiError> {
    let row = existing(&control, &ws, &endpoint, &name).await?;
    if let Some(ep) = control.store.get_endpoint(&ws, &endpoint).await? {
        let spec: Option<OnlineEndpointSpec> = serde_json::from_str(&ep.spec_json).ok();
        let weight = |m: Option<&std::collections::BTreeMap<String, serde_json::Value>>| {
            m.and_then(|m| m.get(&name)).and_then(|v| v.as_i64()).unwrap_or(0)
        };
        if weight(spec.as_ref().map(|s| &s.traffic)) > 0 || weight(spec.as_ref().map(|s| &s.mirror_traffic)) > 0 {
            return Err(ApiError::Conflict(format!(
                "deployment {name:?} still receives traffic; set its traffic to 0 first (sluice online-endpoint update --name {endpoint} --traffic ...)"
            )));
        }
    }
    let now = clock::now_rfc3339();
    control
        .store
        .set_deployment_state((&ws, &endpoint, &name), row.generation, ProvisioningState::Deleting.as_str(), None, &now)
        .await?;
    control.reconciler.wake();
    let row = existing(&control, &ws, &endpoint, &name).await?;
    Ok((StatusCode::ACCEPTED, axum::Json(to_wire(&control, row))))
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct LogsQuery {
    /// Lines from the end (default 5000, at most 100000).
    lines: Option<usize>,
    /// One replica's log; all replicas when absent.
    replica: Option<u32>,
}

/// The tail of a deployment's replica logs.
#[utoipa::path(get, path = "/api/v1/workspaces/{workspace}/online-endpoints/{endpoint}/deployments/{name}/logs", tag = "online-deployments",
    params(("workspace" = String, Path), ("endpoint" = String, Path), ("name" = String, Path), LogsQuery),
    responses((status = 200, body = DeploymentLogs), (status = 404, body = sluice_api::ErrorBody)))]
pub async fn logs(
    State(control): State<Arc<Control>>,
    Path((ws, endpoint, name)): Path<(String, String, String)>,
    Query(q): Query<LogsQuery>,
) -> Result<axum::Json<DeploymentLogs>, ApiError> {
    existing(&control, &ws, &endpoint, &name).await?;
    let lines = q.lines.unwrap_or(5000).min(100_000);
    let content = control
        .backend
        .logs(&replica_set_id(&ws, &endpoint, &name), q.replica, lines)
        .await
        .map_err(|e| ApiError::NotFound(format!("no logs: {e}")))?;
    Ok(axum::Json(DeploymentLogs { content }))
}
