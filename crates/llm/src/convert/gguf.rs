//! GGUF (version 3) as llama.cpp reads it: the header with typed metadata and tensor infos, each
//! tensor's data aligned to 32 bytes. Only what the converter writes: F32, F16 and BF16 tensors,
//! and the metadata value types llama's keys need.

/// GGUF's default data alignment.
const ALIGNMENT: u64 = 32;

/// Tensor types, by ggml's numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum GgmlType {
    F32 = 0,
    F16 = 1,
    Bf16 = 30,
}

impl GgmlType {
    pub(super) fn size(self) -> u64 {
        match self {
            GgmlType::F32 => 4,
            GgmlType::F16 | GgmlType::Bf16 => 2,
        }
    }
}

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum MetaValue {
    U32(u32),
    F32(f32),
    Bool(bool),
    Str(String),
    StrArray(Vec<String>),
    I32Array(Vec<i32>),
}

/// Bytes that bring `offset` to the next multiple of the alignment.
pub(super) fn padding(offset: u64) -> u64 {
    (ALIGNMENT - offset % ALIGNMENT) % ALIGNMENT
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_value(out: &mut Vec<u8>, value: &MetaValue) {
    const U32: u32 = 4;
    const I32: u32 = 5;
    const F32: u32 = 6;
    const BOOL: u32 = 7;
    const STRING: u32 = 8;
    const ARRAY: u32 = 9;
    let mut put = |kind: u32, bytes: &[u8]| {
        out.extend_from_slice(&kind.to_le_bytes());
        out.extend_from_slice(bytes);
    };
    match value {
        MetaValue::U32(v) => put(U32, &v.to_le_bytes()),
        MetaValue::F32(v) => put(F32, &v.to_le_bytes()),
        MetaValue::Bool(v) => put(BOOL, &[u8::from(*v)]),
        MetaValue::Str(s) => {
            put(STRING, &[]);
            put_str(out, s);
        }
        MetaValue::StrArray(items) => {
            put(ARRAY, &STRING.to_le_bytes());
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            items.iter().for_each(|s| put_str(out, s));
        }
        MetaValue::I32Array(items) => {
            put(ARRAY, &I32.to_le_bytes());
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            items.iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes()));
        }
    }
}

/// The file's header, padded to the alignment: magic, version, counts, metadata, then each tensor's
/// name, shape (given outermost first, written innermost first as GGUF lists it), type and offset.
/// The tensors' data follows in the same order, each padded with [`padding`].
pub(super) fn header(metadata: &[(String, MetaValue)], tensors: &[(&str, &[u64], GgmlType)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(b"GGUF");
    out.extend_from_slice(&3u32.to_le_bytes());
    out.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    out.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
    for (key, value) in metadata {
        put_str(&mut out, key);
        put_value(&mut out, value);
    }
    let mut offset = 0u64;
    for (name, shape, kind) in tensors {
        put_str(&mut out, name);
        out.extend_from_slice(&(shape.len() as u32).to_le_bytes());
        for d in shape.iter().rev() {
            out.extend_from_slice(&d.to_le_bytes());
        }
        out.extend_from_slice(&(*kind as u32).to_le_bytes());
        out.extend_from_slice(&offset.to_le_bytes());
        let bytes = shape.iter().product::<u64>() * kind.size();
        offset += bytes + padding(bytes);
    }
    out.resize(out.len() + padding(out.len() as u64) as usize, 0);
    out
}
