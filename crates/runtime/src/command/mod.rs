//! The custom-container replica ("bring your own container" as a command): `sluice
//! replica-command` runs the deployment's own HTTP server as a child process, waits for its
//! readiness route, then relays the gateway's requests to it and watches its liveness route.
//!
//! ```text
//! sluice replica-command --port 5001 --scoring-path /score --readiness-path /ready \
//!     --liveness-path /live [options] -- <program> [args...]
//! ```
//!
//! - The command is told its port in `PORT` and `AML_APP_PORT`: the scoring route's port when
//!   it is free on 127.0.0.1, else a free one (so replicas of one deployment can share a
//!   machine when the command reads `$PORT`). Probe ports equal to the route's follow it.
//! - `SLUICE_REPLICA_LISTENING <addr>` is printed once the readiness route answers 2xx.
//! - `/score` (any method) goes to the scoring route, any other path to the same path on the
//!   command, `GET /` is the replica's own health.
//! - The replica exits non-zero when the command exits or fails its liveness probe
//!   `--liveness-failure-threshold` times in a row; the supervisor restarts it.
//!
//! **Invariant (DESIGN.md #1).** User code runs only in the child, never in this process.

mod child;
mod proxy;

use axum::Router;
use axum::http::Uri;
use axum::serve::ListenerExt;
use child::{ChildProcess, choose_port};
use proxy::{CommandClient, Relay};
use std::ffi::OsString;
use std::future::{Future, IntoFuture};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::pin;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How often the readiness route is polled while the command starts.
const READINESS_POLL: Duration = Duration::from_millis(200);
/// How long one probe may take (Azure's probe `timeout` default).
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the command has to stop after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

#[derive(clap::Args, Debug, Clone)]
pub struct CommandReplicaArgs {
    /// `scoring_route.port`: the port the command should listen on. It is given to the command
    /// as PORT (and AML_APP_PORT); when it is taken on 127.0.0.1, a free port is given instead.
    #[arg(long)]
    pub port: u16,
    /// `scoring_route.path`: where `/score` is relayed to.
    #[arg(long, value_name = "PATH")]
    pub scoring_path: String,
    /// `readiness_route.path`: polled until it answers 2xx before the replica reports ready.
    #[arg(long, value_name = "PATH")]
    pub readiness_path: String,
    /// `liveness_route.path`: probed every --probe-period-s once ready.
    #[arg(long, value_name = "PATH")]
    pub liveness_path: String,
    /// `readiness_route.port` (default: the scoring port; equal to --port, it follows a remap).
    #[arg(long)]
    pub readiness_port: Option<u16>,
    /// `liveness_route.port` (default: the scoring port; equal to --port, it follows a remap).
    #[arg(long)]
    pub liveness_port: Option<u16>,
    /// The command's working directory.
    #[arg(long, value_name = "DIR")]
    pub cwd: Option<PathBuf>,
    /// Where the replica itself listens.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// A request without an answer (status and headers) after this gets 408.
    #[arg(long, default_value_t = 5000)]
    pub request_timeout_ms: u64,
    /// How long the readiness route may take to answer 2xx after the command starts.
    #[arg(long, default_value_t = 600)]
    pub startup_timeout_s: u64,
    /// Seconds between liveness probes.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub probe_period_s: u64,
    /// Consecutive failed liveness probes after which the command is killed and the replica exits.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub liveness_failure_threshold: u32,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, num_args = 1.., value_name = "COMMAND")]
    pub command: Vec<OsString>,
}

/// Why a command replica stopped other than by a shutdown signal.
#[derive(Debug, thiserror::Error)]
pub enum CommandReplicaError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Spawn(String),
    #[error("the command exited with {status} before its readiness route answered")]
    ExitedBeforeReady { status: String },
    #[error(
        "the readiness route did not answer 2xx within {timeout_s} s; the command was stopped \
         (last probe: {last}){hint}"
    )]
    StartupTimeout { timeout_s: u64, last: String, hint: String },
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error("the command exited with {status}")]
    Exited { status: String },
    #[error("liveness failed {failures} times: {last}")]
    Liveness { failures: u32, last: String },
    #[error("the replica's server failed: {0}")]
    Server(std::io::Error),
}

impl CommandReplicaError {
    /// 2 for bad arguments, 3 when the command never became ready (as the other replicas exit
    /// when their model cannot be loaded), 1 for a command that died or failed after.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Invalid(_) => 2,
            Self::Spawn(_) | Self::ExitedBeforeReady { .. } | Self::StartupTimeout { .. } => 3,
            Self::Listen { .. } | Self::Exited { .. } | Self::Liveness { .. } | Self::Server(_) => 1,
        }
    }
}

