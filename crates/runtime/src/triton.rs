//! Loading a Triton-style model repository: pick each model's latest version and reconcile `config.pbtxt` with
//! the ONNX graph (or derive the configuration from the graph when there is none, like Triton's auto-complete).

use std::fs;
use std::path::{Path, PathBuf};

use ort::environment::Environment;

use crate::datatype::DataType;
use crate::error::RuntimeError;
use crate::model::{
    Batching, GraphTensor, LoadOptions, LoadedModel, ModelInfo, OpenedModel, TensorSpec, merge_shapes, open_sessions,
    shape_text, shapes_compatible,
};
use crate::pbtxt::{ModelConfig, TensorConfig, parse_model_config};

/// The platform name Triton reports for ONNX models.
pub const ONNX_PLATFORM: &str = "onnxruntime_onnx";
const DEFAULT_MODEL_FILE: &str = "model.onnx";

/// Loads every model in the repository at `repo`.
pub fn load_repository(
    repo: &Path,
    env: &Environment,
    options: &LoadOptions,
) -> Result<Vec<LoadedModel>, RuntimeError> {
    let entries =
        fs::read_dir(repo).map_err(|e| RuntimeError::model(repo, format!("cannot read the model repository: {e}")))?;
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir() && !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')))
        .collect();
    dirs.sort();
    if dirs.is_empty() {
        let hint = if repo.join(DEFAULT_MODEL_FILE).is_file() || repo.join("config.pbtxt").is_file() {
            " (this looks like a single model folder: pass its parent folder as --model-dir)"
        } else {
            ""
        };
        return Err(RuntimeError::model(
            repo,
            format!("no models found; expected <repository>/<model>/<version>/model.onnx{hint}"),
        ));
    }
    dirs.iter().map(|dir| load_model(dir, env, options)).collect()
}

/// The highest numeric version folder of a model, as Triton's default `latest { num_versions: 1 }` policy picks.
fn latest_version(model_dir: &Path) -> Result<(u64, PathBuf), RuntimeError> {
    let entries = fs::read_dir(model_dir).map_err(|e| RuntimeError::model(model_dir, format!("cannot read: {e}")))?;
    entries
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .filter_map(|e| Some((e.file_name().to_str()?.parse::<u64>().ok()?, e.path())))
        .max_by_key(|(v, _)| *v)
        .ok_or_else(|| {
            RuntimeError::model(
                model_dir,
                "no version folder found; put the model at <model>/1/model.onnx (version folders are numbers)",
            )
        })
}

