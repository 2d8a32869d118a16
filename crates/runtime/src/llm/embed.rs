//! `/embeddings`: the body validated into an [`EmbedRequest`], and the answer in float or base64 encoding.
//!
//! `input` is a string or an array of 1 to [`MAX_INPUTS`] non-empty strings (token arrays are not supported);
//! `encoding_format` is `float` (default) or `base64` (little-endian f32 bytes, as OpenAI, whose Python client
//! asks for base64 by default); `dimensions` may only name the model's own size; `input_type` may be `text`,
//! `query` or `document` and changes nothing for a symmetric model; `model` and `user` are ignored.

use base64::Engine as _;
use serde_json::{Map, Value, json};

use super::error::{ApiError, body_loc};
use super::params::{ExtraParameters, Fields};
use super::response::Usage;

/// The most inputs one request may embed (as OpenAI).
pub const MAX_INPUTS: usize = 2048;

const EMBEDDING_KEYS: &[&str] = &["input", "model", "dimensions", "encoding_format", "input_type", "user"];

/// How vectors are written in the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Float,
    Base64,
}

/// A validated `/embeddings` request.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbedRequest {
    pub inputs: Vec<String>,
    pub encoding: Encoding,
}

/// Validates an `/embeddings` body for a model whose vectors have `dimensions` components.
pub fn parse_embeddings(
    body: Map<String, Value>,
    policy: ExtraParameters,
    dimensions: u32,
) -> Result<EmbedRequest, ApiError> {
    let mut fields = Fields::new(body, EMBEDDING_KEYS, policy)?;
    let inputs = match fields.take("input") {
        None => return Err(ApiError::missing(body_loc("input"))),
        Some(Value::String(text)) => vec![text],
        Some(Value::Array(items)) => {
            if items.is_empty() {
                return Err(ApiError::bad_request("'input' must hold at least one string"));
            }
            if items.len() > MAX_INPUTS {
                return Err(ApiError::bad_request(format!(
                    "'input' holds {} strings; at most {MAX_INPUTS} may be embedded in one request",
                    items.len()
                )));
            }
            let mut inputs = Vec::with_capacity(items.len());
            for (i, item) in items.into_iter().enumerate() {
                match item {
                    Value::String(text) => inputs.push(text),
                    other => {
                        let loc = vec![Value::from("body"), Value::from("input"), Value::from(i)];
                        return Err(if other.is_number() || other.is_array() {
                            ApiError::not_supported(loc, &other, "token arrays are not accepted; send text")
                        } else {
                            ApiError::invalid_value(loc, &other, "must be a string")
                        });
                    }
                }
            }
            inputs
        }
        Some(other) => {
            return Err(ApiError::invalid_value(body_loc("input"), &other, "must be a string or an array of strings"));
        }
    };
    if let Some(i) = inputs.iter().position(String::is_empty) {
        let which = if inputs.len() == 1 { "'input'".to_owned() } else { format!("'input[{i}]'") };
        return Err(ApiError::bad_request(format!("{which} is empty; every input must hold some text")));
    }
    let encoding = match fields.take("encoding_format") {
        None => Encoding::Float,
        Some(value) => match value.as_str() {
            Some("float") => Encoding::Float,
            Some("base64") => Encoding::Base64,
            Some("int8" | "uint8" | "binary" | "ubinary") => {
                return Err(ApiError::not_supported(body_loc("encoding_format"), &value, "use 'float' or 'base64'"));
            }
            _ => {
                return Err(ApiError::invalid_value(
                    body_loc("encoding_format"),
                    &value,
                    "must be 'float' or 'base64'",
                ));
            }
        },
    };
    if let Some(value) = fields.take("dimensions")
        && value.as_u64() != Some(u64::from(dimensions))
    {
        return Err(ApiError::not_supported(
            body_loc("dimensions"),
            &value,
            format!("this model's embeddings have {dimensions} dimensions and cannot be shortened"),
        ));
    }
    match fields.take("input_type") {
        None => {}
        Some(value) if matches!(value.as_str(), Some("text" | "query" | "document")) => {}
        Some(value) => {
            return Err(ApiError::invalid_value(
                body_loc("input_type"),
                &value,
                "must be 'text', 'query' or 'document'",
            ));
        }
    }
    fields.string("model")?;
    fields.string("user")?;
    Ok(EmbedRequest { inputs, encoding })
}

