//! The data-plane router: `/endpoints/{endpoint}/...` for every endpoint.

use crate::auth::{TokenSigner, constant_time_eq, key_hash};
use crate::proxy::{Forward, forward};
use crate::table::{ReplicaAddrs, RoutingTable};
use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use sluice_domain::AuthMode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::watch;

/// The header that pins a request to a deployment, and names the one that served it.
pub const DEPLOYMENT_HEADER: &str = "azureml-model-deployment";

/// What the data plane reads: two published views and a pooled HTTP client.
#[derive(Clone)]
pub struct GatewayState {
    pub routes: watch::Receiver<Arc<RoutingTable>>,
    pub replicas: watch::Receiver<ReplicaAddrs>,
    pub tokens: TokenSigner,
    pub client: crate::proxy::ReplicaClient,
    next: Arc<AtomicUsize>,
}

impl GatewayState {
    pub fn new(
        routes: watch::Receiver<Arc<RoutingTable>>,
        replicas: watch::Receiver<ReplicaAddrs>,
        tokens: TokenSigner,
    ) -> Self {
        Self { routes, replicas, tokens, client: crate::proxy::replica_client(), next: Arc::new(AtomicUsize::new(0)) }
    }
}

pub fn router(state: GatewayState) -> Router {
    Router::new()
        .route("/endpoints/{endpoint}", any(handle_root))
        .route("/endpoints/{endpoint}/{*rest}", any(handle))
        .with_state(state)
}

/// Azure's data-plane error body.
pub(crate) fn message(status: StatusCode, text: impl Into<String>) -> Response {
    (status, axum::Json(serde_json::json!({ "message": text.into() }))).into_response()
}

async fn handle_root(state: State<GatewayState>, Path(endpoint): Path<String>, req: Request) -> Response {
    handle(state, Path((endpoint, String::new())), req).await
}

async fn handle(
    State(state): State<GatewayState>,
    Path((endpoint, rest)): Path<(String, String)>,
    req: Request,
) -> Response {
    let request_id = request_id(req.headers());
    let mut response = route(&state, &endpoint, &rest, req, &request_id).await;
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", v.clone());
        response.headers_mut().insert("x-ms-request-id", v);
    }
    response
}

async fn route(state: &GatewayState, endpoint: &str, rest: &str, req: Request, request_id: &str) -> Response {
    let table = state.routes.borrow().clone();
    // An unknown endpoint answers exactly like a wrong key, so names cannot be probed.
    let unauthorized = || {
        message(StatusCode::UNAUTHORIZED, "missing or invalid credentials: send 'Authorization: Bearer <key or token>'")
    };
    let Some(ep) = table.endpoints.get(endpoint) else { return unauthorized() };
    if !authorized(&state.tokens, ep, req.headers()) {
        return unauthorized();
    }
    let pinned = req.headers().get(DEPLOYMENT_HEADER).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let deployment = match &pinned {
        Some(name) => match ep.deployments.get_key_value(name.as_str()) {
            Some((name, _)) => name.clone(),
            None => {
                return message(
                    StatusCode::NOT_FOUND,
                    format!("deployment {name:?} not found in endpoint {endpoint:?}"),
                );
            }
        },
        None => match ep.pick_weighted(rand::random_range(0..100)) {
            Some(name) => name.to_owned(),
            None => {
                return message(
                    StatusCode::NOT_FOUND,
                    format!(
                        "endpoint {endpoint:?} has no deployment with traffic: set traffic (e.g. `sluice online-endpoint update --name {endpoint} --traffic \"blue=100\"`) or pin one with the '{DEPLOYMENT_HEADER}' header"
                    ),
                );
            }
        },
    };
    let Some(dep) = ep.deployments.get(&deployment) else {
        return message(StatusCode::NOT_FOUND, format!("deployment {deployment:?} not found"));
    };
    let addr = {
        let replicas = state.replicas.borrow();
        match replicas.get(&dep.replica_set).filter(|a| !a.is_empty()) {
            Some(addrs) => addrs[state.next.fetch_add(1, Ordering::Relaxed) % addrs.len()],
            None => {
                let mut r = message(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("deployment {deployment:?} has no ready replica yet; retry shortly"),
                );
                r.headers_mut().insert("retry-after", HeaderValue::from_static("1"));
                return with_deployment(r, &deployment);
            }
        }
    };
    let fwd = Forward {
        addr,
        path: format!("/{rest}"),
        timeout_ms: dep.request_timeout_ms,
        request_id,
        map_model_errors: rest == "score",
    };
    let response = forward(&state.client, fwd, req).await;
    with_deployment(response, &deployment)
}

fn with_deployment(mut r: Response, deployment: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(deployment) {
        r.headers_mut().insert(DEPLOYMENT_HEADER, v);
    }
    r
}

fn now_s() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

fn authorized(tokens: &TokenSigner, ep: &crate::table::EndpointRoute, headers: &HeaderMap) -> bool {
    let presented = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim);
    let Some(presented) = presented.filter(|p| !p.is_empty()) else { return false };
    match ep.auth_mode {
        AuthMode::Key => {
            let h = key_hash(presented);
            // Check both without short-circuit so timing says nothing about which matched.
            let a = constant_time_eq(&h, &ep.key_hashes[0]);
            let b = constant_time_eq(&h, &ep.key_hashes[1]);
            a | b
        }
        AuthMode::AmlToken | AuthMode::AadToken => tokens.verify(presented, &ep.uid, now_s()),
    }
}

/// The caller's `x-request-id` when it is a sane length, else a fresh UUID.
fn request_id(headers: &HeaderMap) -> String {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 100)
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}
