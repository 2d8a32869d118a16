//! The data-plane router: `/endpoints/{endpoint}/...` for every endpoint.
//!
//! The steps, in order, each with its reason:
//! 1. endpoint lookup: an unknown endpoint answers like a bad credential, so names can't be probed;
//! 2. authentication, before anything else touches the request;
//! 3. the body is read once, bounded, so a retry or a mirrored copy can re-send it;
//! 4. deployment choice: a pin (`azureml-model-deployment`) wins, else the weighted split;
//! 5. replica choice (round-robin over ready replicas), one retry elsewhere if nothing was sent;
//! 6. statistics, then the mirrored copy, which runs after the live answer and never delays it.

use crate::admission::{Admissions, Refusal};
use crate::auth::{TokenSigner, constant_time_eq, key_hash};
use crate::collector::{DataCollector, Payload};
use crate::mirror::{MirrorCopy, MirrorLimits, dispatch};
use crate::names;
use crate::proxy::{Outgoing, ReplicaClient, SendError, client_response, send};
use crate::stats::TrafficStats;
use crate::table::{DeploymentRoute, EndpointRoute, ReplicaAddrs, RoutingTable};
use crate::telemetry::{Trace, http_attributes};
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use http_body_util::BodyExt;
use opentelemetry::KeyValue;
use opentelemetry::trace::SpanKind;
use sluice_domain::AuthMode;
use sluice_net::hot::{Hot, HotRoute};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;
use tower::Service;

/// The header that pins a request to a deployment, and names the one that served it.
pub const DEPLOYMENT_HEADER: &str = "azureml-model-deployment";

/// Largest scoring request body the gateway reads.
pub const MAX_BODY_BYTES: usize = 100 << 20;

/// What the data plane reads: two published views, a pooled HTTP client, and the statistics it
/// writes.
#[derive(Clone)]
pub struct GatewayState {
    pub routes: watch::Receiver<Arc<RoutingTable>>,
    pub replicas: watch::Receiver<ReplicaAddrs>,
    pub tokens: TokenSigner,
    pub stats: TrafficStats,
    pub admissions: Admissions,
    /// Rate windows and token usage of serverless endpoints.
    pub serverless: crate::serverless::ServerlessMeter,
    /// The longest a serverless request may take (`crate::serverless::DEFAULT_TIMEOUT` unless set).
    pub serverless_timeout: std::time::Duration,
    /// The longest wait for the next piece of a request body (`crate::body`).
    pub body_idle_timeout: std::time::Duration,
    /// The memory all request bodies held at once may take (`crate::body`).
    pub body_budget: crate::body::BodyBudget,
    collector: Option<DataCollector>,
    pub(crate) client: ReplicaClient,
    mirror_limits: MirrorLimits,
    next: Arc<AtomicUsize>,
}

impl GatewayState {
    pub fn new(
        routes: watch::Receiver<Arc<RoutingTable>>,
        replicas: watch::Receiver<ReplicaAddrs>,
        tokens: TokenSigner,
        stats: TrafficStats,
        admissions: Admissions,
    ) -> Self {
        // A replica that becomes ready opens slots to requests already waiting.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let (mut replicas, routes, admissions) = (replicas.clone(), routes.clone(), admissions.clone());
            rt.spawn(async move {
                while replicas.changed().await.is_ok() {
                    let ready = replicas.borrow_and_update().clone();
                    let table = routes.borrow().clone();
                    admissions.rebalance(|id| capacity(&table, &ready, id));
                }
            });
        }
        Self {
            routes,
            replicas,
            tokens,
            stats,
            admissions,
            serverless: crate::serverless::ServerlessMeter::default(),
            serverless_timeout: crate::serverless::DEFAULT_TIMEOUT,
            body_idle_timeout: crate::body::DEFAULT_BODY_IDLE_TIMEOUT,
            body_budget: crate::body::BodyBudget::default(),
            collector: None,
            client: ReplicaClient::new(),
            mirror_limits: MirrorLimits::default(),
            next: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Records sampled payloads of deployments with a `data_collector`.
    pub fn with_collector(mut self, collector: DataCollector) -> Self {
        self.collector = Some(collector);
        self
    }

    /// A ready replica of `replica_set`, round-robin, skipping `avoid`.
    pub(crate) fn pick_replica(&self, replica_set: &str, avoid: Option<SocketAddr>) -> Option<SocketAddr> {
        let replicas = self.replicas.borrow();
        let addrs = replicas.get(replica_set).filter(|a| !a.is_empty())?;
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..addrs.len()).map(|i| addrs[(start + i) % addrs.len()]).find(|a| Some(*a) != avoid).or(avoid)
    }
}

