//! The replica side of Sluice: loads ONNX models (Triton repository or MLflow layout) and serves them over the
//! KServe v2 REST protocol and the Azure ML MLflow `/score` contract.

mod batch;
pub mod command;
pub mod datatype;
pub mod error;
pub mod http;
pub mod infer;
pub mod llm;
pub mod memory;
pub mod mlflow;
pub mod mlflow_input;
pub mod mlflow_output;
pub mod model;
pub mod ort_lib;
mod ort_tensor;
pub mod pbtxt;
pub mod pool;
pub mod python;
pub mod replica;
pub mod tensor;
pub mod triton;

pub use command::{CommandReplicaArgs, CommandReplicaError, command_replica_main, run_command_replica};
pub use error::{ErrorCode, InferError, RuntimeError};
pub use http::{AppState, ServerConfig, router, serve};
pub use model::{LoadOptions, LoadedModel, ModelFormat, ModelInfo, ModelSet, TensorSpec, load_models};
pub use ort_lib::{init_onnxruntime, locate_or_provision_onnxruntime};
pub use python::{PythonReplicaArgs, python_replica_main};
pub use replica::{ReplicaArgs, replica_main};
