//! The KServe v2 binary tensor data extension: a JSON header of `Inference-Header-Content-Length` bytes followed by
//! raw little-endian tensors (BYTES elements as a 4-byte length and the bytes).

use axum::body::Bytes;
use http::HeaderMap;

use crate::datatype::DataType;
use crate::error::InferError;
use crate::tensor::TensorData;

pub const HEADER_LENGTH: &str = "inference-header-content-length";

/// Splits a body into its JSON header and its binary section (empty without the extension header).
pub fn split_body(headers: &HeaderMap, body: Bytes) -> Result<(Bytes, Bytes), InferError> {
    let Some(value) = headers.get(HEADER_LENGTH) else {
        return Ok((body, Bytes::new()));
    };
    let length: usize = value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| InferError::bad_request("Inference-Header-Content-Length must be a non-negative integer"))?;
    if length > body.len() {
        return Err(InferError::bad_request(format!(
            "Inference-Header-Content-Length is {length} but the body has only {} bytes",
            body.len()
        )));
    }
    let mut json = body;
    let binary = json.split_off(length);
    Ok((json, binary))
}

/// Decodes `bytes` as `count` elements of `datatype`; `count` is `None` for BYTES, whose length is implied.
pub fn decode(datatype: DataType, bytes: &[u8]) -> Result<TensorData, String> {
    fn chunks<const N: usize, T>(bytes: &[u8], convert: fn([u8; N]) -> T) -> Result<Vec<T>, String> {
        if !bytes.len().is_multiple_of(N) {
            return Err(format!("{} bytes is not a whole number of {N}-byte elements", bytes.len()));
        }
        Ok(bytes
            .chunks_exact(N)
            .map(|c| {
                let mut a = [0u8; N];
                a.copy_from_slice(c);
                convert(a)
            })
            .collect())
    }
    Ok(match datatype {
        DataType::Bool => TensorData::Bool(bytes.iter().map(|b| *b != 0).collect()),
        DataType::Uint8 => TensorData::Uint8(bytes.to_vec()),
        DataType::Int8 => TensorData::Int8(bytes.iter().map(|b| i8::from_le_bytes([*b])).collect()),
        DataType::Uint16 => TensorData::Uint16(chunks(bytes, u16::from_le_bytes)?),
        DataType::Int16 => TensorData::Int16(chunks(bytes, i16::from_le_bytes)?),
        DataType::Uint32 => TensorData::Uint32(chunks(bytes, u32::from_le_bytes)?),
        DataType::Int32 => TensorData::Int32(chunks(bytes, i32::from_le_bytes)?),
        DataType::Uint64 => TensorData::Uint64(chunks(bytes, u64::from_le_bytes)?),
        DataType::Int64 => TensorData::Int64(chunks(bytes, i64::from_le_bytes)?),
        DataType::Fp32 => TensorData::Fp32(chunks(bytes, f32::from_le_bytes)?),
        DataType::Fp64 => TensorData::Fp64(chunks(bytes, f64::from_le_bytes)?),
        DataType::Bytes => TensorData::Bytes(decode_strings(bytes)?),
    })
}

fn decode_strings(mut bytes: &[u8]) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let Some((len, rest)) = bytes.split_first_chunk::<4>() else {
            return Err("a BYTES element is cut off inside its 4-byte length".to_owned());
        };
        let len = u32::from_le_bytes(*len) as usize;
        if len > rest.len() {
            return Err(format!("a BYTES element claims {len} bytes but only {} remain", rest.len()));
        }
        let (text, rest) = rest.split_at(len);
        let text = std::str::from_utf8(text).map_err(|_| format!("BYTES element {} is not valid UTF-8", out.len()))?;
        out.push(text.to_owned());
        bytes = rest;
    }
    Ok(out)
}

/// Encodes a tensor for the binary section of a response.
pub fn encode(data: &TensorData) -> Vec<u8> {
    fn le<T: Copy, const N: usize>(v: &[T], to: fn(T) -> [u8; N]) -> Vec<u8> {
        v.iter().flat_map(|x| to(*x)).collect()
    }
    match data {
        TensorData::Bool(v) => v.iter().map(|b| u8::from(*b)).collect(),
        TensorData::Uint8(v) => v.clone(),
        TensorData::Int8(v) => le(v, i8::to_le_bytes),
        TensorData::Uint16(v) => le(v, u16::to_le_bytes),
        TensorData::Int16(v) => le(v, i16::to_le_bytes),
        TensorData::Uint32(v) => le(v, u32::to_le_bytes),
        TensorData::Int32(v) => le(v, i32::to_le_bytes),
        TensorData::Uint64(v) => le(v, u64::to_le_bytes),
        TensorData::Int64(v) => le(v, i64::to_le_bytes),
        TensorData::Fp32(v) => le(v, f32::to_le_bytes),
        TensorData::Fp64(v) => le(v, f64::to_le_bytes),
        TensorData::Bytes(v) => {
            let mut out = Vec::new();
            for s in v {
                out.extend_from_slice(&u32::try_from(s.len()).unwrap_or(u32::MAX).to_le_bytes());
                out.extend_from_slice(s.as_bytes());
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_type() {
        let cases = [
            TensorData::Bool(vec![true, false]),
            TensorData::Int8(vec![-1, 2]),
            TensorData::Uint16(vec![65535]),
            TensorData::Int32(vec![-7, 8]),
            TensorData::Int64(vec![i64::MIN]),
            TensorData::Uint64(vec![u64::MAX]),
            TensorData::Fp32(vec![1.5, -0.25]),
            TensorData::Fp64(vec![std::f64::consts::PI]),
            TensorData::Bytes(vec!["héllo".into(), String::new()]),
        ];
        for data in cases {
            assert_eq!(decode(data.datatype(), &encode(&data)).unwrap(), data);
        }
    }

    #[test]
    fn rejects_truncated_data() {
        assert!(decode(DataType::Fp32, &[0, 0, 0]).unwrap_err().contains("not a whole number"));
        assert!(decode(DataType::Bytes, &[5, 0, 0, 0, b'a']).unwrap_err().contains("claims 5 bytes"));
        assert!(decode(DataType::Bytes, &[1, 0]).unwrap_err().contains("cut off"));
        assert!(decode(DataType::Bytes, &[1, 0, 0, 0, 0xff]).unwrap_err().contains("UTF-8"));
    }

    #[test]
    fn splits_on_the_header() {
        let mut headers = HeaderMap::new();
        let body = Bytes::from_static(b"{}abcd");
        let (json, bin) = split_body(&headers, body.clone()).unwrap();
        assert_eq!((json.len(), bin.len()), (6, 0));
        headers.insert(HEADER_LENGTH, "2".parse().unwrap());
        let (json, bin) = split_body(&headers, body.clone()).unwrap();
        assert_eq!((&json[..], &bin[..]), (&b"{}"[..], &b"abcd"[..]));
        headers.insert(HEADER_LENGTH, "99".parse().unwrap());
        assert!(split_body(&headers, body.clone()).is_err());
        headers.insert(HEADER_LENGTH, "x".parse().unwrap());
        assert!(split_body(&headers, body).is_err());
    }
}
