//! Loading an MLflow model directory (`MLmodel` with an `onnx` flavor) and its signature.

use std::collections::BTreeMap;
use std::path::{Component, Path};

use ort::environment::Environment;
use serde::Deserialize;

use crate::datatype::DataType;
use crate::error::RuntimeError;
use crate::model::{GraphTensor, LoadOptions, LoadedModel, ModelInfo, OpenedModel, TensorSpec, open_sessions};
use crate::triton::ONNX_PLATFORM;

/// The signature's input or output schema.
#[derive(Debug, Clone, PartialEq)]
pub enum MlflowSchema {
    /// Column-based (a DataFrame): ordered columns.
    Columns(Vec<ColumnSpec>),
    /// Tensor-based: one or more (named) tensors.
    Tensors(Vec<MlflowTensor>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct ColumnSpec {
    pub name: Option<String>,
    pub datatype: DataType,
    pub required: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MlflowTensor {
    pub name: Option<String>,
    pub datatype: DataType,
    pub shape: Vec<i64>,
}

/// The `signature` block of an `MLmodel` file.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MlflowSignature {
    pub inputs: Option<MlflowSchema>,
    pub outputs: Option<MlflowSchema>,
}

impl MlflowSchema {
    /// The names the schema gives, in order (unnamed entries are skipped).
    pub fn names(&self) -> Vec<&str> {
        match self {
            Self::Columns(cols) => cols.iter().filter_map(|c| c.name.as_deref()).collect(),
            Self::Tensors(ts) => ts.iter().filter_map(|t| t.name.as_deref()).collect(),
        }
    }
}

#[derive(Deserialize)]
struct MlmodelFile {
    #[serde(default)]
    flavors: BTreeMap<String, serde_yaml::Value>,
    #[serde(default)]
    signature: Option<SignatureFile>,
}

#[derive(Deserialize)]
struct SignatureFile {
    #[serde(default)]
    inputs: Option<String>,
    #[serde(default)]
    outputs: Option<String>,
}

#[derive(Deserialize)]
struct SchemaEntry {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default = "yes")]
    required: bool,
    #[serde(rename = "tensor-spec", default)]
    tensor_spec: Option<TensorSpecFile>,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
struct TensorSpecFile {
    dtype: String,
    #[serde(default)]
    shape: Vec<i64>,
}

/// Parses one schema string (`signature.inputs`), which is JSON embedded in the YAML.
pub fn parse_schema(json: &str) -> Result<MlflowSchema, String> {
    let entries: Vec<SchemaEntry> = serde_json::from_str(json).map_err(|e| format!("is not a valid schema: {e}"))?;
    let tensors = entries.iter().filter(|e| e.kind == "tensor").count();
    if tensors > 0 && tensors != entries.len() {
        return Err("mixes tensor and column entries".to_owned());
    }
    if tensors > 0 {
        let specs = entries
            .into_iter()
            .map(|e| {
                let spec = e.tensor_spec.ok_or("has a tensor entry without 'tensor-spec'")?;
                let datatype = DataType::from_mlflow_name(&spec.dtype)
                    .ok_or_else(|| format!("has unsupported tensor dtype '{}'", spec.dtype))?;
                Ok(MlflowTensor { name: e.name, datatype, shape: spec.shape })
            })
            .collect::<Result<_, String>>()?;
        return Ok(MlflowSchema::Tensors(specs));
    }
    let cols = entries
        .into_iter()
        .map(|e| {
            let datatype = DataType::from_mlflow_name(&e.kind).ok_or_else(|| {
                let name = e.name.as_deref().unwrap_or("?");
                format!("has column '{name}' of unsupported type '{}'", e.kind)
            })?;
            Ok(ColumnSpec { name: e.name, datatype, required: e.required })
        })
        .collect::<Result<_, String>>()?;
    Ok(MlflowSchema::Columns(cols))
}

/// Loads the MLflow model in `dir`.
pub fn load_mlflow_model(dir: &Path, env: &Environment, options: &LoadOptions) -> Result<LoadedModel, RuntimeError> {
    let mlmodel_path = dir.join("MLmodel");
    let text = std::fs::read_to_string(&mlmodel_path).map_err(|e| {
        let message = if e.kind() == std::io::ErrorKind::NotFound {
            format!(
                "MLmodel not found under {} (is this an MLflow model folder? for a Triton repository use --format triton)",
                dir.display()
            )
        } else {
            format!("cannot read: {e}")
        };
        RuntimeError::model(&mlmodel_path, message)
    })?;
    let fail = |message: String| RuntimeError::model(&mlmodel_path, message);
    let file: MlmodelFile = serde_yaml::from_str(&text).map_err(|e| fail(format!("is not valid YAML: {e}")))?;
    let Some(onnx) = file.flavors.get("onnx") else {
        let flavors: Vec<&str> = file.flavors.keys().map(String::as_str).collect();
        return Err(fail(format!(
            "has no 'onnx' flavor (flavors: {}); only ONNX MLflow models can be served",
            if flavors.is_empty() { "none".to_owned() } else { flavors.join(", ") }
        )));
    };
    let Some(data) = onnx.get("data").and_then(serde_yaml::Value::as_str) else {
        return Err(fail("flavors.onnx.data (the .onnx file name) is missing".to_owned()));
    };
    let relative = Path::new(data);
    if relative.components().any(|c| !matches!(c, Component::Normal(_) | Component::CurDir)) {
        return Err(fail(format!("flavors.onnx.data '{data}' must be a path inside the model folder")));
    }
    let model_path = dir.join(relative);
    if !model_path.is_file() {
        return Err(fail(format!("flavors.onnx.data names {data}, but {} does not exist", model_path.display())));
    }
    let signature = match file.signature {
        Some(sig) => MlflowSignature {
            inputs: sig
                .inputs
                .as_deref()
                .map(parse_schema)
                .transpose()
                .map_err(|e| fail(format!("signature.inputs {e}")))?,
            outputs: sig
                .outputs
                .as_deref()
                .map(parse_schema)
                .transpose()
                .map_err(|e| fail(format!("signature.outputs {e}")))?,
        },
        None => MlflowSignature::default(),
    };
    let OpenedModel { sessions, inputs: graph_inputs, outputs: graph_outputs } =
        open_sessions(&model_path, env, options)?;
    let inputs = servable(&graph_inputs, &model_path, true)?;
    let outputs = servable(&graph_outputs, &model_path, false)?;
    check_signature(&signature, &inputs, &mlmodel_path)?;
    let name = match &options.model_name {
        Some(name) => name.clone(),
        None => dir
            .canonicalize()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "model".to_owned()),
    };
    let info = ModelInfo {
        name,
        version: "1".to_owned(),
        platform: ONNX_PLATFORM.to_owned(),
        max_batch_size: 0,
        inputs,
        outputs,
        batching: None,
        mlflow: Some(signature),
        source: model_path,
    };
    Ok(LoadedModel::new(info, sessions))
}

