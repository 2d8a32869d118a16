//! Integration tests: the real `sluice` binary on 127.0.0.1:0, driven by the real CLI, the typed
//! client, plain HTTP and the Python `tritonclient` package.

mod auth;
mod autoscale;
mod batch;
mod batch_local;
mod batch_s3;
mod collect;
mod connections;
mod custom_container;
mod durability;
mod harness;
mod load;
mod logs;
mod mlflow;
mod otel;
mod overload;
mod python;
mod replica_socket;
mod rollout;
mod serve;
mod serverless;
mod traffic;
mod usage;
mod validation;
mod walkthrough;
