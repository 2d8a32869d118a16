//! `/online-endpoints/{name}/rollouts`: start, show and abort a progressive rollout.

use crate::deployments::replica_set_id;
use crate::error::Json;
use crate::models::check_workspace;
use crate::{ApiError, Control, clock};
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use sluice_api::FieldError;
use sluice_api::endpoint::OnlineEndpointSpec;
use sluice_api::rollout::{Rollout, RolloutSpec, RolloutState, RolloutStep};
use sluice_domain::{ProvisioningState, shift_to};
use sluice_store::{EndpointRow, RolloutRow, StoreError};
use std::collections::BTreeMap;
use std::sync::Arc;

pub fn routes() -> Router<Arc<Control>> {
    Router::new()
        .route("/api/v1/workspaces/{workspace}/online-endpoints/{name}/rollouts", post(start))
        .route("/api/v1/workspaces/{workspace}/online-endpoints/{name}/rollouts/latest", get(show))
        .route("/api/v1/workspaces/{workspace}/online-endpoints/{name}/rollouts/latest/abort", post(abort))
}

pub(crate) fn to_wire(row: &RolloutRow) -> Result<Rollout, ApiError> {
    let bad = |e: serde_json::Error| ApiError::Internal(format!("stored rollout unreadable: {e}"));
    Ok(Rollout {
        id: row.id.clone(),
        endpoint: row.endpoint.clone(),
        spec: serde_json::from_str(&row.spec_json).map_err(bad)?,
        state: RolloutState::parse(&row.state)
            .ok_or_else(|| ApiError::Internal("stored rollout state unknown".into()))?,
        step_index: usize::try_from(row.step_index).unwrap_or(0),
        original_traffic: serde_json::from_str(&row.original_traffic_json).map_err(bad)?,
        message: row.message.clone(),
        history: serde_json::from_str::<Vec<RolloutStep>>(&row.history_json).map_err(bad)?,
        created_at: row.created_at.clone(),
        updated_at: row.updated_at.clone(),
    })
}

/// The live split as stored, in whole percents.
pub(crate) fn traffic_of(spec: &OnlineEndpointSpec) -> BTreeMap<String, u32> {
    spec.traffic.iter().filter_map(|(k, v)| Some((k.clone(), u32::try_from(v.as_i64()?).ok()?))).collect()
}

/// The endpoint row with `traffic` as its split, and no mirror to `drop_mirror` (a deployment
/// cannot take live and mirrored traffic at once).
pub(crate) fn with_traffic(
    row: &EndpointRow,
    traffic: &BTreeMap<String, u32>,
    drop_mirror: Option<&str>,
) -> Result<EndpointRow, ApiError> {
    let mut spec: OnlineEndpointSpec = serde_json::from_str(&row.spec_json)
        .map_err(|e| ApiError::Internal(format!("stored endpoint unreadable: {e}")))?;
    spec.traffic = traffic.iter().map(|(k, v)| (k.clone(), serde_json::Value::from(*v))).collect();
    if let Some(d) = drop_mirror {
        spec.mirror_traffic.remove(d);
    }
    let mut row = row.clone();
    row.spec_json = serde_json::to_string(&spec).map_err(|e| ApiError::Internal(e.to_string()))?;
    row.updated_at = clock::now_rfc3339();
    Ok(row)
}

fn check_spec(spec: &RolloutSpec) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let mut push = |field: &str, message: String| errors.push(FieldError { field: field.into(), message });
    if spec.steps.is_empty() || spec.steps.iter().any(|s| !(1..=100).contains(s)) {
        push("steps", format!("{:?}: expected percents from 1 to 100", spec.steps));
    } else if spec.steps.windows(2).any(|w| w[0] >= w[1]) {
        push("steps", format!("{:?}: expected strictly increasing percents", spec.steps));
    } else if spec.steps.last() != Some(&100) {
        push("steps", format!("{:?}: the last step must be 100", spec.steps));
    }
    if !(1..=86_400).contains(&spec.interval_s) {
        push("interval_s", format!("{}: expected 1 to 86400 seconds", spec.interval_s));
    }
    if !(0.0..=1.0).contains(&spec.max_error_rate) {
        push("max_error_rate", format!("{}: expected a share from 0 to 1 (0.01 = 1%)", spec.max_error_rate));
    }
    if spec.max_p99_latency_ms.is_some_and(|v| !(v > 0.0 && v.is_finite())) {
        push("max_p99_latency_ms", "expected a positive number of milliseconds".into());
    }
    if spec.min_agreement.is_some_and(|v| !(0.0..=1.0).contains(&v)) {
        push("min_agreement", "expected a share from 0 to 1 (0.99 = 99%)".into());
    }
    if spec.min_requests > 1_000_000 {
        push("min_requests", "expected at most 1000000".into());
    }
    errors
}

/// Start moving live traffic to a deployment, step by step.
#[utoipa::path(post, path = "/api/v1/workspaces/{workspace}/online-endpoints/{name}/rollouts", tag = "online-endpoints",
    params(("workspace" = String, Path), ("name" = String, Path)), request_body = RolloutSpec,
    responses((status = 201, body = Rollout), (status = 400, body = sluice_api::ErrorBody), (status = 404, body = sluice_api::ErrorBody), (status = 409, body = sluice_api::ErrorBody)))]
