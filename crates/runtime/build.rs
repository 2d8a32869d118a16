//! Embeds the Python worker package (`python/sluice_worker` at the repository root) into the
//! binary, so a `sluice` binary copied anywhere can still start scoring-script workers.

use std::fmt::Write;
use std::path::{Path, PathBuf};

fn collect(dir: &Path, root: &Path, out: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut entries: Vec<_> = entries.filter_map(Result::ok).collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if name == "__pycache__" || name.starts_with('.') {
            continue;
        }
        if path.is_dir() {
            collect(&path, root, out);
        } else if name.ends_with(".py") || name.ends_with(".json") || name.ends_with(".md") {
            let rel = path.strip_prefix(root).expect("inside root").to_string_lossy().into_owned();
            out.push((rel, path.canonicalize().expect("canonical path")));
        }
    }
}

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest.join("../../python");
    println!("cargo:rerun-if-changed={}", root.display());
    let mut files = Vec::new();
    collect(&root.join("sluice_worker"), &root, &mut files);
    let mut code = String::from("/// Files of the Python worker package: (path below the package root, contents).\n");
    code.push_str("pub const WORKER_FILES: &[(&str, &str)] = &[\n");
    for (rel, abs) in &files {
        println!("cargo:rerun-if-changed={}", abs.display());
        writeln!(code, "    ({rel:?}, include_str!({:?})),", abs.display().to_string()).expect("write to string");
    }
    code.push_str("];\n");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("worker_files.rs");
    std::fs::write(out, code).expect("write worker_files.rs");
}
