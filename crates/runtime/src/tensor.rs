//! Host-side tensors: typed flat buffers, decoded from JSON (flat or nested) and encoded back to JSON.

use serde::ser::{Serialize, SerializeSeq, Serializer};
use serde_json::Value;

use crate::datatype::DataType;

/// A flat, row-major tensor buffer of one element type.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    Bool(Vec<bool>),
    Uint8(Vec<u8>),
    Uint16(Vec<u16>),
    Uint32(Vec<u32>),
    Uint64(Vec<u64>),
    Int8(Vec<i8>),
    Int16(Vec<i16>),
    Int32(Vec<i32>),
    Int64(Vec<i64>),
    Fp32(Vec<f32>),
    Fp64(Vec<f64>),
    Bytes(Vec<String>),
}

/// Applies `$body` to the vector inside any `TensorData` variant.
macro_rules! with_vec {
    ($data:expr, $v:ident => $body:expr) => {
        match $data {
            TensorData::Bool($v) => $body,
            TensorData::Uint8($v) => $body,
            TensorData::Uint16($v) => $body,
            TensorData::Uint32($v) => $body,
            TensorData::Uint64($v) => $body,
            TensorData::Int8($v) => $body,
            TensorData::Int16($v) => $body,
            TensorData::Int32($v) => $body,
            TensorData::Int64($v) => $body,
            TensorData::Fp32($v) => $body,
            TensorData::Fp64($v) => $body,
            TensorData::Bytes($v) => $body,
        }
    };
}

/// A v2 request's `data`, read without a JSON tree when it is a flat list of numbers (what clients send for
/// tensors of any size); anything else (nested lists, strings, booleans, a scalar) is kept as a `Value`.
#[derive(Debug, Clone, PartialEq)]
pub enum JsonData {
    /// A flat list of numbers, each exactly representable as f64 (integers beyond 2^53 go to `Tree`).
    Numbers(Vec<f64>),
    Tree(Value),
}

/// Integers up to this magnitude are exact in f64.
const EXACT_F64_INT: f64 = 9_007_199_254_740_992.0;

/// The JSON number a fast-path element stands for: integral values as integers (as the client most likely wrote
/// them), others as floats.
fn number_value(v: f64) -> Value {
    if v.fract() == 0.0 && v.abs() < EXACT_F64_INT {
        Value::from(v as i64)
    } else {
        serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number)
    }
}

/// One element of a list: a number kept as f64, or anything else as a `Value`.
enum ListItem {
    Number(f64),
    Other(Value),
}

