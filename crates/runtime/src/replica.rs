//! `sluice replica`: the process that loads models, prints its address once ready, and serves until SIGTERM.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use crate::error::RuntimeError;
use crate::http::{AppState, ServerConfig, serve};
use crate::model::{LoadOptions, ModelFormat, ModelSet, load_models};
use crate::ort_lib::{init_onnxruntime, locate_or_provision_onnxruntime};
use crate::pool::PoolConfig;

/// The line the supervisor waits for on stdout; the bound address follows it.
pub const READY_LINE_PREFIX: &str = "SLUICE_REPLICA_LISTENING";

/// Exit code when the models or ONNX Runtime cannot be loaded (fix the model, do not just restart).
pub const EXIT_LOAD_FAILED: u8 = 3;
/// Exit code when the server cannot start or fails after loading (socket, runtime).
pub const EXIT_SERVER_FAILED: u8 = 1;

/// Arguments of `sluice replica`.
#[derive(Debug, Clone, clap::Args)]
pub struct ReplicaArgs {
    /// A Triton model repository (`--format triton`) or an MLflow model folder (`--format mlflow`).
    #[arg(long, value_name = "PATH")]
    pub model_dir: PathBuf,
    /// How the model folder is laid out.
    #[arg(long, value_enum)]
    pub format: ModelFormat,
    /// Address to listen on; port 0 picks a free port (printed on the ready line).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// The ONNX Runtime library (libonnxruntime.so.1.31.1); found or downloaded into the cache when absent.
    #[arg(long, value_name = "PATH", env = "ORT_DYLIB_PATH")]
    pub onnxruntime: Option<PathBuf>,
    /// Where a downloaded ONNX Runtime is kept (default: $HOME/.cache/sluice).
    #[arg(long, value_name = "PATH", env = "SLUICE_CACHE")]
    pub cache_dir: Option<PathBuf>,
    /// ONNX Runtime threads inside one inference.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    pub intra_op_threads: u16,
    /// Size of the dedicated inference thread pool (each model gets one session per thread).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    pub inference_threads: u16,
    /// Inference requests that may wait for a thread before more are refused with 503.
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub max_queued_requests: usize,
    /// Largest accepted request body; larger ones get 413.
    #[arg(long, value_name = "BYTES", default_value_t = 100 * 1024 * 1024)]
    pub max_request_bytes: usize,
    /// The model's name for `--format mlflow` (default: the folder's name).
    #[arg(long, value_name = "NAME")]
    pub model_name: Option<String>,
}

/// Runs a replica to completion: loads every model, binds, prints `SLUICE_REPLICA_LISTENING <addr>`, and serves
/// until SIGTERM or SIGINT, after which in-flight requests finish and it exits 0. Load failures exit 3.
pub fn replica_main(args: ReplicaArgs) -> ExitCode {
    // Loading is blocking work (pip, file reads, session creation), done before any async runtime exists.
    let models = match load(&args) {
        Ok(models) => models,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_LOAD_FAILED);
        }
    };
    for model in models.iter() {
        tracing::info!(model = %model.info.name, version = %model.info.version, source = %model.info.source.display(), "model loaded");
    }
    let config = ServerConfig {
        max_request_bytes: args.max_request_bytes,
        pool: PoolConfig {
            threads: usize::from(args.inference_threads),
            queue_capacity: args.max_queued_requests,
            ..PoolConfig::default()
        },
    };
    match run_server(models, config, args.listen) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_SERVER_FAILED)
        }
    }
}

fn load(args: &ReplicaArgs) -> Result<ModelSet, RuntimeError> {
    let library = match &args.onnxruntime {
        Some(path) => path.clone(),
        None => locate_or_provision_onnxruntime(&default_cache_dir(args.cache_dir.clone()))?,
    };
    let env = init_onnxruntime(&library)?;
    if !args.model_dir.exists() {
        return Err(RuntimeError::ModelLayout {
            message: format!("the model folder {} does not exist", args.model_dir.display()),
        });
    }
    let options = LoadOptions {
        intra_op_threads: usize::from(args.intra_op_threads),
        sessions_per_model: usize::from(args.inference_threads),
        model_name: args.model_name.clone(),
    };
    load_models(args.format, &args.model_dir, &env, &options)
}

/// `$SLUICE_CACHE`, else `$HOME/.cache/sluice`, else `./.sluice-cache`.
pub fn default_cache_dir(explicit: Option<PathBuf>) -> PathBuf {
    explicit
        .or_else(|| std::env::var_os("SLUICE_CACHE").map(PathBuf::from))
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache").join("sluice")))
        .unwrap_or_else(|| PathBuf::from(".sluice-cache"))
}

