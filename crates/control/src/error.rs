//! Errors of the management API and their single conversion into the HTTP error body.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use sluice_api::{ErrorBody, ErrorCode, FieldError};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{message}")]
    Validation { message: String, details: Vec<FieldError> },
    #[error(
        "missing or invalid admin credential: send 'Authorization: Bearer <token>' (the token is in <data-dir>/admin-token)"
    )]
    Unauthorized,
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    RequestTimeout(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn validation(details: Vec<FieldError>) -> Self {
        let message = match details.as_slice() {
            [one] => format!("invalid request: {one}"),
            many => format!("invalid request: {} problems", many.len()),
        };
        Self::Validation { message, details }
    }

    fn code(&self) -> ErrorCode {
        match self {
            Self::BadRequest(_) => ErrorCode::BadRequest,
            Self::Validation { .. } => ErrorCode::ValidationFailed,
            Self::Unauthorized => ErrorCode::Unauthorized,
            Self::NotFound(_) => ErrorCode::NotFound,
            Self::RequestTimeout(_) => ErrorCode::RequestTimeout,
            Self::Conflict(_) => ErrorCode::Conflict,
            Self::PayloadTooLarge(_) => ErrorCode::PayloadTooLarge,
            Self::UnsupportedMediaType(_) => ErrorCode::UnsupportedMediaType,
            Self::Internal(_) => ErrorCode::Internal,
        }
    }
}

impl From<sluice_store::StoreError> for ApiError {
    fn from(e: sluice_store::StoreError) -> Self {
        tracing::error!(error = %e, "store error");
        Self::Internal("the store failed; see the server log".into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = self.code();
        let status = StatusCode::from_u16(code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let details = match &self {
            Self::Validation { details, .. } => details.clone(),
            _ => Vec::new(),
        };
        let body = ErrorBody::new(code, self.to_string()).with_details(details);
        (status, axum::Json(body)).into_response()
    }
}

/// JSON bodies: malformed input becomes a 400 naming the problem, in our error shape.
pub struct Json<T>(pub T);

impl<S, T> axum::extract::FromRequest<S> for Json<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        use axum::extract::rejection::JsonRejection;
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Json(v)),
            Err(JsonRejection::MissingJsonContentType(_)) => {
                Err(ApiError::UnsupportedMediaType("expected 'Content-Type: application/json'".into()))
            }
            Err(JsonRejection::JsonDataError(e)) => {
                Err(ApiError::BadRequest(format!("invalid body: {}", e.body_text())))
            }
            Err(JsonRejection::JsonSyntaxError(e)) => {
                Err(ApiError::BadRequest(format!("malformed JSON: {}", e.body_text())))
            }
            Err(e) => {
                let too_large = || ApiError::PayloadTooLarge("request body too large".into());
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    return Err(too_large());
                }
                Err(crate::bodies::unreadable(&e, too_large, || ApiError::BadRequest(e.body_text())))
            }
        }
    }
}

/// The longest plain-text rejection body that is carried into the JSON error (axum's own
/// rejections are one line).
const REJECTION_TEXT_LIMIT: usize = 4096;

/// Answers that axum writes itself (a path segment that is not UTF-8, a query string that does
/// not parse) come as plain text or with no body at all; this puts every client-error answer
/// that is not JSON into the API's one error body, keeping its status and headers.
pub async fn json_error_bodies(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !status.is_client_error() || is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = match axum::body::to_bytes(body, REJECTION_TEXT_LIMIT).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).trim().to_owned(),
        Err(_) => String::new(),
    };
    let code = match status {
        StatusCode::METHOD_NOT_ALLOWED => ErrorCode::MethodNotAllowed,
        StatusCode::NOT_FOUND => ErrorCode::NotFound,
        StatusCode::UNAUTHORIZED => ErrorCode::Unauthorized,
        StatusCode::REQUEST_TIMEOUT => ErrorCode::RequestTimeout,
        StatusCode::CONFLICT => ErrorCode::Conflict,
        StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::PayloadTooLarge,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ErrorCode::UnsupportedMediaType,
        _ => ErrorCode::BadRequest,
    };
    let message = if text.is_empty() { status.canonical_reason().unwrap_or("bad request").to_owned() } else { text };
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    parts.headers.remove(axum::http::header::CONTENT_TYPE);
    let body = axum::Json(ErrorBody::new(code, message));
    (parts, body).into_response()
}

/// A route that exists but does not take the request's method: 405 in the API's error body
/// (axum adds the `Allow` header with the methods it takes).
pub async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> Response {
    let message = format!("{method} is not allowed on {} (the Allow header lists the methods it takes)", uri.path());
    (StatusCode::METHOD_NOT_ALLOWED, axum::Json(ErrorBody::new(ErrorCode::MethodNotAllowed, message))).into_response()
}
