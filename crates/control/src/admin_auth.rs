//! The management API's credential check.

use crate::{ApiError, Control};
use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sluice_gateway::auth::{constant_time_eq, key_hash};
use std::sync::Arc;

/// Whether the request carries the admin credential (`Authorization: Bearer <token>`).
pub(crate) fn is_admin(control: &Control, headers: &HeaderMap) -> bool {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| constant_time_eq(&key_hash(t.trim()), &control.admin_hash))
}

pub async fn require_admin(State(control): State<Arc<Control>>, req: Request, next: Next) -> Response {
    if !is_admin(&control, req.headers()) {
        return ApiError::Unauthorized.into_response();
    }
    next.run(req).await
}
