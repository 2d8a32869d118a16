//! What this machine offers (GPUs, memory, CPUs), and refusing requests it can never satisfy.

use std::ffi::OsStr;
use std::path::Path;

use crate::error::BackendError;
use crate::spec::ResourceRequest;

/// The machine's capacity as far as placement cares. [`HostProfile::detect`] reads it from the
/// OS; tests build one by hand so they do not depend on the machine they run on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostProfile {
    /// `/dev/nvidiaN` device files found.
    pub nvidia_devices: u32,
    /// `nvidia-smi` is on `PATH` (a GPU may be usable even when device files are hidden).
    pub nvidia_smi: bool,
    /// Total physical memory, when known.
    pub memory_total_bytes: Option<u64>,
    /// CPUs this process may use.
    pub cpus: u32,
}

impl HostProfile {
    /// Reads the profile from `/dev`, `PATH`, `/proc/meminfo` and the scheduler affinity.
    pub fn detect() -> Self {
        let path_var = std::env::var_os("PATH");
        Self {
            nvidia_devices: count_nvidia_devices(Path::new("/dev")),
            nvidia_smi: on_path("nvidia-smi", path_var.as_deref()),
            memory_total_bytes: memory_total_bytes(),
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
        }
    }

    /// Whether any NVIDIA GPU seems present.
    pub fn has_gpu(&self) -> bool {
        self.nvidia_devices > 0 || self.nvidia_smi
    }

    /// Refuses a per-replica request this machine can never satisfy, saying why.
    ///
    /// CPU is not refused: it is compressible, so a request above the core count only runs
    /// slower (and Azure ML instance types often ask for more cores than a laptop has).
    pub fn check(&self, request: &ResourceRequest) -> Result<(), BackendError> {
        if request.gpus > 0 {
            if !self.has_gpu() {
                return Err(BackendError::Unsatisfiable(format!(
                    "the deployment asks for {} GPU(s) per replica, but this host has no NVIDIA \
                     GPU (/dev/nvidia0 is missing and nvidia-smi is not on PATH); use a CPU \
                     instance type or run Sluice on a machine with an NVIDIA GPU",
                    request.gpus
                )));
            }
            if self.nvidia_devices > 0 && request.gpus > self.nvidia_devices {
                return Err(BackendError::Unsatisfiable(format!(
                    "the deployment asks for {} GPUs per replica, but this host has only {}",
                    request.gpus, self.nvidia_devices
                )));
            }
        }
        if let Some(total) = self.memory_total_bytes
            && request.memory_bytes > total
        {
            return Err(BackendError::Unsatisfiable(format!(
                "the deployment asks for {} of memory per replica, but this host has {} in \
                 total; choose a smaller instance type or lower the memory request",
                human_bytes(request.memory_bytes),
                human_bytes(total)
            )));
        }
        Ok(())
    }
}

fn count_nvidia_devices(dev: &Path) -> u32 {
    let Ok(entries) = std::fs::read_dir(dev) else {
        return 0;
    };
    let is_gpu = |name: &str| {
        name.strip_prefix("nvidia").is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    };
    entries.filter_map(Result::ok).filter(|e| e.file_name().to_str().is_some_and(is_gpu)).count() as u32
}

fn on_path(program: &str, path_var: Option<&OsStr>) -> bool {
    let Some(path_var) = path_var else {
        return false;
    };
    std::env::split_paths(path_var).any(|dir| dir.join(program).is_file())
}

/// The machine's physical memory, from `/proc/meminfo`, when it can be read.
pub fn memory_total_bytes() -> Option<u64> {
    std::fs::read_to_string("/proc/meminfo").ok().as_deref().and_then(parse_mem_total)
}

/// `MemTotal:       24684084 kB` → bytes.
fn parse_mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let mut fields = line.split_whitespace().skip(1);
    let value: u64 = fields.next()?.parse().ok()?;
    match fields.next() {
        Some("kB") => value.checked_mul(1024),
        None => Some(value),
        Some(_) => None,
    }
}

/// `1536 MiB`, `16.0 GiB`: for messages people read.
pub(crate) fn human_bytes(bytes: u64) -> String {
    const GIB: u64 = 1 << 30;
    const MIB: u64 = 1 << 20;
    if bytes >= GIB {
        format!("{:.1} GiB", bytes as f64 / GIB as f64)
    } else if bytes >= MIB {
        format!("{} MiB", bytes / MIB)
    } else {
        format!("{bytes} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(devices: u32, smi: bool) -> HostProfile {
        HostProfile { nvidia_devices: devices, nvidia_smi: smi, memory_total_bytes: Some(8 << 30), cpus: 2 }
    }

    fn gpus(n: u32) -> ResourceRequest {
        ResourceRequest { gpus: n, ..ResourceRequest::default() }
    }

    #[test]
    fn gpu_requests_need_a_gpu() {
        let err = host(0, false).check(&gpus(1)).unwrap_err();
        assert!(matches!(err, BackendError::Unsatisfiable(_)));
        assert!(err.to_string().contains("no NVIDIA GPU"), "{err}");
        assert!(host(0, true).check(&gpus(1)).is_ok());
        assert!(host(1, false).check(&gpus(1)).is_ok());
        assert!(host(1, false).check(&gpus(2)).is_err());
        assert!(host(0, false).check(&gpus(0)).is_ok());
    }

    #[test]
    fn memory_above_the_total_is_refused() {
        let mut request = ResourceRequest { memory_bytes: 8 << 30, ..ResourceRequest::default() };
        assert!(host(0, false).check(&request).is_ok());
        request.memory_bytes += 1;
        let err = host(0, false).check(&request).unwrap_err();
        assert!(err.to_string().contains("8.0 GiB in total"), "{err}");
    }

    #[test]
    fn meminfo_is_parsed() {
        let text = "MemTotal:       24684084 kB\nMemFree:        23184308 kB\n";
        assert_eq!(parse_mem_total(text), Some(24_684_084 * 1024));
        assert_eq!(parse_mem_total("MemFree: 1 kB\n"), None);
    }

    #[test]
    fn devices_and_path_are_probed() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["nvidia0", "nvidia1", "nvidiactl", "nvidia-uvm", "null"] {
            std::fs::write(dir.path().join(name), "").unwrap();
        }
        assert_eq!(count_nvidia_devices(dir.path()), 2);
        let path_var = std::env::join_paths([dir.path()]).unwrap();
        assert!(!on_path("nvidia-smi", Some(&path_var)));
        std::fs::write(dir.path().join("nvidia-smi"), "").unwrap();
        assert!(on_path("nvidia-smi", Some(&path_var)));
        assert!(!on_path("nvidia-smi", None));
    }
}
