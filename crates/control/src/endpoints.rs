//! `/online-endpoints`: create, update (traffic), show, list, delete, and credentials.

use crate::error::Json;
use crate::models::check_workspace;
use crate::secrets::new_credential;
use crate::{ApiError, Control, clock};
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use sluice_api::endpoint::{
    DeploymentTrafficStats, EndpointCredentials, EndpointKeys, EndpointToken, KeyType, MirrorStats, OnlineEndpoint,
    OnlineEndpointSpec, RegenerateKeys,
};
use sluice_api::{AuthModeWire, FieldError, validate};
use sluice_domain::{AuthMode, ProvisioningState, Traffic};
use sluice_store::{EndpointRow, StoreError};
use std::collections::BTreeMap;
use std::sync::Arc;

pub fn routes() -> Router<Arc<Control>> {
    Router::new()
        .route("/api/v1/workspaces/{workspace}/online-endpoints", post(create).get(list))
        .route("/api/v1/workspaces/{workspace}/online-endpoints/{name}", get(show).put(update).delete(remove))
        .route("/api/v1/workspaces/{workspace}/online-endpoints/{name}/get-credentials", post(get_credentials))
        .route("/api/v1/workspaces/{workspace}/online-endpoints/{name}/regenerate-keys", post(regenerate_keys))
}

pub fn to_wire(control: &Control, row: &EndpointRow) -> OnlineEndpoint {
    let spec: Option<OnlineEndpointSpec> = serde_json::from_str(&row.spec_json).ok();
    let weights = |m: Option<&BTreeMap<String, serde_json::Value>>| -> BTreeMap<String, u32> {
        m.map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), u32::try_from(v.as_i64()?).ok()?))).collect())
            .unwrap_or_default()
    };
    OnlineEndpoint {
        name: row.name.clone(),
        description: spec.as_ref().and_then(|s| s.description.clone()),
        tags: spec.as_ref().map(|s| s.tags.clone()).unwrap_or_default(),
        auth_mode: spec.as_ref().map_or(AuthModeWire::Key, |s| s.auth_mode),
        traffic: weights(spec.as_ref().map(|s| &s.traffic)),
        mirror_traffic: weights(spec.as_ref().map(|s| &s.mirror_traffic)),
        compute: spec.as_ref().and_then(|s| s.compute.clone()),
        identity: spec.as_ref().and_then(|s| s.identity.clone()),
        public_network_access: spec.as_ref().and_then(|s| s.public_network_access.clone()),
        kind: spec.as_ref().and_then(|s| s.kind.clone()),
        provisioning_state: row.provisioning_state.clone(),
        scoring_uri: format!("{}/endpoints/{}/score", control.public_url, row.name),
        openapi_uri: format!("{}/endpoints/{}/swagger.json", control.public_url, row.name),
        created_at: row.created_at.clone(),
        updated_at: row.updated_at.clone(),
        deployment_stats: BTreeMap::new(),
    }
}

/// The endpoint as `show` reports it, with each deployment's traffic statistics.
async fn with_stats(control: &Control, row: &EndpointRow) -> Result<OnlineEndpoint, ApiError> {
    let mut wire = to_wire(control, row);
    for d in control.store.list_deployments(Some((&row.workspace, &row.name))).await? {
        let id = crate::deployments::replica_set_id(&d.workspace, &d.endpoint, &d.name).0;
        let s = control.stats.snapshot(&id);
        let (in_flight, queued) = control.admissions.load(&id);
        let finite = |v: Option<f64>| v.filter(|x| x.is_finite());
        let mirror = (s.mirror.requests > 0 || s.mirror_shed > 0).then(|| MirrorStats {
            requests: s.mirror.requests,
            errors: s.mirror.errors,
            shed: s.mirror_shed,
            p99_ms: finite(s.mirror.quantile_ms(0.99)),
            compared: s.compared,
            agreed: s.agreed,
            agreement: s.agreement(),
        });
        let stats = DeploymentTrafficStats {
            requests: s.live.requests,
            errors: s.live.errors,
            error_rate: s.live.error_rate(),
            p50_ms: finite(s.live.quantile_ms(0.5)),
            p99_ms: finite(s.live.quantile_ms(0.99)),
            refused: s.refused,
            in_flight: in_flight as u64,
            queued: queued as u64,
            mirror,
        };
        wire.deployment_stats.insert(d.name, stats);
    }
    Ok(wire)
}