/// The data plane's routes; the same `state` goes to [`with_hot_route`].
pub fn router(state: Arc<GatewayState>) -> Router {
    Router::new()
        .route("/endpoints/{endpoint}", any(handle_root))
        .route("/endpoints/{endpoint}/{*rest}", any(handle))
        .route("/serverless/{name}", any(crate::serverless::handle_root))
        .route("/serverless/{name}/{*rest}", any(crate::serverless::handle))
        .fallback(crate::serverless::by_host)
        .with_state(state)
}

/// The server's service: scoring requests (`/endpoints/{endpoint}/{rest}`, see `endpoint_path`)
/// answered by the gateway in front of `app`, the whole server's router, which must hold
/// [`router`]`(state)` and answers everything else as before. The router's matching,
/// captures and boxed services cost about a tenth of a scoring request's instructions
/// (`sluice_net::hot`).
pub fn with_hot_route(
    state: Arc<GatewayState>,
    app: Router,
) -> impl Service<Request, Response = Response, Error = Infallible, Future: Send> + Clone + Send + 'static {
    let hot = move |req: Request| {
        let uri = req.uri().clone();
        if endpoint_path(uri.path()).is_none() {
            return Hot::Pass(req);
        }
        let state = Arc::clone(&state);
        Hot::Take(async move {
            let (endpoint, rest) = endpoint_path(uri.path()).unwrap_or_default();
            serve_endpoint(&state, endpoint, rest, req).await
        })
    };
    HotRoute::new(hot, app)
}

/// Azure's data-plane error body.
pub(crate) fn message(status: StatusCode, text: impl Into<String>) -> Response {
    (status, axum::Json(serde_json::json!({ "message": text.into() }))).into_response()
}

async fn handle_root(state: State<Arc<GatewayState>>, Path(endpoint): Path<String>, req: Request) -> Response {
    handle(state, Path((endpoint, String::new())), req).await
}

async fn handle(
    State(state): State<Arc<GatewayState>>,
    Path((endpoint, rest)): Path<(String, String)>,
    req: Request,
) -> Response {
    serve_endpoint(&state, &endpoint, &rest, req).await
}

/// `/endpoints/{endpoint}/{rest}` split as the router would capture it, for a hot route in front
/// of it (`sluice_net::hot`): `None` for anything the router should judge: a percent-encoded path,
/// an empty endpoint or rest, and batch endpoints' `jobs` routes, which a layer answers before the
/// gateway.
fn endpoint_path(path: &str) -> Option<(&str, &str)> {
    let (endpoint, rest) = path.strip_prefix("/endpoints/")?.split_once('/')?;
    let jobs = rest == "jobs" || rest.starts_with("jobs/");
    (!endpoint.is_empty() && !rest.is_empty() && !jobs && !path.contains('%')).then_some((endpoint, rest))
}

/// Serves one request to `/endpoints/{endpoint}/{rest}`; the router's handler and a hot route in
/// front of the router both end here.
async fn serve_endpoint(state: &GatewayState, endpoint: &str, rest: &str, req: Request) -> Response {
    let request_id = request_id(req.headers());
    let started = Instant::now();
    let method = req.method().clone();
    let trace = Trace::server(
        || format!("{method} /endpoints/{{endpoint}}/{rest}"),
        req.headers(),
        || {
            let mut kv = http_attributes(&req, format!("/endpoints/{{endpoint}}/{rest}"));
            kv.push(KeyValue::new("sluice.endpoint", endpoint.to_owned()));
            kv.push(KeyValue::new("sluice.request_id", request_id.clone()));
            kv
        },
    );
    let mut response = route(state, endpoint, rest, req, &request_id, &trace).await;
    // One structured line per request: failures the deployment owns at warn, the rest at debug
    // (`RUST_LOG=sluice_gateway=debug` for an access log).
    let status = response.status();
    let deployment_header = response.headers().get(names::DEPLOYMENT).cloned();
    let served_by = deployment_header.as_ref().and_then(|v| v.to_str().ok()).unwrap_or("");
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    if is_failure(status) {
        tracing::warn!(request_id = %request_id, endpoint = %endpoint, deployment = %served_by, %method, path = %rest, status = status.as_u16(), ms, "request failed");
    } else {
        tracing::debug!(request_id = %request_id, endpoint = %endpoint, deployment = %served_by, %method, path = %rest, status = status.as_u16(), ms, "request");
    }
    if !served_by.is_empty() && trace.is_on() {
        trace.set(KeyValue::new("sluice.deployment", served_by.to_owned()));
    }
    trace.finish(status.as_u16());
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(names::REQUEST_ID, v.clone());
        response.headers_mut().insert(names::MS_REQUEST_ID, v);
    }
    response
}

