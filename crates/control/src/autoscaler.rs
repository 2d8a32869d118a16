//! The autoscaler for `scale_settings: {type: target_utilization}`: every `polling_interval` it
//! measures a deployment's average load (requests in flight plus queued in the gateway, from the
//! admission gate's time integral), and asks for
//! `ceil(load / (max_concurrent_requests_per_instance × target_utilization_percentage / 100))`
//! replicas within `[min_instances, max_instances]`.
//!
//! Against flapping: more replicas are added at once, fewer only after the wanted count stayed
//! lower for a whole `stabilization_window` (and then to the highest count wanted during it).
//! With `min_instances: 0` an idle deployment goes to zero the same way, and the first request
//! to it (held by the gateway) wakes the autoscaler, which starts a replica at once.

use crate::Control;
use sluice_api::deployment::OnlineDeploymentSpec;
use sluice_api::validate;
use sluice_backend::ReplicaSetId;
use sluice_domain::{Autoscale, ProvisioningState, ScaleSettings};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often deployments are looked at; each is judged only once per its polling interval.
const TICK: Duration = Duration::from_millis(250);

/// What the autoscaler remembers of one deployment.
struct Track {
    generation: i64,
    replicas: u32,
    judged_at: Instant,
    integral: u128,
    /// Since when fewer replicas were wanted, and the most wanted meanwhile.
    lower_since: Option<(Instant, u32)>,
}

pub async fn run(control: Arc<Control>) {
    let mut tracks: HashMap<String, Track> = HashMap::new();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = control.admissions.wanted_changed() => {}
        }
        let wanted = control.admissions.take_wanted();
        let Ok(rows) = control.store.list_deployments(None).await else { continue };
        let mut seen = Vec::new();
        for row in rows.iter().filter(|r| r.provisioning_state == ProvisioningState::Succeeded.as_str()) {
            let Some((autoscale, per_instance)) = settings(&row.spec_json) else { continue };
            let id = crate::deployments::replica_set_id(&row.workspace, &row.endpoint, &row.name);
            seen.push(id.0.clone());
            let now = Instant::now();
            let track = tracks.entry(id.0.clone()).or_insert_with(|| Track {
                generation: row.generation,
                replicas: control.backend.status(&id).map_or(1, |s| s.desired),
                judged_at: now,
                integral: control.admissions.busy_integral(&id.0),
                lower_since: None,
            });
            if track.generation != row.generation {
                // A new spec was applied with its own instance_count: start over from it.
                *track = Track {
                    generation: row.generation,
                    replicas: control.backend.status(&id).map_or(1, |s| s.desired),
                    judged_at: now,
                    integral: control.admissions.busy_integral(&id.0),
                    lower_since: None,
                };
            }
            if wanted.contains(&id.0) && track.replicas == 0 {
                scale(&control, &id, track, autoscale.min_instances.max(1), "a request arrived while scaled to zero");
                continue;
            }
            let period = Duration::from_secs(autoscale.polling_interval_s.into());
            let elapsed = now.duration_since(track.judged_at);
            if elapsed < period {
                continue;
            }
            let integral = control.admissions.busy_integral(&id.0);
            let load = (integral.saturating_sub(track.integral)) as f64 / elapsed.as_micros().max(1) as f64;
            track.integral = integral;
            track.judged_at = now;
            let per_replica = f64::from(per_instance) * f64::from(autoscale.target_utilization_percentage) / 100.0;
            let want =
                ((load / per_replica.max(0.01)).ceil() as u32).clamp(autoscale.min_instances, autoscale.max_instances);
            let window = Duration::from_secs(autoscale.stabilization_window_s.into());
            if want > track.replicas {
                track.lower_since = None;
                let why = format!("load {load:.2} over target {per_replica:.2} per replica");
                scale(&control, &id, track, want, &why);
            } else if want < track.replicas {
                let (since, peak) = track.lower_since.get_or_insert((now, want));
                *peak = (*peak).max(want);
                if now.duration_since(*since) >= window {
                    let to = *peak;
                    track.lower_since = None;
                    let why = format!("load stayed under target for {}s", autoscale.stabilization_window_s);
                    scale(&control, &id, track, to, &why);
                }
            } else {
                track.lower_since = None;
            }
        }
        tracks.retain(|id, _| seen.contains(id));
    }
}

/// The deployment's autoscaling settings and per-instance concurrency, if it autoscales.
fn settings(spec_json: &str) -> Option<(Autoscale, u32)> {
    let spec: OnlineDeploymentSpec = serde_json::from_str(spec_json).ok()?;
    let valid = validate::deployment(&spec).ok()?;
    match valid.scale {
        ScaleSettings::TargetUtilization(a) => Some((a, valid.max_concurrent_requests_per_instance.max(1))),
        ScaleSettings::Default => None,
    }
}

fn scale(control: &Control, id: &ReplicaSetId, track: &mut Track, to: u32, why: &str) {
    match control.backend.scale(id, to) {
        Ok(true) => {
            tracing::info!(deployment = %id, from = track.replicas, to, reason = why, "autoscaled");
            track.replicas = to;
        }
        Ok(false) => {}
        Err(e) => tracing::warn!(deployment = %id, error = %e, "cannot scale"),
    }
}
