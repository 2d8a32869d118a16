//! Error types: `RuntimeError` for start-up (library, models, socket) and `InferError` for requests.

use std::path::PathBuf;

use http::StatusCode;

/// Everything that can stop a replica from starting: the ONNX Runtime library, the model files, the socket.
///
/// The messages are written for the person who deployed the model: they name the file and say what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// ONNX Runtime could not be found or downloaded.
    #[error("cannot provision ONNX Runtime: {message}")]
    Provision { message: String },
    /// The ONNX Runtime shared library exists but could not be loaded.
    #[error("cannot load ONNX Runtime from {}: {message}", path.display())]
    OrtInit { path: PathBuf, message: String },
    /// A model file or directory is missing, malformed, or inconsistent with the ONNX graph.
    #[error("{}: {message}", path.display())]
    Model { path: PathBuf, message: String },
    /// A model file or folder is missing; the message names the path.
    #[error("{message}")]
    ModelLayout { message: String },
    /// The listener could not be bound or the server failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl RuntimeError {
    pub(crate) fn model(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Self::Model { path: path.into(), message: message.into() }
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io { context: context.into(), source }
    }
}

/// The closed set of request failure kinds; each carries its HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// The request is malformed or does not fit the model (the client's fault; do not retry).
    BadRequest,
    /// Unknown model or version.
    NotFound,
    /// The route exists but does not take the request's method.
    MethodNotAllowed,
    /// The body exceeds `--max-request-bytes`.
    PayloadTooLarge,
    /// The content type is not accepted.
    UnsupportedMediaType,
    /// The inference queue is full (safe to retry later).
    Overloaded,
    /// ONNX Runtime failed or the replica is shutting down (our fault).
    Internal,
}

impl ErrorCode {
    /// The HTTP status that this code maps to.
    pub fn status(self) -> StatusCode {
        match self {
            Self::BadRequest => StatusCode::BAD_REQUEST,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A stable machine-readable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadRequest => "bad_request",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::PayloadTooLarge => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::Overloaded => "overloaded",
            Self::Internal => "internal",
        }
    }
}

/// A failed inference or metadata request. The message is sent to the client verbatim.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct InferError {
    pub code: ErrorCode,
    pub message: String,
}

impl InferError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, message)
    }

    pub fn status(&self) -> StatusCode {
        self.code.status()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_statuses() {
        assert_eq!(ErrorCode::BadRequest.status(), StatusCode::BAD_REQUEST);
        assert_eq!(ErrorCode::NotFound.status(), StatusCode::NOT_FOUND);
        assert_eq!(ErrorCode::Overloaded.status().as_u16(), 503);
        assert_eq!(InferError::bad_request("x").to_string(), "x");
    }

    #[test]
    fn model_error_names_the_path() {
        let e = RuntimeError::model("/m/iris/1", "model.onnx not found");
        assert_eq!(e.to_string(), "/m/iris/1: model.onnx not found");
    }
}
