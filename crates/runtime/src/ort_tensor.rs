//! Moving tensors between `TensorData` and ONNX Runtime values.

use ort::value::{DynValue, Tensor, ValueType};

use crate::datatype::{DataType, ort_type_name};
use crate::tensor::TensorData;

/// Builds an ONNX Runtime tensor, taking ownership of the buffer (numeric types are not copied).
pub(crate) fn to_ort(data: TensorData, shape: Vec<i64>) -> Result<DynValue, String> {
    fn owned<T: ort::value::PrimitiveTensorElementType + Clone + std::fmt::Debug + 'static>(
        shape: Vec<i64>,
        v: Vec<T>,
    ) -> Result<DynValue, String> {
        Tensor::from_array((shape, v)).map(|t| t.into_dyn()).map_err(|e| e.to_string())
    }
    match data {
        TensorData::Bool(v) => owned(shape, v),
        TensorData::Uint8(v) => owned(shape, v),
        TensorData::Uint16(v) => owned(shape, v),
        TensorData::Uint32(v) => owned(shape, v),
        TensorData::Uint64(v) => owned(shape, v),
        TensorData::Int8(v) => owned(shape, v),
        TensorData::Int16(v) => owned(shape, v),
        TensorData::Int32(v) => owned(shape, v),
        TensorData::Int64(v) => owned(shape, v),
        TensorData::Fp32(v) => owned(shape, v),
        TensorData::Fp64(v) => owned(shape, v),
        TensorData::Bytes(v) => {
            Tensor::from_string_array((shape, v.as_slice())).map(|t| t.into_dyn()).map_err(|e| e.to_string())
        }
    }
}

/// Copies an ONNX Runtime output tensor out, with its shape.
pub(crate) fn from_ort(value: &DynValue) -> Result<(Vec<i64>, TensorData), String> {
    let ty = match value.dtype() {
        ValueType::Tensor { ty, .. } => *ty,
        other => return Err(format!("the output is a {other}, not a tensor")),
    };
    let datatype =
        DataType::from_ort(ty).ok_or_else(|| format!("output element type {} is not supported", ort_type_name(ty)))?;
    fn copy<T: ort::value::PrimitiveTensorElementType + Clone>(value: &DynValue) -> Result<(Vec<i64>, Vec<T>), String> {
        let (shape, data) = value.try_extract_tensor::<T>().map_err(|e| e.to_string())?;
        Ok((shape.iter().copied().collect(), data.to_vec()))
    }
    macro_rules! extract {
        ($variant:ident, $t:ty) => {{
            let (shape, data) = copy::<$t>(value)?;
            (shape, TensorData::$variant(data))
        }};
    }
    Ok(match datatype {
        DataType::Bool => extract!(Bool, bool),
        DataType::Uint8 => extract!(Uint8, u8),
        DataType::Uint16 => extract!(Uint16, u16),
        DataType::Uint32 => extract!(Uint32, u32),
        DataType::Uint64 => extract!(Uint64, u64),
        DataType::Int8 => extract!(Int8, i8),
        DataType::Int16 => extract!(Int16, i16),
        DataType::Int32 => extract!(Int32, i32),
        DataType::Int64 => extract!(Int64, i64),
        DataType::Fp32 => extract!(Fp32, f32),
        DataType::Fp64 => extract!(Fp64, f64),
        DataType::Bytes => {
            let (shape, data) = value.try_extract_strings().map_err(|e| e.to_string())?;
            (shape.iter().copied().collect(), TensorData::Bytes(data))
        }
    })
}
