//! Management API request bodies: the wait for each next piece of a body is bounded
//! (`body_idle_timeout_s`), as the gateway bounds scoring bodies, so a client that promises more
//! than it sends cannot hold a request open for ever; and a body that cannot be read is answered
//! by why (408 stalled, 413 too large, 400 the connection failed).

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http_body_util::BodyExt;
use sluice_gateway::BodyStalled;
use tower_http::timeout::{TimeoutBody, TimeoutError};

use crate::ApiError;

/// Middleware: each next piece of the request's body must arrive within `idle`.
pub async fn bound_idle(State(idle): State<Duration>, req: Request, next: Next) -> Response {
    next.run(req.map(|body| with_idle_bound(body, idle))).await
}

/// `body`, failing with [`BodyStalled`] when nothing of it arrives for `idle`.
pub(crate) fn with_idle_bound(body: Body, idle: Duration) -> Body {
    Body::new(
        TimeoutBody::new(idle, body).map_err(move |e| {
            if e.is::<TimeoutError>() { Box::new(BodyStalled(idle)) as tower_http::BoxError } else { e }
        }),
    )
}

/// The answer to a body that could not be read, from the read's error: 408 when it stalled, 413
/// (`too_large`) when it was over a length limit, `otherwise` when the connection failed.
pub(crate) fn unreadable(
    error: &(dyn std::error::Error + 'static),
    too_large: impl FnOnce() -> ApiError,
    otherwise: impl FnOnce() -> ApiError,
) -> ApiError {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if let Some(stalled) = e.downcast_ref::<BodyStalled>() {
            return ApiError::RequestTimeout(stalled.to_string());
        }
        if e.is::<http_body_util::LengthLimitError>() {
            return too_large();
        }
        cause = e.source();
    }
    otherwise()
}
