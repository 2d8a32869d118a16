//! `sluice replica-command` against a real child: `fixtures/byoc_server.py`, a standard-library
//! HTTP server that listens on $PORT, is ready after READY_AFTER_S seconds and can be told to
//! fail its liveness route, exit, hang or drop a connection.

use clap::Parser;
use serde_json::{Value, json};
use sluice_runtime::{CommandReplicaArgs, CommandReplicaError, run_command_replica};
use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: CommandReplicaArgs,
}

fn fixture() -> String {
    format!("{}/tests/fixtures/byoc_server.py", env!("CARGO_MANIFEST_DIR"))
}

/// The arguments as the server would write them, the command after `--`.
fn args(port: u16, options: &[&str], command: &[&str]) -> CommandReplicaArgs {
    let port = port.to_string();
    let mut argv = vec![
        "replica-command",
        "--port",
        &port,
        "--scoring-path",
        "/v1/models/echo:predict",
        "--readiness-path",
        "/ready",
        "--liveness-path",
        "/live",
    ];
    argv.extend_from_slice(options);
    argv.push("--");
    argv.extend_from_slice(command);
    Cli::try_parse_from(argv).expect("arguments parse").args
}

fn byoc(port: u16, options: &[&str]) -> CommandReplicaArgs {
    let script = fixture();
    args(port, options, &["python3", "-u", &script])
}

/// A port nothing listens on right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

struct Replica {
    addr: SocketAddr,
    started: Instant,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), CommandReplicaError>>,
    http: reqwest::Client,
}

enum Start {
    Listening(Replica),
    Failed(CommandReplicaError),
}

async fn start(args: CommandReplicaArgs) -> Start {
    let started = Instant::now();
    let (addr_tx, addr_rx) = oneshot::channel();
    let (stop, stop_rx) = oneshot::channel::<()>();
    let mut task = tokio::spawn(run_command_replica(
        args,
        async move {
            let _ = stop_rx.await;
        },
        move |addr| {
            let _ = addr_tx.send(addr);
            Ok(())
        },
    ));
    let addr = tokio::select! {
        addr = addr_rx => addr.ok(),
        outcome = &mut task => return ended_early(outcome),
    };
    match addr {
        Some(addr) => Start::Listening(Replica { addr, started, stop: Some(stop), task, http: reqwest::Client::new() }),
        // The callback was dropped unused: the replica is failing.
        None => ended_early(task.await),
    }
}

fn ended_early(outcome: Result<Result<(), CommandReplicaError>, tokio::task::JoinError>) -> Start {
    match outcome.expect("replica task") {
        Ok(()) => panic!("the replica stopped without being asked"),
        Err(e) => Start::Failed(e),
    }
}

async fn listening(args: CommandReplicaArgs) -> Replica {
    match start(args).await {
        Start::Listening(r) => r,
        Start::Failed(e) => panic!("the replica failed to start: {e}"),
    }
}

async fn failed(args: CommandReplicaArgs) -> CommandReplicaError {
    match tokio::time::timeout(Duration::from_secs(30), start(args)).await.expect("the replica ended in time") {
        Start::Listening(r) => panic!("the replica started at {}", r.addr),
        Start::Failed(e) => e,
    }
}

impl Replica {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let response = self.http.get(self.url(path)).send().await.expect("GET");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let response = self.http.post(self.url(path)).header("x-test", "abc").json(body).send().await.expect("POST");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Waits for the replica to end by itself.
    async fn ended(self, within: Duration) -> Result<(), CommandReplicaError> {
        let _keep_running = self.stop;
        tokio::time::timeout(within, self.task).await.expect("the replica ended in time").expect("replica task")
    }

    async fn shutdown(mut self) {
        let _ = self.stop.take().expect("not stopped").send(());
        let outcome = tokio::time::timeout(Duration::from_secs(15), self.task).await;
        outcome.expect("the replica stopped in time").expect("replica task").expect("a clean stop");
    }
}

/// Whether anything still answers on `port`.
async fn answers(port: u16) -> bool {
    tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok()
}

#[tokio::test]
async fn waits_for_readiness_then_relays_score_and_other_paths() {
    let port = free_port();
    let replica = listening(byoc(port, &[])).await;
    // The fixture is ready one second after it starts.
    let waited = replica.started.elapsed();
    assert!(waited >= Duration::from_millis(900), "reported ready after {waited:?}");

    let (status, body) = replica.post("/score?verbose=1", &json!({"data": [1, 2]})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["echo"], json!({"data": [1, 2], "scored": true}));
    assert_eq!(body["path"], "/v1/models/echo:predict");
    assert_eq!(body["query"], "verbose=1");
    assert_eq!(body["method"], "POST");
    assert_eq!(body["x_test"], "abc");
    assert_eq!(body["port"], port, "the free route port is kept");

    // Any method reaches the scoring route.
    let (status, body) = replica.get("/score").await;
    assert_eq!((status, &body["method"], &body["echo"]), (200, &json!("GET"), &Value::Null));

    // Other paths go to the same path; the command's headers come back.
    let response = replica.http.get(replica.url("/v2/health/ready")).send().await.expect("GET");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-byoc"], "yes");
    assert_eq!(response.json::<Value>().await.expect("json"), json!({"ready": true}));
    let (status, body) = replica.get("/nowhere").await;
    assert_eq!((status, body), (404, json!({"error": "no route /nowhere"})));

    // The replica's own health.
    let response = replica.http.get(replica.url("/")).send().await.expect("GET /");
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.expect("text"), "Healthy");

    replica.shutdown().await;
    assert!(!answers(port).await, "the command was stopped with the replica");
}

