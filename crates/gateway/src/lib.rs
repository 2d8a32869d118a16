//! The data plane: one listener for every endpoint's scoring traffic.
//!
//! A request passes, in order: endpoint lookup → authentication → deployment choice (header pin
//! or weighted split) → replica choice → one proxied hop to the replica → error mapping.
//!
//! **Architecture invariant.** The gateway never runs user code and never reads the store: it
//! sees a [`RoutingTable`] published by the control plane and the ready replica addresses
//! published by the backend, both through `tokio::sync::watch`.

pub mod auth;
mod proxy;
mod routes;
mod table;

pub use routes::{GatewayState, router};
pub use table::{DeploymentRoute, EndpointRoute, ReplicaAddrs, RoutingTable};