pub async fn start(
    State(control): State<Arc<Control>>,
    Path((ws, name)): Path<(String, String)>,
    Json(spec): Json<RolloutSpec>,
) -> Result<(StatusCode, axum::Json<Rollout>), ApiError> {
    check_workspace(&ws)?;
    let endpoint = crate::endpoints::load(&control, &ws, &name).await?;
    let errors = check_spec(&spec);
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let target = control.store.get_deployment(&ws, &name, &spec.to).await?;
    match target {
        Some(d) if d.provisioning_state == ProvisioningState::Succeeded.as_str() => {}
        Some(d) => {
            return Err(ApiError::Conflict(format!(
                "deployment {:?} is {}; roll out to a deployment that is Succeeded",
                spec.to, d.provisioning_state
            )));
        }
        None => return Err(ApiError::NotFound(format!("deployment {:?} not found in endpoint {name:?}", spec.to))),
    }
    if let Some(r) = control.store.latest_rollout(&ws, &name).await?
        && r.state == RolloutState::Running.as_str()
    {
        return Err(ApiError::Conflict(format!("a rollout to endpoint {name:?} is running; abort it first")));
    }
    let ep_spec: OnlineEndpointSpec =
        serde_json::from_str(&endpoint.spec_json).map_err(|e| ApiError::Internal(e.to_string()))?;
    let original = traffic_of(&ep_spec);
    if original.get(&spec.to) == Some(&100) {
        return Err(ApiError::Conflict(format!("deployment {:?} already has 100% of live traffic", spec.to)));
    }
    let first = shift_to(&original, &spec.to, spec.steps[0]).ok_or_else(|| {
        ApiError::BadRequest(format!(
            "no other deployment of {name:?} takes live traffic, so there is nothing to roll from: set its traffic instead"
        ))
    })?;
    let key = replica_set_id(&ws, &name, &spec.to).0;
    let stats = control.stats.snapshot(&key);
    if let Some(min) = spec.min_agreement {
        match stats.agreement() {
            None => {
                return Err(ApiError::BadRequest(format!(
                    "no mirrored answers of {:?} were compared yet: mirror traffic to it first (--mirror-traffic {}=10)",
                    spec.to, spec.to
                )));
            }
            Some(a) if a < min => {
                return Err(ApiError::BadRequest(format!(
                    "mirrored answers of {:?} agreed with live ones {:.2}% of the time, below --min-agreement {:.2}%",
                    spec.to,
                    a * 100.0,
                    min * 100.0
                )));
            }
            Some(_) => {}
        }
    }
    let now = clock::now_rfc3339();
    let row = RolloutRow {
        workspace: ws.clone(),
        endpoint: name.clone(),
        id: uuid::Uuid::new_v4().to_string(),
        spec_json: serde_json::to_string(&spec).map_err(|e| ApiError::Internal(e.to_string()))?,
        state: RolloutState::Running.as_str().into(),
        step_index: 0,
        step_started_ms: clock::now_epoch_ms(),
        baseline_json: serde_json::to_string(&stats).map_err(|e| ApiError::Internal(e.to_string()))?,
        server_epoch: control.server_epoch.clone(),
        original_traffic_json: serde_json::to_string(&original).map_err(|e| ApiError::Internal(e.to_string()))?,
        history_json: "[]".into(),
        message: Some(format!("step 1/{}: {} at {}%", spec.steps.len(), spec.to, spec.steps[0])),
        created_at: now.clone(),
        updated_at: now,
    };
    let endpoint = with_traffic(&endpoint, &first, Some(&spec.to))?;
    match control.store.insert_rollout(&row, &endpoint).await {
        Ok(()) => {}
        Err(StoreError::Conflict) => return Err(ApiError::Conflict("a rollout was started at the same moment".into())),
        Err(e) => return Err(e.into()),
    }
    control.reconciler.publish_routes().await;
    Ok((StatusCode::CREATED, axum::Json(to_wire(&row)?)))
}

/// The endpoint's newest rollout.
#[utoipa::path(get, path = "/api/v1/workspaces/{workspace}/online-endpoints/{name}/rollouts/latest", tag = "online-endpoints",
    params(("workspace" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = Rollout), (status = 404, body = sluice_api::ErrorBody)))]
pub async fn show(
    State(control): State<Arc<Control>>,
    Path((ws, name)): Path<(String, String)>,
) -> Result<axum::Json<Rollout>, ApiError> {
    check_workspace(&ws)?;
    let row = control
        .store
        .latest_rollout(&ws, &name)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("endpoint {name:?} has no rollout")))?;
    Ok(axum::Json(to_wire(&row)?))
}

/// Stop the running rollout and put live traffic back where it started.
#[utoipa::path(post, path = "/api/v1/workspaces/{workspace}/online-endpoints/{name}/rollouts/latest/abort", tag = "online-endpoints",
    params(("workspace" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = Rollout), (status = 404, body = sluice_api::ErrorBody), (status = 409, body = sluice_api::ErrorBody)))]
pub async fn abort(
    State(control): State<Arc<Control>>,
    Path((ws, name)): Path<(String, String)>,
) -> Result<axum::Json<Rollout>, ApiError> {
    check_workspace(&ws)?;
    let not_running = || ApiError::Conflict(format!("endpoint {name:?} has no running rollout"));
    let mut row = control.store.latest_rollout(&ws, &name).await?.ok_or_else(not_running)?;
    if row.state != RolloutState::Running.as_str() {
        return Err(not_running());
    }
    let endpoint = crate::endpoints::load(&control, &ws, &name).await?;
    let original: BTreeMap<String, u32> =
        serde_json::from_str(&row.original_traffic_json).map_err(|e| ApiError::Internal(e.to_string()))?;
    let endpoint = with_traffic(&endpoint, &original, None)?;
    row.state = RolloutState::Aborted.as_str().into();
    row.message = Some("aborted by a user; live traffic is back where it started".into());
    row.updated_at = clock::now_rfc3339();
    if !control.store.update_rollout(&row, RolloutState::Running.as_str(), Some(&endpoint)).await? {
        return Err(not_running());
    }
    control.reconciler.publish_routes().await;
    Ok(axum::Json(to_wire(&row)?))
}
