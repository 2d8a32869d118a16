//! Loaded models: their public metadata (`ModelInfo`), their ONNX Runtime sessions, and the set the replica serves.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use ort::environment::Environment;
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::ValueType;

use crate::datatype::{DataType, ort_type_name};
use crate::error::{InferError, RuntimeError};
use crate::mlflow::MlflowSignature;

/// How the model directory is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ModelFormat {
    /// A Triton model repository: `<dir>/<model>/[config.pbtxt]`, `<dir>/<model>/<version>/model.onnx`.
    Triton,
    /// An MLflow model directory with an `MLmodel` file and an `onnx` flavor.
    Mlflow,
}

/// One input or output as clients see it.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorSpec {
    pub name: String,
    pub datatype: DataType,
    /// The shape clients send or receive; -1 marks a variable dimension (including the batch dimension).
    pub shape: Vec<i64>,
    /// When set (Triton `reshape`), the shape the ONNX graph sees instead of `shape`, without the batch dimension
    /// (which is prepended when `max_batch_size > 0`); a -1 is filled in from the element count.
    pub model_shape: Option<Vec<i64>>,
}

/// What the replica knows about a model, independent of ONNX Runtime.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelInfo {
    pub name: String,
    pub version: String,
    pub platform: String,
    /// Triton `max_batch_size`: when above 0, the first dimension of every input is the batch and may not exceed it.
    pub max_batch_size: u32,
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
    /// Triton `dynamic_batching`: requests queued together are run as one batch (only when `max_batch_size > 0`).
    pub batching: Option<Batching>,
    /// The MLflow signature, for the `/score` and `/invocations` routes.
    pub mlflow: Option<MlflowSignature>,
    /// The ONNX file the model was loaded from.
    pub source: PathBuf,
}

/// How requests are combined into batches, with Triton's `dynamic_batching` semantics: a worker that takes a
/// request also takes the compatible requests already queued behind it, up to `max_batch_size` rows, and waits at
/// most `max_queue_delay` for more unless the batch has reached a preferred size.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Batching {
    pub max_queue_delay: std::time::Duration,
    /// Batch sizes (rows) at which the worker stops waiting; empty means only `max_batch_size`.
    pub preferred_batch_sizes: Vec<u32>,
}

impl ModelInfo {
    pub fn input(&self, name: &str) -> Option<&TensorSpec> {
        self.inputs.iter().find(|t| t.name == name)
    }

    pub fn output(&self, name: &str) -> Option<&TensorSpec> {
        self.outputs.iter().find(|t| t.name == name)
    }

    pub fn input_names(&self) -> String {
        names(&self.inputs)
    }

    pub fn output_names(&self) -> String {
        names(&self.outputs)
    }
}

fn names(specs: &[TensorSpec]) -> String {
    let names: Vec<&str> = specs.iter().map(|t| t.name.as_str()).collect();
    names.join(", ")
}

/// A model with one ONNX Runtime session per inference worker, so workers never wait on each other.
pub struct LoadedModel {
    pub info: ModelInfo,
    pub stats: ModelStats,
    sessions: Vec<Mutex<Session>>,
}

impl std::fmt::Debug for LoadedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedModel").field("info", &self.info).field("sessions", &self.sessions.len()).finish()
    }
}

impl LoadedModel {
    pub(crate) fn new(info: ModelInfo, sessions: Vec<Session>) -> Self {
        Self { info, stats: ModelStats::default(), sessions: sessions.into_iter().map(Mutex::new).collect() }
    }

    /// The session reserved for inference worker `worker`.
    pub(crate) fn session(&self, worker: usize) -> Result<MutexGuard<'_, Session>, InferError> {
        let slot = self
            .sessions
            .get(worker % self.sessions.len().max(1))
            .ok_or_else(|| InferError::internal(format!("model '{}' has no session", self.info.name)))?;
        Ok(slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
    }
}

/// A count and the total time it took, as in Triton's statistics extension (`{"count", "ns"}`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct StatDuration {
    pub count: u64,
    pub ns: u64,
}

impl StatDuration {
    fn add(&mut self, count: u64, elapsed: std::time::Duration) {
        self.count += count;
        self.ns = self.ns.saturating_add(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX));
    }
}

