//! What a deployment's replicas run: the `sluice replica` (ONNX, native) or `sluice
//! replica-python` (scoring script) command line, environment and resource request.

use crate::ReplicaLaunch;
use crate::deployments::replica_set_id;
use sluice_api::deployment::ProbeSettings;
use sluice_backend::{ProbeConfig, Probes, ReplicaCommand, ReplicaSetSpec, ResourceRequest};
use sluice_domain::{ContainerCommand, ValidDeployment};
use sluice_store::DeploymentRow;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How a deployment's model is served.
pub enum Serving<'a> {
    /// ONNX Runtime in the replica: `format` is `triton` or `mlflow`.
    Native { format: &'a str, model_dir: PathBuf },
    /// The user's scoring script in Python workers.
    Script { code_dir: PathBuf, scoring_script: &'a str, model_dir: PathBuf, python: PathBuf },
    /// An MLflow model without code: the generated MLflow scoring script in Python workers.
    MlflowScript { model_dir: PathBuf, python: PathBuf },
    /// A custom container's command, proxied to (`inference_config`).
    Command { container: &'a ContainerCommand, cwd: PathBuf, model_dir: PathBuf },
}

fn arg(p: &Path) -> String {
    p.display().to_string()
}

pub fn replica_set(
    launch: &ReplicaLaunch,
    row: &DeploymentRow,
    valid: &ValidDeployment,
    serving: Serving<'_>,
) -> ReplicaSetSpec {
    let res = valid.instance_type.resources;
    let cores = res.cpu_millis.div_ceil(1000).max(1);
    let mut env = valid.environment_variables.clone();
    let (args, model_dir): (Vec<String>, PathBuf) = match serving {
        Serving::Native { format, model_dir } => {
            env.insert("ORT_DYLIB_PATH".into(), arg(&launch.onnxruntime));
            let args = vec![
                "replica".into(),
                "--model-dir".into(),
                arg(&model_dir),
                "--format".into(),
                format.into(),
                "--onnxruntime".into(),
                arg(&launch.onnxruntime),
                "--intra-op-threads".into(),
                (res.cpu_millis / 1000).max(1).to_string(),
                "--inference-threads".into(),
                valid.max_concurrent_requests_per_instance.min(cores).to_string(),
            ];
            (args, model_dir)
        }
        Serving::Script { code_dir, scoring_script, model_dir, python } => {
            let mut args = vec![
                "replica-python".into(),
                "--code-dir".into(),
                arg(&code_dir),
                "--scoring-script".into(),
                scoring_script.to_owned(),
            ];
            args.extend(python_args(launch, valid, cores, &python, &mut env));
            (args, model_dir)
        }
        Serving::MlflowScript { model_dir, python } => {
            let mut args = vec!["replica-python".into(), "--mlflow-model".into(), arg(&model_dir)];
            args.extend(python_args(launch, valid, cores, &python, &mut env));
            (args, model_dir)
        }
        Serving::Command { container, cwd, model_dir } => {
            // Fail with the replica's own message before the backend gives up waiting.
            let startup_s = launch.ready_timeout.as_secs().saturating_sub(10).max(5);
            let args = command_replica_args(container, &cwd, valid.request_timeout_ms, startup_s, None);
            (args, model_dir)
        }
    };
    // As in Azure ML: the registered folder's parent, so its basename is kept below it.
    if let Some(parent) = model_dir.parent() {
        env.insert("AZUREML_MODEL_DIR".into(), arg(parent));
    }
    ReplicaSetSpec {
        id: replica_set_id(&row.workspace, &row.endpoint, &row.name),
        generation: row.generation as u64,
        instance_count: valid.instance_count,
        command: ReplicaCommand { program: launch.program.clone(), args, env, cwd: launch.work_dir.clone() },
        resources: ResourceRequest { cpu_millis: res.cpu_millis, memory_bytes: res.memory_bytes, gpus: res.gpus },
        probes: Some(probes(row)),
    }
}

/// The flags every Python replica takes; `WORKER_COUNT` from `environment_variables` wins (the
/// replica reads it), otherwise one worker per core the instance type asks for.
fn python_args(
    launch: &ReplicaLaunch,
    valid: &ValidDeployment,
    cores: u32,
    python: &Path,
    env: &mut std::collections::BTreeMap<String, String>,
) -> Vec<String> {
    if !env.contains_key("WORKER_COUNT") {
        env.insert("WORKER_COUNT".into(), cores.min(64).to_string());
    }
    vec![
        "--python".into(),
        arg(python),
        "--request-timeout-ms".into(),
        valid.request_timeout_ms.to_string(),
        "--work-dir".into(),
        arg(&launch.work_dir.join("run")),
    ]
}

/// The deployment's `liveness_probe` and `readiness_probe`, Azure ML's defaults where unset.
/// Every replica kind answers `GET /` while healthy.
fn probes(row: &DeploymentRow) -> Probes {
    let spec = serde_json::from_str::<sluice_api::deployment::OnlineDeploymentSpec>(&row.spec_json).ok();
    let config = |p: Option<&ProbeSettings>| match p {
        None => ProbeConfig::default(),
        Some(p) => ProbeConfig {
            path: "/".into(),
            initial_delay: Duration::from_secs(p.initial_delay.into()),
            period: Duration::from_secs(p.period.into()),
            timeout: Duration::from_secs(p.timeout.into()),
            success_threshold: p.success_threshold,
            failure_threshold: p.failure_threshold,
        },
    };
    Probes {
        liveness: config(spec.as_ref().and_then(|s| s.liveness_probe.as_ref())),
        readiness: config(spec.as_ref().and_then(|s| s.readiness_probe.as_ref())),
    }
}

/// `sluice replica-command` for a custom container: its routes, working folder, timeouts and
/// command. The local `serve` builds the same command line.
pub fn command_replica_args(
    container: &ContainerCommand,
    cwd: &Path,
    request_timeout_ms: u64,
    startup_timeout_s: u64,
    listen: Option<&str>,
) -> Vec<String> {
    let mut args = vec![
        "replica-command".into(),
        "--port".into(),
        container.scoring.port.to_string(),
        "--scoring-path".into(),
        container.scoring.path.clone(),
        "--readiness-port".into(),
        container.readiness.port.to_string(),
        "--readiness-path".into(),
        container.readiness.path.clone(),
        "--liveness-port".into(),
        container.liveness.port.to_string(),
        "--liveness-path".into(),
        container.liveness.path.clone(),
        "--cwd".into(),
        arg(cwd),
        "--request-timeout-ms".into(),
        request_timeout_ms.to_string(),
        "--startup-timeout-s".into(),
        startup_timeout_s.to_string(),
    ];
    if let Some(listen) = listen {
        args.extend(["--listen".into(), listen.to_owned()]);
    }
    args.push("--".into());
    args.extend(container.command.iter().cloned());
    args
}
