//! What every inference request shares: the `extra-parameters` policy, the `api-version` query, the
//! `x-sluice-deadline-ms` budget, and typed access to a JSON body's top-level fields with FastAPI-style
//! error locations.

use std::time::{Duration, Instant};

use http::HeaderMap;
use serde_json::{Map, Value};

use super::error::{ApiError, body_loc};

/// The request header that says what to do with top-level keys the API does not define.
pub const EXTRA_PARAMETERS_HEADER: &str = "extra-parameters";
/// The request header the gateway sets with the milliseconds left of the request's budget.
pub use sluice_domain::engine_headers::DEADLINE as DEADLINE_HEADER;

/// The `extra-parameters` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtraParameters {
    /// Unknown keys are refused with 422 (the default, as in Azure).
    Error,
    /// Unknown keys are ignored (`drop`; the docs also say `ignore`).
    Drop,
    /// Unknown keys are meant for the model; the native engine takes none, so they are ignored too.
    PassThrough,
}

impl ExtraParameters {
    pub fn from_headers(headers: &HeaderMap) -> Result<Self, ApiError> {
        let Some(value) = headers.get(EXTRA_PARAMETERS_HEADER) else {
            return Ok(Self::Error);
        };
        match value.to_str().map(|v| v.trim().to_ascii_lowercase()).as_deref() {
            Ok("error") => Ok(Self::Error),
            Ok("drop" | "ignore") => Ok(Self::Drop),
            Ok("pass-through" | "pass_through" | "passthrough") => Ok(Self::PassThrough),
            _ => Err(ApiError::bad_request(format!(
                "header '{EXTRA_PARAMETERS_HEADER}' must be 'error', 'drop' or 'pass-through', not {value:?}"
            ))),
        }
    }
}

/// Accepts a missing `api-version` (the openai client sends none); one that is present must look like
/// `YYYY-MM-DD` or `YYYY-MM-DD-preview`.
pub fn check_api_version(query: Option<&str>) -> Result<(), ApiError> {
    let Some(query) = query else { return Ok(()) };
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key != "api-version" {
            continue;
        }
        if !is_api_version(value) {
            return Err(ApiError::new(
                http::StatusCode::BAD_REQUEST,
                "invalid_api_version",
                format!("api-version '{value}' is not valid; use a date such as 2024-05-01-preview or 2024-04-01"),
            ));
        }
    }
    Ok(())
}

fn is_api_version(value: &str) -> bool {
    let date = value.strip_suffix("-preview").unwrap_or(value);
    let bytes = date.as_bytes();
    bytes.len() == 10
        && bytes.iter().enumerate().all(|(i, b)| if i == 4 || i == 7 { *b == b'-' } else { b.is_ascii_digit() })
}

/// `x-sluice-deadline-ms`: the milliseconds the request may still take, counted from `now` (relative, so the
/// gateway's and the replica's clocks need not agree).
pub fn deadline(headers: &HeaderMap, now: Instant) -> Result<Option<Instant>, ApiError> {
    let Some(value) = headers.get(DEADLINE_HEADER) else { return Ok(None) };
    let ms: u64 = value.to_str().ok().and_then(|v| v.trim().parse().ok()).ok_or_else(|| {
        ApiError::bad_request(format!("header '{DEADLINE_HEADER}' must be a whole number of milliseconds"))
    })?;
    Ok(Some(now.checked_add(Duration::from_millis(ms)).unwrap_or(now + Duration::from_secs(365 * 24 * 3600))))
}

/// Parses the body as a JSON object.
pub fn parse_object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(ApiError::invalid_json(format!("the body must be a JSON object, not {}", kind(&other)))),
        Err(e) => Err(ApiError::invalid_json(format!("the body is not valid JSON: {e}"))),
    }
}

/// `a string`, `an array`, ... for messages.
pub fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A request body's top-level fields, taken one by one by name.
#[derive(Debug)]
pub struct Fields {
    map: Map<String, Value>,
}

impl Fields {
    /// Refuses (with `policy` `error`) a body holding a key outside `known`; otherwise drops such keys.
    pub fn new(mut map: Map<String, Value>, known: &[&str], policy: ExtraParameters) -> Result<Self, ApiError> {
        if policy == ExtraParameters::Error
            && let Some((key, value)) = map.iter().find(|(key, _)| !known.contains(&key.as_str()))
        {
            return Err(ApiError::extra_parameter(key, value));
        }
        map.retain(|key, _| known.contains(&key.as_str()));
        Ok(Self { map })
    }

    /// The value of `key`; `null` counts as absent (clients send `null` for "default").
    pub fn take(&mut self, key: &str) -> Option<Value> {
        self.map.remove(key).filter(|v| !v.is_null())
    }

    pub fn string(&mut self, key: &str) -> Result<Option<String>, ApiError> {
        match self.take(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(ApiError::invalid_value(body_loc(key), &other, "must be a string")),
        }
    }

