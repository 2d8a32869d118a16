//! The embedded `sluice_worker` package, written out once per content hash for workers to import.

use std::path::{Path, PathBuf};

include!(concat!(env!("OUT_DIR"), "/worker_files.rs"));

/// Writes the package below `root` (at `root/<hash>/`), unless that version is already there,
/// and returns the folder to put on `PYTHONPATH`.
pub fn materialize(root: &Path) -> std::io::Result<PathBuf> {
    if WORKER_FILES.is_empty() {
        return Err(std::io::Error::other("this sluice binary was built without python/sluice_worker"));
    }
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for (name, text) in WORKER_FILES {
        for b in name.bytes().chain(text.bytes()) {
            hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    let dir = root.join(format!("{hash:016x}"));
    if dir.join(".complete").exists() {
        return Ok(dir);
    }
    let staging = tempfile::Builder::new().prefix(".staging-").tempdir_in({
        std::fs::create_dir_all(root)?;
        root
    })?;
    for (name, text) in WORKER_FILES {
        let path = staging.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(path, text)?;
    }
    std::fs::write(staging.path().join(".complete"), b"")?;
    let staged = staging.keep();
    if std::fs::rename(&staged, &dir).is_err() {
        // Another replica wrote the same version first.
        let _ = std::fs::remove_dir_all(&staged);
    }
    Ok(dir)
}