fn load_model(model_dir: &Path, env: &Environment, options: &LoadOptions) -> Result<LoadedModel, RuntimeError> {
    let folder_name = model_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let config_path = model_dir.join("config.pbtxt");
    let config = match fs::read_to_string(&config_path) {
        Ok(text) => Some(parse_model_config(&text).map_err(|e| RuntimeError::model(&config_path, e.to_string()))?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(RuntimeError::model(&config_path, format!("cannot read: {e}"))),
    };
    if let Some(config) = &config {
        check_config_header(config, &folder_name, &config_path)?;
    }
    let (version, version_dir) = latest_version(model_dir)?;
    let file_name =
        config.as_ref().and_then(|c| c.default_model_filename.clone()).unwrap_or_else(|| DEFAULT_MODEL_FILE.to_owned());
    let model_path = version_dir.join(&file_name);
    if !model_path.is_file() {
        return Err(RuntimeError::ModelLayout {
            message: format!("{file_name} not found under {}", version_dir.display()),
        });
    }
    let OpenedModel { sessions, inputs: graph_inputs, outputs: graph_outputs } =
        open_sessions(&model_path, env, options)?;
    let (max_batch_size, inputs, outputs) = match &config {
        Some(config) => (
            config.max_batch_size,
            reconcile(config, &config.inputs, &graph_inputs, "input", &config_path)?,
            reconcile(config, &config.outputs, &graph_outputs, "output", &config_path)?,
        ),
        None => (
            0,
            from_graph(&graph_inputs, "input", &model_path, true)?,
            from_graph(&graph_outputs, "output", &model_path, false)?,
        ),
    };
    if outputs.is_empty() {
        return Err(RuntimeError::model(&model_path, "the model has no tensor outputs that can be served"));
    }
    let batching = match &config {
        Some(config) => batching(config, &config_path)?,
        None => None,
    };
    let info = ModelInfo {
        name: folder_name,
        version: version.to_string(),
        platform: ONNX_PLATFORM.to_owned(),
        max_batch_size,
        inputs,
        outputs,
        batching,
        mlflow: None,
        source: model_path,
    };
    Ok(LoadedModel::new(info, sessions))
}

/// The longest `max_queue_delay_microseconds` accepted: a request may wait this long for others to join it.
const MAX_QUEUE_DELAY_US: u64 = 10_000_000;

/// Reads `dynamic_batching`, which batches along the first dimension and so needs `max_batch_size > 0`.
fn batching(config: &ModelConfig, path: &Path) -> Result<Option<Batching>, RuntimeError> {
    let Some(dynamic) = &config.dynamic_batching else { return Ok(None) };
    if config.max_batch_size == 0 {
        return Err(RuntimeError::model(
            path,
            "dynamic_batching needs max_batch_size > 0 (requests are batched along the first dimension; set \
             max_batch_size and leave the batch dimension out of dims)",
        ));
    }
    if dynamic.max_queue_delay_microseconds > MAX_QUEUE_DELAY_US {
        return Err(RuntimeError::model(
            path,
            format!(
                "dynamic_batching max_queue_delay_microseconds {} is above the limit of {MAX_QUEUE_DELAY_US}",
                dynamic.max_queue_delay_microseconds
            ),
        ));
    }
    if let Some(bad) = dynamic.preferred_batch_size.iter().find(|s| **s == 0 || **s > config.max_batch_size) {
        return Err(RuntimeError::model(
            path,
            format!(
                "dynamic_batching preferred_batch_size {bad} must be between 1 and max_batch_size ({})",
                config.max_batch_size
            ),
        ));
    }
    Ok(Some(Batching {
        max_queue_delay: std::time::Duration::from_micros(dynamic.max_queue_delay_microseconds),
        preferred_batch_sizes: dynamic.preferred_batch_size.clone(),
    }))
}

fn check_config_header(config: &ModelConfig, folder_name: &str, path: &Path) -> Result<(), RuntimeError> {
    if let Some(name) = config.name.as_deref().filter(|n| *n != folder_name) {
        return Err(RuntimeError::model(
            path,
            format!("name '{name}' does not match the model folder name '{folder_name}'"),
        ));
    }
    if let Some(platform) = config.platform.as_deref().filter(|p| *p != ONNX_PLATFORM) {
        return Err(RuntimeError::model(
            path,
            format!("platform '{platform}' is not supported (only '{ONNX_PLATFORM}')"),
        ));
    }
    if let Some(backend) = config.backend.as_deref().filter(|b| *b != "onnxruntime") {
        return Err(RuntimeError::model(path, format!("backend '{backend}' is not supported (only 'onnxruntime')")));
    }
    Ok(())
}

/// Builds specs straight from the graph. Inputs must all be servable; unservable outputs (a ZipMap's sequence of
/// maps) are skipped with a warning, since the graph can be run without them.
pub(crate) fn from_graph(
    graph: &[GraphTensor],
    kind: &str,
    path: &Path,
    strict: bool,
) -> Result<Vec<TensorSpec>, RuntimeError> {
    let mut specs = Vec::new();
    for g in graph {
        match &g.datatype {
            Ok(datatype) => specs.push(TensorSpec {
                name: g.name.clone(),
                datatype: *datatype,
                shape: g.shape.clone(),
                model_shape: None,
            }),
            Err(what) if strict => {
                return Err(RuntimeError::model(
                    path,
                    format!("{kind} '{}' is a {what}, which cannot be served", g.name),
                ));
            }
            Err(what) => tracing::warn!(model = %path.display(), output = %g.name, "skipping output of type {what}"),
        }
    }
    Ok(specs)
}

/// Checks the configured tensors against the graph and returns the served specs.
fn reconcile(
    config: &ModelConfig,
    configured: &[TensorConfig],
    graph: &[GraphTensor],
    kind: &str,
    path: &Path,
) -> Result<Vec<TensorSpec>, RuntimeError> {
    if configured.is_empty() {
        return from_graph(graph, kind, path, kind == "input");
    }
    let fail = |message: String| Err(RuntimeError::model(path, message));
    let batch = config.max_batch_size > 0;
    let with_batch = |dims: &[i64]| -> Vec<i64> {
        if batch { std::iter::once(-1).chain(dims.iter().copied()).collect() } else { dims.to_vec() }
    };
    let mut specs = Vec::new();
    for c in configured {
        let Some(g) = graph.iter().find(|g| g.name == c.name) else {
            return fail(format!(
                "config.pbtxt {kind} '{}' not in the ONNX graph (graph {kind}s: {})",
                c.name,
                GraphTensor::describe(graph)
            ));
        };
        let graph_type = match &g.datatype {
            Ok(t) => *t,
            Err(what) => {
                return fail(format!("{kind} '{}' is a {what} in the ONNX graph, which cannot be served", c.name));
            }
        };
        if graph_type != c.data_type {
            return fail(format!(
                "config.pbtxt {kind} '{}' has data_type {} but the ONNX graph says {graph_type}",
                c.name,
                triton_name(c.data_type)
            ));
        }
        let client_shape = with_batch(&c.dims);
        let model_shape = with_batch(c.reshape.as_deref().unwrap_or(&c.dims));
        if !shapes_compatible(&model_shape, &g.shape) {
            let batch_note = if batch {
                format!(" (max_batch_size {} adds a batch dimension)", config.max_batch_size)
            } else {
                String::new()
            };
            let what = if c.reshape.is_some() { "reshape" } else { "dims" };
            return fail(format!(
                "config.pbtxt {kind} '{}' has {what} {}{batch_note} but the ONNX graph shape is {}",
                c.name,
                shape_text(&model_shape),
                shape_text(&g.shape)
            ));
        }
        let (shape, model_shape) = match c.reshape {
            Some(_) => (client_shape, Some(model_shape[usize::from(batch)..].to_vec())),
            None => (merge_shapes(&client_shape, &g.shape), None),
        };
        specs.push(TensorSpec { name: c.name.clone(), datatype: c.data_type, shape, model_shape });
    }
    if kind == "input"
        && let Some(missing) = graph.iter().find(|g| !configured.iter().any(|c| c.name == g.name))
    {
        return fail(format!("ONNX graph input '{}' is missing from config.pbtxt", missing.name));
    }
    Ok(specs)
}

fn triton_name(datatype: DataType) -> String {
    match datatype {
        DataType::Bytes => "TYPE_STRING".to_owned(),
        other => format!("TYPE_{}", other.v2_name()),
    }
}
