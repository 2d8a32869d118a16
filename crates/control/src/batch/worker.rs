//! One batch worker process (`python -m sluice_worker.batch`, protocol in
//! `python/sluice_worker/README.md`): how it is started from a job's plan, booted, handed a
//! mini-batch with a deadline, and stopped.

use super::Batch;
use super::plan::JobPlan;
use serde::Deserialize;
use sluice_backend::pipe_worker::{PipeWorker, PipeWorkerCommand};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The line a worker prints once `init()` has returned.
const READY: &str = "SLUICE_WORKER_READY";
/// How long `init()` may take (loading a model), as online replicas allow.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(600);
/// How long a worker asked to stop may finish its mini-batch before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// How a job's workers start (everything but the log file).
#[derive(Debug, Clone)]
pub struct WorkerLaunch {
    pub python: PathBuf,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub cwd: PathBuf,
}

/// Resolves a plan into a worker command line, building the environment if needed (which can
/// take minutes the first time). The error says what is missing or why the build failed.
pub async fn prepare(batch: &Batch, plan: &JobPlan, output_dir: &Path) -> Result<WorkerLaunch, String> {
    let package = batch.config.worker_package.clone()?;
    let artifacts = &batch.control.artifacts;
    let model_dir = artifacts
        .path_of(&plan.model_artifact, &plan.model_path)
        .filter(|p| p.exists())
        .ok_or_else(|| format!("the files of model {} are missing", plan.model))?;
    let mut env = plan.settings.environment_variables.clone();
    env.insert("PYTHONPATH".into(), package.display().to_string());
    env.insert("PYTHONUNBUFFERED".into(), "1".into());
    env.insert("AZUREML_LOG_LEVEL".into(), plan.settings.logging_level.clone());
    // As in Azure ML: the registered folder's parent, so its basename is kept below it.
    if let Some(parent) = model_dir.parent() {
        env.insert("AZUREML_MODEL_DIR".into(), parent.display().to_string());
    }
    let mut args = vec!["-m".into(), "sluice_worker.batch".into(), "--output-dir".into(), arg(output_dir)];
    let cwd = match &plan.code {
        Some(code) => {
            let top = artifacts.top_level(&code.artifact).ok_or("the code folder's upload is missing")?;
            let code_dir = artifacts.path_of(&code.artifact, &top).ok_or("the code artifact reference is malformed")?;
            if !code_dir.join(&code.scoring_script).is_file() {
                return Err(format!(
                    "code_configuration.scoring_script: {} not found in the code folder",
                    code.scoring_script
                ));
            }
            args.extend(["--app-root".into(), arg(&code_dir), "--entry-script".into(), code.scoring_script.clone()]);
            code_dir
        }
        None if plan.model_type == "mlflow_model" => {
            let file = model_dir.join("MLmodel");
            let text = std::fs::read_to_string(&file).map_err(|e| format!("cannot read the model's MLmodel: {e}"))?;
            let doc: serde_json::Value =
                serde_yaml::from_str(&text).map_err(|e| format!("the model's MLmodel is not valid YAML: {e}"))?;
            env.insert("SLUICE_MLFLOW_MODEL_PATH".into(), arg(&model_dir));
            env.insert("SLUICE_MLFLOW_MLMODEL".into(), doc.to_string());
            args.extend(["--mlflow-model".into(), arg(&model_dir)]);
            model_dir.clone()
        }
        None => {
            return Err(format!(
                "model {} ({}) needs a batch driver (code_configuration)",
                plan.model, plan.model_type
            ));
        }
    };
    let pip = match &plan.environment {
        Some(spec) => {
            let mut errors = Vec::new();
            let valid = sluice_api::environment::inline(spec, "environment.", &mut errors)
                .ok_or_else(|| errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))?;
            valid.pip
        }
        // An MLflow model without code brings its own packages, as Azure ML builds them.
        None if plan.code.is_none() => model_conda_plan(&model_dir)?,
        None => None,
    };
    let python = match pip {
        Some(pip) => batch.control.reconciler.environments().ensure(&pip).await?,
        None => batch.config.python.clone(),
    };
    Ok(WorkerLaunch { python, args, env, cwd })
}

fn arg(p: &Path) -> String {
    p.display().to_string()
}

/// The packages an MLflow model folder's `conda.yaml` asks for, if it has one.
fn model_conda_plan(dir: &Path) -> Result<Option<sluice_domain::PipPlan>, String> {
    let Ok(text) = std::fs::read_to_string(dir.join("conda.yaml")) else { return Ok(None) };
    let doc: serde_json::Value =
        serde_yaml::from_str(&text).map_err(|e| format!("the model's conda.yaml is not valid YAML: {e}"))?;
    sluice_api::environment::conda_plan(&doc).map(Some).map_err(|errs| {
        let what: Vec<String> = errs.into_iter().map(|(f, m)| format!("{f}: {m}")).collect();
        format!("the model's conda.yaml: {}", what.join("; "))
    })
}

