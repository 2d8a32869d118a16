//! Finding, downloading and loading the ONNX Runtime shared library (`libonnxruntime.so.1.31.1`).
//!
//! `ort` is built with `load-dynamic`, so the library is opened at run time. It comes from `$ORT_DYLIB_PATH`, from
//! the Sluice cache, or from the PyPI wheel `onnxruntime==1.31.1`, fetched with `pip download` and unzipped.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use ort::environment::Environment;

use crate::error::RuntimeError;

/// The ONNX Runtime release that `ort`'s `api-31` feature is built against.
pub const ORT_VERSION: &str = "1.31.1";
/// The file name of the main library inside the wheel and the cache.
pub const ORT_LIBRARY_FILE: &str = "libonnxruntime.so.1.31.1";
const PROVIDERS_SHARED_FILE: &str = "libonnxruntime_providers_shared.so";
const WHEEL_LIBRARY_DIR: &str = "onnxruntime/capi/";

/// The folder under the cache that holds the unpacked library.
pub fn cache_folder(cache_dir: &Path) -> PathBuf {
    cache_dir.join(format!("onnxruntime-{ORT_VERSION}"))
}

/// Returns the path of a usable `libonnxruntime.so.1.31.1`, downloading it into `cache_dir` when needed.
///
/// Order: `$ORT_DYLIB_PATH` when set and the file exists; `<cache_dir>/onnxruntime-1.31.1/libonnxruntime.so.1.31.1`;
/// otherwise `python3 -m pip download onnxruntime==1.31.1` and extract the libraries from the wheel. This blocks
/// (it may run pip for a minute): call it before starting an async runtime or from `spawn_blocking`.
pub fn locate_or_provision_onnxruntime(cache_dir: &Path) -> Result<PathBuf, RuntimeError> {
    if let Some(path) = std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from) {
        if path.is_file() {
            return Ok(path);
        }
        tracing::warn!(path = %path.display(), "ORT_DYLIB_PATH names no file; looking in the cache instead");
    }
    let folder = cache_folder(cache_dir);
    let library = folder.join(ORT_LIBRARY_FILE);
    if library.is_file() {
        return Ok(library);
    }
    provision(&folder)?;
    Ok(library)
}

fn provision_err(message: impl Into<String>) -> RuntimeError {
    RuntimeError::Provision { message: message.into() }
}

fn provision(folder: &Path) -> Result<(), RuntimeError> {
    fs::create_dir_all(folder).map_err(|e| provision_err(format!("cannot create {}: {e}", folder.display())))?;
    let download = tempfile::Builder::new()
        .prefix(".download-")
        .tempdir_in(folder)
        .map_err(|e| provision_err(format!("cannot create a temporary folder in {}: {e}", folder.display())))?;
    tracing::info!(folder = %folder.display(), "downloading onnxruntime=={ORT_VERSION} from PyPI");
    let output = Command::new("python3")
        .args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:"])
        .arg(format!("onnxruntime=={ORT_VERSION}"))
        .arg("-d")
        .arg(download.path())
        .output()
        .map_err(|e| {
            let why = if e.kind() == io::ErrorKind::NotFound {
                "python3 is not installed (or not on PATH)".to_owned()
            } else {
                format!("cannot run python3: {e}")
            };
            provision_err(format!(
                "{ORT_LIBRARY_FILE} is not in {} and {why}, so it cannot be downloaded; install python3 with pip, \
                 or set ORT_DYLIB_PATH to a {ORT_LIBRARY_FILE} (from the PyPI wheel onnxruntime=={ORT_VERSION})",
                folder.display()
            ))
        })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(provision_err(format!(
            "`python3 -m pip download onnxruntime=={ORT_VERSION}` failed ({}): {}; if pip is missing or PyPI is \
             unreachable, set ORT_DYLIB_PATH to a {ORT_LIBRARY_FILE} instead",
            output.status,
            tail.join(" | ")
        )));
    }
    let wheel = find_wheel(download.path())?;
    extract_libraries(&wheel, folder)
}

fn find_wheel(dir: &Path) -> Result<PathBuf, RuntimeError> {
    let entries = fs::read_dir(dir).map_err(|e| provision_err(format!("cannot list {}: {e}", dir.display())))?;
    entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .ok_or_else(|| provision_err(format!("pip reported success but left no .whl file in {}", dir.display())))
}

