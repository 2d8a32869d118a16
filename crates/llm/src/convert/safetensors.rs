//! Safetensors files, read without loading them: each file's header (an 8-byte little-endian length,
//! then a JSON object of `name: {dtype, shape, data_offsets}`), and which file of a folder holds
//! each tensor. The data is read later, tensor by tensor, with positioned reads.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{file_name, read_json};

/// The safetensors files of a folder and which file holds each tensor.
pub(super) fn weight_files(dir: &Path) -> Result<BTreeMap<String, (PathBuf, TensorEntry)>, String> {
    let index = dir.join("model.safetensors.index.json");
    let files: Vec<PathBuf> = if index.is_file() {
        let index = read_json(&index)?;
        let map = index
            .get("weight_map")
            .and_then(Value::as_object)
            .ok_or("model.safetensors.index.json has no weight_map")?;
        let mut names: Vec<&str> = map.values().filter_map(Value::as_str).collect();
        names.sort_unstable();
        names.dedup();
        names
            .into_iter()
            .map(|n| {
                let p = Path::new(n);
                if p.components().count() != 1 {
                    return Err(format!("model.safetensors.index.json names {n:?}, which is not a file in the folder"));
                }
                Ok(dir.join(p))
            })
            .collect::<Result<_, _>>()?
    } else if dir.join("model.safetensors").is_file() {
        vec![dir.join("model.safetensors")]
    } else {
        return Err("the folder has no model.safetensors (nor model.safetensors.index.json for sharded weights)".into());
    };
    let mut where_is = BTreeMap::new();
    for file in files {
        for (name, entry) in read_header(&file)? {
            where_is.insert(name, (file.clone(), entry));
        }
    }
    Ok(where_is)
}

/// Element types this converter reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Dtype {
    F32,
    F16,
    Bf16,
}

impl Dtype {
    pub(super) fn size(self) -> u64 {
        match self {
            Dtype::F32 => 4,
            Dtype::F16 | Dtype::Bf16 => 2,
        }
    }
}

/// One tensor of a safetensors file: its type, shape and byte range (from the file's start).
#[derive(Debug, Clone)]
pub(super) struct TensorEntry {
    pub(super) dtype: Result<Dtype, String>,
    pub(super) shape: Vec<u64>,
    pub(super) start: u64,
    pub(super) end: u64,
}

/// The largest safetensors header read (the format's own limit is 100 MB).
const MAX_HEADER: u64 = 100 << 20;

/// Reads a safetensors file's header: an 8-byte little-endian length, then a JSON object of
/// `name: {dtype, shape, data_offsets}` (offsets relative to the end of the header).
fn read_header(path: &Path) -> Result<HashMap<String, TensorEntry>, String> {
    let name = file_name(path);
    let file = File::open(path).map_err(|e| format!("cannot open {name}: {e}"))?;
    let size = file.metadata().map_err(|e| format!("cannot read {name}: {e}"))?.len();
    let mut len = [0u8; 8];
    file.read_exact_at(&mut len, 0).map_err(|_| format!("{name} is not a safetensors file (too short)"))?;
    let len = u64::from_le_bytes(len);
    if len > MAX_HEADER || 8 + len > size {
        return Err(format!("{name} is not a safetensors file (header length {len})"));
    }
    let mut header = vec![0u8; len as usize];
    file.read_exact_at(&mut header, 8).map_err(|e| format!("cannot read {name}: {e}"))?;
    let header: serde_json::Map<String, Value> =
        serde_json::from_slice(&header).map_err(|e| format!("{name} is not a safetensors file: {e}"))?;
    let mut entries = HashMap::new();
    for (tensor, info) in header {
        if tensor == "__metadata__" {
            continue;
        }
        let bad = || format!("{name}: tensor {tensor} has a malformed header entry");
        let dtype = match info.get("dtype").and_then(Value::as_str).ok_or_else(bad)? {
            "F32" => Ok(Dtype::F32),
            "F16" => Ok(Dtype::F16),
            "BF16" => Ok(Dtype::Bf16),
            other => Err(format!("tensor {tensor} is {other}; only F32, F16 and BF16 weights are supported")),
        };
        let shape: Vec<u64> = info
            .get("shape")
            .and_then(Value::as_array)
            .ok_or_else(bad)?
            .iter()
            .map(|d| d.as_u64().ok_or_else(bad))
            .collect::<Result<_, _>>()?;
        let offsets = info.get("data_offsets").and_then(Value::as_array).ok_or_else(bad)?;
        let (Some(begin), Some(end)) =
            (offsets.first().and_then(Value::as_u64), offsets.get(1).and_then(Value::as_u64))
        else {
            return Err(bad());
        };
        let (start, end) = (8 + len + begin, 8 + len + end);
        if begin > end || end > size {
            return Err(format!("{name}: tensor {tensor} lies outside the file (truncated download?)"));
        }
        entries.insert(tensor, TensorEntry { dtype, shape, start, end });
    }
    Ok(entries)
}

/// One element of `data` (in `from`'s encoding) as F32.
pub(super) fn to_f32(from: Dtype, bytes: &[u8]) -> f32 {
    match from {
        Dtype::F16 => half::f16::from_le_bytes([bytes[0], bytes[1]]).to_f32(),
        Dtype::Bf16 => half::bf16::from_le_bytes([bytes[0], bytes[1]]).to_f32(),
        _ => f32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]),
    }
}
