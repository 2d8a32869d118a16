//! The scoring-script replica: `sluice replica-python` runs the user's `score.py` in worker
//! processes of the deployment's Python and serves `/score` (and `/swagger.json`, `/`) from them.
//!
//! **Invariant (DESIGN.md #1).** User code never runs in the server, nor in this process: only
//! in the workers, which the replica replaces when they crash or overrun `request_timeout_ms`.

mod package;
mod protocol;
mod workers;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::serve::ListenerExt;
pub use package::materialize as materialize_worker_package;
use protocol::RequestHead;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
pub use workers::{PoolError, WorkerConfig, WorkerPool};

/// Exit code when the scoring script cannot be loaded, as Azure's server uses.
const EXIT_LOAD_FAILED: u8 = 3;

#[derive(clap::Args, Debug, Clone)]
pub struct PythonReplicaArgs {
    /// The deployment's code folder (`code_configuration.code`).
    #[arg(long, value_name = "DIR", required_unless_present = "mlflow_model", requires = "scoring_script")]
    pub code_dir: Option<PathBuf>,
    /// The scoring script, relative to the code folder.
    #[arg(long, value_name = "FILE", requires = "code_dir")]
    pub scoring_script: Option<PathBuf>,
    /// An MLflow model folder (with `MLmodel`) to serve without code, through the generated
    /// scoring script `sluice_worker/mlflow_score.py`.
    #[arg(long, value_name = "DIR", conflicts_with = "code_dir")]
    pub mlflow_model: Option<PathBuf>,
    /// The model's folder, exported as AZUREML_MODEL_DIR.
    #[arg(long, value_name = "DIR")]
    pub model_dir: Option<PathBuf>,
    /// The Python interpreter of the deployment's environment.
    #[arg(long, value_name = "PATH", default_value = "python3")]
    pub python: PathBuf,
    /// Worker processes (Azure's WORKER_COUNT).
    #[arg(long, env = "WORKER_COUNT", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub workers: u16,
    /// Requests that may wait for a free worker before more are refused with 503.
    #[arg(long, default_value_t = 64)]
    pub max_queued_requests: usize,
    /// A request still running after this is cut off and its worker replaced.
    #[arg(long, default_value_t = 5000)]
    pub request_timeout_ms: u64,
    /// How long `init()` may take.
    #[arg(long, default_value_t = 600)]
    pub init_timeout_s: u64,
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    #[arg(long, default_value_t = 100 * 1024 * 1024)]
    pub max_request_bytes: usize,
    /// Where the embedded worker package and sockets go (default: a temporary folder).
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
}

pub fn python_replica_main(args: PythonReplicaArgs) -> ExitCode {
    // One async thread per CPU the replica may use: it only relays, and on a replica pinned to one CPU a second
    // thread would only pass requests back and forth between the two.
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(run(args))
}

