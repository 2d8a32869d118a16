//! `/models`: registering, showing, listing and deleting model versions.

use crate::error::Json;
use crate::{ApiError, Control, clock};
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, put};
use sluice_api::model::{Model, ModelCreate};
use sluice_api::{DEFAULT_WORKSPACE, ModelTypeWire};
use sluice_domain::{ModelName, ModelVersion};
use sluice_store::{ModelRow, StoreError};
use std::sync::Arc;

pub fn routes() -> Router<Arc<Control>> {
    Router::new()
        .route("/api/v1/workspaces/{workspace}/models", get(list_all))
        .route("/api/v1/workspaces/{workspace}/models/{name}/versions", get(list_versions))
        .route("/api/v1/workspaces/{workspace}/models/{name}/versions/{version}", put(create).get(show).delete(remove))
}

pub fn check_workspace(ws: &str) -> Result<(), ApiError> {
    if ws == DEFAULT_WORKSPACE {
        Ok(())
    } else {
        Err(ApiError::NotFound(format!("workspace {ws:?} not found (this install has only {DEFAULT_WORKSPACE:?})")))
    }
}

pub fn to_wire(m: ModelRow) -> Model {
    Model {
        id: format!("azureml:{}:{}", m.name, m.version),
        model_type: ModelTypeWire::parse(&m.model_type).unwrap_or(ModelTypeWire::CustomModel),
        tags: serde_json::from_str(&m.tags_json).unwrap_or_default(),
        name: m.name,
        version: m.version,
        artifact: m.artifact,
        path: m.path,
        description: m.description,
        created_at: m.created_at,
    }
}

/// The highest version of a registered asset (models, environments, data assets), as `latest`
/// means.
pub(crate) fn newest<T>(mut versions: Vec<T>, version: impl Fn(&T) -> &str) -> Option<T> {
    versions.sort_by_key(|m| ModelVersion::parse(version(m)).map(|v| v.sort_key()).ok());
    versions.pop()
}

/// Resolves `version` (a version or `latest`) to a stored model.
pub async fn resolve(control: &Control, ws: &str, name: &str, version: Option<&str>) -> Result<ModelRow, ApiError> {
    match version.filter(|v| *v != "latest") {
        Some(v) => control
            .store
            .get_model(ws, name, v)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("model {name}:{v} not found"))),
        None => {
            let all = control.store.list_models(ws, Some(name)).await?;
            newest(all, |m| &m.version).ok_or_else(|| ApiError::NotFound(format!("model {name:?} has no versions")))
        }
    }
}

/// Register a model version.
#[utoipa::path(put, path = "/api/v1/workspaces/{workspace}/models/{name}/versions/{version}", tag = "models",
    params(("workspace" = String, Path), ("name" = String, Path), ("version" = String, Path)),
    request_body = ModelCreate,
    responses((status = 201, body = Model), (status = 400, body = sluice_api::ErrorBody), (status = 409, body = sluice_api::ErrorBody)))]
pub async fn create(
    State(control): State<Arc<Control>>,
    Path((ws, name, version)): Path<(String, String, String)>,
    Json(body): Json<ModelCreate>,
) -> Result<(StatusCode, axum::Json<Model>), ApiError> {
    check_workspace(&ws)?;
    let mut details = Vec::new();
    if let Err(e) = ModelName::parse(&name) {
        details.push(sluice_api::FieldError { field: "name".into(), message: e.0 });
    }
    if let Err(e) = ModelVersion::parse(&version) {
        details.push(sluice_api::FieldError { field: "version".into(), message: e.0 });
    }
    if version == "latest" {
        details.push(sluice_api::FieldError {
            field: "version".into(),
            message: "'latest' is a label, not a version".into(),
        });
    }
    if !details.is_empty() {
        return Err(ApiError::validation(details));
    }
    let path = control.artifacts.top_level(&body.artifact).ok_or_else(|| {
        ApiError::BadRequest(format!(
            "artifact {:?} was not uploaded: POST the files to /artifacts first",
            body.artifact
        ))
    })?;
    let row = ModelRow {
        workspace: ws,
        name,
        version,
        model_type: body.model_type.as_str().to_owned(),
        artifact: body.artifact,
        path,
        description: body.description,
        tags_json: serde_json::to_string(&body.tags).unwrap_or_else(|_| "{}".into()),
        created_at: clock::now_rfc3339(),
    };
    match control.store.insert_model(&row).await {
        Ok(()) => Ok((StatusCode::CREATED, axum::Json(to_wire(row)))),
        Err(StoreError::Conflict) => Err(ApiError::Conflict(format!(
            "model {}:{} already exists; versions are immutable, register a new version",
            row.name, row.version
        ))),
        Err(e) => Err(e.into()),
    }
}