async fn route(
    state: &GatewayState,
    endpoint: &str,
    rest: &str,
    req: Request,
    request_id: &str,
    trace: &Trace,
) -> Response {
    let table = state.routes.borrow().clone();
    let unauthorized = || {
        message(StatusCode::UNAUTHORIZED, "missing or invalid credentials: send 'Authorization: Bearer <key or token>'")
    };
    let Some(ep) = table.endpoints.get(endpoint) else { return unauthorized() };
    if !authorized(&state.tokens, ep, req.headers()) {
        return unauthorized();
    }
    let (parts, body) = req.into_parts();
    let (body, _held) =
        match crate::body::read_body(body, MAX_BODY_BYTES, state.body_idle_timeout, &state.body_budget).await {
            Ok(crate::body::ReadBody { bytes, held }) => (bytes, held),
            Err(e) => {
                let answer = |status, _code, text| message(status, text);
                return e.answer(MAX_BODY_BYTES, state.body_idle_timeout, &state.body_budget, answer);
            }
        };
    let pinned = parts.headers.get(names::DEPLOYMENT).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let (deployment, dep) = match choose(ep, endpoint, pinned.as_deref()) {
        Ok(d) => d,
        Err(text) => return message(StatusCode::NOT_FOUND, text),
    };
    let path_and_query = match parts.uri.query() {
        Some(q) => format!("/{rest}?{q}"),
        None => format!("/{rest}"),
    };
    let arrived = Instant::now();
    let ready = state.replicas.borrow().get(&dep.replica_set).map_or(0, Vec::len);
    // With no ready replica, `forward` answers 503 at once, since queueing could only time out;
    // unless the deployment scales to zero: then the request is held while a replica starts.
    let max_wait = match (ready, dep.cold_start_timeout_ms) {
        (0, Some(hold)) => {
            state.admissions.want(&dep.replica_set);
            Some(hold)
        }
        (0, None) => None,
        _ => Some(dep.max_queue_wait_ms),
    };
    let permit = if let Some(max_wait) = max_wait {
        let limit = ready * dep.max_concurrent_per_instance.max(1) as usize;
        let gate = state.admissions.gate(&dep.replica_set);
        match gate.acquire(limit, Duration::from_millis(max_wait)).await {
            Ok(p) => Some(p),
            Err(refusal) => {
                state.stats.record_refused(&dep.replica_set);
                let response = if ready == 0 { cold_start_failed(dep) } else { too_many(dep, refusal) };
                let waited = arrived.elapsed();
                state.stats.record_answer(&dep.replica_set, response.status().as_u16(), waited, waited);
                return with_deployment(response, deployment);
            }
        }
    } else {
        None
    };
    if let Some(p) = permit.as_ref().filter(|_| trace.is_on()) {
        let now = SystemTime::now();
        trace.record_child(
            "queue",
            now - p.waited,
            now,
            vec![KeyValue::new("sluice.deployment", deployment.to_owned())],
        );
    }
    let mut out = Outgoing::new(parts.method, path_and_query, parts.headers, body, request_id);
    // The replica's call: its context goes along, so a replica that traces joins this trace.
    let call = trace.child("replica", SpanKind::Client, None);
    call.inject(&mut out.headers);
    // Mirroring copies a share of unpinned requests only, as in Azure ML.
    let mirror = ep.mirror.as_ref().filter(|(_, pct)| pinned.is_none() && rand::random_range(0..100) < *pct);

    let collecting = match (&state.collector, &dep.collect) {
        (Some(c), Some(settings)) if rand::random::<f64>() < settings.sampling_rate => Some((c, settings.as_ref())),
        _ => None,
    };
    let payload = |collection_headers: Vec<(String, String)>, status, content_type, body| Payload {
        endpoint,
        deployment,
        request_id,
        path: out.path_and_query.split('?').next().unwrap_or(""),
        method: out.method.as_str(),
        headers: collection_headers,
        status,
        content_type,
        body,
    };
    if let Some((c, settings)) = collecting.filter(|(_, s)| s.request) {
        let headers = settings
            .capture_headers
            .iter()
            .filter_map(|h| Some((h.clone(), out.headers.get(h)?.to_str().ok()?.to_owned())))
            .collect();
        let ct = out.headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
        c.offer(settings, "request", payload(headers, None, ct, &out.body));
    }

    let started = Instant::now();
    let response = forward(state, dep, &out, rest == "score").await;
    call.finish(response.status().as_u16());
    let response = match collecting.filter(|(_, s)| s.response) {
        Some((c, settings)) => {
            let (parts, body) = response.into_parts();
            let body = match body.collect().await {
                Ok(b) => b.to_bytes(),
                Err(_) => return message(StatusCode::BAD_GATEWAY, "the replica's answer was cut short; retry"),
            };
            let ct = parts.headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
            c.offer(settings, "response", payload(Vec::new(), Some(parts.status.as_u16()), ct, &body));
            Response::from_parts(parts, Body::from(body))
        }
        None => response,
    };
    state.stats.record_live(&dep.replica_set, !is_failure(response.status()), started.elapsed());
    let waited = permit.as_ref().map_or(Duration::ZERO, |p| p.waited);
    state.stats.record_answer(&dep.replica_set, response.status().as_u16(), arrived.elapsed(), waited);
    let response = match mirror.and_then(|(name, _)| ep.deployments.get(name)) {
        Some(target) => mirror_after(state, target, out, response).await,
        None => response,
    };
    with_deployment(response, deployment)
}

