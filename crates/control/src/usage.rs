//! Usage metering and `GET /usage`. Every few seconds the meter adds, for each online
//! deployment, its running replicas × elapsed seconds to the current hour's record; a stopped
//! server meters nothing (its replicas stop with it).

use crate::error::ApiError;
use crate::models::check_workspace;
use crate::{Control, clock};
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::routing::get;
use serde::Deserialize;
use sluice_api::deployment::OnlineDeploymentSpec;
use sluice_api::usage::{UsageRecord, UsageReport};
use sluice_store::UsageRow;
use std::sync::Arc;
use std::time::{Duration, Instant};
use time::format_description::well_known::Rfc3339;

/// How often usage is measured.
const PERIOD: Duration = Duration::from_secs(2);

pub fn routes() -> Router<Arc<Control>> {
    Router::new().route("/api/v1/workspaces/{workspace}/usage", get(show))
}

pub async fn run_meter(control: Arc<Control>) {
    let mut last = Instant::now();
    loop {
        tokio::time::sleep(PERIOD).await;
        let now = Instant::now();
        let elapsed = now.duration_since(last).as_secs_f64();
        last = now;
        let hour = hour_start(time::OffsetDateTime::now_utc());
        let Ok(rows) = control.store.list_deployments(None).await else { continue };
        for d in rows {
            let id = crate::deployments::replica_set_id(&d.workspace, &d.endpoint, &d.name);
            let running =
                control.backend.status(&id).map_or(0, |s| s.replicas.iter().filter(|r| r.pid.is_some()).count());
            if running == 0 {
                continue;
            }
            let instance_type = serde_json::from_str::<OnlineDeploymentSpec>(&d.spec_json)
                .ok()
                .and_then(|s| s.instance_type)
                .unwrap_or_else(|| "default".into());
            let row = UsageRow {
                workspace: d.workspace,
                kind: "online".into(),
                endpoint: d.endpoint,
                deployment: d.name,
                key_name: String::new(),
                instance_type,
                hour: hour.clone(),
                instance_seconds: running as f64 * elapsed,
                compute_seconds: 0.0,
                tokens: 0,
            };
            if let Err(e) = control.store.add_usage(&row).await {
                tracing::warn!(error = %e, "cannot record usage");
            }
        }
    }
}

/// The current hour's start, as usage records key it.
pub(crate) fn current_hour() -> String {
    hour_start(time::OffsetDateTime::now_utc())
}

pub(crate) fn hour_start(t: time::OffsetDateTime) -> String {
    let t = t.replace_minute(0).and_then(|t| t.replace_second(0)).and_then(|t| t.replace_nanosecond(0)).unwrap_or(t);
    t.format(&Rfc3339).unwrap_or_else(|_| clock::now_rfc3339())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct UsageQuery {
    /// Only this endpoint's records.
    pub endpoint: Option<String>,
    /// RFC 3339 time or date (`2026-11-25`); records from the hour containing it on.
    pub since: Option<String>,
}

/// Usage records and their cost at the configured prices.
#[utoipa::path(get, path = "/api/v1/workspaces/{workspace}/usage", tag = "usage",
    params(("workspace" = String, Path), UsageQuery),
    responses((status = 200, body = UsageReport), (status = 400, body = sluice_api::ErrorBody)))]
pub async fn show(
    State(control): State<Arc<Control>>,
    Path(ws): Path<String>,
    Query(q): Query<UsageQuery>,
) -> Result<axum::Json<UsageReport>, ApiError> {
    check_workspace(&ws)?;
    let since = match q.since.as_deref() {
        None => None,
        Some(s) => Some(hour_start(parse_since(s).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "since={s:?}: expected an RFC 3339 time such as 2026-11-25T10:00:00Z or a date such as 2026-11-25"
            ))
        })?)),
    };
    let rows = control.store.list_usage(&ws, q.endpoint.as_deref(), since.as_deref()).await?;
    let records: Vec<UsageRecord> = rows
        .into_iter()
        .map(|r| {
            let mut rec = UsageRecord {
                kind: r.kind,
                endpoint: r.endpoint,
                deployment: r.deployment,
                key_name: r.key_name,
                instance_type: r.instance_type,
                hour: r.hour,
                instance_seconds: r.instance_seconds,
                compute_seconds: r.compute_seconds,
                tokens: r.tokens,
                cost: 0.0,
            };
            rec.cost = control.prices.cost(&rec);
            rec
        })
        .collect();
    // Serverless endpoints' tokens, per key, priced at their catalog model's prices.
    crate::serverless::flush_usage(&control).await;
    let mut records = records;
    let endpoints = control.store.list_serverless_endpoints(Some(&ws)).await?;
    let catalog = crate::serverless::catalog(&control).await?;
    for r in control.store.list_serverless_usage(&ws, q.endpoint.as_deref(), since.as_deref()).await? {
        let model_id = endpoints.iter().find(|e| e.name == r.endpoint).map(|e| e.catalog_model.clone());
        let model = model_id.as_deref().and_then(|id| catalog.iter().find(|m| m.id == id));
        let (pin, pout) = model.map_or((0.0, 0.0), |m| (m.price_per_1k_input_tokens, m.price_per_1k_output_tokens));
        records.push(UsageRecord {
            kind: "serverless".into(),
            endpoint: r.endpoint,
            deployment: model_id.unwrap_or_default(),
            key_name: r.key_name,
            instance_type: String::new(),
            hour: r.hour,
            instance_seconds: 0.0,
            compute_seconds: 0.0,
            tokens: r.prompt_tokens + r.completion_tokens,
            cost: r.prompt_tokens as f64 / 1000.0 * pin + r.completion_tokens as f64 / 1000.0 * pout,
        });
    }
    Ok(axum::Json(UsageReport {
        total_instance_seconds: records.iter().map(|r| r.instance_seconds).sum(),
        total_compute_seconds: records.iter().map(|r| r.compute_seconds).sum(),
        total_tokens: records.iter().map(|r| r.tokens).sum(),
        total_cost: records.iter().map(|r| r.cost).sum(),
        currency: control.prices.currency.clone(),
        records,
    }))
}

pub(crate) fn parse_since(s: &str) -> Option<time::OffsetDateTime> {
    if let Ok(t) = time::OffsetDateTime::parse(s, &Rfc3339) {
        return Some(t);
    }
    let date = time::Date::parse(s, time::macros::format_description!("[year]-[month]-[day]")).ok()?;
    Some(date.midnight().assume_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_times_and_dates_and_rounds_to_the_hour() {
        let t = parse_since("2026-11-25T10:42:07Z").unwrap();
        assert_eq!(hour_start(t), "2026-11-25T10:00:00Z");
        assert_eq!(hour_start(parse_since("2026-11-25").unwrap()), "2026-11-25T00:00:00Z");
        assert!(parse_since("yesterday").is_none());
    }
}