/// Show a model version (`latest` for the newest).
#[utoipa::path(get, path = "/api/v1/workspaces/{workspace}/models/{name}/versions/{version}", tag = "models",
    params(("workspace" = String, Path), ("name" = String, Path), ("version" = String, Path)),
    responses((status = 200, body = Model), (status = 404, body = sluice_api::ErrorBody)))]
pub async fn show(
    State(control): State<Arc<Control>>,
    Path((ws, name, version)): Path<(String, String, String)>,
) -> Result<axum::Json<Model>, ApiError> {
    check_workspace(&ws)?;
    Ok(axum::Json(to_wire(resolve(&control, &ws, &name, Some(&version)).await?)))
}

/// List every model version.
#[utoipa::path(get, path = "/api/v1/workspaces/{workspace}/models", tag = "models",
    params(("workspace" = String, Path)), responses((status = 200, body = Vec<Model>)))]
pub async fn list_all(
    State(control): State<Arc<Control>>,
    Path(ws): Path<String>,
) -> Result<axum::Json<Vec<Model>>, ApiError> {
    check_workspace(&ws)?;
    Ok(axum::Json(control.store.list_models(&ws, None).await?.into_iter().map(to_wire).collect()))
}

/// List the versions of one model.
#[utoipa::path(get, path = "/api/v1/workspaces/{workspace}/models/{name}/versions", tag = "models",
    params(("workspace" = String, Path), ("name" = String, Path)), responses((status = 200, body = Vec<Model>)))]
pub async fn list_versions(
    State(control): State<Arc<Control>>,
    Path((ws, name)): Path<(String, String)>,
) -> Result<axum::Json<Vec<Model>>, ApiError> {
    check_workspace(&ws)?;
    Ok(axum::Json(control.store.list_models(&ws, Some(&name)).await?.into_iter().map(to_wire).collect()))
}

/// Delete a model version that no deployment uses.
#[utoipa::path(delete, path = "/api/v1/workspaces/{workspace}/models/{name}/versions/{version}", tag = "models",
    params(("workspace" = String, Path), ("name" = String, Path), ("version" = String, Path)),
    responses((status = 204), (status = 404, body = sluice_api::ErrorBody), (status = 409, body = sluice_api::ErrorBody)))]
pub async fn remove(
    State(control): State<Arc<Control>>,
    Path((ws, name, version)): Path<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    check_workspace(&ws)?;
    let mut users: Vec<String> = control
        .store
        .list_deployments(None)
        .await?
        .into_iter()
        .filter(|d| d.workspace == ws && d.model_name == name && d.model_version == version)
        .map(|d| format!("{}/{}", d.endpoint, d.name))
        .collect();
    users.extend(
        control
            .store
            .list_batch_deployments(None)
            .await?
            .into_iter()
            .filter(|d| d.workspace == ws && d.model_name == name && d.model_version == version)
            .map(|d| format!("{}/{} (batch)", d.endpoint, d.name)),
    );
    if !users.is_empty() {
        return Err(ApiError::Conflict(format!(
            "model {name}:{version} is used by deployment(s) {}; delete them first",
            users.join(", ")
        )));
    }
    if control.store.delete_model(&ws, &name, &version).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!("model {name}:{version} not found")))
    }
}
