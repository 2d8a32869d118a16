//! A `tokenizer.json` (byte-level BPE) and `tokenizer_config.json` in GGUF's `tokenizer.*` keys, as
//! llama.cpp's `convert_hf_to_gguf.py` writes them for GPT-2-style vocabularies.

use std::collections::HashMap;
use std::path::Path;

use serde_json::Value;

use super::gguf::MetaValue;
use super::read_json;

/// llama.cpp's name for the pre-tokenizer a `tokenizer.json` describes.
fn pre_tokenizer_name(tokenizer: &Value) -> Result<&'static str, String> {
    const LLAMA3: &str = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
    let pre = tokenizer.get("pre_tokenizer").unwrap_or(&Value::Null);
    let kind = |v: &Value| v.get("type").and_then(Value::as_str).unwrap_or("").to_owned();
    let byte_level_regex =
        |v: &Value| kind(v) == "ByteLevel" && v.get("use_regex").and_then(Value::as_bool).unwrap_or(true);
    if byte_level_regex(pre) {
        return Ok("gpt-2");
    }
    if kind(pre) == "Sequence" {
        let parts: Vec<&Value> =
            pre.get("pretokenizers").and_then(Value::as_array).map(|a| a.iter().collect()).unwrap_or_default();
        if let [digits, byte_level] = parts.as_slice()
            && kind(digits) == "Digits"
            && digits.get("individual_digits").and_then(Value::as_bool) == Some(true)
            && byte_level_regex(byte_level)
        {
            return Ok("smollm");
        }
        if let [split, byte_level] = parts.as_slice()
            && kind(split) == "Split"
            && split.pointer("/pattern/Regex").and_then(Value::as_str) == Some(LLAMA3)
            && kind(byte_level) == "ByteLevel"
        {
            return Ok("llama-bpe");
        }
    }
    Err(format!(
        "tokenizer.json's pre-tokenizer ({}) is not one this converter knows (GPT-2 byte-level, SmolLM, \
         Llama 3); convert the model to GGUF with llama.cpp's convert_hf_to_gguf.py",
        if pre.is_null() { "none".to_owned() } else { kind(pre) }
    ))
}

/// A special token named in `tokenizer_config.json`, as a string or as `{"content": ...}`.
fn token_text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content").and_then(Value::as_str).map(str::to_owned),
        _ => None,
    }
}

