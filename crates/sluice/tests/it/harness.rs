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
        let mut child = Command::new(BIN)
            .arg("server")
            .args(["--addr", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .env_remove("SLUICE_ADDR")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
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
        sluice_client::SluiceClient::new(&self.url, Some(self.admin_token()))
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

    /// `kill -9`, as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
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

/// Deploys the iris example (model, key endpoint, blue deployment with all traffic) via the CLI.
pub fn deploy_iris(server: &Server) {
    server.cli_ok(&["model", "create", "--name", "iris", "--version", "1", "--type", "triton_model", "--path", "examples/iris/model_repository"]);
    server.cli_ok(&["online-endpoint", "create", "--file", "examples/iris/endpoint.yml"]);
    server.cli_ok(&["online-deployment", "create", "--file", "examples/iris/blue-deployment.yml", "--all-traffic"]);
}

pub fn http() -> reqwest::Client {
    reqwest::Client::new()
}
