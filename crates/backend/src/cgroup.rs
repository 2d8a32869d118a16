//! Per-replica CPU and memory limits through cgroup v2, where this host lets us write one.
//!
//! `setrlimit(RLIMIT_AS)` is not used: ONNX Runtime and CUDA reserve far more address space
//! than they touch, so an address-space cap kills healthy replicas. A cgroup caps what is
//! actually resident. Layout: `<our cgroup>/sluice-replicas/<leaf per replica run>`.

use std::io;
use std::path::{Path, PathBuf};

use crate::spec::ResourceRequest;

const CGROUP_PERIOD_US: u64 = 100_000;

/// A cgroup v2 directory with the `memory` and `cpu` controllers enabled for its children.
#[derive(Debug, Clone)]
pub(crate) struct CgroupRoot {
    dir: PathBuf,
}

impl CgroupRoot {
    /// Finds our own cgroup v2 directory and prepares `sluice-replicas` under it, or says why
    /// limits cannot be enforced here.
    pub(crate) fn detect() -> Result<Self, String> {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| format!("cannot read /proc/self/mountinfo: {e}"))?;
        let own =
            std::fs::read_to_string("/proc/self/cgroup").map_err(|e| format!("cannot read /proc/self/cgroup: {e}"))?;
        let mount = cgroup2_mount(&mountinfo).ok_or("no cgroup v2 file system is mounted")?;
        let path = unified_path(&own).ok_or("this process is in no cgroup v2 hierarchy")?;
        let relative = path.trim_start_matches('/');
        Self::prepare(&if relative.is_empty() { mount } else { mount.join(relative) })
    }

    /// Enables the controllers below `own` and creates the `sluice-replicas` parent.
    pub(crate) fn prepare(own: &Path) -> Result<Self, String> {
        let controllers = std::fs::read_to_string(own.join("cgroup.controllers"))
            .map_err(|e| format!("cannot read {}/cgroup.controllers: {e}", own.display()))?;
        let available: Vec<&str> = controllers.split_whitespace().collect();
        if !(available.contains(&"memory") && available.contains(&"cpu")) {
            return Err(format!("the cgroup v2 at {} lacks the memory and cpu controllers", own.display()));
        }
        let enable = |dir: &Path| {
            std::fs::write(dir.join("cgroup.subtree_control"), "+memory +cpu")
                .map_err(|e| format!("cannot enable controllers in {}: {e}", dir.display()))
        };
        enable(own)?;
        let dir = own.join("sluice-replicas");
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(format!("cannot create {}: {e}", dir.display())),
        }
        enable(&dir)?;
        Ok(Self { dir })
    }

    /// Creates the leaf cgroup for one replica run and writes its limits.
    pub(crate) fn create_leaf(&self, name: &str, request: &ResourceRequest) -> io::Result<Leaf> {
        let dir = self.dir.join(name);
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        std::fs::write(dir.join("memory.max"), memory_max(request.memory_bytes))?;
        std::fs::write(dir.join("cpu.max"), cpu_max(request.cpu_millis))?;
        Ok(Leaf { dir })
    }
}

/// One replica run's cgroup; removed when the run ends.
#[derive(Debug)]
pub(crate) struct Leaf {
    dir: PathBuf,
}

impl Leaf {
    /// Moves a process into the leaf. The parent does it right after spawning, so the first
    /// few instructions of the child run outside the limit; what a model load allocates is in.
    pub(crate) fn add_process(&self, pid: u32) -> io::Result<()> {
        std::fs::write(self.dir.join("cgroup.procs"), pid.to_string())
    }

    /// Removes the (by now empty) leaf; failure only leaves an empty directory behind.
    pub(crate) fn remove(self) {
        if let Err(error) = std::fs::remove_dir(&self.dir) {
            tracing::debug!(dir = %self.dir.display(), %error, "cannot remove replica cgroup");
        }
    }
}

fn memory_max(bytes: u64) -> String {
    if bytes == 0 { "max".into() } else { bytes.to_string() }
}

fn cpu_max(millis: u32) -> String {
    if millis == 0 {
        format!("max {CGROUP_PERIOD_US}")
    } else {
        format!("{} {CGROUP_PERIOD_US}", u64::from(millis) * CGROUP_PERIOD_US / 1000)
    }
}

/// The mount point of the cgroup2 file system, from `/proc/self/mountinfo`.
fn cgroup2_mount(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let fstype = right.split_whitespace().next()?;
        let mount_point = left.split_whitespace().nth(4)?;
        (fstype == "cgroup2").then(|| PathBuf::from(mount_point))
    })
}

/// Our path in the unified hierarchy, from the `0::<path>` line of `/proc/self/cgroup`.
fn unified_path(self_cgroup: &str) -> Option<&str> {
    self_cgroup.lines().find_map(|l| l.strip_prefix("0::"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_formatted() {
        assert_eq!(memory_max(0), "max");
        assert_eq!(memory_max(1 << 30), "1073741824");
        assert_eq!(cpu_max(0), "max 100000");
        assert_eq!(cpu_max(1500), "150000 100000");
        assert_eq!(cpu_max(250), "25000 100000");
    }

    #[test]
    fn mounts_and_paths_are_parsed() {
        let mountinfo = "\
35 24 0:30 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw";
        assert_eq!(cgroup2_mount(mountinfo), Some("/sys/fs/cgroup/unified".into()));
        assert_eq!(cgroup2_mount("35 24 0:30 / /x rw - cgroup cgroup rw"), None);
        assert_eq!(unified_path("4:memory:/a\n0::/user.slice/x\n"), Some("/user.slice/x"));
        assert_eq!(unified_path("4:memory:/a\n"), None);
    }

    #[test]
    fn missing_controllers_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cgroup.controllers"), "hugetlb\n").unwrap();
        let why = CgroupRoot::prepare(dir.path()).unwrap_err();
        assert!(why.contains("lacks the memory and cpu controllers"), "{why}");
    }

    #[test]
    fn leaves_get_limits_written() {
        // A plain directory stands in for cgroupfs: the files are what the kernel would read.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cgroup.controllers"), "cpu memory pids\n").unwrap();
        let root = CgroupRoot::prepare(dir.path()).unwrap();
        let request = ResourceRequest { cpu_millis: 2000, memory_bytes: 512 << 20, gpus: 0 };
        let leaf = root.create_leaf("set.g1.r0", &request).unwrap();
        leaf.add_process(42).unwrap();
        let read = |f: &str| std::fs::read_to_string(leaf.dir.join(f)).unwrap();
        assert_eq!(read("memory.max"), "536870912");
        assert_eq!(read("cpu.max"), "200000 100000");
        assert_eq!(read("cgroup.procs"), "42");
    }
}