pub(crate) async fn load(control: &Control, ws: &str, name: &str) -> Result<EndpointRow, ApiError> {
    check_workspace(ws)?;
    match control.store.get_endpoint(ws, name).await? {
        Some(row) if row.provisioning_state != ProvisioningState::Deleting.as_str() => Ok(row),
        Some(_) => Err(ApiError::NotFound(format!("online endpoint {name:?} is being deleted"))),
        None => Err(ApiError::NotFound(format!("online endpoint {name:?} not found"))),
    }
}

/// Checks traffic and mirror weights against the endpoint's live deployments.
async fn check_traffic(control: &Control, ws: &str, spec: &OnlineEndpointSpec) -> Result<(), ApiError> {
    let valid = validate::endpoint(spec).map_err(ApiError::validation)?;
    let deployments = control.store.list_deployments(Some((ws, &spec.name))).await?;
    let known: Vec<&str> = deployments
        .iter()
        .filter(|d| d.provisioning_state != ProvisioningState::Deleting.as_str())
        .map(|d| d.name.as_str())
        .collect();
    let mut details = Vec::new();
    if let Err(e) = Traffic::new(valid.traffic.clone(), &known) {
        details.push(FieldError { field: "traffic".into(), message: e.0 });
    }
    for name in valid.mirror_traffic.keys() {
        if !known.contains(&name.as_str()) {
            details.push(FieldError {
                field: format!("mirror_traffic.{name}"),
                message: format!("deployment {name:?} not found in this endpoint"),
            });
        }
    }
    if details.is_empty() { Ok(()) } else { Err(ApiError::validation(details)) }
}

/// Create an online endpoint.
#[utoipa::path(post, path = "/api/v1/workspaces/{workspace}/online-endpoints", tag = "online-endpoints",
    params(("workspace" = String, Path)), request_body = OnlineEndpointSpec,
    responses((status = 201, body = OnlineEndpoint), (status = 400, body = sluice_api::ErrorBody), (status = 409, body = sluice_api::ErrorBody)))]
pub async fn create(
    State(control): State<Arc<Control>>,
    Path(ws): Path<String>,
    Json(spec): Json<OnlineEndpointSpec>,
) -> Result<(StatusCode, axum::Json<OnlineEndpoint>), ApiError> {
    check_workspace(&ws)?;
    validate::endpoint(&spec).map_err(ApiError::validation)?;
    crate::batch::refuse_batch_name(&control, &ws, &spec.name).await?;
    if spec.traffic.values().any(|v| v.as_i64() != Some(0)) {
        return Err(ApiError::validation(vec![FieldError {
            field: "traffic".into(),
            message: "cannot be set at create time: create the deployments first, then update the endpoint's traffic"
                .into(),
        }]));
    }
    let now = clock::now_rfc3339();
    let row = EndpointRow {
        workspace: ws,
        name: spec.name.clone(),
        uid: uuid::Uuid::new_v4().to_string(),
        spec_json: serde_json::to_string(&spec).map_err(|e| ApiError::Internal(e.to_string()))?,
        // An endpoint needs no replicas of its own, so it is ready as soon as it is stored.
        provisioning_state: ProvisioningState::Succeeded.as_str().into(),
        primary_key_enc: control.secrets.encrypt(&new_credential()),
        secondary_key_enc: control.secrets.encrypt(&new_credential()),
        created_at: now.clone(),
        updated_at: now,
    };
    match control.store.insert_endpoint(&row).await {
        Ok(()) => {}
        Err(StoreError::Conflict) => {
            return Err(ApiError::Conflict(format!("online endpoint {:?} already exists; use update", row.name)));
        }
        Err(e) => return Err(e.into()),
    }
    control.reconciler.publish_routes().await;
    Ok((StatusCode::CREATED, axum::Json(to_wire(&control, &row))))
}