/// `sluice replica-command`: runs until SIGTERM/SIGINT (exit 0) or until the command fails.
pub fn command_replica_main(args: CommandReplicaArgs) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = rt.block_on(async {
        let shutdown = match crate::replica::shutdown_signal() {
            Ok(s) => s,
            Err(e) => return Err(CommandReplicaError::Invalid(format!("cannot watch for signals: {e}"))),
        };
        run_command_replica(args, shutdown, announce).await
    });
    // Connections still open must not keep the process alive.
    rt.shutdown_timeout(Duration::from_secs(1));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn announce(addr: SocketAddr) -> std::io::Result<()> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "SLUICE_REPLICA_LISTENING {addr}")?;
    stdout.flush()
}

/// Ports and URLs, once the port is chosen.
struct Plan {
    port: u16,
    scoring_path: String,
    readiness: Uri,
    liveness: Uri,
    remapped: bool,
    /// Holds the claim on the route's port for the replica's lifetime.
    _choice: child::PortChoice,
}

fn route_path(flag: &str, path: &str) -> Result<String, CommandReplicaError> {
    let path = if path.starts_with('/') { path.to_owned() } else { format!("/{path}") };
    match path.parse::<axum::http::uri::PathAndQuery>() {
        Ok(_) => Ok(path),
        Err(e) => Err(CommandReplicaError::Invalid(format!("{flag} {path:?} is not a URL path: {e}"))),
    }
}

fn probe_uri(port: u16, path: &str) -> Result<Uri, CommandReplicaError> {
    format!("http://127.0.0.1:{port}{path}")
        .parse()
        .map_err(|e| CommandReplicaError::Invalid(format!("bad probe URL for {path}: {e}")))
}

fn plan(args: &CommandReplicaArgs) -> Result<Plan, CommandReplicaError> {
    let scoring = route_path("--scoring-path", &args.scoring_path)?;
    let readiness = route_path("--readiness-path", &args.readiness_path)?;
    let liveness = route_path("--liveness-path", &args.liveness_path)?;
    let choice = choose_port(args.port)
        .map_err(|e| CommandReplicaError::Invalid(format!("cannot find a free port on 127.0.0.1: {e}")))?;
    if !choice.remapped {
        eprintln!(
            "sluice: port {} (scoring_route) is free on 127.0.0.1; the command gets PORT={}",
            args.port, choice.port
        );
    } else if args.port == 0 {
        eprintln!("sluice: scoring_route port 0: the command gets the free port PORT={}", choice.port);
    } else {
        eprintln!(
            "sluice: port {} (scoring_route) is taken on 127.0.0.1 (another replica or program uses it); the command \
             gets PORT={} instead and must listen on $PORT",
            args.port, choice.port
        );
    }
    // A probe on the scoring route's port follows the remap; one on another port cannot.
    let follow = |p: Option<u16>| match p {
        None => choice.port,
        Some(p) if p == args.port => choice.port,
        Some(p) => p,
    };
    let (readiness_port, liveness_port) = (follow(args.readiness_port), follow(args.liveness_port));
    eprintln!(
        "sluice: scoring {scoring}, readiness {readiness} and liveness {liveness} on ports {}, {readiness_port} and \
         {liveness_port}",
        choice.port
    );
    Ok(Plan {
        port: choice.port,
        scoring_path: scoring,
        readiness: probe_uri(readiness_port, &readiness)?,
        liveness: probe_uri(liveness_port, &liveness)?,
        remapped: choice.remapped,
        _choice: choice,
    })
}

/// Polls the readiness route every [`READINESS_POLL`] until it answers 2xx; `Err` carries the
/// last probe's failure once `timeout` has passed.
async fn wait_ready(client: &CommandClient, uri: &Uri, timeout: Duration) -> Result<Duration, String> {
    let start = Instant::now();
    let deadline = start + timeout;
    let mut last = String::from("no probe finished");
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Err(last);
        }
        match proxy::probe(client, uri, PROBE_TIMEOUT.min(deadline - now)).await {
            Ok(()) => return Ok(start.elapsed()),
            Err(e) => last = e,
        }
        let now = Instant::now();
        tokio::time::sleep(READINESS_POLL.min(deadline.saturating_duration_since(now))).await;
    }
}

