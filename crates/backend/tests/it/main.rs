//! Integration tests of the local backend with real child processes (`sluice-fake-replica`).
//!
//! - `lifecycle`: ready, routing view, crash and restart, scaling, remove, shutdown
//! - `failures`: what a user sees when a set cannot become ready
//! - `rollout`: zero-downtime generation changes, and a failed one
//! - `logs`: log tails and the replica environment
//! - `probes`: liveness and readiness probes, in and out of rotation, restarts

mod failures;
mod lifecycle;
mod logs;
mod probes;
mod rollout;
mod support;