fn servable(graph: &[GraphTensor], path: &Path, strict: bool) -> Result<Vec<TensorSpec>, RuntimeError> {
    let kind = if strict { "input" } else { "output" };
    let specs = crate::triton::from_graph(graph, kind, path, strict)?;
    if specs.is_empty() && !strict {
        return Err(RuntimeError::model(path, "the model has no tensor outputs that can be served"));
    }
    Ok(specs)
}

/// With several graph inputs, each named signature entry must be one of them.
fn check_signature(signature: &MlflowSignature, inputs: &[TensorSpec], path: &Path) -> Result<(), RuntimeError> {
    let Some(schema) = &signature.inputs else { return Ok(()) };
    if inputs.len() < 2 {
        return Ok(());
    }
    for name in schema.names() {
        if !inputs.iter().any(|i| i.name == name) {
            let graph: Vec<&str> = inputs.iter().map(|i| i.name.as_str()).collect();
            return Err(RuntimeError::model(
                path,
                format!(
                    "signature input '{name}' is not an input of the ONNX graph (graph inputs: {})",
                    graph.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_schema() {
        let s = parse_schema(r#"[{"type": "double", "name": "a", "required": true}, {"type": "long", "name": "b"}]"#)
            .unwrap();
        let MlflowSchema::Columns(cols) = &s else { panic!("{s:?}") };
        assert_eq!(cols[0].datatype, DataType::Fp64);
        assert_eq!(cols[1].datatype, DataType::Int64);
        assert_eq!(s.names(), vec!["a", "b"]);
    }

    #[test]
    fn tensor_schema() {
        let s = parse_schema(
            r#"[{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 4]}, "name": "input"}]"#,
        )
        .unwrap();
        assert_eq!(
            s,
            MlflowSchema::Tensors(vec![MlflowTensor {
                name: Some("input".into()),
                datatype: DataType::Fp32,
                shape: vec![-1, 4]
            }])
        );
    }

    #[test]
    fn bad_schemas() {
        assert!(parse_schema("nope").unwrap_err().contains("not a valid schema"));
        assert!(
            parse_schema(r#"[{"type": "datetime", "name": "t"}]"#).unwrap_err().contains("unsupported type 'datetime'")
        );
        assert!(parse_schema(r#"[{"type": "tensor", "name": "t"}]"#).unwrap_err().contains("tensor-spec"));
        let mixed = r#"[{"type": "tensor", "tensor-spec": {"dtype": "int64"}}, {"type": "long"}]"#;
        assert!(parse_schema(mixed).unwrap_err().contains("mixes"));
    }
}