/// What a model has done since the replica started, for `GET /v2/models/{model}/stats`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Milliseconds since the Unix epoch of the last inference; 0 if none.
    pub last_inference: u64,
    /// Inferences performed: rows, so a request with a batch of 4 counts 4 (as Triton counts).
    pub inference_count: u64,
    /// Model executions: a batch of several requests counts once.
    pub execution_count: u64,
    /// Requests answered, with the time from queueing to answer.
    pub success: StatDuration,
    pub fail: StatDuration,
    /// Time requests waited in the queue before their execution began.
    pub queue: StatDuration,
    /// Time in ONNX Runtime, per request (a batch's time counts for each request in it).
    pub compute_infer: StatDuration,
    /// Executions by batch size (rows): how many, and their time in ONNX Runtime.
    pub batch_stats: std::collections::BTreeMap<u64, StatDuration>,
}

/// Counters updated by the inference workers; one lock per execution.
#[derive(Debug, Default)]
pub struct ModelStats {
    inner: Mutex<StatsSnapshot>,
    /// Moving average of an execution's time in ONNX Runtime, in nanoseconds; 0 before the first.
    recent_compute_ns: std::sync::atomic::AtomicU64,
}

/// One request's part in an execution, for `ModelStats::record`.
#[derive(Debug, Clone, Copy)]
pub struct RequestTiming {
    pub rows: u64,
    pub queued: std::time::Duration,
    pub total: std::time::Duration,
    pub ok: bool,
}

impl ModelStats {
    /// Records one execution of `rows` rows that took `compute` in ONNX Runtime, serving `requests`.
    pub fn record(&self, rows: u64, compute: std::time::Duration, requests: &[RequestTiming]) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        let mut s = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        s.last_inference = now;
        s.execution_count += 1;
        // The first execution warms ONNX Runtime up (several times slower): it does not count.
        if s.execution_count > 1 {
            let ns = u64::try_from(compute.as_nanos()).unwrap_or(u64::MAX).max(1);
            let old = self.recent_compute_ns.load(std::sync::atomic::Ordering::Relaxed);
            let new = if old == 0 { ns } else { old - old / 8 + ns / 8 };
            self.recent_compute_ns.store(new, std::sync::atomic::Ordering::Relaxed);
        }
        s.batch_stats.entry(rows).or_default().add(1, compute);
        for r in requests {
            if r.ok {
                s.inference_count += r.rows;
                s.success.add(1, r.total);
            } else {
                s.fail.add(1, r.total);
            }
            s.queue.add(1, r.queued);
            s.compute_infer.add(1, compute);
        }
    }

    /// Recent executions' average time in ONNX Runtime (a moving average over about the last eight, the first
    /// execution left out); `None` before the second execution.
    pub fn mean_compute(&self) -> Option<std::time::Duration> {
        let ns = self.recent_compute_ns.load(std::sync::atomic::Ordering::Relaxed);
        (ns > 0).then(|| std::time::Duration::from_nanos(ns))
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }
}

/// Session settings shared by every model of a replica.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// ONNX Runtime intra-op threads per session.
    pub intra_op_threads: usize,
    /// Sessions per model: one per inference worker.
    pub sessions_per_model: usize,
    /// The name of the model for the MLflow format (Triton models are named by their folder).
    pub model_name: Option<String>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self { intra_op_threads: 1, sessions_per_model: 1, model_name: None }
    }
}

/// The models one replica serves, by name.
#[derive(Debug, Default, Clone)]
pub struct ModelSet {
    models: BTreeMap<String, Arc<LoadedModel>>,
}

impl ModelSet {
    pub fn new(models: impl IntoIterator<Item = LoadedModel>) -> Self {
        Self { models: models.into_iter().map(|m| (m.info.name.clone(), Arc::new(m))).collect() }
    }