/// Update an online endpoint (description, tags, traffic, mirror traffic).
#[utoipa::path(put, path = "/api/v1/workspaces/{workspace}/online-endpoints/{name}", tag = "online-endpoints",
    params(("workspace" = String, Path), ("name" = String, Path)), request_body = OnlineEndpointSpec,
    responses((status = 200, body = OnlineEndpoint), (status = 400, body = sluice_api::ErrorBody), (status = 404, body = sluice_api::ErrorBody)))]
pub async fn update(
    State(control): State<Arc<Control>>,
    Path((ws, name)): Path<(String, String)>,
    Json(spec): Json<OnlineEndpointSpec>,
) -> Result<axum::Json<OnlineEndpoint>, ApiError> {
    let mut row = load(&control, &ws, &name).await?;
    if spec.name != name {
        return Err(ApiError::validation(vec![FieldError {
            field: "name".into(),
            message: format!("{:?} does not match the endpoint being updated ({name:?})", spec.name),
        }]));
    }
    let old: Option<OnlineEndpointSpec> = serde_json::from_str(&row.spec_json).ok();
    if old.as_ref().is_some_and(|o| o.auth_mode != spec.auth_mode) {
        return Err(ApiError::validation(vec![FieldError {
            field: "auth_mode".into(),
            message: "cannot change after creation: delete and create the endpoint".into(),
        }]));
    }
    check_traffic(&control, &ws, &spec).await?;
    let rollout = control.store.latest_rollout(&ws, &name).await?;
    if rollout.is_some_and(|r| r.state == sluice_api::rollout::RolloutState::Running.as_str())
        && old.as_ref().is_some_and(|o| crate::rollouts::traffic_of(o) != crate::rollouts::traffic_of(&spec))
    {
        return Err(ApiError::Conflict(format!(
            "a rollout is moving {name:?}'s traffic; abort it first (sluice online-endpoint rollout abort --name {name})"
        )));
    }
    row.spec_json = serde_json::to_string(&spec).map_err(|e| ApiError::Internal(e.to_string()))?;
    row.updated_at = clock::now_rfc3339();
    if !control.store.update_endpoint(&row).await? {
        return Err(ApiError::NotFound(format!("online endpoint {name:?} not found")));
    }
    // The new split applies to the next request once this call has returned.
    control.reconciler.publish_routes().await;
    Ok(axum::Json(to_wire(&control, &row)))
}

/// Show an online endpoint.
#[utoipa::path(get, path = "/api/v1/workspaces/{workspace}/online-endpoints/{name}", tag = "online-endpoints",
    params(("workspace" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = OnlineEndpoint), (status = 404, body = sluice_api::ErrorBody)))]
pub async fn show(
    State(control): State<Arc<Control>>,
    Path((ws, name)): Path<(String, String)>,
) -> Result<axum::Json<OnlineEndpoint>, ApiError> {
    check_workspace(&ws)?;
    let row = control
        .store
        .get_endpoint(&ws, &name)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("online endpoint {name:?} not found")))?;
    Ok(axum::Json(with_stats(&control, &row).await?))
}

/// List online endpoints.
#[utoipa::path(get, path = "/api/v1/workspaces/{workspace}/online-endpoints", tag = "online-endpoints",
    params(("workspace" = String, Path)), responses((status = 200, body = Vec<OnlineEndpoint>)))]
pub async fn list(
    State(control): State<Arc<Control>>,
    Path(ws): Path<String>,
) -> Result<axum::Json<Vec<OnlineEndpoint>>, ApiError> {
    check_workspace(&ws)?;
    let rows = control.store.list_endpoints(Some(&ws)).await?;
    Ok(axum::Json(rows.iter().map(|r| to_wire(&control, r)).collect()))
}

/// Delete an online endpoint and all its deployments (long-running: poll `show` until 404).
#[utoipa::path(delete, path = "/api/v1/workspaces/{workspace}/online-endpoints/{name}", tag = "online-endpoints",
    params(("workspace" = String, Path), ("name" = String, Path)),
    responses((status = 202, body = OnlineEndpoint), (status = 404, body = sluice_api::ErrorBody)))]