/// 429 with `Retry-After`: the deployment is at its concurrency limit and its queue is full.
fn too_many(dep: &DeploymentRoute, refusal: Refusal) -> Response {
    let why = match refusal {
        Refusal::Full => "its queue would make this request wait longer than",
        Refusal::WaitedTooLong => "this request waited the whole",
    };
    let mut r = message(
        StatusCode::TOO_MANY_REQUESTS,
        format!(
            "the deployment is at max_concurrent_requests_per_instance ({}) on every ready replica and {why} max_queue_wait_ms ({} ms); retry later",
            dep.max_concurrent_per_instance, dep.max_queue_wait_ms
        ),
    );
    let secs = dep.max_queue_wait_ms.div_ceil(1000).max(1);
    r.headers_mut().insert("retry-after", HeaderValue::from(secs));
    r
}

/// 503: a deployment scaled to zero did not get a ready replica while the request was held.
fn cold_start_failed(dep: &DeploymentRoute) -> Response {
    let mut r = message(
        StatusCode::SERVICE_UNAVAILABLE,
        format!(
            "the deployment was scaled to zero and no replica became ready within cold_start_timeout_ms ({} ms); retry shortly",
            dep.cold_start_timeout_ms.unwrap_or(0)
        ),
    );
    r.headers_mut().insert("retry-after", HeaderValue::from_static("5"));
    r
}

/// A deployment's concurrency limit now: ready replicas × per-instance concurrency.
fn capacity(table: &RoutingTable, ready: &ReplicaAddrs, replica_set: &str) -> usize {
    let per = table
        .endpoints
        .values()
        .flat_map(|e| e.deployments.values())
        .find(|d| d.replica_set == replica_set)
        .map_or(1, |d| d.max_concurrent_per_instance.max(1) as usize);
    ready.get(replica_set).map_or(0, Vec::len) * per
}

/// Picks the deployment: the pinned one, else one by weight; the error is a 404's message.
fn choose<'a>(
    ep: &'a EndpointRoute,
    endpoint: &str,
    pinned: Option<&str>,
) -> Result<(&'a str, &'a DeploymentRoute), String> {
    let name = match pinned {
        Some(name) => name,
        None => ep.pick_weighted(rand::random_range(0..100)).ok_or_else(|| {
            format!(
                "endpoint {endpoint:?} has no deployment with traffic: set traffic (e.g. `sluice online-endpoint update --name {endpoint} --traffic \"blue=100\"`) or pin one with the '{DEPLOYMENT_HEADER}' header"
            )
        })?,
    };
    ep.deployments
        .get_key_value(name)
        .map(|(k, v)| (k.as_str(), v))
        .ok_or_else(|| format!("deployment {name:?} not found in endpoint {endpoint:?}"))
}

