//! Starts the real `sluice` binary on 127.0.0.1:0 with a fresh data directory, and runs the
//! real CLI against it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_sluice");

/// The repository root, where `examples/` lives.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("repository root")
}

pub struct Server {
    pub child: Child,
    pub url: String,
    pub data_dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

impl Server {
    /// A server on a fresh data directory.
    pub fn start() -> Self {
        let tmp = tempfile::tempdir().expect("temp dir");
        let data = tmp.path().join("data");
        let mut s = Self::start_on(&data, &[]);
        s._tmp = Some(tmp);
        s
    }

    /// A server on `data_dir` (kept by the caller), with extra `server` flags.
    pub fn start_on(data_dir: &Path, extra: &[&str]) -> Self {
        Self::start_with_env(data_dir, extra, &[])
    }

    /// [`Self::start_on`] with more environment variables for the server.
    pub fn start_with_env(data_dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Self {
        // The server's log goes next to its data directory, to read when a test fails.
        std::fs::create_dir_all(data_dir).expect("data dir");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(data_dir.with_extension("log"))
            .expect("server log file");
        let mut child = Command::new(BIN)
            .arg("server")
            .args(["--addr", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .envs(env.iter().copied())
            .env_remove("SLUICE_ADDR")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start sluice server");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("SLUICE_LISTENING ") {
                    let _ = tx.send(url.to_owned());
                }
            }
        });
        let url = rx.recv_timeout(Duration::from_secs(120)).expect("server printed SLUICE_LISTENING");
        Self { child, url, data_dir: data_dir.to_owned(), _tmp: None }
    }

    pub fn admin_token(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("admin-token")).expect("admin-token").trim().to_owned()
    }

    pub fn client(&self) -> sluice_client::SluiceClient {
        sluice_client::SluiceClient::new(&self.url, Some(self.admin_token())).expect("client")
    }

    /// Runs `sluice <args>` as a user on the same machine would: it finds the server and the
    /// credential from the environment and the data directory.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .current_dir(repo())
            .env("SLUICE_SERVER", &self.url)
            .env("SLUICE_DATA_DIR", &self.data_dir)
            .env_remove("SLUICE_TOKEN")
            .stdin(Stdio::null())
            .output()
            .expect("run sluice CLI")
    }

    /// Like [`Self::cli`], panicking with the CLI's stderr when it fails.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(out.status.success(), "sluice {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).expect("utf-8 output")
    }

    /// The server process's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `kill -9`, as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        // SIGTERM first so replicas are stopped cleanly; SIGKILL if it lingers.
        let _ = Command::new("kill").arg(self.child.id().to_string()).status();
        for _ in 0..100 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Registers the iris example's model repository as `iris:1`.
pub fn register_iris(server: &Server) {
    server.cli_ok(&[
        "model",
        "create",
        "--name",
        "iris",
        "--version",
        "1",
        "--type",
        "triton_model",
        "--path",
        "examples/iris/model_repository",
    ]);
}

/// `online-deployment show` of iris-ep's blue deployment, as JSON.
pub fn show_blue(server: &Server) -> serde_json::Value {
    let out = server.cli_ok(&["online-deployment", "show", "--name", "blue", "--endpoint-name", "iris-ep"]);
    serde_json::from_str(&out).expect("deployment JSON")
}

/// Deploys the iris example (model, key endpoint, blue deployment with all traffic) via the CLI.
pub fn deploy_iris(server: &Server) {
    register_iris(server);
    server.cli_ok(&["online-endpoint", "create", "--file", "examples/iris/endpoint.yml"]);
    server.cli_ok(&["online-deployment", "create", "--file", "examples/iris/blue-deployment.yml", "--all-traffic"]);
}

pub fn http() -> reqwest::Client {
    reqwest::Client::new()
}

/// The primary key of a key-auth endpoint, via the CLI.
pub fn primary_key(server: &Server, endpoint: &str) -> String {
    let out = server.cli_ok(&["online-endpoint", "get-credentials", "--name", endpoint]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("credentials JSON");
    v["primaryKey"].as_str().expect("primaryKey").to_owned()
}

/// POSTs a JSON body to the data plane.
pub async fn post_json(url: &str, bearer: Option<&str>, body: &[u8]) -> (u16, String) {
    let mut req = http().post(url).header("content-type", "application/json").body(body.to_vec());
    if let Some(b) = bearer {
        req = req.header("authorization", format!("Bearer {b}"));
    }
    let resp = req.send().await.expect("data plane reachable");
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap_or_default())
}

/// Polls until `url` answers 200 (replicas take a moment after a restart).
pub async fn wait_for_200(url: &str, bearer: &str, body: &[u8]) -> (u16, String) {
    let mut last = (0, String::new());
    for _ in 0..240 {
        last = post_json(url, Some(bearer), body).await;
        if last.0 == 200 {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    last
}

/// The Python with tritonclient and onnxruntime: `SLUICE_TEST_PYTHON` (set by scripts/test.sh),
/// else the venv that scripts/python-env.sh creates or reuses.
pub fn test_python() -> PathBuf {
    if let Some(p) = std::env::var_os("SLUICE_TEST_PYTHON") {
        return p.into();
    }
    let out =
        Command::new("bash").arg(repo().join("scripts/python-env.sh")).output().expect("run scripts/python-env.sh");
    assert!(out.status.success(), "python-env.sh failed: {}", String::from_utf8_lossy(&out.stderr));
    let venv = String::from_utf8_lossy(&out.stdout).lines().last().expect("venv path").trim().to_owned();
    PathBuf::from(venv).join("bin/python")
}

/// Pids of live processes whose command line holds `marker` and this server's data directory.
pub fn pids_matching(server: &Server, marker: &str) -> Vec<u32> {
    pids_in(&server.data_dir, marker)
}

/// Pids of live processes whose command line holds `marker` and `data_dir`.
pub fn pids_in(data_dir: &Path, marker: &str) -> Vec<u32> {
    let needle = data_dir.to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|e| {
            let e = e.ok()?;
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let cmdline = String::from_utf8_lossy(&std::fs::read(e.path().join("cmdline")).ok()?).replace('\0', " ");
            (cmdline.contains(marker) && cmdline.contains(&needle)).then_some(pid)
        })
        .collect()
}

/// Pids of live `sluice replica` processes serving models from this server's data directory.
pub fn replica_pids(server: &Server) -> Vec<u32> {
    pids_matching(server, " replica ")
}

/// Fetches `/swagger.json?version=V` of an endpoint with its key and checks the document with the
/// `openapi-spec-validator` package; returns it.
pub async fn valid_swagger(server: &Server, endpoint: &str, key: &str, version: &str) -> serde_json::Value {
    let resp = http()
        .get(format!("{}/endpoints/{endpoint}/swagger.json?version={version}", server.url))
        .header("authorization", format!("Bearer {key}"))
        .send()
        .await
        .expect("data plane reachable");
    assert_eq!(resp.status().as_u16(), 200, "swagger.json?version={version}");
    let doc: serde_json::Value = resp.json().await.expect("swagger JSON");
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), doc.to_string()).unwrap();
    let out = Command::new(test_python())
        .args([
            "-c",
            "import json, sys\nfrom openapi_spec_validator import validate\nvalidate(json.load(open(sys.argv[1])))",
        ])
        .arg(file.path())
        .output()
        .expect("run openapi-spec-validator");
    assert!(
        out.status.success(),
        "{endpoint} swagger v{version} is not valid:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    doc
}