    pub fn boolean(&mut self, key: &str) -> Result<Option<bool>, ApiError> {
        match self.take(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(b)),
            Some(other) => Err(ApiError::invalid_value(body_loc(key), &other, "must be true or false")),
        }
    }

    /// A number within `min..=max`.
    pub fn number(&mut self, key: &str, min: f64, max: f64) -> Result<Option<f64>, ApiError> {
        match self.take(key) {
            None => Ok(None),
            Some(value) => match value.as_f64() {
                Some(n) if (min..=max).contains(&n) => Ok(Some(n)),
                Some(_) => {
                    Err(ApiError::invalid_value(body_loc(key), &value, format!("must be between {min} and {max}")))
                }
                None => Err(ApiError::invalid_value(body_loc(key), &value, "must be a number")),
            },
        }
    }

    /// A whole number of at least `min` that fits a u32.
    pub fn whole(&mut self, key: &str, min: u32) -> Result<Option<u32>, ApiError> {
        match self.take(key) {
            None => Ok(None),
            Some(value) => match value.as_u64() {
                Some(n) if n >= u64::from(min) => Ok(Some(u32::try_from(n).unwrap_or(u32::MAX))),
                _ => {
                    Err(ApiError::invalid_value(body_loc(key), &value, format!("must be an integer of at least {min}")))
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(*k, v.parse().unwrap());
        }
        map
    }

    #[test]
    fn extra_parameters_header() {
        assert_eq!(ExtraParameters::from_headers(&headers(&[])).unwrap(), ExtraParameters::Error);
        assert_eq!(
            ExtraParameters::from_headers(&headers(&[("extra-parameters", "drop")])).unwrap(),
            ExtraParameters::Drop
        );
        assert_eq!(
            ExtraParameters::from_headers(&headers(&[("extra-parameters", "pass-through")])).unwrap(),
            ExtraParameters::PassThrough
        );
        let error = ExtraParameters::from_headers(&headers(&[("extra-parameters", "maybe")])).unwrap_err();
        assert_eq!(error.status, 400);
    }

    #[test]
    fn api_versions() {
        for ok in [None, Some(""), Some("api-version=2024-05-01-preview"), Some("x=1&api-version=2025-04-01")] {
            check_api_version(ok).unwrap_or_else(|e| panic!("{ok:?}: {}", e.message));
        }
        for bad in ["api-version=latest", "api-version=2024-5-01", "api-version=", "api-version=2024-05-01-beta"] {
            let error = check_api_version(Some(bad)).unwrap_err();
            assert_eq!((error.status.as_u16(), error.code), (400, "invalid_api_version"), "{bad}");
        }
    }

    #[test]
    fn deadline_is_relative_milliseconds() {
        let now = Instant::now();
        assert_eq!(deadline(&headers(&[]), now).unwrap(), None);
        assert_eq!(
            deadline(&headers(&[(DEADLINE_HEADER, "1500")]), now).unwrap(),
            Some(now + Duration::from_millis(1500))
        );
        assert_eq!(deadline(&headers(&[(DEADLINE_HEADER, "soon")]), now).unwrap_err().status, 400);
    }

    #[test]
    fn bodies_must_be_objects() {
        let error = parse_object(b"{\"messages\": [").unwrap_err();
        assert_eq!((error.status.as_u16(), error.code), (400, "invalid_json"));
        assert!(error.message.contains("EOF"), "{}", error.message);
        assert!(parse_object(b"[1]").unwrap_err().message.contains("an array"));
    }

    #[test]
    fn unknown_keys_follow_the_policy() {
        let map = || json!({"a": 1, "zz": {"x": 1}}).as_object().unwrap().clone();
        let error = Fields::new(map(), &["a"], ExtraParameters::Error).unwrap_err();
        assert_eq!(error.status, 422);
        assert_eq!(error.body()["detail"], json!({"loc": ["body", "zz"], "input": {"x": 1}}));
        let mut fields = Fields::new(map(), &["a"], ExtraParameters::Drop).unwrap();
        assert_eq!(fields.take("zz"), None);
        assert_eq!(fields.whole("a", 1).unwrap(), Some(1));
        Fields::new(map(), &["a"], ExtraParameters::PassThrough).unwrap();
    }

    #[test]
    fn typed_fields() {
        let map = json!({"t": 2.5, "n": 0, "s": 3, "b": "yes", "z": null}).as_object().unwrap().clone();
        let mut fields = Fields::new(map, &["t", "n", "s", "b", "z"], ExtraParameters::Error).unwrap();
        let error = fields.number("t", 0.0, 2.0).unwrap_err();
        assert_eq!(error.body()["detail"]["loc"], json!(["body", "t"]));
        assert!(error.message.contains("between 0 and 2"), "{}", error.message);
        assert!(fields.whole("n", 1).unwrap_err().message.contains("at least 1"));
        assert!(fields.string("s").unwrap_err().message.contains("must be a string"));
        assert!(fields.boolean("b").is_err());
        assert_eq!(fields.string("z").unwrap(), None);
    }
}
