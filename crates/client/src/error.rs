//! What can go wrong talking to a Sluice server, each kind printable as one line.

use crate::archive::ArchiveError;
use sluice_api::{ErrorBody, ErrorCode};
use std::fmt;

/// A failed call. `Display` gives one line and never includes the admin token or endpoint keys.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with a non-2xx status. Bodies that are not an [`ErrorBody`] (a proxy's
    /// HTML page, an empty 502) are turned into one whose code follows the status.
    #[error("{}", api_line(body))]
    Api { status: u16, body: ErrorBody },
    /// No answer: the server could not be reached, the connection broke, or the call timed out.
    #[error("{}", transport_line(server, source))]
    Transport { server: String, source: reqwest::Error },
    /// The server answered 2xx with a body that is not what this route returns.
    #[error("unexpected answer from {url} (HTTP {status}): {message}")]
    Decode { url: String, status: u16, message: String },
    /// The folder or file to upload could not be packed.
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    /// The server address is unusable.
    #[error("invalid server address {server:?}: {message}")]
    InvalidServer { server: String, message: String },
}

impl ClientError {
    /// Whether the server could not be reached at all (nothing listening, unknown host, connect
    /// timeout), as opposed to a call that reached it and failed.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, Self::Transport { source, .. } if source.is_connect())
    }

    /// The HTTP status of an [`ClientError::Api`] answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether the server said the resource does not exist.
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    /// Whether the server refused because the resource already exists.
    pub fn is_conflict(&self) -> bool {
        self.status() == Some(409)
    }

    /// Builds [`ClientError::Api`] from a non-2xx answer.
    pub(crate) fn from_error_response(status: u16, bytes: &[u8], url: &reqwest::Url) -> Self {
        let body = serde_json::from_slice::<ErrorBody>(bytes).unwrap_or_else(|_| {
            let text = String::from_utf8_lossy(bytes);
            let text = text.trim();
            let message = if text.is_empty() {
                format!("HTTP {status} from {}", url.path())
            } else {
                format!("HTTP {status} from {}: {}", url.path(), one_line(text, 300))
            };
            ErrorBody::new(code_for_status(status), message)
        });
        Self::Api { status, body }
    }
}

fn api_line(body: &ErrorBody) -> String {
    let mut line = body.error.message.clone();
    for (i, detail) in body.error.details.iter().enumerate() {
        line.push_str(if i == 0 { ": " } else { "; " });
        line.push_str(&detail.to_string());
    }
    line
}

fn transport_line(server: &str, source: &reqwest::Error) -> String {
    if source.is_connect() {
        return format!("cannot reach the Sluice server at {server}: is it running? (start it with `sluice server`)");
    }
    let what = if source.is_timeout() { "timed out" } else { "failed" };
    format!("request to the Sluice server at {server} {what}: {}", Chain(source))
}

/// An error and its causes, joined by `: `, skipping causes whose text the outer one repeats.
struct Chain<'a>(&'a (dyn std::error::Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut last = self.0.to_string();
        f.write_str(&last)?;
        let mut cause = self.0.source();
        while let Some(c) = cause {
            let text = c.to_string();
            if !last.contains(&text) {
                write!(f, ": {text}")?;
            }
            last = text;
            cause = c.source();
        }
        Ok(())
    }
}

fn code_for_status(status: u16) -> ErrorCode {
    match status {
        400 => ErrorCode::BadRequest,
        401 | 403 => ErrorCode::Unauthorized,
        404 => ErrorCode::NotFound,
        409 => ErrorCode::Conflict,
        413 => ErrorCode::PayloadTooLarge,
        415 => ErrorCode::UnsupportedMediaType,
        422 => ErrorCode::Unsatisfiable,
        503 => ErrorCode::Unavailable,
        _ => ErrorCode::Internal,
    }
}

/// Collapses whitespace runs and cuts long text, so a stray HTML page stays on one line.
fn one_line(text: &str, max_chars: usize) -> String {
    let mut out = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if out.chars().count() > max_chars {
        out = out.chars().take(max_chars).collect::<String>() + "...";
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_api::FieldError;

    fn url() -> reqwest::Url {
        reqwest::Url::parse("http://h:1/api/v1/workspaces/default/online-endpoints").unwrap()
    }

    #[test]
    fn api_errors_print_message_and_details_on_one_line() {
        let body = ErrorBody::new(ErrorCode::ValidationFailed, "invalid deployment").with_details(vec![
            FieldError { field: "instance_count".into(), message: "0: expected 1 to 50".into() },
            FieldError { field: String::new(), message: "model is missing".into() },
        ]);
        let bytes = serde_json::to_vec(&body).unwrap();
        let err = ClientError::from_error_response(400, &bytes, &url());
        assert_eq!(err.to_string(), "invalid deployment: instance_count: 0: expected 1 to 50; model is missing");
        assert_eq!(err.status(), Some(400));
    }

    #[test]
    fn foreign_error_bodies_keep_status_and_text() {
        let err = ClientError::from_error_response(502, b"<html>\n  Bad   Gateway\n</html>", &url());
        let ClientError::Api { body, .. } = &err else { panic!("{err:?}") };
        assert_eq!(body.error.code, ErrorCode::Internal);
        assert_eq!(
            err.to_string(),
            "HTTP 502 from /api/v1/workspaces/default/online-endpoints: <html> Bad Gateway </html>"
        );
        let err = ClientError::from_error_response(404, b"", &url());
        assert!(err.is_not_found() && err.to_string().starts_with("HTTP 404"), "{err}");
    }
}