async fn run(args: PythonReplicaArgs) -> ExitCode {
    // The package is shared by replicas (one copy per version) under the work folder; sockets
    // go to a short private temporary folder, as Unix socket paths are limited to ~100 bytes.
    let package_root = args.work_dir.clone().unwrap_or_else(std::env::temp_dir).join("python");
    let work = tempfile::Builder::new().prefix("sluice-").tempdir();
    let work = match work {
        Ok(w) => w,
        Err(e) => {
            eprintln!("error: cannot create a work folder: {e}");
            return ExitCode::FAILURE;
        }
    };
    let package_dir = match package::materialize(&package_root) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: cannot write the worker package: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (entry_script, app_root, extra_env) = match (&args.mlflow_model, &args.code_dir, &args.scoring_script) {
        (Some(model), _, _) => match mlflow_scorer(&package_dir, model) {
            Ok(x) => x,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(EXIT_LOAD_FAILED);
            }
        },
        (None, Some(code_dir), Some(script)) => {
            let entry_script = code_dir.join(script);
            let app_root = entry_script.parent().map(PathBuf::from).unwrap_or_else(|| code_dir.clone());
            (entry_script, app_root, Vec::new())
        }
        _ => {
            eprintln!("error: give --code-dir and --scoring-script, or --mlflow-model");
            return ExitCode::from(2);
        }
    };
    if !entry_script.is_file() {
        eprintln!(
            "error: scoring script {} not found in the code folder {}",
            entry_script.file_name().unwrap_or_default().to_string_lossy(),
            app_root.display()
        );
        return ExitCode::from(EXIT_LOAD_FAILED);
    }
    let cfg = WorkerConfig {
        python: args.python.clone(),
        package_dir,
        app_root,
        entry_script,
        model_dir: args.model_dir.clone(),
        socket_dir: work.path().to_owned(),
        init_timeout: Duration::from_secs(args.init_timeout_s),
        request_timeout: Duration::from_millis(args.request_timeout_ms),
        extra_env,
    };
    let pool = match WorkerPool::start(cfg, usize::from(args.workers), args.max_queued_requests).await {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_LOAD_FAILED);
        }
    };
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: cannot listen on {}: {e}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    let addr = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let state = Arc::new(Relay { pool, next_id: AtomicU64::new(1), max_request_bytes: args.max_request_bytes });
    let app = Router::new().fallback(relay).with_state(state);
    let shutdown = match crate::replica::shutdown_signal() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: cannot watch for signals: {e}");
            return ExitCode::FAILURE;
        }
    };
    let unix = crate::replica::loopback_unix_listener(addr);
    let stop = crate::replica::shared_stop(shutdown);
    if let Err(e) = crate::replica::announce(addr) {
        eprintln!("error: cannot write the ready line to stdout: {e}");
        return ExitCode::FAILURE;
    }
    let tcp = axum::serve(listener.tap_io(crate::http::no_delay), app.clone())
        .with_graceful_shutdown(crate::replica::stopped(stop.clone()));
    let uds = async {
        match unix {
            Some(l) => axum::serve(l, app).with_graceful_shutdown(crate::replica::stopped(stop)).await,
            None => Ok(()),
        }
    };
    match tokio::try_join!(async { tcp.await }, uds) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The scoring script to run, its app root, and more variables for its workers.
type Entry = (PathBuf, PathBuf, Vec<(String, String)>);

/// The generated scoring script for an MLflow model folder, and what it reads: the folder and its
/// `MLmodel` as JSON (the environment may lack a YAML parser).
fn mlflow_scorer(package_dir: &Path, model: &Path) -> Result<Entry, String> {
    let file = model.join("MLmodel");
    let text = std::fs::read_to_string(&file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let doc: serde_json::Value =
        serde_yaml::from_str(&text).map_err(|e| format!("{} is not valid YAML: {e}", file.display()))?;
    let script = package_dir.join("sluice_worker").join("mlflow_score.py");
    let env = vec![
        ("SLUICE_MLFLOW_MODEL_PATH".to_owned(), model.display().to_string()),
        ("SLUICE_MLFLOW_MLMODEL".to_owned(), doc.to_string()),
    ];
    Ok((script, model.to_owned(), env))
}

struct Relay {
    pool: WorkerPool,
    next_id: AtomicU64,
    max_request_bytes: usize,
}

fn message(status: StatusCode, text: &str) -> Response {
    (status, axum::Json(serde_json::json!({ "message": text }))).into_response()
}

/// Hands every request to a worker as it came, and its answer back as it is.
async fn relay(State(relay): State<Arc<Relay>>, req: Request) -> Response {
    // Health is the replica's own (its pool replaces dead workers), answered as the worker
    // would, so a probe never queues behind slow scoring requests.
    if req.uri().path() == "/" && matches!(req.method().as_str(), "GET" | "HEAD") {
        return ([(axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8")], "Healthy").into_response();
    }
    let (parts, body) = req.into_parts();
    let body: Bytes = match axum::body::to_bytes(body, relay.max_request_bytes).await {
        Ok(b) => b,
        Err(_) => return message(StatusCode::PAYLOAD_TOO_LARGE, "request body too large"),
    };
    let head = RequestHead {
        id: relay.next_id.fetch_add(1, Ordering::Relaxed),
        method: parts.method.as_str().to_owned(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().unwrap_or("").to_owned(),
        headers: parts
            .headers
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect(),
    };
    match relay.pool.call(head, body.to_vec()).await {
        Ok((head, body)) => {
            let mut r = Response::new(Body::from(body));
            *r.status_mut() = StatusCode::from_u16(head.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            for (k, v) in head.headers {
                if let (Ok(k), Ok(v)) = (HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_str(&v)) {
                    r.headers_mut().append(k, v);
                }
            }
            r
        }
        Err(e @ PoolError::Overloaded) => {
            let mut r = message(StatusCode::SERVICE_UNAVAILABLE, &e.to_string());
            r.headers_mut().insert("retry-after", HeaderValue::from_static("1"));
            r
        }
        Err(e) => message(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}
