//! The replica's HTTP server: shared state, the router, body limits and graceful shutdown.
//!
//! Routes live by protocol: `v2` (KServe v2 / Open Inference Protocol), `score` (Azure ML and MLflow), with the
//! binary tensor extension in `binary`, the OpenAPI document of both in `swagger`, and every error body built in
//! `errors`.

mod binary;
mod errors;
mod score;
pub mod swagger;
mod swagger_schema;
mod v2;
mod v2_wire;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::extract::Request;
use axum::extract::rejection::BytesRejection;
use axum::response::Response;
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use axum::{Router, ServiceExt};
use http::Method;
use sluice_net::hot::{Hot, HotRoute, segment_between};
use tokio::net::{TcpListener, TcpStream};
use tower::Service;

use crate::error::{ErrorCode, InferError};
use crate::model::ModelSet;
use crate::pool::{InferencePool, PoolConfig};

pub use errors::Envelope;

/// Server settings.
#[derive(Debug, Clone, Copy)]
pub struct ServerConfig {
    /// Request bodies above this size get 413.
    pub max_request_bytes: usize,
    pub pool: PoolConfig,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self { max_request_bytes: 100 * 1024 * 1024, pool: PoolConfig::default() }
    }
}

/// Everything the handlers share: the loaded models and the inference pool.
pub struct AppState {
    pub models: ModelSet,
    pub pool: InferencePool,
    pub max_request_bytes: usize,
}

impl AppState {
    /// Starts the inference threads for `models`.
    pub fn new(models: ModelSet, config: ServerConfig) -> std::io::Result<Arc<Self>> {
        Ok(Arc::new(Self {
            models,
            pool: InferencePool::new(config.pool)?,
            max_request_bytes: config.max_request_bytes,
        }))
    }
}

/// The replica's routes.
pub fn router(state: Arc<AppState>) -> Router {
    let limit = state.max_request_bytes;
    Router::new()
        .route("/", get(|| async { "Healthy" }))
        .route("/v2", get(v2::server_metadata))
        .route("/v2/health/live", get(v2::live))
        .route("/v2/health/ready", get(v2::ready))
        .route("/v2/models/stats", get(v2::all_stats))
        .route("/v2/models/{model}", get(v2::model_metadata))
        .route("/v2/models/{model}/stats", get(v2::stats))
        .route("/v2/models/{model}/versions/{version}/stats", get(v2::stats_versioned))
        .route("/v2/models/{model}/versions/{version}", get(v2::model_metadata_versioned))
        .route("/v2/models/{model}/ready", get(v2::model_ready))
        .route("/v2/models/{model}/versions/{version}/ready", get(v2::model_ready_versioned))
        .route("/v2/models/{model}/infer", post(v2::infer))
        .route("/v2/models/{model}/versions/{version}/infer", post(v2::infer_versioned))
        .route("/score", post(score::score))
        .route("/swagger.json", get(swagger::swagger))
        .route("/invocations", post(score::invocations))
        .fallback(errors::not_found)
        .method_not_allowed_fallback(errors::method_not_allowed)
        // The limit applies while the body is read, so a huge upload is cut off early.
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// The replica's service: `POST /v2/models/{model}/infer`, the call the gateway makes for every
/// scored request, answered without the router ([`HotRoute`]); every other request goes to
/// [`router`], which answers it as before (the versioned route, a percent-encoded name, other
/// methods: 405).
pub fn app(
    state: Arc<AppState>,
) -> impl Service<Request, Response = Response, Error = Infallible, Future: Send> + Clone + Send + 'static {
    let routes = router(Arc::clone(&state));
    let hot = move |req: Request| {
        let model = match (req.method() == Method::POST, segment_between(req.uri().path(), "/v2/models/", "/infer")) {
            (true, Some(model)) => model.to_owned(),
            _ => return Hot::Pass(req),
        };
        let state = Arc::clone(&state);
        Hot::Take(async move { v2::infer_hot(state, &model, req).await })
    };
    HotRoute::new(hot, routes)
}

/// For `ListenerExt::tap_io`: answers leave at once instead of waiting, under Nagle's algorithm,
/// for the client's (possibly delayed) ACK of the previous segment, which held a streamed
/// answer's first chunk up to 40 ms behind its headers.
pub fn no_delay(tcp: &mut TcpStream) {
    let _ = tcp.set_nodelay(true);
}

/// Serves `state` on `listener` until `shutdown` resolves, then stops accepting and finishes in-flight requests.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener.tap_io(no_delay), app(state).into_make_service()).with_graceful_shutdown(shutdown).await
}

/// Turns a body-read failure into an `InferError` (413 when the limit was hit).
pub(crate) fn body_or_error(body: Result<Bytes, BytesRejection>, limit: usize) -> Result<Bytes, InferError> {
    body.map_err(|rejection| {
        if rejection.status() == http::StatusCode::PAYLOAD_TOO_LARGE {
            too_large(limit)
        } else {
            InferError::bad_request(format!("cannot read the request body: {}", rejection.body_text()))
        }
    })
}

/// 413: the body is over `--max-request-bytes`.
pub(crate) fn too_large(limit: usize) -> InferError {
    InferError::new(
        ErrorCode::PayloadTooLarge,
        format!("request body exceeds the limit of {limit} bytes (--max-request-bytes)"),
    )
}

/// Bodies above this size are decoded on a blocking thread rather than on the async runtime.
const INLINE_DECODE_BYTES: usize = 64 * 1024;

/// Runs CPU-heavy work (parsing a large body, encoding a large response) off the async runtime when `size` is big.
pub(crate) async fn offload<T: Send + 'static>(
    size: usize,
    work: impl FnOnce() -> Result<T, InferError> + Send + 'static,
) -> Result<T, InferError> {
    if size <= INLINE_DECODE_BYTES {
        return work();
    }
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|_| InferError::internal("request processing failed unexpectedly"))?
}

#[cfg(test)]
mod no_delay_tests {
    #[tokio::test]
    async fn accepted_sockets_send_without_nagle() {
        let listener = super::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut accepted, _) = listener.accept().await.unwrap();
        assert!(!accepted.nodelay().unwrap(), "Linux accepts with Nagle on");
        super::no_delay(&mut accepted);
        assert!(accepted.nodelay().unwrap());
    }
}
