//! The data plane: one listener for every endpoint's scoring traffic.
//!
//! A request passes, in order: endpoint lookup → authentication → deployment choice (header pin
//! or weighted split) → replica choice → one proxied hop to the replica → error mapping →
//! statistics → an optional mirrored copy (see `routes.rs`).
//!
//! **Architecture invariant.** The gateway never runs user code and never reads the store: it
//! sees a [`RoutingTable`] published by the control plane and the ready replica addresses
//! published by the backend, both through `tokio::sync::watch`.

pub mod admission;
pub mod auth;
mod body;
mod collector;
mod mirror;
mod names;
mod pool;
mod proxy;
mod routes;
pub mod serverless;
pub mod stats;
mod table;
pub mod telemetry;

pub use body::{BodyBudget, BodyStalled, DEFAULT_BODY_IDLE_TIMEOUT};
pub use collector::DataCollector;
pub use mirror::outputs_agree;
pub use routes::{DEPLOYMENT_HEADER, GatewayState, MAX_BODY_BYTES, router, with_hot_route};
pub use stats::TrafficStats;
pub use table::{DeploymentRoute, EndpointRoute, FastMap, ReplicaAddrs, RoutingTable, ServerlessRoute};
