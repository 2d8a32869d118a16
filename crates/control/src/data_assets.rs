//! `/data`: registering, showing and listing data asset versions, and resolving a job input's
//! `azureml:NAME:VERSION` / `azureml:NAME@latest` to the artifact it names.

use crate::error::Json;
use crate::models::check_workspace;
use crate::{ApiError, Control, clock};
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, put};
use sluice_api::data::{DataAsset, DataAssetCreate};
use sluice_api::{FieldError, InputTypeWire};
use sluice_domain::{ModelName, ModelVersion};
use sluice_store::{DataAssetRow, StoreError};
use std::sync::Arc;

pub fn routes() -> Router<Arc<Control>> {
    Router::new()
        .route("/api/v1/workspaces/{workspace}/data", get(list_all))
        .route("/api/v1/workspaces/{workspace}/data/{name}/versions", get(list_versions))
        .route("/api/v1/workspaces/{workspace}/data/{name}/versions/{version}", put(create).get(show))
}

fn to_wire(row: DataAssetRow) -> DataAsset {
    DataAsset {
        id: format!("azureml:{}:{}", row.name, row.version),
        tags: serde_json::from_str(&row.tags_json).unwrap_or_default(),
        name: row.name,
        version: row.version,
        data_type: row.data_type,
        path: row.artifact,
        artifact_path: row.path,
        description: row.description,
        created_at: row.created_at,
    }
}

/// Resolves `version` (a version, `latest`, or none for the newest) to a stored data asset.
pub async fn resolve(control: &Control, ws: &str, name: &str, version: Option<&str>) -> Result<DataAssetRow, ApiError> {
    match version.filter(|v| *v != "latest") {
        Some(v) => control
            .store
            .get_data_asset(ws, name, v)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("data asset {name}:{v} not found"))),
        None => {
            let all = control.store.list_data_assets(ws, Some(name)).await?;
            crate::models::newest(all, |m| &m.version).ok_or_else(|| {
                ApiError::NotFound(format!(
                    "data asset {name:?} has no versions: register it with `sluice data create`"
                ))
            })
        }
    }
}

/// Register a data asset version over an uploaded artifact.
#[utoipa::path(put, path = "/api/v1/workspaces/{workspace}/data/{name}/versions/{version}", tag = "data",
    params(("workspace" = String, Path), ("name" = String, Path), ("version" = String, Path)),
    request_body = DataAssetCreate,
    responses((status = 201, body = DataAsset), (status = 400, body = sluice_api::ErrorBody), (status = 409, body = sluice_api::ErrorBody)))]
pub async fn create(
    State(control): State<Arc<Control>>,
    Path((ws, name, version)): Path<(String, String, String)>,
    Json(body): Json<DataAssetCreate>,
) -> Result<(StatusCode, axum::Json<DataAsset>), ApiError> {
    check_workspace(&ws)?;
    let mut details = Vec::new();
    if let Err(e) = ModelName::parse(&name) {
        details.push(FieldError { field: "name".into(), message: e.0.replace("model", "data asset") });
    }
    if version == "latest" {
        details.push(FieldError { field: "version".into(), message: "'latest' is a label, not a version".into() });
    } else if let Err(e) = ModelVersion::parse(&version) {
        details.push(FieldError { field: "version".into(), message: e.0 });
    }
    let artifacts = &control.artifacts;
    let top = artifacts.top_level(&body.path);
    match &top {
        None => details.push(FieldError {
            field: "path".into(),
            message: format!("{:?} is not an uploaded artifact (upload it to /artifacts first)", body.path),
        }),
        Some(top) => {
            let is_dir = artifacts.path_of(&body.path, top).is_some_and(|p| p.is_dir());
            let actual = if is_dir { InputTypeWire::UriFolder } else { InputTypeWire::UriFile };
            if actual != body.data_type {
                details.push(FieldError {
                    field: "type".into(),
                    message: format!(
                        "the artifact holds a {}, not a {}",
                        if is_dir { "folder" } else { "file" },
                        body.data_type.as_str()
                    ),
                });
            }
        }
    }
    let (Some(top), true) = (top, details.is_empty()) else {
        return Err(ApiError::validation(details));
    };
    let row = DataAssetRow {
        workspace: ws,
        name,
        version,
        data_type: body.data_type.as_str().into(),
        artifact: body.path,
        path: top,
        description: body.description,
        tags_json: serde_json::to_string(&body.tags).unwrap_or_else(|_| "{}".into()),
        created_at: clock::now_rfc3339(),
    };
    match control.store.insert_data_asset(&row).await {
        Ok(()) => Ok((StatusCode::CREATED, axum::Json(to_wire(row)))),
        Err(StoreError::Conflict) => Err(ApiError::Conflict(format!(
            "data asset {}:{} already exists; versions are immutable, register a new version",
            row.name, row.version
        ))),
        Err(e) => Err(e.into()),
    }
}

/// Show a data asset version (`latest` for the newest).
#[utoipa::path(get, path = "/api/v1/workspaces/{workspace}/data/{name}/versions/{version}", tag = "data",
    params(("workspace" = String, Path), ("name" = String, Path), ("version" = String, Path)),
    responses((status = 200, body = DataAsset), (status = 404, body = sluice_api::ErrorBody)))]
pub async fn show(
    State(control): State<Arc<Control>>,
    Path((ws, name, version)): Path<(String, String, String)>,
) -> Result<axum::Json<DataAsset>, ApiError> {
    check_workspace(&ws)?;
    Ok(axum::Json(to_wire(resolve(&control, &ws, &name, Some(&version)).await?)))
}

/// List every data asset version.
#[utoipa::path(get, path = "/api/v1/workspaces/{workspace}/data", tag = "data",
    params(("workspace" = String, Path)), responses((status = 200, body = Vec<DataAsset>)))]
pub async fn list_all(
    State(control): State<Arc<Control>>,
    Path(ws): Path<String>,
) -> Result<axum::Json<Vec<DataAsset>>, ApiError> {
    check_workspace(&ws)?;
    let rows = control.store.list_data_assets(&ws, None).await?;
    Ok(axum::Json(rows.into_iter().map(to_wire).collect()))
}

/// List the versions of one data asset.
#[utoipa::path(get, path = "/api/v1/workspaces/{workspace}/data/{name}/versions", tag = "data",
    params(("workspace" = String, Path), ("name" = String, Path)), responses((status = 200, body = Vec<DataAsset>)))]
pub async fn list_versions(
    State(control): State<Arc<Control>>,
    Path((ws, name)): Path<(String, String)>,
) -> Result<axum::Json<Vec<DataAsset>>, ApiError> {
    check_workspace(&ws)?;
    let rows = control.store.list_data_assets(&ws, Some(&name)).await?;
    Ok(axum::Json(rows.into_iter().map(to_wire).collect()))
}
