//! Python worker processes: started with the user's scoring script, fed requests over a Unix
//! socket, replaced when they crash or overrun the request deadline.
//!
//! A worker runs one request at a time and answers in order. While every worker is busy, a worker
//! is also handed the next few small requests ahead of time (up to [`PIPELINE_DEPTH`] in all,
//! [`PIPELINE_BYTES`] of them not yet read): it finds the next request already in its socket when it
//! finishes one, instead of sleeping until the replica has read the answer and written the next.
//! That keeps the worker's CPU on user code: on a busy core, a scoring script served one request
//! per wake-up costs about twice the CPU of the same script fed back to back. A request handed
//! ahead has not started: when the worker dies or overruns the deadline, only the request it was
//! running fails, and the ones behind it go to its replacement.

use super::protocol::{ProtocolError, RequestHead, ResponseHead, read_message, write_message};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::process::{Child, Command};
use tokio::sync::{Mutex, mpsc, oneshot};

/// The most requests a worker holds at once: the one it runs and those written behind it.
pub const PIPELINE_DEPTH: usize = 8;
/// Requests are written ahead only while the bytes written and not yet answered stay under this, far
/// below a Unix socket's buffer, so a write ahead never waits on the worker (which may itself be
/// waiting to write a large answer).
pub const PIPELINE_BYTES: usize = 64 * 1024;

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
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
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
    let (reader, writer) = conn.into_split();
    Ok(Worker { child, reader: BufReader::with_capacity(64 * 1024, reader), writer })
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

/// Bytes a request takes in the worker's socket.
fn frame_size(job: &Job) -> usize {
    job.body.len()
        + job.head.path.len()
        + job.head.query.len()
        + job.head.headers.iter().map(|(k, v)| k.len() + v.len() + 8).sum::<usize>()
        + 64
}

/// One worker's loop: take jobs, write them, read the answers in order, replace the worker when it
/// dies or hangs.
async fn serve(cfg: Arc<WorkerConfig>, index: usize, mut worker: Worker, rx: Arc<Mutex<mpsc::Receiver<Job>>>) {
    // Written to the worker, oldest first: the front one is running.
    let mut inflight: VecDeque<Job> = VecDeque::new();
    // Taken from the queue (or handed back by a worker that died), not written yet.
    let mut unsent: VecDeque<Job> = VecDeque::new();
    loop {
        if inflight.is_empty() && unsent.is_empty() {
            let Some(job) = rx.lock().await.recv().await else { return };
            unsent.push_back(job);
        }
        // Ahead of time: only while no other worker waits on the queue (it holds the lock then, and
        // would take the job itself), and only small requests.
        let mut ahead: usize = inflight.iter().skip(1).chain(unsent.iter()).map(frame_size).sum();
        while inflight.len() + unsent.len() < PIPELINE_DEPTH {
            let Ok(mut queue) = rx.try_lock() else { break };
            let Ok(job) = queue.try_recv() else { break };
            drop(queue);
            ahead += frame_size(&job);
            unsent.push_back(job);
            if ahead > PIPELINE_BYTES {
                break;
            }
        }
        let failure = match write_unsent(&mut worker, &mut unsent, &mut inflight).await {
            Err(e) => Failure::Broken(e),
            Ok(()) => {
                let Some(job) = inflight.front() else { continue };
                // The deadline runs from when the worker is known to be on this request: the answer
                // before it has come.
                let read = read_message::<_, ResponseHead>(&mut worker.reader);
                match tokio::time::timeout(cfg.request_timeout, read).await {
                    Ok(Ok(answer)) if answer.0.id == job.head.id => {
                        if let Some(job) = inflight.pop_front() {
                            let _ = job.reply.send(Ok(answer));
                        }
                        continue;
                    }
                    Ok(Ok((head, _))) => Failure::Broken(ProtocolError::Malformed(format!(
                        "answer to request {} while request {} was expected",
                        head.id, job.head.id
                    ))),
                    Ok(Err(e)) => Failure::Broken(e),
                    Err(_) => Failure::Timeout,
                }
            }
        };
        // The worker is gone or stuck: the request it was running fails; those behind it had not
        // started and go to its replacement first.
        let answer = match failure {
            Failure::Timeout => {
                tracing::warn!(
                    worker = index,
                    timeout_ms = cfg.request_timeout.as_millis(),
                    "scoring worker overran the request timeout; replacing it"
                );
                PoolError::Timeout(cfg.request_timeout.as_millis())
            }
            Failure::Broken(e) => {
                tracing::warn!(worker = index, error = %e, "scoring worker failed");
                PoolError::WorkerDied
            }
        };
        if let Some(running) = inflight.pop_front() {
            let _ = running.reply.send(Err(answer));
        }
        while let Some(job) = inflight.pop_back() {
            unsent.push_front(job);
        }
        let _ = worker.child.kill().await;
        worker = respawn(&cfg, index).await;
    }
}

