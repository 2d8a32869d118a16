//! The deployment's own server as a child process: which port it is told to use, how it is
//! started (own process group, dies with the replica) and how it is stopped.

use nix::fcntl::{Flock, FlockArg};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::ffi::OsString;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::process::{Child, Command};

/// The port the command is told to listen on, and why.
#[derive(Debug)]
pub(crate) struct PortChoice {
    pub port: u16,
    /// The route's port was taken (or 0), so another one was picked.
    pub remapped: bool,
    /// While held, no other Sluice replica on this machine picks the same route port.
    _claim: Option<Flock<std::fs::File>>,
}

/// The route's port when no other Sluice replica holds it and nothing listens on it on
/// 127.0.0.1 (tested by binding it), else a free port the kernel picks. Replicas of one
/// deployment start at the same moment, so the route's port is claimed with an exclusive lock on
/// `<tmp>/sluice-port-<port>.lock` for the replica's lifetime: only the first gets it. Another
/// program may still take the port between the test and the command's own bind; the readiness
/// probe then fails and the replica restarts.
pub(crate) fn choose_port(requested: u16) -> std::io::Result<PortChoice> {
    if requested != 0
        && let Some(claim) = claim(requested)
        && TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, requested))).is_ok()
    {
        return Ok(PortChoice { port: requested, remapped: false, _claim: Some(claim) });
    }
    let free = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?.local_addr()?.port();
    Ok(PortChoice { port: free, remapped: true, _claim: None })
}

fn claim(port: u16) -> Option<Flock<std::fs::File>> {
    let path = std::env::temp_dir().join(format!("sluice-port-{port}.lock"));
    let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(path).ok()?;
    Flock::lock(file, FlockArg::LockExclusiveNonblock).ok()
}

/// The running command. Dropping it SIGKILLs its whole process group, so no early return
/// leaves the command behind.
pub(crate) struct ChildProcess {
    child: Child,
    /// Its pid, which is also its process group id.
    pid: u32,
    exited: Option<ExitStatus>,
}

impl ChildProcess {
    /// Starts `command` with `PORT` and `AML_APP_PORT` set, stdin closed, stdout and stderr
    /// inherited (the server's log capture sees them), in its own process group.
    pub(crate) fn spawn(command: &[OsString], cwd: Option<&Path>, port: u16) -> Result<Self, String> {
        let (program, args) = command.split_first().ok_or("no command was given after `--`")?;
        let mut cmd = Command::new(program);
        cmd.args(args)
            .env("PORT", port.to_string())
            .env("AML_APP_PORT", port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .process_group(0);
        if let Some(cwd) = cwd {
            cmd.current_dir(cwd);
        }
        die_with_parent(&mut cmd);
        let child = cmd.spawn().map_err(|e| {
            let place = cwd.map(|d| format!(" in {}", d.display())).unwrap_or_default();
            format!("cannot start `{}`{place}: {e}", program.to_string_lossy())
        })?;
        let pid = child.id().ok_or("the command exited before its pid was read")?;
        Ok(Self { child, pid, exited: None })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// Waits for the command to exit (cancel-safe) and describes how it ended.
    pub(crate) async fn wait(&mut self) -> String {
        if let Some(status) = self.exited {
            return status.to_string();
        }
        match self.child.wait().await {
            Ok(status) => {
                self.exited = Some(status);
                // What the leader left in its group goes with it.
                signal_group(self.pid, Signal::SIGKILL);
                status.to_string()
            }
            Err(e) => format!("an unknown status ({e})"),
        }
    }

    /// SIGTERM to the group, up to `grace` for the command to exit, then SIGKILL.
    pub(crate) async fn terminate(&mut self, grace: Duration) -> String {
        if self.exited.is_none() {
            signal_group(self.pid, Signal::SIGTERM);
        }
        match tokio::time::timeout(grace, self.wait()).await {
            Ok(status) => status,
            Err(_) => {
                eprintln!("sluice: the command did not stop within {} s of SIGTERM; killing it", grace.as_secs());
                self.kill().await
            }
        }
    }

    /// SIGKILL to the group, then reaps the leader.
    pub(crate) async fn kill(&mut self) -> String {
        if self.exited.is_none() {
            signal_group(self.pid, Signal::SIGKILL);
        }
        self.wait().await
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        signal_group(self.pid, Signal::SIGKILL);
    }
}

/// Sends `signal` to the process group `pid` leads; a group that is already gone is fine.
fn signal_group(pid: u32, signal: Signal) {
    let Ok(raw) = i32::try_from(pid) else { return };
    match killpg(Pid::from_raw(raw), signal) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
        Err(e) => eprintln!("sluice: cannot send {signal} to the command's process group {pid}: {e}"),
    }
}

/// Asks the kernel to SIGKILL the command when the thread that spawned it dies, so a replica
/// killed with SIGKILL leaves no command behind. (The replica spawns from a long-lived runtime
/// thread.)
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn die_with_parent(cmd: &mut Command) {
    let parent = nix::unistd::getpid();
    // SAFETY: the closure runs in the forked child before exec, where only async-signal-safe
    // calls are allowed. It makes two system calls (prctl(2), getppid(2)), allocates nothing
    // and takes no locks; the error value is plain data.
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
            // The replica may have died before prctl took effect: then nobody will signal us.
            if nix::unistd::getppid() != parent {
                return Err(nix::errno::Errno::ESRCH.into());
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_parent(_cmd: &mut Command) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_free_port_is_kept_and_a_taken_one_remapped() {
        let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = taken.local_addr().expect("addr").port();
        let choice = choose_port(port).expect("choose");
        assert!(choice.remapped);
        assert_ne!(choice.port, port);
        drop(taken);
        let first = choose_port(port).expect("choose");
        assert_eq!((first.port, first.remapped), (port, false));
        // A second replica asking for the same port at the same moment gets another one.
        let second = choose_port(port).expect("choose");
        assert!(second.remapped && second.port != port);
        drop(first);
        assert!(!choose_port(port).expect("choose").remapped);
        let zero = choose_port(0).expect("choose");
        assert!(zero.remapped && zero.port != 0);
    }
}