impl<'de> serde::Deserialize<'de> for ListItem {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = ListItem;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_i64<E>(self, v: i64) -> Result<ListItem, E> {
                Ok(if (v as f64).abs() < EXACT_F64_INT {
                    ListItem::Number(v as f64)
                } else {
                    ListItem::Other(v.into())
                })
            }
            fn visit_u64<E>(self, v: u64) -> Result<ListItem, E> {
                Ok(if (v as f64) < EXACT_F64_INT { ListItem::Number(v as f64) } else { ListItem::Other(v.into()) })
            }
            fn visit_f64<E>(self, v: f64) -> Result<ListItem, E> {
                Ok(ListItem::Number(v))
            }
            fn visit_bool<E>(self, v: bool) -> Result<ListItem, E> {
                Ok(ListItem::Other(Value::Bool(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<ListItem, E> {
                Ok(ListItem::Other(Value::String(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<ListItem, E> {
                Ok(ListItem::Other(Value::String(v)))
            }
            fn visit_unit<E>(self) -> Result<ListItem, E> {
                Ok(ListItem::Other(Value::Null))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<ListItem, A::Error> {
                let value = serde::Deserialize::deserialize(serde::de::value::SeqAccessDeserializer::new(seq))?;
                Ok(ListItem::Other(value))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<ListItem, A::Error> {
                let value = serde::Deserialize::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(ListItem::Other(value))
            }
        }
        deserializer.deserialize_any(V)
    }
}

impl<'de> serde::Deserialize<'de> for JsonData {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = JsonData;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a list of values or a single value")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<JsonData, A::Error> {
                let mut numbers = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 16));
                while let Some(element) = seq.next_element::<ListItem>()? {
                    match element {
                        ListItem::Number(v) => numbers.push(v),
                        ListItem::Other(first) => {
                            // Not a flat list of numbers: a tree, as before.
                            let mut items: Vec<Value> = numbers.into_iter().map(number_value).collect();
                            items.push(first);
                            while let Some(v) = seq.next_element::<Value>()? {
                                items.push(v);
                            }
                            return Ok(JsonData::Tree(Value::Array(items)));
                        }
                    }
                }
                Ok(JsonData::Numbers(numbers))
            }
            fn visit_i64<E>(self, v: i64) -> Result<JsonData, E> {
                Ok(JsonData::Tree(v.into()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<JsonData, E> {
                Ok(JsonData::Tree(v.into()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<JsonData, E> {
                Ok(JsonData::Tree(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number)))
            }
            fn visit_bool<E>(self, v: bool) -> Result<JsonData, E> {
                Ok(JsonData::Tree(Value::Bool(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<JsonData, E> {
                Ok(JsonData::Tree(Value::String(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<JsonData, E> {
                Ok(JsonData::Tree(Value::String(v)))
            }
            fn visit_unit<E>(self) -> Result<JsonData, E> {
                Ok(JsonData::Tree(Value::Null))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<JsonData, A::Error> {
                let value = serde::Deserialize::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(JsonData::Tree(value))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// A named tensor with its shape.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedTensor {
    pub name: String,
    pub shape: Vec<i64>,
    pub data: TensorData,
}

impl TensorData {
    pub fn datatype(&self) -> DataType {
        match self {
            Self::Bool(_) => DataType::Bool,
            Self::Uint8(_) => DataType::Uint8,
            Self::Uint16(_) => DataType::Uint16,
            Self::Uint32(_) => DataType::Uint32,
            Self::Uint64(_) => DataType::Uint64,
            Self::Int8(_) => DataType::Int8,
            Self::Int16(_) => DataType::Int16,
            Self::Int32(_) => DataType::Int32,
            Self::Int64(_) => DataType::Int64,
            Self::Fp32(_) => DataType::Fp32,
            Self::Fp64(_) => DataType::Fp64,
            Self::Bytes(_) => DataType::Bytes,
        }
    }

    pub fn len(&self) -> usize {
        with_vec!(self, v => v.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Decodes a JSON `data` value (a flat list, a nested list, or a single scalar) into `datatype`, returning the
    /// buffer and the shape implied by the nesting. Integral floats (`1.0`) are accepted for integer types.
    pub fn from_json(datatype: DataType, value: &Value) -> Result<(Self, Vec<usize>), String> {
        let mut shape = NestedShape::default();
        let data = match datatype {
            DataType::Bool => Self::Bool(flatten(value, &mut shape, datatype)?),
            DataType::Uint8 => Self::Uint8(flatten(value, &mut shape, datatype)?),
            DataType::Uint16 => Self::Uint16(flatten(value, &mut shape, datatype)?),
            DataType::Uint32 => Self::Uint32(flatten(value, &mut shape, datatype)?),
            DataType::Uint64 => Self::Uint64(flatten(value, &mut shape, datatype)?),
            DataType::Int8 => Self::Int8(flatten(value, &mut shape, datatype)?),
            DataType::Int16 => Self::Int16(flatten(value, &mut shape, datatype)?),
            DataType::Int32 => Self::Int32(flatten(value, &mut shape, datatype)?),
            DataType::Int64 => Self::Int64(flatten(value, &mut shape, datatype)?),
            DataType::Fp32 => Self::Fp32(flatten(value, &mut shape, datatype)?),
            DataType::Fp64 => Self::Fp64(flatten(value, &mut shape, datatype)?),
            DataType::Bytes => Self::Bytes(flatten(value, &mut shape, datatype)?),
        };
        Ok((data, shape.dims))
    }

    /// Appends `other`'s elements; `false` (and nothing appended) if the element types differ.
    pub fn append(&mut self, other: TensorData) -> bool {
        macro_rules! same {
            ($($variant:ident),+) => {
                match (self, other) {
                    $((Self::$variant(a), Self::$variant(b)) => { a.extend(b); true })+
                    _ => false,
                }
            };
        }
        same!(Bool, Uint8, Uint16, Uint32, Uint64, Int8, Int16, Int32, Int64, Fp32, Fp64, Bytes)
    }

    /// Splits into consecutive parts of `counts` elements, moving the elements; `None` unless the counts add up
    /// to the length.
    pub fn split(self, counts: &[usize]) -> Option<Vec<Self>> {
        if counts.iter().try_fold(0usize, |acc, c| acc.checked_add(*c)) != Some(self.len()) {
            return None;
        }
        macro_rules! parts {
            ($($variant:ident),+) => {
                match self {
                    $(Self::$variant(v) => {
                        let mut items = v.into_iter();
                        counts.iter().map(|c| Self::$variant(items.by_ref().take(*c).collect())).collect()
                    })+
                }
            };
        }
        Some(parts!(Bool, Uint8, Uint16, Uint32, Uint64, Int8, Int16, Int32, Int64, Fp32, Fp64, Bytes))
    }

    /// Decodes a request's `data` into `datatype`: a flat list of numbers straight into the buffer, anything else
    /// (or a value the fast path cannot take) through `from_json`, with its messages.
    pub fn from_request_data(datatype: DataType, data: JsonData) -> Result<Self, String> {
        let numbers = match data {
            JsonData::Tree(value) => return Self::from_json(datatype, &value).map(|(d, _)| d),
            JsonData::Numbers(numbers) if datatype == DataType::Fp64 => return Ok(Self::Fp64(numbers)),
            JsonData::Numbers(numbers) => numbers,
        };
        fn ints<T: TryFrom<i64>>(numbers: &[f64]) -> Option<Vec<T>> {
            numbers
                .iter()
                .map(|v| (v.fract() == 0.0 && v.abs() < EXACT_F64_INT).then(|| T::try_from(*v as i64).ok()).flatten())
                .collect()
        }
        let fast = match datatype {
            DataType::Fp32 => Some(Self::Fp32(numbers.iter().map(|v| *v as f32).collect())),
            DataType::Int8 => ints(&numbers).map(Self::Int8),
            DataType::Int16 => ints(&numbers).map(Self::Int16),
            DataType::Int32 => ints(&numbers).map(Self::Int32),
            DataType::Int64 => ints(&numbers).map(Self::Int64),
            DataType::Uint8 => ints(&numbers).map(Self::Uint8),
            DataType::Uint16 => ints(&numbers).map(Self::Uint16),
            DataType::Uint32 => ints(&numbers).map(Self::Uint32),
            DataType::Uint64 => ints(&numbers).map(Self::Uint64),
            // FP64 was taken above, without a copy.
            DataType::Fp64 | DataType::Bool | DataType::Bytes => None,
        };
        match fast {
            Some(data) => Ok(data),
            // Numbers that do not fit the type: the tree path says which element and why.
            None => Self::from_json(datatype, &Value::Array(numbers.into_iter().map(number_value).collect()))
                .map(|(d, _)| d),
        }
    }

    /// Keeps the elements `[start, end)`; used to split a batch.
    pub fn slice(&self, start: usize, end: usize) -> Self {
        with_vec!(self, v => v.get(start..end).unwrap_or_default().to_vec().into())
    }
}

macro_rules! impl_from_vec {
    ($($t:ty => $variant:ident),+) => {
        $(impl From<Vec<$t>> for TensorData {
            fn from(v: Vec<$t>) -> Self {
                Self::$variant(v)
            }
        })+
    };
}
impl_from_vec!(bool => Bool, u8 => Uint8, u16 => Uint16, u32 => Uint32, u64 => Uint64, i8 => Int8, i16 => Int16,
    i32 => Int32, i64 => Int64, f32 => Fp32, f64 => Fp64, String => Bytes);

impl Serialize for TensorData {
    /// Serialises as a flat JSON list; non-finite floats become `null` (as serde_json does). FP32 values are
    /// written widened to f64 (`0.9847031831741333`, as Triton and numpy's `tolist()` do), so clients that parse
    /// JSON numbers as doubles see exactly the value the model produced.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if let Self::Fp32(v) = self {
            let mut seq = serializer.serialize_seq(Some(v.len()))?;
            for x in v {
                seq.serialize_element(&f64::from(*x))?;
            }
            return seq.end();
        }
        with_vec!(self, v => {
            let mut seq = serializer.serialize_seq(Some(v.len()))?;
            for x in v {
                seq.serialize_element(x)?;
            }
            seq.end()
        })
    }
}

/// The number of elements a shape holds, or `None` if a dimension is negative or the product overflows.
pub fn element_count(shape: &[i64]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(usize::try_from(d).ok()?))
}

/// A JSON value that can become one tensor element.
trait Element: Sized {
    fn from_json(value: &Value) -> Option<Self>;
}

fn integral(value: &Value) -> Option<i128> {
    if let Some(i) = value.as_i64() {
        return Some(i.into());
    }
    if let Some(u) = value.as_u64() {
        return Some(u.into());
    }
    let f = value.as_f64()?;
    // Integral floats within the range that f64 represents exactly.
    (f.fract() == 0.0 && f.abs() < 9.007_199_254_740_992e15).then_some(f as i128)
}

macro_rules! impl_int_element {
    ($($t:ty),+) => {
        $(impl Element for $t {
            fn from_json(value: &Value) -> Option<Self> {
                integral(value).and_then(|i| <$t>::try_from(i).ok())
            }
        })+
    };
}
impl_int_element!(u8, u16, u32, u64, i8, i16, i32, i64);

impl Element for f32 {
    fn from_json(value: &Value) -> Option<Self> {
        value.as_f64().map(|f| f as f32)
    }
}

impl Element for f64 {
    fn from_json(value: &Value) -> Option<Self> {
        value.as_f64()
    }
}

impl Element for bool {
    fn from_json(value: &Value) -> Option<Self> {
        value.as_bool()
    }
}

impl Element for String {
    fn from_json(value: &Value) -> Option<Self> {
        value.as_str().map(str::to_owned)
    }
}

/// The shape implied by nested lists, checked to be rectangular while flattening.
#[derive(Default)]
struct NestedShape {
    dims: Vec<usize>,
    /// The depth at which scalars sit, once one has been seen.
    leaf_depth: Option<usize>,
}

fn describe(value: &Value) -> String {
    let text = value.to_string();
    if text.len() > 40 {
        let cut = (0..=40).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(0);
        format!("{}...", &text[..cut])
    } else {
        text
    }
}

fn flatten<T: Element>(value: &Value, shape: &mut NestedShape, datatype: DataType) -> Result<Vec<T>, String> {
    let mut out = Vec::new();
    flatten_into(value, 0, shape, datatype, &mut out)?;
    Ok(out)
}

fn flatten_into<T: Element>(
    value: &Value,
    depth: usize,
    shape: &mut NestedShape,
    datatype: DataType,
    out: &mut Vec<T>,
) -> Result<(), String> {
    match value {
        Value::Array(items) => {
            match shape.dims.get(depth) {
                Some(&len) if len != items.len() => {
                    return Err(format!(
                        "nested lists are ragged: a list at depth {} has {} elements, an earlier one has {len}",
                        depth + 1,
                        items.len()
                    ));
                }
                Some(_) => {}
                None if shape.leaf_depth.is_some_and(|d| d <= depth) => {
                    return Err("nested lists are ragged: lists and scalars are mixed at the same depth".to_owned());
                }
                None => shape.dims.push(items.len()),
            }
            out.reserve(items.len());
            for item in items {
                flatten_into(item, depth + 1, shape, datatype, out)?;
            }
            Ok(())
        }
        scalar => {
            match shape.leaf_depth {
                Some(d) if d != depth => {
                    return Err("nested lists are ragged: lists and scalars are mixed at the same depth".to_owned());
                }
                Some(_) => {}
                None if shape.dims.len() > depth => {
                    return Err("nested lists are ragged: lists and scalars are mixed at the same depth".to_owned());
                }
                None => shape.leaf_depth = Some(depth),
            }
            let element = T::from_json(scalar).ok_or_else(|| {
                format!("element {} is {}, which is not a valid {datatype} value", out.len(), describe(scalar))
            })?;
            out.push(element);
            Ok(())
        }
    }
}

#[cfg(test)]
#[path = "tensor_tests.rs"]
mod tests;
