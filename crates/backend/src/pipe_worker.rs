//! Pipe workers: processes a scheduler drives one line at a time over stdin and stdout (the
//! batch job scheduler's `python -m sluice_worker.batch`). Each runs in its own process group
//! with only the allow-listed part of the server's environment, dies with the server
//! (`PR_SET_PDEATHSIG`), and has its stderr appended to a log file.

use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::local::{DEFAULT_INHERITED_ENV, die_with_parent, signal_group};

/// How to start a pipe worker.
#[derive(Debug, Clone)]
pub struct PipeWorkerCommand {
    pub program: PathBuf,
    pub args: Vec<String>,
    /// Added to the allow-listed variables of the server's environment ([`DEFAULT_INHERITED_ENV`]).
    pub env: BTreeMap<String, String>,
    pub cwd: PathBuf,
    /// stderr is appended here (created if missing).
    pub log: PathBuf,
}

/// A running pipe worker. Dropping it kills its whole process group.
pub struct PipeWorker {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Lines<BufReader<ChildStdout>>,
    pid: u32,
    reaped: bool,
}

impl PipeWorker {
    /// Starts the worker. Call it from an async task (a runtime worker thread), never from
    /// `spawn_blocking`: the parent-death signal follows the thread that spawned the child.
    pub fn spawn(cmd: &PipeWorkerCommand) -> io::Result<Self> {
        if let Some(dir) = cmd.log.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&cmd.log)?;
        let mut env: BTreeMap<String, String> =
            DEFAULT_INHERITED_ENV.iter().filter_map(|k| Some(((*k).to_owned(), std::env::var(k).ok()?))).collect();
        env.extend(cmd.env.clone());
        let mut command = Command::new(&cmd.program);
        command
            .args(&cmd.args)
            .env_clear()
            .envs(env)
            .current_dir(&cmd.cwd)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .process_group(0);
        die_with_parent(&mut command);
        let mut child = command.spawn()?;
        let pid = child.id().unwrap_or(0);
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().ok_or_else(|| io::Error::other("the worker's stdout is not piped"))?;
        Ok(Self { child, stdin, stdout: BufReader::new(stdout).lines(), pid, reaped: false })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Writes one line (a newline is added).
    pub async fn send(&mut self, line: &str) -> io::Result<()> {
        let stdin = self.stdin.as_mut().ok_or_else(|| io::Error::other("the worker's stdin is closed"))?;
        stdin.write_all(line.as_bytes()).await?;
        stdin.write_all(b"\n").await?;
        stdin.flush().await
    }

    /// The next line the worker printed on stdout; `None` once it closed stdout (it exited).
    pub async fn recv(&mut self) -> io::Result<Option<String>> {
        self.stdout.next_line().await
    }

    /// SIGKILLs the worker's process group (whatever user code started dies with it) and reaps it.
    pub async fn kill(&mut self) -> Option<ExitStatus> {
        signal_group(self.pid, Signal::SIGKILL);
        self.wait().await
    }

    /// Waits for the worker to exit.
    pub async fn wait(&mut self) -> Option<ExitStatus> {
        let status = self.child.wait().await.ok();
        self.reaped = true;
        status
    }

    /// Closes stdin (the worker exits once its current request is done), waits up to `grace`,
    /// then kills the process group.
    pub async fn stop(mut self, grace: Duration) -> Option<ExitStatus> {
        self.stdin = None;
        match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(status) => {
                self.reaped = true;
                // Children the user's code left behind go with the group.
                signal_group(self.pid, Signal::SIGKILL);
                status.ok()
            }
            Err(_) => self.kill().await,
        }
    }
}

impl Drop for PipeWorker {
    fn drop(&mut self) {
        if !self.reaped {
            signal_group(self.pid, Signal::SIGKILL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shell(script: &str, log: PathBuf) -> PipeWorkerCommand {
        PipeWorkerCommand {
            program: "/bin/sh".into(),
            args: vec!["-c".into(), script.into()],
            env: [("GREETING".to_owned(), "hi".to_owned())].into(),
            cwd: std::env::temp_dir(),
            log,
        }
    }

    #[tokio::test]
    async fn lines_go_in_and_out_and_stderr_goes_to_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("logs/w.log");
        let script = "echo ready; while read l; do echo \"$GREETING $l\"; echo \"err $l\" >&2; done";
        let mut w = PipeWorker::spawn(&shell(script, log.clone())).unwrap();
        assert_eq!(w.recv().await.unwrap().as_deref(), Some("ready"));
        w.send("one").await.unwrap();
        assert_eq!(w.recv().await.unwrap().as_deref(), Some("hi one"));
        let status = w.stop(Duration::from_secs(5)).await.unwrap();
        assert!(status.success(), "EOF on stdin ends the loop: {status:?}");
        assert_eq!(std::fs::read_to_string(log).unwrap(), "err one\n");
    }

    #[tokio::test]
    async fn kill_ends_a_worker_that_ignores_stdin() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = PipeWorker::spawn(&shell("trap '' TERM; sleep 60", dir.path().join("w.log"))).unwrap();
        let status = tokio::time::timeout(Duration::from_secs(10), w.kill()).await.unwrap().unwrap();
        assert!(!status.success());
        assert_eq!(w.recv().await.unwrap(), None);
    }
}