    pub fn get(&self, name: &str) -> Option<&Arc<LoadedModel>> {
        self.models.get(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<LoadedModel>> {
        self.models.values()
    }

    pub fn len(&self) -> usize {
        self.models.len()
    }

    pub fn is_empty(&self) -> bool {
        self.models.is_empty()
    }

    /// The only model, when there is exactly one (the `/score` route needs no model name).
    pub fn single(&self) -> Option<&Arc<LoadedModel>> {
        if self.models.len() == 1 { self.models.values().next() } else { None }
    }
}

/// Loads every model under `dir`. Blocking: call before starting the server or from `spawn_blocking`.
pub fn load_models(
    format: ModelFormat,
    dir: &Path,
    env: &Environment,
    options: &LoadOptions,
) -> Result<ModelSet, RuntimeError> {
    let models = match format {
        ModelFormat::Triton => crate::triton::load_repository(dir, env, options)?,
        ModelFormat::Mlflow => vec![crate::mlflow::load_mlflow_model(dir, env, options)?],
    };
    Ok(ModelSet::new(models))
}

/// An input or output as the ONNX graph declares it.
#[derive(Debug, Clone)]
pub(crate) struct GraphTensor {
    pub name: String,
    /// `Err` holds a description of a type the replica cannot serve (FP16, a map, a sequence).
    pub datatype: Result<DataType, String>,
    pub shape: Vec<i64>,
}

impl GraphTensor {
    pub fn describe(list: &[GraphTensor]) -> String {
        let names: Vec<&str> = list.iter().map(|t| t.name.as_str()).collect();
        names.join(", ")
    }
}

/// The sessions opened on one ONNX file, with the graph's inputs and outputs.
pub(crate) struct OpenedModel {
    pub sessions: Vec<Session>,
    pub inputs: Vec<GraphTensor>,
    pub outputs: Vec<GraphTensor>,
}

/// Opens `options.sessions_per_model` sessions on one ONNX file and reads its graph inputs and outputs.
pub(crate) fn open_sessions(
    path: &Path,
    env: &Environment,
    options: &LoadOptions,
) -> Result<OpenedModel, RuntimeError> {
    let count = options.sessions_per_model.max(1);
    let sessions = (0..count)
        .map(|_| open_session(path, env, options).map_err(|message| RuntimeError::model(path, message)))
        .collect::<Result<Vec<_>, _>>()?;
    let first = sessions.first().ok_or_else(|| RuntimeError::model(path, "no session was created"))?;
    let inputs = first.inputs().iter().map(graph_tensor).collect();
    let outputs = first.outputs().iter().map(graph_tensor).collect();
    Ok(OpenedModel { sessions, inputs, outputs })
}

fn open_session(path: &Path, env: &Environment, options: &LoadOptions) -> Result<Session, String> {
    let configure = |e: ort::Error<_>| format!("cannot configure the ONNX Runtime session: {e}");
    Session::builder(env)
        .map_err(|e| format!("cannot create an ONNX Runtime session: {e}"))?
        .with_optimization_level(GraphOptimizationLevel::All)
        .map_err(configure)?
        .with_intra_threads(options.intra_op_threads.max(1))
        .map_err(configure)?
        .with_inter_threads(1)
        .map_err(configure)?
        .commit_from_file(path)
        .map_err(|e| format!("ONNX Runtime cannot load this model: {e}"))
}

fn graph_tensor(outlet: &ort::value::Outlet) -> GraphTensor {
    let (datatype, shape) = match outlet.dtype() {
        ValueType::Tensor { ty, shape, .. } => (
            DataType::from_ort(*ty).ok_or_else(|| format!("tensor of {}", ort_type_name(*ty))),
            shape.iter().copied().collect(),
        ),
        other => (Err(format!("{other}")), Vec::new()),
    };
    GraphTensor { name: outlet.name().to_owned(), datatype, shape }
}

/// Formats a shape as `[-1, 4]`.
pub fn shape_text(shape: &[i64]) -> String {
    const SHOWN: usize = 16;
    let mut text = String::from("[");
    for (i, d) in shape.iter().take(SHOWN).enumerate() {
        if i > 0 {
            text.push_str(", ");
        }
        let _ = write!(text, "{d}");
    }
    if shape.len() > SHOWN {
        let _ = write!(text, ", ... ({} dimensions)", shape.len());
    }
    text.push(']');
    text
}

/// Whether two shapes agree, treating -1 on either side as a wildcard.
pub(crate) fn shapes_compatible(a: &[i64], b: &[i64]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| *x == -1 || *y == -1 || x == y)
}

/// The stricter of two compatible shapes: fixed dimensions win over -1.
pub(crate) fn merge_shapes(a: &[i64], b: &[i64]) -> Vec<i64> {
    a.iter().zip(b).map(|(x, y)| if *x == -1 { *y } else { *x }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_helpers() {
        assert_eq!(shape_text(&[-1, 4]), "[-1, 4]");
        assert_eq!(shape_text(&[]), "[]");
        assert_eq!(shape_text(&[1; 18]), format!("[{}1, ... (18 dimensions)]", "1, ".repeat(15)));
        assert!(shapes_compatible(&[-1, 4], &[2, 4]));
        assert!(shapes_compatible(&[-1, -1], &[3, 4]));
        assert!(!shapes_compatible(&[-1, 4], &[2, 5]));
        assert!(!shapes_compatible(&[-1, 4], &[4]));
        assert_eq!(merge_shapes(&[-1, -1], &[-1, 4]), vec![-1, 4]);
    }
}
