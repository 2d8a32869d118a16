//! Environment builds: a deployment's conda file becomes a virtual environment, built once per
//! content hash under `<data-dir>/envs/<hash>/` and reused by every deployment that asks for
//! the same packages. The build log is `<data-dir>/envs/<hash>/build.log`.

use sha2::{Digest, Sha256};
use sluice_api::environment::EnvironmentBuild;
use sluice_domain::PipPlan;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::process::Command;

/// How long one environment may take to build.
const BUILD_TIMEOUT: Duration = Duration::from_secs(30 * 60);

#[derive(Clone)]
pub struct EnvironmentBuilder {
    root: PathBuf,
    base_python: PathBuf,
    /// One build at a time per environment; others wait for it and reuse the result.
    locks: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
}

impl EnvironmentBuilder {
    pub fn new(root: PathBuf, base_python: PathBuf) -> Self {
        Self { root, base_python, locks: Default::default() }
    }

    fn key(plan: &PipPlan) -> String {
        let mut h = Sha256::new();
        h.update(plan.python.as_deref().unwrap_or("").as_bytes());
        for r in &plan.requirements {
            h.update(b"\n");
            h.update(r.as_bytes());
        }
        hex::encode(&h.finalize()[..8])
    }

    /// The environment's Python, building the environment first if needed. The error is the
    /// tail of the build log, which says what the installer said.
    pub async fn ensure(&self, plan: &PipPlan) -> Result<PathBuf, String> {
        let key = Self::key(plan);
        let dir = self.root.join(&key);
        let python = dir.join("bin/python");
        let lock = self.locks.lock().expect("environment locks").entry(key.clone()).or_default().clone();
        let _building = lock.lock().await;
        if dir.join(".complete").exists() {
            return Ok(python);
        }
        let log = dir.join("build.log");
        let started = std::time::Instant::now();
        match tokio::time::timeout(BUILD_TIMEOUT, self.build(plan, &dir, &log)).await {
            Ok(Ok(())) => {
                tracing::info!(environment = %key, seconds = started.elapsed().as_secs(), "environment built");
                std::fs::write(dir.join(".complete"), b"").map_err(|e| e.to_string())?;
                Ok(python)
            }
            Ok(Err(e)) => {
                let _ = std::fs::write(dir.join(".failed"), &e);
                Err(format!("environment {key} failed to build: {e}\n{}", tail(&log, 20)))
            }
            Err(_) => {
                let message = format!("did not build within {} minutes", BUILD_TIMEOUT.as_secs() / 60);
                let _ = std::fs::write(dir.join(".failed"), &message);
                Err(format!("environment {key} {message}"))
            }
        }
    }

    /// Where the build of `plan` is, with the end of its log.
    pub fn status(&self, plan: &PipPlan) -> EnvironmentBuild {
        let key = Self::key(plan);
        let dir = self.root.join(&key);
        let running = self.locks.lock().expect("environment locks").get(&key).is_some_and(|l| l.try_lock().is_err());
        let state = if dir.join(".complete").exists() {
            "Succeeded"
        } else if running {
            "Running"
        } else if dir.join(".failed").exists() {
            "Failed"
        } else {
            "NotStarted"
        };
        let log = dir.join("build.log");
        EnvironmentBuild {
            state: state.to_owned(),
            key: Some(key),
            requirements: plan.requirements.clone(),
            log_tail: log.exists().then(|| tail(&log, 40)),
        }
    }

    /// Starts building `plan` in the background (a no-op when it is built or building).
    pub fn spawn_build(&self, plan: PipPlan) {
        let this = self.clone();
        tokio::spawn(async move {
            if let Err(e) = this.ensure(&plan).await {
                tracing::warn!(error = %e, "environment build failed");
            }
        });
    }

    async fn build(&self, plan: &PipPlan, dir: &Path, log: &Path) -> Result<(), String> {
        // A build that died half-way is started over.
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let mut notes = plan.notes.clone();
        let interpreter = match &plan.python {
            Some(v) => {
                let wanted = PathBuf::from(format!("python{v}"));
                if Command::new(&wanted).arg("--version").output().await.is_ok_and(|o| o.status.success()) {
                    wanted
                } else {
                    notes.push(format!(
                        "warning: python={v} was asked for, but no python{v} is on this machine; using {}",
                        self.base_python.display()
                    ));
                    self.base_python.clone()
                }
            }
            None => self.base_python.clone(),
        };
        let mut head = notes.join("\n");
        head.push_str(&format!("\nrequirements:\n{}\n", plan.requirements.join("\n")));
        std::fs::write(log, head).map_err(|e| e.to_string())?;
        run_logged(Command::new(&interpreter).args(["-m", "venv"]).arg(dir), log).await?;
        if plan.requirements.is_empty() {
            return Ok(());
        }
        let reqs = dir.join("requirements.txt");
        std::fs::write(&reqs, plan.requirements.join("\n")).map_err(|e| e.to_string())?;
        run_logged(
            Command::new(dir.join("bin/python"))
                .args(["-m", "pip", "install", "--disable-pip-version-check", "--no-input", "-r"])
                .arg(&reqs),
            log,
        )
        .await
    }
}

/// Runs a command with its output appended to `log`.
async fn run_logged(cmd: &mut Command, log: &Path) -> Result<(), String> {
    let out = std::fs::OpenOptions::new().append(true).open(log).map_err(|e| e.to_string())?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    let status = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .kill_on_drop(true)
        .status()
        .await
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if status.success() { Ok(()) } else { Err(format!("{:?} exited with {status}", cmd.as_std().get_program())) }
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
