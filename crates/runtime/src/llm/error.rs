//! The one error type of the LLM replica's API and its single conversion into the error body.
//!
//! Every error answers `{"error":{"code","message","status"},"status","code","message","detail"?}` with the
//! header `x-ms-error-code`: the Azure-core shape (`error.code`) and the Azure AI Model Inference shape
//! (top-level `status`, `code`, `detail.loc`) at once, so both kinds of client parser read it.

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::{HeaderName, HeaderValue, StatusCode};
use serde_json::{Value, json};

/// Where in the request a problem is, FastAPI style: `["body", "messages", 0, "content"]`.
pub type Loc = Vec<Value>;

/// `["body", key]`.
pub fn body_loc(key: &str) -> Loc {
    vec![Value::from("body"), Value::from(key)]
}

/// An error on its way to the client.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    /// Stable machine-readable code, also sent as `x-ms-error-code`.
    pub code: &'static str,
    pub message: String,
    /// `{"loc": [...], "input": ...}` for parameter errors.
    pub detail: Option<Value>,
    /// Extra response headers (`Retry-After`, token counts).
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), detail: None, headers: Vec::new() }
    }

    fn with_detail(mut self, loc: Loc, input: Option<&Value>) -> Self {
        let mut detail = json!({ "loc": loc });
        if let Some(input) = input {
            detail["input"] = input.clone();
        }
        self.detail = Some(detail);
        self
    }

    pub fn with_header(mut self, name: &'static str, value: impl std::fmt::Display) -> Self {
        if let Ok(value) = HeaderValue::from_str(&value.to_string()) {
            self.headers.push((HeaderName::from_static(name), value));
        }
        self
    }

    /// 400: the body is not JSON, or not a JSON object.
    pub fn invalid_json(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_json", message)
    }

    /// 400: a request that is well formed but cannot be served as asked.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 422: a required parameter is absent.
    pub fn missing(loc: Loc) -> Self {
        let message = format!("{} is required", describe(&loc));
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "missing_parameter", message).with_detail(loc, None)
    }

    /// 422: a parameter has the wrong type or an out-of-range value.
    pub fn invalid_value(loc: Loc, input: &Value, why: impl std::fmt::Display) -> Self {
        let message = format!("{} {why}", describe(&loc));
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_parameter_value", message).with_detail(loc, Some(input))
    }

    /// 422: a parameter (or one of its values) this model server does not support.
    pub fn not_supported(loc: Loc, input: &Value, why: impl std::fmt::Display) -> Self {
        let message = format!("{} is not supported: {why}", describe(&loc));
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "parameter_not_supported", message).with_detail(loc, Some(input))
    }

    /// 422: a top-level key the API does not define, with `extra-parameters: error` (the default).
    pub fn extra_parameter(key: &str, input: &Value) -> Self {
        let message = format!(
            "extra parameters ['{key}'] are not allowed when 'extra-parameters' is not set or set to 'error'; send \
             'extra-parameters: drop' to ignore unknown parameters"
        );
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "extra_parameters_not_allowed", message)
            .with_detail(body_loc(key), Some(input))
    }

    /// 400: the prompt does not fit the model's context.
    pub fn context_length_exceeded(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "context_length_exceeded", message)
    }

    /// 404: an unknown route, or one the model's task does not serve.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 413: the body is larger than the limit.
    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the request body exceeds the limit of {limit} bytes"),
        )
    }

    /// 429 with `Retry-After: 1`: the engine's queue is full.
    pub fn queue_full(capacity: usize) -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_requests",
            format!("the model's queue is full ({capacity} requests waiting); retry later"),
        )
        .with_header("retry-after", 1)
    }

    /// 408: the request's deadline (`x-sluice-deadline-ms`) passed before the answer was complete.
    pub fn deadline_exceeded() -> Self {
        Self::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            "the request's deadline passed before the answer was complete; generation was stopped",
        )
    }

    /// 503: the engine is stopping.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "service_unavailable", message).with_header("retry-after", 1)
    }

    /// 500: a bug or an engine failure; the message is logged.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", message)
    }

    /// The JSON body (without headers).
    pub fn body(&self) -> Value {
        let status = self.status.as_u16();
        let mut body = json!({
            "error": { "code": self.code, "message": self.message, "status": status },
            "status": status,
            "code": self.code,
            "message": self.message,
        });
        if let Some(detail) = &self.detail {
            body["detail"] = detail.clone();
        }
        body
    }
}

/// `messages[0].content` for `["body", "messages", 0, "content"]`.
fn describe(loc: &[Value]) -> String {
    let mut out = String::new();
    for part in loc.iter().skip(1) {
        match part {
            Value::Number(n) => out.push_str(&format!("[{n}]")),
            Value::String(s) if out.is_empty() => out.push_str(s),
            Value::String(s) => {
                out.push('.');
                out.push_str(s);
            }
            other => out.push_str(&other.to_string()),
        }
    }
    if out.is_empty() { "the body".to_owned() } else { format!("'{out}'") }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(status = self.status.as_u16(), code = self.code, "request failed: {}", self.message);
        }
        let mut response = (self.status, Json(self.body())).into_response();
        let headers = response.headers_mut();
        headers.insert(HeaderName::from_static("x-ms-error-code"), HeaderValue::from_static(self.code));
        for (name, value) in self.headers {
            headers.insert(name, value);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_both_shapes_and_the_code_header() {
        let error = ApiError::not_supported(body_loc("response_format"), &json!("json_object"), "only 'text'");
        assert_eq!(error.status, StatusCode::UNPROCESSABLE_ENTITY);
        let body = error.body();
        assert_eq!(body["status"], 422);
        assert_eq!(body["code"], "parameter_not_supported");
        assert_eq!(body["error"]["code"], "parameter_not_supported");
        assert_eq!(body["error"]["message"], body["message"]);
        assert_eq!(body["detail"], json!({"loc": ["body", "response_format"], "input": "json_object"}));
        assert!(body["message"].as_str().unwrap().contains("'response_format'"), "{body}");
        let response = error.into_response();
        assert_eq!(response.headers()["x-ms-error-code"], "parameter_not_supported");
    }

    #[test]
    fn nested_locations_read_naturally() {
        let loc = vec![json!("body"), json!("messages"), json!(2), json!("content"), json!(0)];
        assert_eq!(describe(&loc), "'messages[2].content[0]'");
        assert_eq!(describe(&[json!("body")]), "the body");
    }

    #[test]
    fn queue_full_asks_to_retry() {
        let response = ApiError::queue_full(64).into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()["retry-after"], "1");
        assert_eq!(response.headers()["x-ms-error-code"], "too_many_requests");
    }
}