pub async fn remove(
    State(control): State<Arc<Control>>,
    Path((ws, name)): Path<(String, String)>,
) -> Result<(StatusCode, axum::Json<OnlineEndpoint>), ApiError> {
    let mut row = load(&control, &ws, &name).await?;
    row.provisioning_state = ProvisioningState::Deleting.as_str().into();
    row.updated_at = clock::now_rfc3339();
    control.store.update_endpoint(&row).await?;
    for d in control.store.list_deployments(Some((&ws, &name))).await? {
        control
            .store
            .set_deployment_state(
                (&ws, &name, &d.name),
                d.generation,
                ProvisioningState::Deleting.as_str(),
                None,
                &row.updated_at,
            )
            .await?;
    }
    control.reconciler.publish_routes().await;
    control.reconciler.wake();
    Ok((StatusCode::ACCEPTED, axum::Json(to_wire(&control, &row))))
}

fn auth_mode(row: &EndpointRow) -> AuthMode {
    serde_json::from_str::<OnlineEndpointSpec>(&row.spec_json).map_or(AuthMode::Key, |s| s.auth_mode.into())
}

fn keys(control: &Control, row: &EndpointRow) -> Result<EndpointKeys, ApiError> {
    crate::secrets::decrypted_keys(&control.secrets, &row.primary_key_enc, &row.secondary_key_enc)
}

/// The endpoint's keys (`auth_mode: key`) or a fresh token (`aml_token`, `aad_token`).
#[utoipa::path(post, path = "/api/v1/workspaces/{workspace}/online-endpoints/{name}/get-credentials", tag = "online-endpoints",
    params(("workspace" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = EndpointCredentials), (status = 404, body = sluice_api::ErrorBody)))]
pub async fn get_credentials(
    State(control): State<Arc<Control>>,
    Path((ws, name)): Path<(String, String)>,
) -> Result<axum::Json<EndpointCredentials>, ApiError> {
    let row = load(&control, &ws, &name).await?;
    Ok(axum::Json(match auth_mode(&row) {
        AuthMode::Key => EndpointCredentials::Keys(keys(&control, &row)?),
        AuthMode::AmlToken | AuthMode::AadToken => {
            let now = clock::now_epoch_s();
            let lifetime = control.token_lifetime_s;
            EndpointCredentials::Token(EndpointToken {
                access_token: control.tokens.issue(&row.uid, now, lifetime),
                expiry_time_utc: now + lifetime,
                refresh_after_time_utc: now + lifetime / 2,
                token_type: "Bearer".into(),
            })
        }
    }))
}

/// Replace the primary or secondary key with a fresh one.
#[utoipa::path(post, path = "/api/v1/workspaces/{workspace}/online-endpoints/{name}/regenerate-keys", tag = "online-endpoints",
    params(("workspace" = String, Path), ("name" = String, Path)), request_body = RegenerateKeys,
    responses((status = 200, body = EndpointKeys), (status = 400, body = sluice_api::ErrorBody), (status = 404, body = sluice_api::ErrorBody)))]
pub async fn regenerate_keys(
    State(control): State<Arc<Control>>,
    Path((ws, name)): Path<(String, String)>,
    Json(body): Json<RegenerateKeys>,
) -> Result<axum::Json<EndpointKeys>, ApiError> {
    let mut row = load(&control, &ws, &name).await?;
    if auth_mode(&row) != AuthMode::Key {
        return Err(ApiError::BadRequest(format!(
            "endpoint {name:?} does not use auth_mode 'key'; its tokens expire by themselves"
        )));
    }
    let current = keys(&control, &row)?;
    let fresh = crate::secrets::rotated_key(&current, &body)?;
    match body.key_type {
        KeyType::Primary => row.primary_key_enc = control.secrets.encrypt(&fresh),
        KeyType::Secondary => row.secondary_key_enc = control.secrets.encrypt(&fresh),
    }
    row.updated_at = clock::now_rfc3339();
    control.store.update_endpoint(&row).await?;
    control.reconciler.publish_routes().await;
    Ok(axum::Json(keys(&control, &row)?))
}
