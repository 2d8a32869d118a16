//! The data plane's batch route: `POST /endpoints/{endpoint}/jobs` (Azure ML's invocation URL,
//! every body form Azure's clients send) and `GET /endpoints/{endpoint}/jobs[/{job}]`.
//!
//! It sits as a layer in front of the gateway's router: a request whose path is
//! `/endpoints/{name}/jobs...` and whose `{name}` is a batch endpoint is answered here; every
//! other request, including `/endpoints/{online}/jobs` for an online endpoint, goes on to the
//! gateway unchanged (batch and online endpoint names never clash). As Azure ML's batch
//! endpoints authenticate the caller's own identity, these routes take the admin credential;
//! a request without it also goes on to the gateway, whose 401 is the same as for an unknown
//! name.

use super::Batch;
use super::jobs::{create_job, list_rows, to_wire};
use crate::{ApiError, admin_auth};
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sluice_api::batch::invoke::read_body;
use sluice_api::batch::job::AzureJobResource;
use sluice_api::{DEFAULT_WORKSPACE, ErrorBody, ErrorCode};
use std::sync::Arc;

/// Largest job body read (a job body names its input; it carries no data).
const MAX_BODY_BYTES: usize = 1 << 20;

/// `/endpoints/{endpoint}/jobs` → (endpoint, None); `/endpoints/{endpoint}/jobs/{job}` →
/// (endpoint, Some(job)).
fn jobs_path(path: &str) -> Option<(&str, Option<&str>)> {
    let rest = path.strip_prefix("/endpoints/")?;
    let mut parts = rest.trim_end_matches('/').split('/');
    let (endpoint, jobs, job, extra) = (parts.next()?, parts.next()?, parts.next(), parts.next());
    (jobs == "jobs" && !endpoint.is_empty() && extra.is_none()).then_some((endpoint, job.filter(|j| !j.is_empty())))
}

/// The layer: answers batch endpoints' job routes, passes everything else on.
pub async fn intercept_jobs(State(batch): State<Arc<Batch>>, req: Request, next: Next) -> Response {
    let Some((endpoint, job)) = jobs_path(req.uri().path()) else { return next.run(req).await };
    let (endpoint, job) = (endpoint.to_owned(), job.map(str::to_owned));
    match batch.control.store.get_batch_endpoint(DEFAULT_WORKSPACE, &endpoint).await {
        Ok(Some(_)) => {}
        Ok(None) => return next.run(req).await,
        Err(e) => return ApiError::from(e).into_response(),
    }
    if !admin_auth::is_admin(&batch.control, req.headers()) {
        // The gateway answers 401 as for any unknown endpoint, so names cannot be probed.
        return next.run(req).await;
    }
    let result = match (req.method().clone(), job) {
        (Method::POST, None) => invoke(&batch, &endpoint, req).await,
        (Method::GET, None) => list(&batch, &endpoint).await,
        (Method::GET, Some(job)) => show(&batch, &endpoint, &job).await,
        (method, _) => {
            let body = ErrorBody::new(
                ErrorCode::MethodNotAllowed,
                format!("{method} is not allowed here: POST jobs, or GET them"),
            );
            return (StatusCode::METHOD_NOT_ALLOWED, axum::Json(body)).into_response();
        }
    };
    result.unwrap_or_else(IntoResponse::into_response)
}

async fn invoke(batch: &Arc<Batch>, endpoint: &str, req: Request) -> Result<Response, ApiError> {
    let deployment =
        req.headers().get(sluice_gateway::DEPLOYMENT_HEADER).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let body = crate::bodies::with_idle_bound(req.into_body(), batch.control.body_idle_timeout);
    let bytes = axum::body::to_bytes(body, MAX_BODY_BYTES).await.map_err(|e| {
        crate::bodies::unreadable(
            &e,
            || ApiError::PayloadTooLarge(format!("a job body is at most {MAX_BODY_BYTES} bytes")),
            || ApiError::BadRequest("the request body could not be read (the connection failed before its end)".into()),
        )
    })?;
    let value: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| ApiError::BadRequest(format!("malformed JSON: {e}")))?;
    let body = read_body(&value, deployment.as_deref()).map_err(ApiError::validation)?;
    let job = create_job(batch, DEFAULT_WORKSPACE, endpoint, body).await?;
    Ok(axum::Json(AzureJobResource::new(job)).into_response())
}

async fn list(batch: &Batch, endpoint: &str) -> Result<Response, ApiError> {
    let rows = batch.control.store.list_batch_jobs(DEFAULT_WORKSPACE, Some(endpoint)).await?;
    let value: Vec<AzureJobResource> = list_rows(batch, rows).await?.into_iter().map(AzureJobResource::new).collect();
    Ok(axum::Json(serde_json::json!({ "value": value })).into_response())
}

async fn show(batch: &Batch, endpoint: &str, job: &str) -> Result<Response, ApiError> {
    let row = batch
        .control
        .store
        .get_batch_job(DEFAULT_WORKSPACE, job)
        .await?
        .filter(|j| j.endpoint == endpoint)
        .ok_or_else(|| ApiError::NotFound(format!("job {job:?} not found in batch endpoint {endpoint:?}")))?;
    let job = to_wire(batch, &row, &[]).await?;
    Ok(axum::Json(AzureJobResource::new(job)).into_response())
}

#[cfg(test)]
mod tests {
    use super::jobs_path;

    #[test]
    fn only_job_routes_are_taken() {
        assert_eq!(jobs_path("/endpoints/ep/jobs"), Some(("ep", None)));
        assert_eq!(jobs_path("/endpoints/ep/jobs/"), Some(("ep", None)));
        assert_eq!(jobs_path("/endpoints/ep/jobs/j1"), Some(("ep", Some("j1"))));
        assert_eq!(jobs_path("/endpoints/ep/score"), None);
        assert_eq!(jobs_path("/endpoints/ep/jobs/j1/x"), None);
        assert_eq!(jobs_path("/api/v1/endpoints/ep/jobs"), None);
    }
}