/// Sends to one replica, and to another if the first could not be reached (nothing was sent).
async fn forward(state: &GatewayState, dep: &DeploymentRoute, out: &Outgoing, map_model_errors: bool) -> Response {
    let timeout = Duration::from_millis(dep.request_timeout_ms);
    let mut tried = None;
    for _ in 0..2 {
        let Some(addr) = state.pick_replica(&dep.replica_set, tried) else { break };
        match send(&state.client, addr, out, timeout).await {
            Ok(resp) => return client_response(resp, map_model_errors),
            Err(SendError::Unreachable) => tried = Some(addr),
            Err(SendError::Timeout) => {
                return message(
                    StatusCode::REQUEST_TIMEOUT,
                    format!("the model did not answer within request_timeout_ms ({} ms)", dep.request_timeout_ms),
                );
            }
            Err(SendError::Failed) => return message(StatusCode::BAD_GATEWAY, "the replica failed to answer; retry"),
        }
    }
    let mut r = message(StatusCode::SERVICE_UNAVAILABLE, "the deployment has no ready replica yet; retry shortly");
    r.headers_mut().insert("retry-after", HeaderValue::from_static("1"));
    r
}

/// Reads the live answer (needed to compare), hands a copy to the mirror, returns the answer.
async fn mirror_after(state: &GatewayState, target: &DeploymentRoute, out: Outgoing, response: Response) -> Response {
    let Some(addr) = state.pick_replica(&target.replica_set, None) else {
        state.stats.record_mirror_shed(&target.replica_set);
        return response;
    };
    let (parts, body) = response.into_parts();
    let live = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return message(StatusCode::BAD_GATEWAY, "the replica's answer was cut short; retry"),
    };
    let copy = MirrorCopy {
        replica_set: target.replica_set.clone(),
        addr,
        timeout: Duration::from_millis(target.request_timeout_ms),
        request: out,
        live_body: parts.status.is_success().then(|| live.clone()),
    };
    dispatch(state.client.clone(), state.stats.clone(), &state.mirror_limits, copy);
    Response::from_parts(parts, Body::from(live))
}

/// Failures that count against a deployment: its own errors and timeouts, not the caller's.
fn is_failure(status: StatusCode) -> bool {
    status.is_server_error() || status == StatusCode::REQUEST_TIMEOUT || status == StatusCode::FAILED_DEPENDENCY
}

fn with_deployment(mut r: Response, deployment: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(deployment) {
        r.headers_mut().insert(names::DEPLOYMENT, v);
    }
    r
}

fn now_s() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

fn authorized(tokens: &TokenSigner, ep: &EndpointRoute, headers: &HeaderMap) -> bool {
    let bearer = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")));
    let presented = bearer.or_else(|| headers.get(names::API_KEY).and_then(|v| v.to_str().ok())).map(str::trim);
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
pub(crate) fn request_id(headers: &HeaderMap) -> String {
    headers
        .get(names::REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 100)
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

#[cfg(test)]
mod tests {
    use super::endpoint_path;

    #[test]
    fn the_hot_route_takes_plain_scoring_paths_only() {
        assert_eq!(endpoint_path("/endpoints/lr-ep/score"), Some(("lr-ep", "score")));
        assert_eq!(endpoint_path("/endpoints/lr-ep/v2/models/lr/infer"), Some(("lr-ep", "v2/models/lr/infer")));
        // Left to the router: the endpoint's root, percent-encoding, empty parts, batch jobs.
        for path in [
            "/endpoints/lr-ep",
            "/endpoints/lr-ep/",
            "/endpoints//score",
            "/endpoints/lr%2Dep/score",
            "/endpoints/lr-ep/sc%6Fre",
            "/endpoints/b/jobs",
            "/endpoints/b/jobs/42",
            "/serverless/x/score",
        ] {
            assert_eq!(endpoint_path(path), None, "{path}");
        }
        assert_eq!(endpoint_path("/endpoints/b/jobsx"), Some(("b", "jobsx")));
    }
}