fn run_server(models: ModelSet, config: ServerConfig, listen: SocketAddr) -> Result<(), RuntimeError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("sluice-replica")
        .build()
        .map_err(|e| RuntimeError::io("cannot start the async runtime", e))?;
    let state = AppState::new(models, config).map_err(|e| RuntimeError::io("cannot start the inference threads", e))?;
    let served = Arc::clone(&state);
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| RuntimeError::io(format!("cannot listen on {listen}"), e))?;
        let shutdown = shutdown_signal().map_err(|e| RuntimeError::io("cannot install the SIGTERM handler", e))?;
        let address = listener.local_addr().map_err(|e| RuntimeError::io("cannot read the bound address", e))?;
        let unix = loopback_unix_listener(address);
        let mux = loopback_mux_listener(address);
        let stop = shared_stop(shutdown);
        announce(address).map_err(|e| RuntimeError::io("cannot write the ready line to stdout", e))?;
        let tcp = serve(listener, Arc::clone(&served), stopped(stop.clone()));
        let (uds_app, uds_stop) = (crate::http::app(Arc::clone(&served)), stopped(stop.clone()));
        let uds = async {
            match unix {
                Some(l) => {
                    axum::serve(l, axum::ServiceExt::into_make_service(uds_app)).with_graceful_shutdown(uds_stop).await
                }
                None => Ok(()),
            }
        };
        let multiplexed = async {
            match mux {
                Some(l) => sluice_net::mux::serve(l, crate::http::app(served), stopped(stop)).await,
                None => Ok(()),
            }
        };
        tokio::try_join!(tcp, uds, multiplexed).map(|_| ()).map_err(|e| RuntimeError::io("the server failed", e))
    })?;
    drop(runtime);
    // All connections are closed, so this is the last reference: let the workers drain and join them.
    if let Ok(state) = Arc::try_unwrap(state) {
        state.pool.shutdown();
    }
    tracing::info!("replica stopped");
    Ok(())
}

/// On loopback, the Unix socket of the port the replica listens on (the same routes, for the gateway on this
/// machine); elsewhere none.
pub(crate) fn loopback_unix_listener(address: SocketAddr) -> Option<sluice_net::QuietUnixListener> {
    let name = sluice_domain::replica_socket_name(address.port());
    bind_loopback_socket(address, &name, "cannot listen on the replica's Unix socket; serving on TCP only")
        .map(sluice_net::QuietUnixListener)
}

/// On loopback, the socket on which the gateway sends many requests at once on one connection
/// (`sluice_net::mux`, `sluice_domain::replica_mux_socket_name`); elsewhere none: the gateway then uses
/// [`loopback_unix_listener`]'s socket.
fn loopback_mux_listener(address: SocketAddr) -> Option<tokio::net::UnixListener> {
    let name = sluice_domain::replica_mux_socket_name(address.port());
    bind_loopback_socket(address, &name, "cannot listen on the replica's multiplexed socket")
}

/// A stop several servers wait on (see [`stopped`]): set once `shutdown` resolves. Must be called inside a tokio
/// runtime.
pub(crate) fn shared_stop(
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> tokio::sync::watch::Receiver<bool> {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop.send(true);
    });
    stopped
}

/// Resolves when the stop from [`shared_stop`] is set.
pub(crate) async fn stopped(mut stop: tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Binds the abstract Unix socket `name` for a replica listening on `address`, when that is loopback (see
/// `sluice_domain::replica_socket_name`); `None`, with the warning `failed`, when it cannot be bound: the gateway
/// then falls back to the replica's other ways in.
fn bind_loopback_socket(address: SocketAddr, name: &str, failed: &str) -> Option<tokio::net::UnixListener> {
    if !cfg!(target_os = "linux") || !address.ip().is_loopback() {
        return None;
    }
    tokio::net::UnixListener::bind(name)
        .inspect_err(|e| tracing::warn!(port = address.port(), error = %e, "{failed}"))
        .ok()
}

/// Says the replica is ready: first gives its start-up code back to the page cache (loading is done;
/// see [`crate::memory`]), then prints `SLUICE_REPLICA_LISTENING <address>`.
pub(crate) fn announce(address: impl std::fmt::Display) -> std::io::Result<()> {
    let released = crate::memory::release_code_pages();
    tracing::debug!(mappings = released.mappings, bytes = released.bytes, "start-up code pages released");
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{READY_LINE_PREFIX} {address}")?;
    stdout.flush()
}

/// Registers for SIGTERM and SIGINT now (so a signal that arrives right after the ready line is not lost) and
/// returns a future that resolves on the first of them. Must be called inside a tokio runtime.
pub fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminate = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        Ok(async move {
            tokio::select! {
                _ = terminate.recv() => tracing::info!("SIGTERM received; finishing in-flight requests"),
                _ = interrupt.recv() => tracing::info!("SIGINT received; finishing in-flight requests"),
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}