#[tokio::test]
async fn a_taken_port_is_remapped_and_probes_follow() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let p = port.to_string();
    let replica = listening(byoc(port, &["--readiness-port", &p, "--liveness-port", &p])).await;
    let (status, body) = replica.post("/score", &json!({"x": 1})).await;
    assert_eq!(status, 200, "{body}");
    let got = u16::try_from(body["port"].as_u64().expect("port")).expect("u16");
    assert_ne!(got, port, "the command was given another port");
    assert_eq!(body["echo"], json!({"x": 1, "scored": true}));
    replica.shutdown().await;
    assert!(!answers(got).await);
    drop(taken);
}

#[tokio::test]
async fn a_command_that_exits_before_ready_fails_the_replica() {
    let e = failed(args(free_port(), &[], &["python3", "-c", "import sys; sys.exit(4)"])).await;
    assert!(matches!(e, CommandReplicaError::ExitedBeforeReady { .. }), "{e:?}");
    assert!(e.to_string().contains("exit status: 4"), "{e}");
    assert_ne!(e.exit_code(), 0);
}

#[tokio::test]
async fn a_command_that_never_gets_ready_is_stopped() {
    let port = free_port();
    let script = fixture();
    let started = Instant::now();
    // `env` sets the fixture's delay without touching this process's environment.
    let e = failed(args(port, &["--startup-timeout-s", "1"], &["env", "READY_AFTER_S=100", "python3", "-u", &script]))
        .await;
    assert!(matches!(e, CommandReplicaError::StartupTimeout { .. }), "{e:?}");
    assert!(e.to_string().contains("503"), "the last probe's answer is named: {e}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(!answers(port).await, "the command was killed");
}

#[tokio::test]
async fn a_missing_program_fails_to_start() {
    let e = failed(args(free_port(), &[], &["/nonexistent/byoc-server"])).await;
    assert!(matches!(e, CommandReplicaError::Spawn(_)), "{e:?}");
    assert!(e.to_string().contains("/nonexistent/byoc-server"), "{e}");
}

#[tokio::test]
async fn the_command_exiting_ends_the_replica() {
    let replica = listening(byoc(free_port(), &[])).await;
    let (status, body) = replica.post("/exit", &json!({})).await;
    assert_eq!((status, body), (200, json!({"exiting": 7})));
    let e = replica.ended(Duration::from_secs(10)).await.expect_err("the replica fails");
    assert!(matches!(e, CommandReplicaError::Exited { .. }), "{e:?}");
    assert!(e.to_string().contains("exit status: 7"), "{e}");
    assert_ne!(e.exit_code(), 0);
}

#[tokio::test]
async fn a_slow_answer_gets_408_and_a_dropped_connection_502() {
    let replica = listening(byoc(free_port(), &["--request-timeout-ms", "300"])).await;
    let started = Instant::now();
    let (status, body) = replica.get("/slow?s=2").await;
    assert_eq!(status, 408, "{body}");
    assert!(body["message"].as_str().expect("message").contains("300 ms"), "{body}");
    assert!(started.elapsed() < Duration::from_millis(1900), "the 408 came before the answer");

    let (status, body) = replica.get("/drop").await;
    assert_eq!(status, 502, "{body}");
    assert!(body["message"].as_str().expect("message").starts_with("cannot reach the container"), "{body}");

    // The replica still serves.
    assert_eq!(replica.get("/slow?s=0").await, (200, json!({"slept": 0.0})));
    replica.shutdown().await;
}

#[tokio::test]
async fn failing_liveness_kills_the_command_and_ends_the_replica() {
    let port = free_port();
    let replica = listening(byoc(port, &["--probe-period-s", "1", "--liveness-failure-threshold", "2"])).await;
    assert_eq!(replica.post("/admin/sick", &json!({})).await, (200, json!({"sick": true})));
    let e = replica.ended(Duration::from_secs(10)).await.expect_err("the replica fails");
    match &e {
        CommandReplicaError::Liveness { failures, last } => {
            assert_eq!(*failures, 2);
            assert!(last.contains("500"), "{last}");
        }
        other => panic!("{other:?}"),
    }
    assert!(e.to_string().starts_with("liveness failed 2 times: "), "{e}");
    assert_ne!(e.exit_code(), 0);
    assert!(!answers(port).await, "the command was killed");
}

#[tokio::test]
async fn liveness_on_another_port_is_not_remapped() {
    // A liveness port nothing listens on fails however the scoring port is chosen.
    let dead = free_port().to_string();
    let replica = listening(byoc(
        free_port(),
        &["--liveness-port", &dead, "--probe-period-s", "1", "--liveness-failure-threshold", "1"],
    ))
    .await;
    let e = replica.ended(Duration::from_secs(10)).await.expect_err("the replica fails");
    assert!(e.to_string().contains(&format!("127.0.0.1:{dead}/live")), "{e}");
}