/// Copies the ONNX Runtime libraries out of a wheel into `folder`. Each file is written under a temporary name and
/// renamed, and the main library goes last, so its presence means the folder is complete.
pub fn extract_libraries(wheel: &Path, folder: &Path) -> Result<(), RuntimeError> {
    let file = fs::File::open(wheel).map_err(|e| provision_err(format!("cannot open {}: {e}", wheel.display())))?;
    let mut archive = zip::ZipArchive::new(file)
        .map_err(|e| provision_err(format!("{} is not a valid wheel: {e}", wheel.display())))?;
    for name in [PROVIDERS_SHARED_FILE, ORT_LIBRARY_FILE] {
        let entry_name = format!("{WHEEL_LIBRARY_DIR}{name}");
        let mut entry = match archive.by_name(&entry_name) {
            Ok(entry) => entry,
            Err(zip::result::ZipError::FileNotFound) if name == PROVIDERS_SHARED_FILE => continue,
            Err(e) => {
                return Err(provision_err(format!("{} has no {entry_name}: {e}", wheel.display())));
            }
        };
        write_atomically(&mut entry, &folder.join(name))
            .map_err(|e| provision_err(format!("cannot extract {entry_name} into {}: {e}", folder.display())))?;
    }
    Ok(())
}

fn write_atomically(source: &mut impl Read, target: &Path) -> io::Result<()> {
    let parent = target.parent().unwrap_or(Path::new("."));
    let mut temp = tempfile::Builder::new().prefix(".partial-").tempfile_in(parent)?;
    io::copy(source, &mut temp)?;
    temp.as_file_mut().flush()?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        temp.as_file().set_permissions(fs::Permissions::from_mode(0o644))?;
    }
    temp.as_file().sync_all()?;
    temp.persist(target).map_err(|e| e.error)?;
    Ok(())
}

static ENVIRONMENT: Mutex<Option<Environment>> = Mutex::new(None);

/// Loads ONNX Runtime from `path` and creates the process-wide environment, once. Later calls return the same
/// environment whatever path they pass (a process can hold only one ONNX Runtime).
pub fn init_onnxruntime(path: &Path) -> Result<Environment, RuntimeError> {
    let mut slot = ENVIRONMENT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(env) = slot.as_ref() {
        return Ok(env.clone());
    }
    let fail = |message: String| RuntimeError::OrtInit { path: path.to_path_buf(), message };
    if !path.is_file() {
        return Err(fail("no such file".to_owned()));
    }
    let env = ort::init_from(path)
        .map_err(|e| fail(e.to_string()))?
        .with_name("sluice")
        .with_telemetry(false)
        .build()
        .map_err(|e| fail(e.to_string()))?;
    *slot = Some(env.clone());
    Ok(env)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wheel_with(entries: &[(&str, &[u8])]) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        let mut zip = zip::ZipWriter::new(file.reopen().unwrap());
        for (name, data) in entries {
            zip.start_file(*name, zip::write::SimpleFileOptions::default()).unwrap();
            zip.write_all(data).unwrap();
        }
        zip.finish().unwrap();
        file
    }

    #[test]
    fn extracts_both_libraries() {
        let wheel = wheel_with(&[
            ("onnxruntime/capi/libonnxruntime.so.1.31.1", b"main"),
            ("onnxruntime/capi/libonnxruntime_providers_shared.so", b"shared"),
            ("onnxruntime/__init__.py", b""),
        ]);
        let dir = tempfile::tempdir().unwrap();
        extract_libraries(wheel.path(), dir.path()).unwrap();
        assert_eq!(fs::read(dir.path().join(ORT_LIBRARY_FILE)).unwrap(), b"main");
        assert_eq!(fs::read(dir.path().join(PROVIDERS_SHARED_FILE)).unwrap(), b"shared");
        let leftovers: Vec<_> = fs::read_dir(dir.path()).unwrap().filter_map(Result::ok).collect();
        assert_eq!(leftovers.len(), 2, "no temporary files left behind");
    }

    #[test]
    fn wheel_without_the_library_is_an_error() {
        let wheel = wheel_with(&[("onnxruntime/__init__.py", b"")]);
        let dir = tempfile::tempdir().unwrap();
        let e = extract_libraries(wheel.path(), dir.path()).unwrap_err().to_string();
        assert!(e.contains("has no onnxruntime/capi/libonnxruntime.so.1.31.1"), "{e}");
        assert!(!dir.path().join(ORT_LIBRARY_FILE).exists());
    }

    #[test]
    fn garbage_wheel_is_an_error() {
        let file = tempfile::NamedTempFile::new().unwrap();
        fs::write(file.path(), b"not a zip").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let e = extract_libraries(file.path(), dir.path()).unwrap_err().to_string();
        assert!(e.contains("is not a valid wheel"), "{e}");
    }

    #[test]
    fn cached_library_is_found_without_network() {
        let dir = tempfile::tempdir().unwrap();
        let folder = cache_folder(dir.path());
        fs::create_dir_all(&folder).unwrap();
        fs::write(folder.join(ORT_LIBRARY_FILE), b"x").unwrap();
        // ORT_DYLIB_PATH may be set by the environment running the tests; either answer is an existing file.
        let found = locate_or_provision_onnxruntime(dir.path()).unwrap();
        assert!(found.is_file());
    }
}
