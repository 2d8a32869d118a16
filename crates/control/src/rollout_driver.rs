//! Drives running rollouts: when a step's interval has passed, judges the target deployment's
//! errors and latency over that step, then moves to the next step, finishes, or rolls back.
//!
//! All progress is in the store (step, its start, the counters it is measured against), and
//! each transition writes the rollout and the endpoint's traffic in one transaction, so a
//! server killed mid-rollout carries on from the same step with the same split.

use crate::deployments::replica_set_id;
use crate::rollouts::{traffic_of, with_traffic};
use crate::{Control, clock};
use sluice_api::endpoint::OnlineEndpointSpec;
use sluice_api::rollout::{RolloutSpec, RolloutState, RolloutStep};
use sluice_domain::shift_to;
use sluice_gateway::stats::StatsSnapshot;
use sluice_store::RolloutRow;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// How often running rollouts are looked at; steps are at least a second long.
const TICK: Duration = Duration::from_millis(250);

/// Runs forever; spawn it once per server.
pub async fn run_rollouts(control: Arc<Control>) {
    loop {
        match control.store.rollouts_in_state(RolloutState::Running.as_str()).await {
            Ok(rows) => {
                for row in rows {
                    if let Err(e) = advance(&control, row).await {
                        tracing::error!(error = %e, "rollout step failed");
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot read rollouts"),
        }
        tokio::time::sleep(TICK).await;
    }
}

/// What a step decided.
enum Verdict {
    /// Not enough evidence yet: the step goes on.
    Wait(String),
    Pass(RolloutStep),
    Fail(RolloutStep),
}

fn judge(spec: &RolloutSpec, weight: u32, window: &StatsSnapshot) -> Verdict {
    let live = &window.live;
    if live.requests < spec.min_requests {
        return Verdict::Wait(format!(
            "{} at {weight}%: {} of the {} requests needed to judge the step so far",
            spec.to, live.requests, spec.min_requests
        ));
    }
    let p99 = live.quantile_ms(0.99);
    let mut reasons = Vec::new();
    if live.error_rate() > spec.max_error_rate {
        reasons.push(format!(
            "error rate {:.2}% ({} of {}) is above --max-error-rate {:.2}%",
            live.error_rate() * 100.0,
            live.errors,
            live.requests,
            spec.max_error_rate * 100.0
        ));
    }
    if let (Some(max), Some(p)) = (spec.max_p99_latency_ms, p99)
        && p > max
    {
        reasons.push(format!("p99 latency of at most {p} ms is above --max-p99-latency-ms {max}"));
    }
    let step = RolloutStep {
        weight,
        requests: live.requests,
        errors: live.errors,
        error_rate: live.error_rate(),
        p99_ms: p99.filter(|v| v.is_finite()),
        passed: reasons.is_empty(),
        reason: (!reasons.is_empty()).then(|| reasons.join("; ")),
        finished_at: clock::now_rfc3339(),
    };
    if step.passed { Verdict::Pass(step) } else { Verdict::Fail(step) }
}

async fn advance(control: &Control, mut row: RolloutRow) -> Result<(), crate::ApiError> {
    let bad = |e: serde_json::Error| crate::ApiError::Internal(format!("stored rollout unreadable: {e}"));
    let spec: RolloutSpec = serde_json::from_str(&row.spec_json).map_err(bad)?;
    let key = replica_set_id(&row.workspace, &row.endpoint, &spec.to).0;
    let running = RolloutState::Running.as_str();
    let now_ms = clock::now_epoch_ms();
    if row.server_epoch != control.server_epoch {
        // The counters restarted with the server: measure this step afresh from now.
        row.baseline_json = serde_json::to_string(&control.stats.snapshot(&key)).map_err(bad)?;
        row.step_started_ms = now_ms;
        row.server_epoch = control.server_epoch.clone();
        row.updated_at = clock::now_rfc3339();
        control.store.update_rollout(&row, running, None).await?;
        return Ok(());
    }
    let interval_ms = i64::try_from(spec.interval_s.saturating_mul(1000)).unwrap_or(i64::MAX);
    if now_ms < row.step_started_ms.saturating_add(interval_ms) {
        return Ok(());
    }
    let step_index = usize::try_from(row.step_index).unwrap_or(0);
    let weight = spec.steps.get(step_index).copied().unwrap_or(100);
    let baseline: StatsSnapshot = serde_json::from_str(&row.baseline_json).map_err(bad)?;
    let now_stats = control.stats.snapshot(&key);
    let window = now_stats.since(&baseline);
    let original: BTreeMap<String, u32> = serde_json::from_str(&row.original_traffic_json).map_err(bad)?;
    let mut history: Vec<RolloutStep> = serde_json::from_str(&row.history_json).map_err(bad)?;
    let endpoint = control.store.get_endpoint(&row.workspace, &row.endpoint).await?;
    let Some(endpoint) =
        endpoint.filter(|e| e.provisioning_state != sluice_domain::ProvisioningState::Deleting.as_str())
    else {
        return Ok(());
    };
    let total = spec.steps.len();
    let (new_traffic, message) = match judge(&spec, weight, &window) {
        Verdict::Wait(message) => {
            if row.message.as_deref() != Some(message.as_str()) {
                row.message = Some(message);
                row.updated_at = clock::now_rfc3339();
                control.store.update_rollout(&row, running, None).await?;
            }
            return Ok(());
        }
        Verdict::Fail(step) => {
            let reason = format!(
                "step {}/{total} ({} at {weight}%) failed: {}; live traffic is back where it started",
                step_index + 1,
                spec.to,
                step.reason.clone().unwrap_or_default()
            );
            history.push(step);
            row.state = RolloutState::RolledBack.as_str().into();
            (original.clone(), reason)
        }
        Verdict::Pass(step) => {
            history.push(step);
            if step_index + 1 >= total {
                row.state = RolloutState::Succeeded.as_str().into();
                let ep_spec: OnlineEndpointSpec = serde_json::from_str(&endpoint.spec_json).map_err(bad)?;
                (traffic_of(&ep_spec), format!("{} has 100% of live traffic", spec.to))
            } else {
                let next = spec.steps[step_index + 1];
                row.step_index += 1;
                row.step_started_ms = now_ms;
                row.baseline_json = serde_json::to_string(&now_stats).map_err(bad)?;
                let traffic = shift_to(&original, &spec.to, next).unwrap_or_else(|| original.clone());
                (traffic, format!("step {}/{total}: {} at {next}%", step_index + 2, spec.to))
            }
        }
    };
    row.history_json = serde_json::to_string(&history).map_err(bad)?;
    row.message = Some(message);
    row.updated_at = clock::now_rfc3339();
    let endpoint = with_traffic(&endpoint, &new_traffic, None)?;
    if control.store.update_rollout(&row, running, Some(&endpoint)).await? {
        tracing::info!(endpoint = %row.endpoint, to = %spec.to, state = %row.state, message = ?row.message, "rollout step");
        control.reconciler.publish_routes().await;
    }
    Ok(())
}
