//! `data_collector`: Azure ML's production data collection. The reserved `request` and
//! `response` collections record sampled payloads (the gateway writes them as JSON Lines);
//! custom collections (written by `azureml-ai-monitoring` inside a scoring script) are accepted
//! and ignored.

use crate::FieldError;
use sluice_domain::{DataCollection, Rolling};

/// Headers that are never recorded, whatever `capture_headers` says.
pub const NEVER_CAPTURED: &[&str] = &["authorization", "api-key", "cookie", "proxy-authorization", "x-api-key"];

pub(crate) fn settings(value: Option<&serde_json::Value>, errors: &mut Vec<FieldError>) -> Option<DataCollection> {
    let mut push =
        |field: &str, message: String| errors.push(FieldError { field: format!("data_collector{field}"), message });
    let obj = match value? {
        serde_json::Value::Object(o) => o,
        _ => {
            push("", "expected a mapping such as {collections: {request: {enabled: 'True'}}}".into());
            return None;
        }
    };
    for key in obj.keys() {
        if !["sampling_rate", "rolling_rate", "collections", "request_logging"].contains(&key.as_str()) {
            push(
                &format!(".{key}"),
                "unknown field: expected sampling_rate, rolling_rate, collections or request_logging".into(),
            );
        }
    }
    let sampling_rate = match obj.get("sampling_rate") {
        None => 1.0,
        Some(v) => match v.as_f64().filter(|r| (0.0..=1.0).contains(r)) {
            Some(r) => r,
            None => {
                push(".sampling_rate", format!("{v}: expected a number from 0 to 1"));
                1.0
            }
        },
    };
    let rolling = match obj.get("rolling_rate").map(|r| r.as_str().map(str::to_ascii_lowercase)) {
        None => Rolling::Hour,
        Some(Some(r)) if r == "minute" => Rolling::Minute,
        Some(Some(r)) if r == "hour" => Rolling::Hour,
        Some(Some(r)) if r == "day" => Rolling::Day,
        Some(_) => {
            push(".rolling_rate", "expected minute, hour or day".into());
            Rolling::Hour
        }
    };
    let mut enabled = |name: &str| -> bool {
        let Some(c) = obj.get("collections").and_then(|c| c.get(name)) else { return false };
        match c.get("enabled") {
            None => true,
            Some(serde_json::Value::Bool(b)) => *b,
            Some(serde_json::Value::String(s)) if s.eq_ignore_ascii_case("true") => true,
            Some(serde_json::Value::String(s)) if s.eq_ignore_ascii_case("false") => false,
            Some(other) => {
                push(&format!(".collections.{name}.enabled"), format!("{other}: expected 'True' or 'False'"));
                false
            }
        }
    };
    let (request, response) = (enabled("request"), enabled("response"));
    if let Some(c) = obj.get("collections").filter(|c| !c.is_object()) {
        push(".collections", format!("{c}: expected a mapping of collection names"));
    }
    let capture_headers = match obj.get("request_logging").and_then(|r| r.get("capture_headers")) {
        None => Vec::new(),
        Some(serde_json::Value::Array(a)) if a.iter().all(|h| h.is_string()) => a
            .iter()
            .filter_map(|h| h.as_str())
            .map(str::to_ascii_lowercase)
            .filter(|h| !NEVER_CAPTURED.contains(&h.as_str()))
            .collect(),
        Some(other) => {
            push(".request_logging.capture_headers", format!("{other}: expected a list of header names"));
            Vec::new()
        }
    };
    (request || response).then_some(DataCollection { sampling_rate, rolling, request, response, capture_headers })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(v: serde_json::Value) -> Result<Option<DataCollection>, Vec<FieldError>> {
        let mut errors = Vec::new();
        let s = settings(Some(&v), &mut errors);
        if errors.is_empty() { Ok(s) } else { Err(errors) }
    }

    #[test]
    fn payload_collections_turn_it_on_and_credentials_are_never_captured() {
        let on = check(json!({"sampling_rate": 0.5, "rolling_rate": "Minute",
            "collections": {"request": {"enabled": "True"}, "response": {"enabled": "false"}, "my_features": {}},
            "request_logging": {"capture_headers": ["X-Customer", "Authorization"]}}))
        .unwrap()
        .unwrap();
        assert_eq!((on.sampling_rate, on.rolling, on.request, on.response), (0.5, Rolling::Minute, true, false));
        assert_eq!(on.capture_headers, ["x-customer"]);
        assert_eq!(check(json!({"collections": {"model_inputs": {"enabled": "True"}}})).unwrap(), None);
    }

    #[test]
    fn bad_fields_are_named() {
        let errs = check(json!({"sampling_rate": 2, "rolling_rate": "week", "colour": 1,
            "collections": {"request": {"enabled": "maybe"}}}))
        .unwrap_err();
        let fields: Vec<_> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "data_collector.colour",
                "data_collector.sampling_rate",
                "data_collector.rolling_rate",
                "data_collector.collections.request.enabled"
            ]
        );
    }
}
