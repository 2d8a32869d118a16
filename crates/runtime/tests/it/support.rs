//! Test support: ONNX Runtime, example model paths, and an in-process replica server.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use ort::environment::Environment;
use serde_json::Value;
use sluice_runtime::model::{LoadOptions, ModelFormat, ModelSet, load_models};
use sluice_runtime::pool::PoolConfig;
use sluice_runtime::replica::default_cache_dir;
use sluice_runtime::{AppState, ServerConfig, init_onnxruntime, locate_or_provision_onnxruntime, serve};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The workspace root, where `examples/` and `testdata/` live.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn example(relative: &str) -> PathBuf {
    repo_root().join(relative)
}

pub fn read_json(relative: &str) -> Value {
    let path = example(relative);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// The process-wide ONNX Runtime environment, from `$SLUICE_CACHE` or `$HOME/.cache/sluice`.
pub fn ort_env() -> Environment {
    let library = locate_or_provision_onnxruntime(&default_cache_dir(None)).expect("ONNX Runtime library");
    init_onnxruntime(&library).expect("ONNX Runtime loads")
}

pub fn load(format: ModelFormat, dir: &Path, options: &LoadOptions) -> Result<ModelSet, sluice_runtime::RuntimeError> {
    load_models(format, dir, &ort_env(), options)
}

/// A replica serving in the test's runtime; stopped gracefully on `stop` (or abruptly on drop).
pub struct TestServer {
    pub address: SocketAddr,
    pub client: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    pub async fn start(format: ModelFormat, dir: &str) -> Self {
        Self::start_with(format, dir, ServerConfig::default()).await
    }

    pub async fn start_with(format: ModelFormat, dir: &str, config: ServerConfig) -> Self {
        let dir = example(dir);
        let options = LoadOptions { sessions_per_model: config.pool.threads, ..LoadOptions::default() };
        let models = tokio::task::spawn_blocking(move || load(format, &dir, &options))
            .await
            .expect("load task")
            .expect("models load");
        let state = AppState::new(models, config).expect("inference pool starts");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("local address");
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, state, async {
            let _ = rx.await;
        }));
        Self { address, client: reqwest::Client::new(), shutdown: Some(tx), task: Some(task) }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let response = self.client.get(self.url(path)).send().await.expect("GET");
        decode(response).await
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        let response = self.client.post(self.url(path)).json(body).send().await.expect("POST");
        decode(response).await
    }

    /// Stops accepting, lets in-flight requests finish, and waits for the server task.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("server task").expect("server ran cleanly");
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

pub async fn decode(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, value)
}

/// Asserts two JSON values are equal, comparing floats to a relative 1e-6.
pub fn assert_json_close(actual: &Value, expected: &Value, path: &str) {
    match (actual, expected) {
        (Value::Number(a), Value::Number(e)) => {
            let (a, e) = (a.as_f64().unwrap_or(f64::NAN), e.as_f64().unwrap_or(f64::NAN));
            assert!((a - e).abs() <= 1e-6 * e.abs().max(1e-3), "{path}: {a} != {e}");
        }
        (Value::Array(a), Value::Array(e)) => {
            assert_eq!(a.len(), e.len(), "{path}: length");
            for (i, (x, y)) in a.iter().zip(e).enumerate() {
                assert_json_close(x, y, &format!("{path}[{i}]"));
            }
        }
        (Value::Object(a), Value::Object(e)) => {
            for (k, v) in e {
                let x = a.get(k).unwrap_or_else(|| panic!("{path}.{k} missing in {actual}"));
                assert_json_close(x, v, &format!("{path}.{k}"));
            }
        }
        _ => assert_eq!(actual, expected, "{path}"),
    }
}

/// A pool with two workers, to exercise one-session-per-worker.
pub fn two_workers() -> ServerConfig {
    ServerConfig {
        pool: PoolConfig { threads: 2, queue_capacity: 64, ..PoolConfig::default() },
        ..ServerConfig::default()
    }
}
