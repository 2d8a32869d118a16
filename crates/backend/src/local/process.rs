//! Starting one replica process (environment, process group, parent-death signal) and stopping
//! its whole process group.

use std::collections::BTreeMap;
use std::io;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

use crate::spec::{ReplicaSetSpec, ResourceRequest};

/// Parent variables a replica sees when the config does not say otherwise; everything else of
/// the server's environment (keys, database URLs) stays out of user code.
pub const DEFAULT_INHERITED_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "TMPDIR",
    "LD_LIBRARY_PATH",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "ORT_DYLIB_PATH",
    "CUDA_VISIBLE_DEVICES",
    "RUST_LOG",
    "RUST_BACKTRACE",
];

/// One run of one replica, as the supervisor starts it.
pub(crate) struct Launch<'a> {
    pub(crate) spec: &'a ReplicaSetSpec,
    pub(crate) index: u32,
    pub(crate) inherit_env: &'a [String],
    pub(crate) host_cpus: u32,
}

impl Launch<'_> {
    /// The replica's whole environment: inherited allow-list, then our defaults, then the
    /// spec's variables, then the `SLUICE_*` facts (which the spec cannot override).
    pub(crate) fn env(&self) -> BTreeMap<String, String> {
        let mut env: BTreeMap<String, String> =
            self.inherit_env.iter().filter_map(|k| Some((k.clone(), std::env::var(k).ok()?))).collect();
        let ResourceRequest { cpu_millis, memory_bytes, gpus } = self.spec.resources;
        // No CPU request means "the whole machine", not one thread.
        let threads = if cpu_millis == 0 { self.host_cpus } else { cpu_millis / 1000 };
        env.insert("OMP_NUM_THREADS".into(), threads.max(1).to_string());
        env.extend(self.spec.command.env.clone());
        let facts = [
            ("SLUICE_CPU_MILLIS", cpu_millis.to_string()),
            ("SLUICE_MEMORY_BYTES", memory_bytes.to_string()),
            ("SLUICE_GPUS", gpus.to_string()),
            ("SLUICE_REPLICA_SET", self.spec.id.0.clone()),
            ("SLUICE_REPLICA_INDEX", self.index.to_string()),
            ("SLUICE_GENERATION", self.spec.generation.to_string()),
        ];
        env.extend(facts.map(|(k, v)| (k.to_owned(), v)));
        env
    }

    /// Spawns the process in its own process group, stdout and stderr piped, stdin closed.
    pub(crate) fn spawn(&self) -> io::Result<Child> {
        let command = &self.spec.command;
        let mut cmd = Command::new(&command.program);
        cmd.args(&command.args)
            .env_clear()
            .envs(self.env())
            .current_dir(&command.cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .process_group(0);
        die_with_parent(&mut cmd);
        cmd.spawn()
    }
}

/// Asks the kernel to SIGKILL the child when the thread that spawned it dies, so a crashed
/// server leaves no replicas behind. (Tokio spawns from long-lived worker threads; a replica
/// spawned from a short-lived thread would die with that thread.)
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub(crate) fn die_with_parent(cmd: &mut Command) {
    let parent = nix::unistd::getpid();
    // SAFETY: the closure runs in the forked child before exec, where only async-signal-safe
    // calls are allowed. It makes two system calls (prctl(2), getppid(2)), allocates nothing
    // and takes no locks; the error value is plain data.
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
            // The parent may have died before prctl took effect: then nobody will signal us.
            // (A raw OS error, because building a custom io::Error would allocate.)
            if nix::unistd::getppid() != parent {
                return Err(nix::errno::Errno::ESRCH.into());
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn die_with_parent(_cmd: &mut Command) {}

/// Sends `signal` to the replica's process group (its pid is the group id). A group that is
/// already gone is not an error.
pub(crate) fn signal_group(pid: u32, signal: Signal) {
    let Ok(raw) = i32::try_from(pid) else { return };
    match killpg(Pid::from_raw(raw), signal) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
        Err(error) => tracing::warn!(pid, %signal, %error, "cannot signal replica process group"),
    }
}

/// SIGTERM to the group, up to `grace` for the leader to exit, then SIGKILL; finally SIGKILL
/// again for any straggler the leader left in its group.
pub(crate) async fn stop_group(child: &mut Child, pid: u32, grace: Duration) -> Option<ExitStatus> {
    signal_group(pid, Signal::SIGTERM);
    let status = match tokio::time::timeout(grace, child.wait()).await {
        Ok(status) => status.ok(),
        Err(_elapsed) => {
            signal_group(pid, Signal::SIGKILL);
            child.wait().await.ok()
        }
    };
    signal_group(pid, Signal::SIGKILL);
    status
}

/// `exit status: 3`, `signal: 9 (SIGKILL)`.
pub(crate) fn describe_exit(status: &ExitStatus) -> String {
    status.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{ReplicaCommand, ReplicaSetId};

    fn spec(cpu_millis: u32, env: &[(&str, &str)]) -> ReplicaSetSpec {
        ReplicaSetSpec {
            id: ReplicaSetId("ws/ep/blue".into()),
            generation: 7,
            instance_count: 1,
            command: ReplicaCommand {
                program: "/bin/true".into(),
                args: vec![],
                env: env.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect(),
                cwd: "/".into(),
            },
            resources: ResourceRequest { cpu_millis, memory_bytes: 1 << 30, gpus: 0 },
            probes: None,
        }
    }

    fn env_of(spec: &ReplicaSetSpec) -> BTreeMap<String, String> {
        let launch = Launch { spec, index: 2, inherit_env: &[], host_cpus: 8 };
        launch.env()
    }

    #[test]
    fn resources_are_exported() {
        let env = env_of(&spec(2500, &[]));
        assert_eq!(env["SLUICE_CPU_MILLIS"], "2500");
        assert_eq!(env["SLUICE_MEMORY_BYTES"], "1073741824");
        assert_eq!(env["OMP_NUM_THREADS"], "2");
        assert_eq!(env["SLUICE_REPLICA_INDEX"], "2");
        assert_eq!(env["SLUICE_GENERATION"], "7");
        assert_eq!(env_of(&spec(500, &[]))["OMP_NUM_THREADS"], "1");
        assert_eq!(env_of(&spec(0, &[]))["OMP_NUM_THREADS"], "8");
    }

    #[test]
    fn the_spec_may_set_threads_but_not_facts() {
        let env = env_of(&spec(4000, &[("OMP_NUM_THREADS", "1"), ("SLUICE_CPU_MILLIS", "9")]));
        assert_eq!(env["OMP_NUM_THREADS"], "1");
        assert_eq!(env["SLUICE_CPU_MILLIS"], "4000");
    }
}
