//! Python worker processes: started with the user's scoring script, fed one request at a time
//! over a Unix socket, replaced when they crash or overrun the request deadline.

use super::protocol::{ProtocolError, RequestHead, ResponseHead, read_message, write_message};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::UnixStream;
use tokio::process::{Child, Command};
use tokio::sync::{Mutex, mpsc, oneshot};

/// How one worker is started.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub python: PathBuf,
    /// Folder holding the `sluice_worker` package; prepended to `PYTHONPATH`.
    pub package_dir: PathBuf,
    pub entry_script: PathBuf,
    pub app_root: PathBuf,
    pub model_dir: Option<PathBuf>,
    /// Where worker sockets are created.
    pub socket_dir: PathBuf,
    pub init_timeout: Duration,
    pub request_timeout: Duration,
    /// More variables for the workers (the generated MLflow scorer reads its model from them).
    pub extra_env: Vec<(String, String)>,
}

/// Why a request got no answer from user code.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("every scoring worker is busy and the queue is full")]
    Overloaded,
    #[error("Scoring timeout after {0} ms")]
    Timeout(u128),
    #[error("the scoring worker exited while handling the request; it is being restarted")]
    WorkerDied,
}

type Answer = Result<(ResponseHead, Vec<u8>), PoolError>;

struct Job {
    head: RequestHead,
    body: Vec<u8>,
    reply: oneshot::Sender<Answer>,
}

struct Worker {
    child: Child,
    conn: UnixStream,
}

async fn spawn(cfg: &WorkerConfig, index: usize) -> Result<Worker, String> {
    let socket = cfg.socket_dir.join(format!("worker-{index}.sock"));
    let _ = std::fs::remove_file(&socket);
    let pythonpath = match std::env::var_os("PYTHONPATH") {
        Some(existing) if !existing.is_empty() => {
            format!("{}:{}", cfg.package_dir.display(), existing.to_string_lossy())
        }
        _ => cfg.package_dir.display().to_string(),
    };
    let mut cmd = Command::new(&cfg.python);
    cmd.args(["-u", "-m", "sluice_worker", "--socket"])
        .arg(&socket)
        .arg("--entry-script")
        .arg(&cfg.entry_script)
        .arg("--app-root")
        .arg(&cfg.app_root)
        .env("PYTHONPATH", pythonpath)
        .env("AML_APP_ROOT", &cfg.app_root)
        .env("AZUREML_ENTRY_SCRIPT", &cfg.entry_script)
        .envs(cfg.extra_env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    if let Some(m) = &cfg.model_dir {
        cmd.env("AZUREML_MODEL_DIR", m);
    }
    let mut child = cmd.spawn().map_err(|e| format!("cannot start {}: {e}", cfg.python.display()))?;
    let stdout = child.stdout.take().ok_or("worker stdout missing")?;
    let mut lines = BufReader::new(stdout).lines();
    let ready = tokio::time::timeout(cfg.init_timeout, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.trim() == "SLUICE_WORKER_READY" {
                return true;
            }
            println!("{line}");
        }
        false
    })
    .await;
    match ready {
        Ok(true) => {}
        Ok(false) => {
            let status = child.wait().await.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
            return Err(format!("the scoring script failed to load ({status}); its traceback is above in the log"));
        }
        Err(_) => {
            let _ = child.kill().await;
            return Err(format!("init() did not finish within {} s", cfg.init_timeout.as_secs()));
        }
    }
    // What user code prints after init goes to the replica's log.
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            println!("{line}");
        }
    });
    // The ready line comes after the bind; a script that printed the same words itself only
    // makes us try a little longer.
    let mut attempt = 0;
    let conn = loop {
        match UnixStream::connect(&socket).await {
            Ok(c) => break c,
            Err(e) if attempt >= 50 => return Err(format!("cannot connect to the worker: {e}")),
            Err(_) => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    Ok(Worker { child, conn })
}

/// A fixed number of workers fed from one bounded queue.
#[derive(Clone)]
pub struct WorkerPool {
    tx: mpsc::Sender<Job>,
}

impl WorkerPool {
    /// Starts `count` workers, all of which must load the script, then serves.
    pub async fn start(cfg: WorkerConfig, count: usize, queue: usize) -> Result<Self, String> {
        let cfg = Arc::new(cfg);
        let mut workers = Vec::new();
        for i in 0..count {
            workers.push(spawn(&cfg, i).await?);
        }
        let (tx, rx) = mpsc::channel(queue.max(1));
        let rx = Arc::new(Mutex::new(rx));
        for (i, w) in workers.into_iter().enumerate() {
            tokio::spawn(serve(cfg.clone(), i, w, rx.clone()));
        }
        Ok(Self { tx })
    }

    pub async fn call(&self, head: RequestHead, body: Vec<u8>) -> Answer {
        let (reply, answer) = oneshot::channel();
        self.tx.try_send(Job { head, body, reply }).map_err(|_| PoolError::Overloaded)?;
        answer.await.unwrap_or(Err(PoolError::WorkerDied))
    }
}

async fn exchange(w: &mut Worker, job: &Job) -> Result<(ResponseHead, Vec<u8>), ProtocolError> {
    write_message(&mut w.conn, &job.head, &job.body).await?;
    read_message(&mut w.conn).await
}

/// One worker's loop: take a job, answer it, replace the worker when it dies or hangs.
async fn serve(cfg: Arc<WorkerConfig>, index: usize, mut worker: Worker, rx: Arc<Mutex<mpsc::Receiver<Job>>>) {
    loop {
        let Some(job) = rx.lock().await.recv().await else { return };
        if job.reply.is_closed() {
            continue; // the caller gave up while queued
        }
        let outcome = tokio::time::timeout(cfg.request_timeout, exchange(&mut worker, &job)).await;
        let broken = match outcome {
            Ok(Ok(answer)) => {
                let _ = job.reply.send(Ok(answer));
                false
            }
            Ok(Err(e)) => {
                tracing::warn!(worker = index, error = %e, "scoring worker failed");
                let _ = job.reply.send(Err(PoolError::WorkerDied));
                true
            }
            Err(_) => {
                tracing::warn!(
                    worker = index,
                    timeout_ms = cfg.request_timeout.as_millis(),
                    "scoring worker overran the request timeout; replacing it"
                );
                let _ = job.reply.send(Err(PoolError::Timeout(cfg.request_timeout.as_millis())));
                true
            }
        };
        if broken {
            let _ = worker.child.kill().await;
            worker = respawn(&cfg, index).await;
        }
    }
}

async fn respawn(cfg: &WorkerConfig, index: usize) -> Worker {
    let mut delay = Duration::from_millis(100);
    loop {
        match spawn(cfg, index).await {
            Ok(w) => return w,
            Err(e) => {
                tracing::error!(worker = index, error = %e, "cannot restart scoring worker");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(30));
            }
        }
    }
}