/// Why a worker is replaced.
enum Failure {
    /// It overran the request deadline.
    Timeout,
    /// Its connection failed or it answered out of order.
    Broken(ProtocolError),
}

/// Writes the jobs taken but not yet written (skipping callers gone): the first whatever its size,
/// later ones only while small. A job whose write failed stays unsent.
async fn write_unsent(
    worker: &mut Worker,
    unsent: &mut VecDeque<Job>,
    inflight: &mut VecDeque<Job>,
) -> Result<(), ProtocolError> {
    while let Some(job) = unsent.pop_front() {
        if job.reply.is_closed() {
            continue; // the caller gave up while queued
        }
        if !inflight.is_empty() && frame_size(&job) > PIPELINE_BYTES {
            unsent.push_front(job);
            break;
        }
        if let Err(e) = write_message(&mut worker.writer, &job.head, &job.body).await {
            unsent.push_front(job);
            return Err(e);
        }
        inflight.push_back(job);
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn head(id: u64) -> RequestHead {
        RequestHead { id, method: "POST".into(), path: "/score".into(), query: String::new(), headers: vec![] }
    }

    #[tokio::test]
    async fn requests_written_behind_a_hanging_one_run_once_on_the_replacement_worker() {
        // One worker. While it runs `a`, the hanging `h` and then `b`, `c`, `d` queue; when `a` is
        // answered they are all written to the worker. `h` overruns the deadline and the worker is
        // replaced: `b`, `c` and `d` had not started, so the new worker runs each of them once.
        let tmp = tempfile::tempdir().unwrap();
        let code = tmp.path().join("code");
        std::fs::create_dir_all(&code).unwrap();
        let log = tmp.path().join("ran.log");
        std::fs::write(
            code.join("score.py"),
            "import json, os, time\n\ndef init():\n    pass\n\ndef run(raw_data):\n    req = json.loads(raw_data)\n    \
             with open(req['log'], 'a') as f:\n        f.write(req['tag'] + '\\n')\n    time.sleep(req['sleep'])\n    \
             return {'tag': req['tag'], 'pid': os.getpid()}\n",
        )
        .unwrap();
        let python = std::env::var_os("SLUICE_TEST_PYTHON").map(PathBuf::from).unwrap_or_else(|| "python3".into());
        let cfg = WorkerConfig {
            python,
            package_dir: super::super::materialize_worker_package(&tmp.path().join("pkg")).unwrap(),
            entry_script: code.join("score.py"),
            app_root: code.clone(),
            model_dir: None,
            socket_dir: tmp.path().to_owned(),
            init_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_millis(1500),
            extra_env: vec![],
        };
        let pool = WorkerPool::start(cfg, 1, 16).await.unwrap();
        let call = |id: u64, tag: &'static str, sleep: f64, after_ms: u64| {
            let pool = pool.clone();
            let body = serde_json::json!({"tag": tag, "sleep": sleep, "log": log}).to_string().into_bytes();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(after_ms)).await;
                let mut h = head(id);
                h.headers.push(("content-type".into(), "application/json".into()));
                pool.call(h, body).await
            })
        };
        let a = call(1, "a", 0.6, 0);
        let h = call(2, "h", 60.0, 150);
        let rest: Vec<_> = [(3, "b"), (4, "c"), (5, "d")].into_iter().map(|(id, t)| call(id, t, 0.0, 300)).collect();
        let pid = |body: &[u8]| serde_json::from_slice::<serde_json::Value>(body).unwrap()["pid"].clone();
        let (answer, body) = a.await.unwrap().unwrap();
        assert_eq!(answer.status, 200, "{}", String::from_utf8_lossy(&body));
        let first = pid(&body);
        assert!(matches!(h.await.unwrap(), Err(PoolError::Timeout(1500))));
        for (tag, task) in ["b", "c", "d"].into_iter().zip(rest) {
            let (answer, body) = task.await.unwrap().unwrap_or_else(|e| panic!("{tag}: {e}"));
            assert_eq!(answer.status, 200, "{tag}: {}", String::from_utf8_lossy(&body));
            assert_ne!(pid(&body), first, "{tag} ran on the worker that hung");
        }
        let mut ran: Vec<String> = std::fs::read_to_string(&log).unwrap().lines().map(str::to_owned).collect();
        ran.sort();
        assert_eq!(ran, ["a", "b", "c", "d", "h"], "every request ran exactly once");
    }
}