/// The tokenizer's metadata, in GGUF's `tokenizer.*` keys.
pub(super) fn tokenizer_metadata(
    dir: &Path,
    vocab_size: u64,
    config: &Value,
) -> Result<(Vec<(String, MetaValue)>, bool), String> {
    let tokenizer = read_json(&dir.join("tokenizer.json"))?;
    let model = tokenizer.get("model").ok_or("tokenizer.json has no model")?;
    if model.get("type").and_then(Value::as_str) != Some("BPE")
        || model.get("byte_fallback").and_then(Value::as_bool) == Some(true)
    {
        return Err("tokenizer.json is not a byte-level BPE tokenizer (SentencePiece-style tokenizers are not \
                    supported); convert the model to GGUF with llama.cpp's convert_hf_to_gguf.py"
            .into());
    }
    let pre = pre_tokenizer_name(&tokenizer)?;
    let vocab = model.get("vocab").and_then(Value::as_object).ok_or("tokenizer.json has no model.vocab")?;
    let size = usize::try_from(vocab_size).map_err(|_| "vocab_size is too large")?;
    let mut tokens: Vec<Option<String>> = vec![None; size];
    let mut types = vec![1i32; size];
    let mut ids: HashMap<String, u32> = HashMap::new();
    let mut put = |text: &str, id: u64, kind: i32, tokens: &mut Vec<Option<String>>| -> Result<(), String> {
        let slot = usize::try_from(id).ok().filter(|i| *i < size).ok_or_else(|| {
            format!("tokenizer.json: token {text:?} has id {id}, beyond config.json's vocab_size {vocab_size}")
        })?;
        tokens[slot] = Some(text.to_owned());
        types[slot] = kind;
        ids.insert(text.to_owned(), slot as u32);
        Ok(())
    };
    for (text, id) in vocab {
        put(text, id.as_u64().ok_or("tokenizer.json: a vocab id is not a number")?, 1, &mut tokens)?;
    }
    for added in tokenizer.get("added_tokens").and_then(Value::as_array).into_iter().flatten() {
        let (Some(text), Some(id)) =
            (added.get("content").and_then(Value::as_str), added.get("id").and_then(Value::as_u64))
        else {
            return Err("tokenizer.json: an added token has no content or id".into());
        };
        let special = added.get("special").and_then(Value::as_bool).unwrap_or(false);
        put(text, id, if special { 3 } else { 4 }, &mut tokens)?;
    }
    let tokens: Vec<String> = tokens
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            t.unwrap_or_else(|| {
                types[i] = 5;
                format!("[PAD{i}]")
            })
        })
        .collect();
    let merges: Vec<String> = model
        .get("merges")
        .and_then(Value::as_array)
        .ok_or("tokenizer.json has no model.merges")?
        .iter()
        .map(|m| match m {
            Value::String(s) => Ok(s.clone()),
            Value::Array(pair) => match pair.as_slice() {
                [Value::String(a), Value::String(b)] => Ok(format!("{a} {b}")),
                _ => Err("tokenizer.json: a merge is not a pair of strings".to_owned()),
            },
            _ => Err("tokenizer.json: a merge is not a string or a pair".to_owned()),
        })
        .collect::<Result<_, _>>()?;

    let tokenizer_config = match dir.join("tokenizer_config.json") {
        p if p.is_file() => read_json(&p)?,
        _ => Value::Null,
    };
    let mut meta = vec![
        ("tokenizer.ggml.model".to_owned(), MetaValue::Str("gpt2".into())),
        ("tokenizer.ggml.pre".to_owned(), MetaValue::Str(pre.into())),
        ("tokenizer.ggml.tokens".to_owned(), MetaValue::StrArray(tokens)),
        ("tokenizer.ggml.token_type".to_owned(), MetaValue::I32Array(types)),
        ("tokenizer.ggml.merges".to_owned(), MetaValue::StrArray(merges)),
    ];
    for (key, config_key, gguf_key) in [
        ("bos_token", "bos_token_id", "tokenizer.ggml.bos_token_id"),
        ("eos_token", "eos_token_id", "tokenizer.ggml.eos_token_id"),
        ("unk_token", "unk_token_id", "tokenizer.ggml.unknown_token_id"),
        ("pad_token", "pad_token_id", "tokenizer.ggml.padding_token_id"),
    ] {
        let id = match token_text(tokenizer_config.get(key)) {
            Some(text) => Some(
                *ids.get(&text)
                    .ok_or_else(|| format!("tokenizer_config.json: {key} {text:?} is not in the vocabulary"))?,
            ),
            None => config
                .get(config_key)
                .and_then(Value::as_u64)
                .and_then(|id| u32::try_from(id).ok())
                .filter(|id| u64::from(*id) < vocab_size),
        };
        if let Some(id) = id {
            meta.push((gguf_key.to_owned(), MetaValue::U32(id)));
        }
    }
    if let Some(add_bos) = tokenizer_config.get("add_bos_token").and_then(Value::as_bool) {
        meta.push(("tokenizer.ggml.add_bos_token".to_owned(), MetaValue::Bool(add_bos)));
    }
    let template = tokenizer_config.get("chat_template").and_then(Value::as_str).filter(|t| !t.trim().is_empty());
    if let Some(template) = template {
        meta.push(("tokenizer.chat_template".to_owned(), MetaValue::Str(template.to_owned())));
    }
    Ok((meta, template.is_some()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pre_tokenizers_map_to_llama_cpp_names_and_unknown_ones_are_refused() {
        let smollm = serde_json::json!({"pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": true},
            {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}]}});
        assert_eq!(pre_tokenizer_name(&smollm).unwrap(), "smollm");
        let gpt2 = serde_json::json!({"pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false}});
        assert_eq!(pre_tokenizer_name(&gpt2).unwrap(), "gpt-2");
        let metaspace = serde_json::json!({"pre_tokenizer": {"type": "Metaspace"}});
        let err = pre_tokenizer_name(&metaspace).unwrap_err();
        assert!(err.contains("Metaspace") && err.contains("convert_hf_to_gguf"), "{err}");
    }
}
