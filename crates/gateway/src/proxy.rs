//! One proxied hop to a replica: pooled HTTP/1.1 over loopback, with the deployment's deadline.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use bytes::Bytes;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::net::SocketAddr;
use std::time::Duration;

pub type ReplicaClient = Client<HttpConnector, Body>;

pub fn replica_client() -> ReplicaClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(256)
        .build(connector)
}

/// Headers that describe one connection, not the request; never forwarded.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
];

/// The parts of a client request that every attempt (and a mirrored copy) re-sends.
#[derive(Clone)]
pub(crate) struct Outgoing {
    pub method: Method,
    /// Path and query below the endpoint, e.g. `/v2/models/iris/infer?x=1`.
    pub path_and_query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Outgoing {
    /// Strips what belongs to the client's hop (and its credential) and stamps the request id.
    pub fn new(method: Method, path_and_query: String, mut headers: HeaderMap, body: Bytes, request_id: &str) -> Self {
        for h in HOP_BY_HOP {
            headers.remove(*h);
        }
        // The caller's credential is for the gateway; the replica never sees it.
        headers.remove(http::header::AUTHORIZATION);
        headers.remove("api-key");
        if let Ok(v) = HeaderValue::from_str(request_id) {
            headers.insert("x-request-id", v);
        }
        Self { method, path_and_query, headers, body }
    }
}

/// Why an attempt produced no response.
#[derive(Debug)]
pub(crate) enum SendError {
    /// Nothing was sent: another replica may take the request.
    Unreachable,
    Timeout,
    Failed,
}

pub(crate) async fn send(
    client: &ReplicaClient,
    addr: SocketAddr,
    out: &Outgoing,
    timeout: Duration,
) -> Result<hyper::Response<Incoming>, SendError> {
    let uri: Uri = format!("http://{addr}{}", out.path_and_query).parse().map_err(|_| SendError::Failed)?;
    let mut req = hyper::Request::builder()
        .method(out.method.clone())
        .uri(uri)
        .body(Body::from(out.body.clone()))
        .map_err(|_| SendError::Failed)?;
    *req.headers_mut() = out.headers.clone();
    match tokio::time::timeout(timeout, client.request(req)).await {
        Err(_) => Err(SendError::Timeout),
        Ok(Err(e)) if e.is_connect() || closed_before_answer(&e) => Err(SendError::Unreachable),
        Ok(Err(e)) => {
            tracing::warn!(replica = %addr, error = %e, "replica request failed");
            Err(SendError::Failed)
        }
        Ok(Ok(resp)) => Ok(resp),
    }
}

/// A pooled connection the replica closed (it was shutting down, replaced by a new generation)
/// before answering: the replica did not take the request, so another replica may.
/// Also a replica that died with the request in hand (its connection was reset before any
/// answer): scoring has no side effects to repeat, so the request goes to another replica, as a
/// proxy's retry on reset does.
fn closed_before_answer(e: &hyper_util::client::legacy::Error) -> bool {
    let Some(h) = std::error::Error::source(e).and_then(|s| s.downcast_ref::<hyper::Error>()) else {
        return false;
    };
    let reset = std::error::Error::source(h).and_then(|s| s.downcast_ref::<std::io::Error>()).is_some_and(|io| {
        matches!(
            io.kind(),
            std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::UnexpectedEof
        )
    });
    h.is_incomplete_message() || h.is_canceled() || reset
}

/// Turns a replica's answer into the client's. Azure reports a scoring container's non-2xx as
/// 424 with the original status in a header; `map_model_errors` asks for that.
pub(crate) fn client_response(resp: hyper::Response<Incoming>, map_model_errors: bool) -> Response {
    let (mut parts, body) = resp.into_parts();
    for h in HOP_BY_HOP {
        parts.headers.remove(*h);
    }
    if map_model_errors && !parts.status.is_success() {
        let original = parts.status;
        parts.headers.insert("ms-azureml-model-error-statuscode", HeaderValue::from(original.as_u16()));
        if let Ok(v) = HeaderValue::from_str(original.canonical_reason().unwrap_or("")) {
            parts.headers.insert("ms-azureml-model-error-reason", v);
        }
        parts.status = StatusCode::FAILED_DEPENDENCY;
    }
    Response::from_parts(parts, Body::new(body))
}
