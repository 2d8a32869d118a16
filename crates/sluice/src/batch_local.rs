//! `sluice batch-deployment run --local`: starts a private server (this binary, a temporary data
//! directory, a loopback port, its log in that directory) for one batch run, drives it with the
//! CLI's client, stops it and removes the directory. Built environments are kept between runs in
//! the cache (`<cache>/local-batch-envs`, linked in as the server's `envs/`), so a conda file is
//! built once.

use sluice_cli::{BatchRunArgs, OutputFormat};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::Duration;

/// How long the private server may take to start (it may provision ONNX Runtime on first use).
const START_TIMEOUT: Duration = Duration::from_secs(180);

pub fn main(args: BatchRunArgs, output: OutputFormat) -> ExitCode {
    if let Err(e) = sluice_cli::check_local(&args) {
        eprintln!("{e}");
        return ExitCode::from(1);
    }
    let dir = std::env::temp_dir().join(format!("sluice-batch-local-{}-{}", std::process::id(), uuid::Uuid::new_v4()));
    let code = match run(&dir, args, output) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    };
    let _ = std::fs::remove_dir_all(&dir);
    code
}

fn run(dir: &Path, args: BatchRunArgs, output: OutputFormat) -> Result<ExitCode, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let cache = crate::config::cache_dir(
        std::env::var_os("SLUICE_CACHE").map(Into::into),
        std::env::var_os("HOME").map(Into::into),
    );
    let envs = cache.join("local-batch-envs");
    if std::fs::create_dir_all(&envs).is_ok() {
        let _ = std::os::unix::fs::symlink(&envs, dir.join("envs"));
    }
    let mut server = start_server(dir, &args)?;
    let (url, token) = match wait_ready(dir, &mut server) {
        Ok(ready) => ready,
        Err(e) => {
            stop(&mut server);
            return Err(e);
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    let code = rt.block_on(async {
        tokio::select! {
            code = sluice_cli::run_local(&url, token, output, args) => code,
            _ = tokio::signal::ctrl_c() => {
                eprintln!("interrupted: stopping the run");
                ExitCode::from(130)
            }
        }
    });
    stop(&mut server);
    Ok(code)
}

fn start_server(dir: &Path, args: &BatchRunArgs) -> Result<Child, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the sluice binary: {e}"))?;
    let log =
        std::fs::File::create(dir.join("server.log")).map_err(|e| format!("cannot create the server log: {e}"))?;
    let mut cmd = Command::new(exe);
    cmd.arg("--data-dir").arg(dir).args(["server", "--addr", "127.0.0.1:0"]).arg("--python").arg(&args.python);
    if let Some(n) = args.workers {
        cmd.args(["--batch-workers", &n.to_string()]);
    }
    cmd.env_remove("SLUICE_CONFIG")
        .env_remove("SLUICE_PUBLIC_URL")
        .env_remove("SLUICE_ADDR")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("cannot start the private server: {e}"))
}

/// Reads the server's `SLUICE_LISTENING` line and its admin token.
fn wait_ready(dir: &Path, server: &mut Child) -> Result<(String, String), String> {
    let stdout = server.stdout.take().ok_or("the private server has no stdout")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("SLUICE_LISTENING ") {
                let _ = tx.send(url.to_owned());
            }
        }
    });
    let url = rx.recv_timeout(START_TIMEOUT).map_err(|_| {
        let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(20).collect::<Vec<_>>().into_iter().rev().collect();
        format!("the private server did not start:\n{}", tail.join("\n"))
    })?;
    let token = std::fs::read_to_string(dir.join("admin-token"))
        .map_err(|e| format!("cannot read the private server's token: {e}"))?
        .trim()
        .to_owned();
    Ok((url, token))
}

/// SIGTERM (the server stops its workers), then SIGKILL after 10 s.
fn stop(server: &mut Child) {
    let pid = nix::unistd::Pid::from_raw(server.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    for _ in 0..100 {
        if matches!(server.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = server.kill();
    let _ = server.wait();
}
