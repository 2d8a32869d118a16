//! The management API's credential check.

use crate::{ApiError, Control};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sluice_gateway::auth::{constant_time_eq, key_hash};
use std::sync::Arc;

pub async fn require_admin(State(control): State<Arc<Control>>, req: Request, next: Next) -> Response {
    let ok = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| constant_time_eq(&key_hash(t.trim()), &control.admin_hash));
    if !ok {
        return ApiError::Unauthorized.into_response();
    }
    next.run(req).await
}
