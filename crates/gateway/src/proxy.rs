//! One proxied hop to a replica: pooled HTTP/1.1 over loopback, with the deployment's deadline.

use crate::routes::message;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, StatusCode, Uri};
use axum::response::Response;
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

pub(crate) struct Forward<'a> {
    pub addr: SocketAddr,
    pub path: String,
    pub timeout_ms: u64,
    pub request_id: &'a str,
    /// Azure reports a scoring container's non-2xx as 424 with the original status in a header.
    pub map_model_errors: bool,
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

pub(crate) async fn forward(client: &ReplicaClient, fwd: Forward<'_>, req: Request) -> Response {
    let (mut parts, body) = req.into_parts();
    let path_and_query = match parts.uri.query() {
        Some(q) => format!("{}?{q}", fwd.path),
        None => fwd.path.clone(),
    };
    let Ok(uri) = format!("http://{}{}", fwd.addr, path_and_query).parse::<Uri>() else {
        return message(StatusCode::BAD_REQUEST, "malformed request path");
    };
    parts.uri = uri;
    for h in HOP_BY_HOP {
        parts.headers.remove(*h);
    }
    // The caller's credential is for the gateway; the replica never sees it.
    parts.headers.remove(http::header::AUTHORIZATION);
    if let Ok(v) = HeaderValue::from_str(fwd.request_id) {
        parts.headers.insert(HeaderName::from_static("x-request-id"), v);
    }
    let upstream = Request::from_parts(parts, body);
    let deadline = Duration::from_millis(fwd.timeout_ms);
    match tokio::time::timeout(deadline, client.request(upstream)).await {
        Err(_) => message(
            StatusCode::REQUEST_TIMEOUT,
            format!("the model did not answer within request_timeout_ms ({} ms)", fwd.timeout_ms),
        ),
        Ok(Err(e)) => {
            tracing::warn!(replica = %fwd.addr, error = %e, "replica request failed");
            message(StatusCode::BAD_GATEWAY, "the replica failed to answer; retry")
        }
        Ok(Ok(resp)) => {
            let (mut parts, body) = resp.into_parts();
            for h in HOP_BY_HOP {
                parts.headers.remove(*h);
            }
            if fwd.map_model_errors && !parts.status.is_success() {
                let original = parts.status;
                parts.headers.insert("ms-azureml-model-error-statuscode", HeaderValue::from(original.as_u16()));
                if let Ok(v) = HeaderValue::from_str(original.canonical_reason().unwrap_or("")) {
                    parts.headers.insert("ms-azureml-model-error-reason", v);
                }
                parts.status = StatusCode::FAILED_DEPENDENCY;
            }
            Response::from_parts(parts, Body::new(body))
        }
    }
}
