//! The control plane: the management REST API under `/api/v1` and the reconciler that drives
//! each deployment from its desired state to replicas.
//!
//! **API boundary.** Handlers accept `sluice-api` wire types, validate them into domain types
//! once, write desired state to the store, and wake the reconciler. They never start processes.

mod admin_auth;
mod artifacts;
mod autoscaler;
pub mod batch;
mod bodies;
mod clock;
mod data_assets;
mod deployments;
mod endpoints;
mod environments;
mod error;
mod metrics;
mod models;
mod openapi;
mod reconciler;
mod registered_environments;
mod replica_plan;
mod rollout_driver;
mod rollouts;
pub mod secrets;
pub mod serverless;
mod usage;

pub use artifacts::ArtifactStore;
pub use autoscaler::run as run_autoscaler;
pub use environments::EnvironmentBuilder;
pub use error::ApiError;
pub use openapi::openapi_json;
pub use reconciler::{Reconciler, ReplicaLaunch};
pub use replica_plan::command_replica_args;
pub use rollout_driver::run_rollouts;
pub use usage::run_meter;

use axum::Router;
use sluice_backend::LocalBackend;
use sluice_gateway::auth::TokenSigner;
use sluice_store::Store;
use std::sync::Arc;

/// Everything the management API works with.
pub struct Control {
    pub store: Store,
    pub artifacts: ArtifactStore,
    pub backend: LocalBackend,
    pub secrets: Arc<secrets::Secrets>,
    pub tokens: TokenSigner,
    /// SHA-256 of the admin credential.
    pub admin_hash: [u8; 32],
    /// Where clients reach the gateway, for `scoring_uri`.
    pub public_url: String,
    pub reconciler: Reconciler,
    /// What the gateway counted per deployment; `show` reports it and rollouts gate on it.
    pub stats: sluice_gateway::TrafficStats,
    /// Prices per unit for usage reports (config `prices`).
    pub prices: sluice_api::usage::Prices,
    /// The gateway's admission gates: in-flight and queued requests per deployment.
    pub admissions: sluice_gateway::admission::Admissions,
    /// Unique per server process: a rollout measured by another process re-takes its baseline.
    pub server_epoch: String,
    /// Lifetime of `aml_token`s, seconds.
    pub token_lifetime_s: i64,
    /// The engines behind serverless endpoints.
    pub engines: serverless::Engines,
    /// What the gateway metered for serverless endpoints (shared with the gateway).
    pub gateway_meter: sluice_gateway::serverless::ServerlessMeter,
    /// The longest wait for the next piece of a request body (config `body_idle_timeout_s`).
    pub body_idle_timeout: std::time::Duration,
}

/// The management API: `/api/v1/...`, every route but `/api/v1/openapi.json` behind the admin
/// credential.
pub fn router(control: Arc<Control>) -> Router {
    let protected = Router::new()
        .merge(models::routes())
        .merge(registered_environments::routes())
        .merge(data_assets::routes())
        .merge(usage::routes())
        .merge(artifacts::routes())
        .merge(endpoints::routes())
        .merge(deployments::routes())
        .merge(rollouts::routes())
        .merge(serverless::routes())
        .route_layer(axum::middleware::from_fn_with_state(control.clone(), admin_auth::require_admin));
    Router::new()
        .route("/api/v1/openapi.json", axum::routing::get(openapi::serve))
        .route("/metrics", axum::routing::get(metrics::serve))
        .merge(protected)
        .layer(axum::middleware::from_fn_with_state(control.body_idle_timeout, bodies::bound_idle))
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(axum::middleware::map_response(error::json_error_bodies))
        .with_state(control)
}