/// A worker's answer to one mini-batch.
#[derive(Debug, Clone, Deserialize)]
pub struct Reply {
    #[serde(default)]
    pub id: serde_json::Value,
    pub ok: bool,
    /// The output rows as a list (MLflow models)...
    #[serde(default)]
    pub rows: Vec<String>,
    /// ...or as one text block, each row ending in `\n` (scripts).
    #[serde(default)]
    pub rows_text: Option<String>,
    #[serde(default)]
    pub items: Option<u64>,
    #[serde(default)]
    pub error: Option<String>,
    /// MLflow models only: files that could not be scored.
    #[serde(default)]
    pub failed_files: Option<Vec<FailedFileReply>>,
    #[serde(default)]
    pub bad_request: bool,
    /// Seconds the worker spent in `run()` and on its result.
    #[serde(default)]
    pub seconds: Option<f64>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct FailedFileReply {
    pub file: String,
    pub error: String,
}

/// How one attempt at a mini-batch ended.
#[derive(Debug)]
pub enum Attempt {
    Replied(Reply),
    /// Past `retry_settings.timeout`: the worker was killed.
    TimedOut,
    /// The worker died, or said something that is not a reply: it was killed.
    Lost(String),
}

pub struct BatchWorker {
    process: PipeWorker,
    log: PathBuf,
}

impl BatchWorker {
    /// Starts a worker and waits for `init()` to return. On failure, the reason with the end of
    /// the worker's log (the traceback).
    pub async fn boot(launch: &WorkerLaunch, log: PathBuf) -> Result<Self, String> {
        let cmd = PipeWorkerCommand {
            program: launch.python.clone(),
            args: launch.args.clone(),
            env: launch.env.clone(),
            cwd: launch.cwd.clone(),
            log: log.clone(),
        };
        let mut process =
            PipeWorker::spawn(&cmd).map_err(|e| format!("cannot start {}: {e}", launch.python.display()))?;
        match tokio::time::timeout(BOOT_TIMEOUT, process.recv()).await {
            Ok(Ok(Some(line))) if line.trim() == READY => Ok(Self { process, log }),
            Ok(Ok(Some(line))) => {
                process.kill().await;
                Err(format!("the worker printed {line:?} instead of {READY}"))
            }
            Ok(Ok(None) | Err(_)) => {
                let status = process.wait().await;
                let code = status.map_or("no status".to_owned(), |s| s.to_string());
                Err(format!("the batch worker could not start ({code}):\n{}", tail(&log, 30).await))
            }
            Err(_) => {
                process.kill().await;
                Err(format!("init() did not return within {} s", BOOT_TIMEOUT.as_secs()))
            }
        }
    }

    /// Hands one mini-batch to the worker; on failure the worker is killed and the reason given.
    pub async fn send(&mut self, idx: i64, files: &[String]) -> Result<(), String> {
        let request = serde_json::json!({ "id": idx, "files": files }).to_string();
        if let Err(e) = self.process.send(&request).await {
            self.process.kill().await;
            return Err(format!("cannot write to the worker: {e}"));
        }
        Ok(())
    }

    /// Waits up to `timeout` for the reply to mini-batch `idx` (sent with [`Self::send`]).
    pub async fn reply(&mut self, idx: i64, timeout: Duration) -> Attempt {
        match tokio::time::timeout(timeout, self.process.recv()).await {
            Err(_) => {
                self.process.kill().await;
                Attempt::TimedOut
            }
            Ok(Ok(Some(line))) => match serde_json::from_str::<Reply>(&line) {
                Ok(reply) if reply.id == serde_json::json!(idx) && !reply.bad_request => Attempt::Replied(reply),
                Ok(reply) => self.lost(format!("the worker answered another request: {:?}", reply.id)).await,
                Err(e) => self.lost(format!("the worker's reply is not valid: {e}")).await,
            },
            Ok(Ok(None) | Err(_)) => {
                let status = self.process.wait().await.map_or("no status".to_owned(), |s| s.to_string());
                Attempt::Lost(format!("the worker exited ({status}):\n{}", tail(&self.log, 20).await))
            }
        }
    }

    async fn lost(&mut self, why: String) -> Attempt {
        self.process.kill().await;
        Attempt::Lost(why)
    }

    /// Asks the worker to exit (EOF on stdin) and kills it if it lingers.
    pub async fn stop(self) {
        self.process.stop(STOP_GRACE).await;
    }

    /// Kills the worker at once (cancel).
    pub async fn kill(mut self) {
        self.process.kill().await;
    }
}

/// The last `lines` lines of a log file.
pub async fn tail(path: &Path, lines: usize) -> String {
    let text = tokio::fs::read(path).await.unwrap_or_default();
    let start = text.len().saturating_sub(64 * 1024);
    let text = String::from_utf8_lossy(&text[start..]);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