/// The answer: `{object: "list", model, data: [{object: "embedding", index, embedding}], usage}`.
pub fn embeddings_body(model: &str, vectors: &[Vec<f32>], encoding: Encoding, prompt_tokens: u32) -> Value {
    let data: Vec<Value> = vectors
        .iter()
        .enumerate()
        .map(|(index, vector)| {
            let embedding = match encoding {
                Encoding::Float => json!(vector),
                Encoding::Base64 => Value::from(base64_f32(vector)),
            };
            json!({ "object": "embedding", "index": index, "embedding": embedding })
        })
        .collect();
    let usage = Usage { prompt_tokens, completion_tokens: 0, cached_tokens: 0 };
    json!({
        "object": "list",
        "model": model,
        "data": data,
        "usage": { "prompt_tokens": usage.prompt_tokens, "total_tokens": usage.prompt_tokens },
    })
}

/// Little-endian f32 bytes in standard base64, as OpenAI encodes them.
pub fn base64_f32(vector: &[f32]) -> String {
    let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: Value) -> Result<EmbedRequest, ApiError> {
        parse_embeddings(body.as_object().unwrap().clone(), ExtraParameters::Error, 384)
    }

    #[test]
    fn inputs_and_defaults() {
        let request = parse(json!({"input": "hello"})).unwrap();
        assert_eq!(request, EmbedRequest { inputs: vec!["hello".into()], encoding: Encoding::Float });
        let request = parse(json!({
            "input": ["a", "b"], "encoding_format": "base64", "dimensions": 384, "input_type": "query",
            "model": "m", "user": "u"
        }))
        .unwrap();
        assert_eq!(request.inputs.len(), 2);
        assert_eq!(request.encoding, Encoding::Base64);
    }

    #[test]
    fn refusals() {
        let status = |body: Value| {
            let e = parse(body).unwrap_err();
            (e.status.as_u16(), e.code)
        };
        assert_eq!(status(json!({})), (422, "missing_parameter"));
        assert_eq!(status(json!({"input": ""})), (400, "bad_request"));
        assert_eq!(status(json!({"input": ["a", ""]})), (400, "bad_request"));
        assert_eq!(status(json!({"input": []})), (400, "bad_request"));
        assert_eq!(status(json!({"input": vec!["a"; MAX_INPUTS + 1]})), (400, "bad_request"));
        assert_eq!(status(json!({"input": [[1, 2]]})), (422, "parameter_not_supported"));
        assert_eq!(status(json!({"input": 5})), (422, "invalid_parameter_value"));
        assert_eq!(status(json!({"input": "a", "dimensions": 128})), (422, "parameter_not_supported"));
        assert_eq!(status(json!({"input": "a", "encoding_format": "int8"})), (422, "parameter_not_supported"));
        assert_eq!(status(json!({"input": "a", "encoding_format": "hex"})), (422, "invalid_parameter_value"));
        assert_eq!(status(json!({"input": "a", "input_type": "image"})), (422, "invalid_parameter_value"));
        assert_eq!(status(json!({"input": "a", "truncate": true})), (422, "extra_parameters_not_allowed"));
        let e = parse(json!({"input": ["a", ""]})).unwrap_err();
        assert!(e.message.contains("input[1]"), "{}", e.message);
    }

    #[test]
    fn base64_is_little_endian_f32() {
        // 1.0f32 = 0x3f800000 -> bytes 00 00 80 3f.
        assert_eq!(base64_f32(&[1.0]), "AACAPw==");
        let body = embeddings_body("mini", &[vec![1.0, -2.5]], Encoding::Base64, 3);
        let decoded =
            base64::engine::general_purpose::STANDARD.decode(body["data"][0]["embedding"].as_str().unwrap()).unwrap();
        let floats: Vec<f32> = decoded.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        assert_eq!(floats, vec![1.0, -2.5]);
        let body = embeddings_body("mini", &[vec![0.5], vec![0.25]], Encoding::Float, 4);
        assert_eq!(body["object"], "list");
        assert_eq!(body["data"][1], json!({"object": "embedding", "index": 1, "embedding": [0.25]}));
        assert_eq!(body["usage"], json!({"prompt_tokens": 4, "total_tokens": 4}));
    }
}
