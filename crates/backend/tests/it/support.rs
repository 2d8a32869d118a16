//! Shared helpers: a fast-configured backend, specs for the fake replica, probes.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use sluice_backend::{
    HostProfile, LocalBackend, LocalBackendConfig, ReplicaCommand, ReplicaSetId, ReplicaSetSpec, ResourceRequest,
};
use tokio::io::AsyncReadExt;

/// An upper bound for things that happen quickly; never a pacing delay.
pub const PATIENCE: Duration = Duration::from_secs(30);

pub struct Harness {
    pub backend: LocalBackend,
    pub dir: tempfile::TempDir,
}

pub fn config(dir: &tempfile::TempDir) -> LocalBackendConfig {
    let mut cfg = LocalBackendConfig::new(dir.path().join("logs"));
    cfg.stop_grace = Duration::from_secs(5);
    cfg.restart_backoff_base = Duration::from_millis(10);
    cfg.restart_backoff_max = Duration::from_millis(100);
    cfg
}

pub fn host() -> HostProfile {
    HostProfile { nvidia_devices: 0, nvidia_smi: false, memory_total_bytes: Some(8 << 30), cpus: 2 }
}

pub fn harness() -> Harness {
    harness_with(|_| {})
}

pub fn harness_with(edit: impl FnOnce(&mut LocalBackendConfig)) -> Harness {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(&dir);
    edit(&mut cfg);
    Harness { backend: LocalBackend::with_host(cfg, host()), dir }
}

pub fn id(name: &str) -> ReplicaSetId {
    ReplicaSetId(format!("default/{name}/blue"))
}

/// The fake replica with `args`.
pub fn fake(args: &[&str]) -> ReplicaCommand {
    command(env!("CARGO_BIN_EXE_sluice-fake-replica"), args)
}

pub fn command(program: &str, args: &[&str]) -> ReplicaCommand {
    ReplicaCommand {
        program: program.into(),
        args: args.iter().map(|s| (*s).to_owned()).collect(),
        env: BTreeMap::new(),
        cwd: std::env::temp_dir(),
    }
}

/// `sh -c script`.
pub fn sh(script: &str) -> ReplicaCommand {
    command("/bin/sh", &["-c", script])
}

pub fn spec(id: &ReplicaSetId, generation: u64, count: u32, command: ReplicaCommand) -> ReplicaSetSpec {
    ReplicaSetSpec {
        id: id.clone(),
        generation,
        instance_count: count,
        command,
        resources: ResourceRequest::default(),
        probes: None,
    }
}

impl Harness {
    pub async fn apply_ready(&self, spec: ReplicaSetSpec) {
        let id = spec.id.clone();
        self.backend.apply(spec).await.expect("apply");
        self.backend.wait_ready(&id, PATIENCE).await.expect("ready");
    }

    /// The set's routed addresses now.
    pub fn routed(&self, id: &ReplicaSetId) -> Vec<SocketAddr> {
        self.backend.endpoints().borrow().get(&id.0).cloned().unwrap_or_default()
    }

    /// Waits until the routing view satisfies `pred` for the set.
    pub async fn routed_until(&self, id: &ReplicaSetId, pred: impl Fn(&[SocketAddr]) -> bool) {
        let mut rx = self.backend.endpoints();
        let wait = rx.wait_for(|view| pred(view.get(&id.0).map_or(&[][..], Vec::as_slice)));
        tokio::time::timeout(PATIENCE, wait).await.expect("routing view in time").expect("backend alive");
    }

    pub fn pids(&self, id: &ReplicaSetId) -> Vec<u32> {
        let status = self.backend.status(id).expect("status");
        status.replicas.iter().filter_map(|r| r.pid).collect()
    }
}

/// The line a fake replica answers with.
pub async fn ask(addr: SocketAddr) -> String {
    let mut conn = tokio::net::TcpStream::connect(addr).await.expect("connect to replica");
    let mut out = String::new();
    conn.read_to_string(&mut out).await.expect("read from replica");
    out
}

/// Whether a process exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}
