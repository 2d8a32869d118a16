//! `/environments`: registering, showing and listing environment versions. Registering starts
//! the build (a conda file becomes a virtual environment); `show` reports its state and log.

use crate::error::Json;
use crate::models::check_workspace;
use crate::{ApiError, Control, clock};
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, put};
use sluice_api::FieldError;
use sluice_api::environment::{Environment, EnvironmentBuild, EnvironmentCreate};
use sluice_domain::{ModelName, ModelVersion, ValidEnvironment};
use sluice_store::{EnvironmentRow, StoreError};
use std::sync::Arc;

pub fn routes() -> Router<Arc<Control>> {
    Router::new()
        .route("/api/v1/workspaces/{workspace}/environments", get(list_all))
        .route("/api/v1/workspaces/{workspace}/environments/{name}/versions", get(list_versions))
        .route("/api/v1/workspaces/{workspace}/environments/{name}/versions/{version}", put(create).get(show))
}

/// The stored fields, validated again (they were valid when registered).
pub fn valid(row: &EnvironmentRow) -> Result<ValidEnvironment, String> {
    let spec: serde_json::Value =
        serde_json::from_str(&row.spec_json).map_err(|e| format!("stored environment unreadable: {e}"))?;
    let mut errors = Vec::new();
    sluice_api::environment::inline(&spec, "", &mut errors).ok_or_else(|| {
        let what: Vec<String> = errors.iter().map(ToString::to_string).collect();
        format!("environment {}:{} is invalid: {}", row.name, row.version, what.join("; "))
    })
}

fn to_wire(control: &Control, row: EnvironmentRow) -> Environment {
    let build = match valid(&row) {
        Ok(ValidEnvironment { pip: Some(plan), .. }) => control.reconciler.environments().status(&plan),
        Ok(_) => EnvironmentBuild { state: "NotNeeded".into(), key: None, requirements: Vec::new(), log_tail: None },
        Err(e) => EnvironmentBuild { state: "Failed".into(), key: None, requirements: Vec::new(), log_tail: Some(e) },
    };
    Environment {
        id: format!("azureml:{}:{}", row.name, row.version),
        spec: serde_json::from_str(&row.spec_json).unwrap_or_default(),
        tags: serde_json::from_str(&row.tags_json).unwrap_or_default(),
        name: row.name,
        version: row.version,
        description: row.description,
        build,
        created_at: row.created_at,
    }
}

/// Resolves `version` (a version, `latest`, or none for the newest) to a stored environment.
pub async fn resolve(
    control: &Control,
    ws: &str,
    name: &str,
    version: Option<&str>,
) -> Result<EnvironmentRow, ApiError> {
    match version.filter(|v| *v != "latest") {
        Some(v) => control
            .store
            .get_environment(ws, name, v)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("environment {name}:{v} not found"))),
        None => {
            let all = control.store.list_environments(ws, Some(name)).await?;
            crate::models::newest(all, |m| &m.version).ok_or_else(|| {
                ApiError::NotFound(format!(
                    "environment {name:?} has no versions: register it with `sluice environment create`"
                ))
            })
        }
    }
}

/// Register an environment version and start building it.
#[utoipa::path(put, path = "/api/v1/workspaces/{workspace}/environments/{name}/versions/{version}", tag = "environments",
    params(("workspace" = String, Path), ("name" = String, Path), ("version" = String, Path)),
    request_body = EnvironmentCreate,
    responses((status = 201, body = Environment), (status = 400, body = sluice_api::ErrorBody), (status = 409, body = sluice_api::ErrorBody)))]
pub async fn create(
    State(control): State<Arc<Control>>,
    Path((ws, name, version)): Path<(String, String, String)>,
    Json(body): Json<EnvironmentCreate>,
) -> Result<(StatusCode, axum::Json<Environment>), ApiError> {
    check_workspace(&ws)?;
    let mut details = Vec::new();
    if let Err(e) = ModelName::parse(&name) {
        details.push(FieldError { field: "name".into(), message: e.0 });
    }
    if version == "latest" {
        details.push(FieldError { field: "version".into(), message: "'latest' is a label, not a version".into() });
    } else if let Err(e) = ModelVersion::parse(&version) {
        details.push(FieldError { field: "version".into(), message: e.0 });
    }
    let environment = sluice_api::environment::inline(&body.spec, "", &mut details);
    let (Some(environment), true) = (environment, details.is_empty()) else {
        return Err(ApiError::validation(details));
    };
    let row = EnvironmentRow {
        workspace: ws,
        name,
        version,
        spec_json: body.spec.to_string(),
        description: body.description,
        tags_json: serde_json::to_string(&body.tags).unwrap_or_else(|_| "{}".into()),
        created_at: clock::now_rfc3339(),
    };
    match control.store.insert_environment(&row).await {
        Ok(()) => {
            if let Some(plan) = environment.pip {
                control.reconciler.environments().spawn_build(plan);
            }
            Ok((StatusCode::CREATED, axum::Json(to_wire(&control, row))))
        }
        Err(StoreError::Conflict) => Err(ApiError::Conflict(format!(
            "environment {}:{} already exists; versions are immutable, register a new version",
            row.name, row.version
        ))),
        Err(e) => Err(e.into()),
    }
}

/// Show an environment version (`latest` for the newest) with its build state and log.
#[utoipa::path(get, path = "/api/v1/workspaces/{workspace}/environments/{name}/versions/{version}", tag = "environments",
    params(("workspace" = String, Path), ("name" = String, Path), ("version" = String, Path)),
    responses((status = 200, body = Environment), (status = 404, body = sluice_api::ErrorBody)))]
pub async fn show(
    State(control): State<Arc<Control>>,
    Path((ws, name, version)): Path<(String, String, String)>,
) -> Result<axum::Json<Environment>, ApiError> {
    check_workspace(&ws)?;
    Ok(axum::Json(to_wire(&control, resolve(&control, &ws, &name, Some(&version)).await?)))
}

/// List every environment version.
#[utoipa::path(get, path = "/api/v1/workspaces/{workspace}/environments", tag = "environments",
    params(("workspace" = String, Path)), responses((status = 200, body = Vec<Environment>)))]
pub async fn list_all(
    State(control): State<Arc<Control>>,
    Path(ws): Path<String>,
) -> Result<axum::Json<Vec<Environment>>, ApiError> {
    check_workspace(&ws)?;
    let rows = control.store.list_environments(&ws, None).await?;
    Ok(axum::Json(rows.into_iter().map(|r| to_wire(&control, r)).collect()))
}

/// List the versions of one environment.
#[utoipa::path(get, path = "/api/v1/workspaces/{workspace}/environments/{name}/versions", tag = "environments",
    params(("workspace" = String, Path), ("name" = String, Path)), responses((status = 200, body = Vec<Environment>)))]
pub async fn list_versions(
    State(control): State<Arc<Control>>,
    Path((ws, name)): Path<(String, String)>,
) -> Result<axum::Json<Vec<Environment>>, ApiError> {
    check_workspace(&ws)?;
    let rows = control.store.list_environments(&ws, Some(&name)).await?;
    Ok(axum::Json(rows.into_iter().map(|r| to_wire(&control, r)).collect()))
}
