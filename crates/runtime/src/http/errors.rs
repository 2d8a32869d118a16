//! The one place where an `InferError` becomes an HTTP error body, in each protocol's envelope.

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::Uri;
use serde_json::json;

use crate::error::{ErrorCode, InferError};

/// The error body shape a route family uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Envelope {
    /// KServe v2: `{"error": "..."}`.
    V2,
    /// Azure ML inference server (`/score`): `{"message": "..."}`.
    Azure,
    /// MLflow scoring server (`/invocations`): `{"error_code": "BAD_REQUEST", "message": "..."}`.
    Mlflow,
}

/// An error on its way out, tagged with the envelope of the route that failed.
pub struct ErrorResponse(pub Envelope, pub InferError);

impl IntoResponse for ErrorResponse {
    fn into_response(self) -> Response {
        let ErrorResponse(envelope, error) = self;
        let status = error.status();
        if status.is_server_error() {
            tracing::warn!(status = status.as_u16(), code = error.code.as_str(), "request failed: {}", error.message);
        }
        let body = match envelope {
            Envelope::V2 => json!({ "error": error.message }),
            Envelope::Azure => json!({ "message": error.message }),
            Envelope::Mlflow => json!({ "error_code": mlflow_code(error.code), "message": error.message }),
        };
        let mut response = (status, Json(body)).into_response();
        if error.code == ErrorCode::Overloaded {
            response.headers_mut().insert(http::header::RETRY_AFTER, http::HeaderValue::from_static("1"));
        }
        response
    }
}

fn mlflow_code(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::BadRequest
        | ErrorCode::MethodNotAllowed
        | ErrorCode::PayloadTooLarge
        | ErrorCode::UnsupportedMediaType => "BAD_REQUEST",
        ErrorCode::NotFound => "RESOURCE_DOES_NOT_EXIST",
        ErrorCode::Overloaded => "TEMPORARILY_UNAVAILABLE",
        ErrorCode::Internal => "INTERNAL_ERROR",
    }
}

/// The envelope of a path's route family.
fn envelope_of(path: &str) -> Envelope {
    if path.starts_with("/v2") {
        Envelope::V2
    } else if path.starts_with("/invocations") {
        Envelope::Mlflow
    } else {
        Envelope::Azure
    }
}

/// The fallback for unknown paths: a JSON 404 in the envelope of the path's family.
pub async fn not_found(uri: Uri) -> Response {
    let path = uri.path();
    ErrorResponse(envelope_of(path), InferError::not_found(format!("no route for {path}"))).into_response()
}

/// A route that exists but not for this method (`GET /v2/models/m/infer`): a JSON 405 in the
/// envelope of the path's family; axum adds the `Allow` header.
pub async fn method_not_allowed(method: http::Method, uri: Uri) -> Response {
    let path = uri.path();
    let message = format!("{method} is not allowed on {path}");
    ErrorResponse(envelope_of(path), InferError::new(ErrorCode::MethodNotAllowed, message)).into_response()
}

#[cfg(test)]
mod tests {
    use http::StatusCode;

    use super::*;

    #[test]
    fn envelopes_and_statuses() {
        let r = ErrorResponse(Envelope::V2, InferError::bad_request("bad")).into_response();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        let r = ErrorResponse(Envelope::Azure, InferError::new(ErrorCode::Overloaded, "busy")).into_response();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers().get("retry-after").map(|v| v.as_bytes()), Some(&b"1"[..]));
        assert_eq!(mlflow_code(ErrorCode::NotFound), "RESOURCE_DOES_NOT_EXIST");
    }
}