/// Probes the liveness route every `period`; returns once `threshold` probes in a row failed.
async fn watch_liveness(client: &CommandClient, uri: &Uri, period: Duration, threshold: u32) -> CommandReplicaError {
    let mut failures = 0;
    loop {
        tokio::time::sleep(period).await;
        match proxy::probe(client, uri, PROBE_TIMEOUT).await {
            Ok(()) => failures = 0,
            Err(last) => {
                failures += 1;
                eprintln!("sluice: liveness probe failed ({failures}/{threshold}): {last}");
                if failures >= threshold {
                    return CommandReplicaError::Liveness { failures, last };
                }
            }
        }
    }
}

/// Runs one command replica: starts the command, waits for its readiness route, listens on
/// `args.listen`, calls `on_listening` with the bound address (the binary prints the ready
/// line there), and relays requests until `shutdown` resolves (`Ok`: the command was stopped
/// with SIGTERM, then SIGKILL after 10 s) or the command fails (`Err`: it is killed).
pub async fn run_command_replica<S, L>(
    args: CommandReplicaArgs,
    shutdown: S,
    on_listening: L,
) -> Result<(), CommandReplicaError>
where
    S: Future<Output = ()> + Send,
    L: FnOnce(SocketAddr) -> std::io::Result<()> + Send,
{
    let plan = plan(&args)?;
    let mut shutdown = pin!(shutdown);
    let mut child =
        ChildProcess::spawn(&args.command, args.cwd.as_deref(), plan.port).map_err(CommandReplicaError::Spawn)?;
    eprintln!(
        "sluice: started `{}` (pid {}); waiting for {} to answer 2xx",
        args.command.iter().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" "),
        child.pid(),
        plan.readiness
    );
    let client = proxy::client();

    let startup = Duration::from_secs(args.startup_timeout_s);
    let ready = tokio::select! {
        biased;
        () = &mut shutdown => {
            let status = child.terminate(STOP_GRACE).await;
            eprintln!("sluice: stopped before ready; the command exited with {status}");
            return Ok(());
        }
        status = child.wait() => return Err(CommandReplicaError::ExitedBeforeReady { status }),
        ready = wait_ready(&client, &plan.readiness, startup) => ready,
    };
    match ready {
        Ok(after) => eprintln!("sluice: the command is ready after {:.1} s", after.as_secs_f64()),
        Err(last) => {
            let _ = child.kill().await;
            let hint = if plan.remapped {
                format!(
                    "; the route's port {} was taken, so the command was told PORT={}: a command that ignores $PORT \
                     cannot run next to another replica",
                    args.port, plan.port
                )
            } else {
                String::new()
            };
            return Err(CommandReplicaError::StartupTimeout { timeout_s: args.startup_timeout_s, last, hint });
        }
    }

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|source| CommandReplicaError::Listen { addr: args.listen, source })?;
    let addr = listener.local_addr().map_err(CommandReplicaError::Server)?;
    let relay = Arc::new(Relay {
        client: client.clone(),
        base: format!("http://127.0.0.1:{}", plan.port),
        scoring_path: plan.scoring_path.clone(),
        request_timeout: Duration::from_millis(args.request_timeout_ms),
        running: AtomicBool::new(true),
    });
    let app = Router::new().fallback(proxy::relay).with_state(relay.clone());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = axum::serve(listener.tap_io(crate::http::no_delay), app)
        .with_graceful_shutdown(async move {
            let _ = stop_rx.await;
        })
        .into_future();
    let mut server = pin!(server);
    on_listening(addr).map_err(CommandReplicaError::Server)?;

    let period = Duration::from_secs(args.probe_period_s);
    let failed = tokio::select! {
        biased;
        () = &mut shutdown => None,
        status = child.wait() => Some(CommandReplicaError::Exited { status }),
        e = watch_liveness(&client, &plan.liveness, period, args.liveness_failure_threshold) => Some(e),
        r = &mut server => Some(CommandReplicaError::Server(
            r.err().unwrap_or_else(|| std::io::Error::other("the server stopped"))
        )),
    };
    relay.running.store(false, Ordering::Relaxed);
    let _ = stop_tx.send(());
    if let Some(e) = failed {
        let status = child.kill().await;
        if matches!(e, CommandReplicaError::Liveness { .. }) {
            eprintln!("sluice: killed the command ({status})");
        }
        return Err(e);
    }
    // Stop accepting, let in-flight requests finish while the command stops (a server that
    // handles SIGTERM finishes them), and give them a moment after it is gone.
    eprintln!("sluice: stopping the command (SIGTERM, then SIGKILL after {} s)", STOP_GRACE.as_secs());
    let (status, _) = tokio::join!(child.terminate(STOP_GRACE), async {
        let _ = tokio::time::timeout(STOP_GRACE + Duration::from_secs(1), &mut server).await;
    });
    eprintln!("sluice: the command exited with {status}");
    Ok(())
}
