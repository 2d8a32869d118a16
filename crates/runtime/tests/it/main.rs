//! Integration tests: each module starts a real replica server on 127.0.0.1:0 and talks HTTP to it.
//!
//! - `support`: locating ONNX Runtime, loading the example models, starting and stopping servers.
//! - `v2_infer`: KServe v2 inference and metadata on the Triton-format examples.
//! - `v2_errors`: bad requests get 400/404/413 with messages that name the problem.
//! - `v2_binary`: the binary tensor data extension.
//! - `mlflow_score`: `/score` and `/invocations` on the MLflow example.
//! - `batching`: dynamic batching and the statistics extension.
//! - `loading`: model folders that cannot be served fail with actionable errors.
//! - `swagger`: `/swagger.json` for each kind of model, checked by posting its examples.

mod batching;
mod loading;
mod mlflow_score;
mod support;
mod swagger;
mod v2_binary;
mod v2_errors;
mod v2_infer;
