//! Tensor element types and their spellings in KServe v2, Triton `config.pbtxt`, ONNX and MLflow.

use std::fmt;

use ort::value::TensorElementType;

/// A tensor element type that the replica can decode, run and encode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataType {
    Bool,
    Uint8,
    Uint16,
    Uint32,
    Uint64,
    Int8,
    Int16,
    Int32,
    Int64,
    Fp32,
    Fp64,
    Bytes,
}

impl DataType {
    pub const ALL: [DataType; 12] = [
        Self::Bool,
        Self::Uint8,
        Self::Uint16,
        Self::Uint32,
        Self::Uint64,
        Self::Int8,
        Self::Int16,
        Self::Int32,
        Self::Int64,
        Self::Fp32,
        Self::Fp64,
        Self::Bytes,
    ];

    /// The KServe v2 / Open Inference Protocol name (`"FP32"`).
    pub fn v2_name(self) -> &'static str {
        match self {
            Self::Bool => "BOOL",
            Self::Uint8 => "UINT8",
            Self::Uint16 => "UINT16",
            Self::Uint32 => "UINT32",
            Self::Uint64 => "UINT64",
            Self::Int8 => "INT8",
            Self::Int16 => "INT16",
            Self::Int32 => "INT32",
            Self::Int64 => "INT64",
            Self::Fp32 => "FP32",
            Self::Fp64 => "FP64",
            Self::Bytes => "BYTES",
        }
    }

    /// Parses a KServe v2 name, case-sensitively as Triton does.
    pub fn from_v2_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.v2_name() == name)
    }

    /// Parses a Triton `config.pbtxt` data type (`TYPE_FP32`, `TYPE_STRING`).
    pub fn from_triton_name(name: &str) -> Option<Self> {
        match name.strip_prefix("TYPE_")? {
            "STRING" => Some(Self::Bytes),
            rest => Self::from_v2_name(rest),
        }
    }

    /// Parses an MLflow signature type: tensor dtypes (`float32`, `int64`, `str`) and column types
    /// (`double`, `long`, `string`).
    pub fn from_mlflow_name(name: &str) -> Option<Self> {
        Some(match name {
            "bool" | "boolean" => Self::Bool,
            "uint8" => Self::Uint8,
            "uint16" => Self::Uint16,
            "uint32" => Self::Uint32,
            "uint64" => Self::Uint64,
            "int8" => Self::Int8,
            "int16" => Self::Int16,
            "int32" | "integer" => Self::Int32,
            "int64" | "long" => Self::Int64,
            "float32" | "float" => Self::Fp32,
            "float64" | "double" => Self::Fp64,
            "str" | "string" | "object" | "bytes" | "binary" => Self::Bytes,
            _ => return None,
        })
    }

    /// Maps an ONNX Runtime element type; `None` for types the replica cannot serve (FP16, BF16, ...).
    pub fn from_ort(ty: TensorElementType) -> Option<Self> {
        Some(match ty {
            TensorElementType::Bool => Self::Bool,
            TensorElementType::Uint8 => Self::Uint8,
            TensorElementType::Uint16 => Self::Uint16,
            TensorElementType::Uint32 => Self::Uint32,
            TensorElementType::Uint64 => Self::Uint64,
            TensorElementType::Int8 => Self::Int8,
            TensorElementType::Int16 => Self::Int16,
            TensorElementType::Int32 => Self::Int32,
            TensorElementType::Int64 => Self::Int64,
            TensorElementType::Float32 => Self::Fp32,
            TensorElementType::Float64 => Self::Fp64,
            TensorElementType::String => Self::Bytes,
            _ => return None,
        })
    }

    /// Bytes per element in the binary tensor extension; `None` for BYTES (length-prefixed).
    pub fn element_size(self) -> Option<usize> {
        Some(match self {
            Self::Bool | Self::Uint8 | Self::Int8 => 1,
            Self::Uint16 | Self::Int16 => 2,
            Self::Uint32 | Self::Int32 | Self::Fp32 => 4,
            Self::Uint64 | Self::Int64 | Self::Fp64 => 8,
            Self::Bytes => return None,
        })
    }

    pub fn is_float(self) -> bool {
        matches!(self, Self::Fp32 | Self::Fp64)
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.v2_name())
    }
}

/// The display form of an ONNX element type that has no `DataType`, for error messages.
pub(crate) fn ort_type_name(ty: TensorElementType) -> String {
    match DataType::from_ort(ty) {
        Some(t) => t.v2_name().to_owned(),
        None => format!("{ty:?}").to_uppercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for t in DataType::ALL {
            assert_eq!(DataType::from_v2_name(t.v2_name()), Some(t));
        }
        assert_eq!(DataType::from_v2_name("fp32"), None);
        assert_eq!(DataType::from_v2_name("FP16"), None);
    }

    #[test]
    fn triton_names() {
        assert_eq!(DataType::from_triton_name("TYPE_FP32"), Some(DataType::Fp32));
        assert_eq!(DataType::from_triton_name("TYPE_STRING"), Some(DataType::Bytes));
        assert_eq!(DataType::from_triton_name("TYPE_INT64"), Some(DataType::Int64));
        assert_eq!(DataType::from_triton_name("FP32"), None);
        assert_eq!(DataType::from_triton_name("TYPE_FP16"), None);
    }

    #[test]
    fn mlflow_and_ort_names() {
        assert_eq!(DataType::from_mlflow_name("double"), Some(DataType::Fp64));
        assert_eq!(DataType::from_mlflow_name("float32"), Some(DataType::Fp32));
        assert_eq!(DataType::from_mlflow_name("complex"), None);
        assert_eq!(DataType::from_ort(TensorElementType::Int64), Some(DataType::Int64));
        assert_eq!(DataType::from_ort(TensorElementType::Float16), None);
        assert_eq!(ort_type_name(TensorElementType::Float16), "FLOAT16");
        assert_eq!(DataType::Bytes.element_size(), None);
        assert_eq!(DataType::Fp64.element_size(), Some(8));
    }
}
