//! HTTP towards the command: the probes, and the relay of every request the replica receives.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{CONNECTION, HOST};
use axum::http::{HeaderMap, HeaderName, Method, StatusCode, Uri, Version};
use axum::response::{IntoResponse, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

pub(crate) type CommandClient = Client<HttpConnector, Body>;

/// Loopback HTTP/1.1 with pooled connections. Idle connections are dropped quickly: servers
/// close theirs after a short keep-alive (gunicorn 2 s, uvicorn 5 s), and a request sent on a
/// connection the server is closing fails.
pub(crate) fn client() -> CommandClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(1))
        .pool_max_idle_per_host(64)
        .build(connector)
}

/// Headers that describe one connection, not the message; never forwarded.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Headers the `Connection` header names are hop-by-hop too.
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(*name);
    }
}

/// An error with its causes (`client error (Connect): tcp connect error: Connection refused`).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

/// One `GET` of a probe route; `Err` says why it did not answer 2xx.
pub(crate) async fn probe(client: &CommandClient, uri: &Uri, timeout: Duration) -> Result<(), String> {
    let request = hyper::Request::get(uri.clone()).body(Body::empty()).map_err(|e| e.to_string())?;
    match tokio::time::timeout(timeout, client.request(request)).await {
        Err(_) => Err(format!("GET {uri} did not answer within {} ms", timeout.as_millis())),
        Ok(Err(e)) => Err(format!("GET {uri} failed: {}", error_chain(&e))),
        Ok(Ok(response)) if response.status().is_success() => Ok(()),
        Ok(Ok(response)) => Err(format!("GET {uri} answered {}", response.status())),
    }
}

/// What the relay needs.
pub(crate) struct Relay {
    pub client: CommandClient,
    /// `http://127.0.0.1:<port>`, the command's scoring port.
    pub base: String,
    /// `scoring_route.path`, where `/score` goes.
    pub scoring_path: String,
    pub request_timeout: Duration,
    /// False once the command has exited.
    pub running: AtomicBool,
}

fn message(status: StatusCode, text: &str) -> Response {
    (status, axum::Json(serde_json::json!({ "message": text }))).into_response()
}

/// The path and query a request goes to on the command: `/score` goes to the scoring route
/// (with the request's query), everything else to the same path.
pub(crate) fn target(uri: &Uri, scoring_path: &str) -> String {
    if uri.path() != "/score" {
        return uri.path_and_query().map_or_else(|| uri.path().to_owned(), |pq| pq.as_str().to_owned());
    }
    match uri.query() {
        None => scoring_path.to_owned(),
        Some(q) if scoring_path.contains('?') => format!("{scoring_path}&{q}"),
        Some(q) => format!("{scoring_path}?{q}"),
    }
}

/// `GET /` is the replica's own health (the command is still running); every other request is
/// relayed to the command, streamed both ways.
pub(crate) async fn relay(State(relay): State<Arc<Relay>>, request: Request) -> Response {
    let (mut parts, body) = request.into_parts();
    if parts.uri.path() == "/" && (parts.method == Method::GET || parts.method == Method::HEAD) {
        return if relay.running.load(Ordering::Relaxed) {
            (StatusCode::OK, "Healthy").into_response()
        } else {
            (StatusCode::SERVICE_UNAVAILABLE, "Unhealthy").into_response()
        };
    }
    let target = target(&parts.uri, &relay.scoring_path);
    let uri: Uri = match format!("{}{target}", relay.base).parse() {
        Ok(uri) => uri,
        Err(e) => return message(StatusCode::BAD_REQUEST, &format!("cannot relay the path {target}: {e}")),
    };
    strip_hop_by_hop(&mut parts.headers);
    parts.headers.remove(HOST); // the client sets the command's own
    parts.uri = uri;
    parts.version = Version::HTTP_11;
    let outgoing = hyper::Request::from_parts(parts, body);
    match tokio::time::timeout(relay.request_timeout, relay.client.request(outgoing)).await {
        Err(_) => message(
            StatusCode::REQUEST_TIMEOUT,
            &format!(
                "the container did not answer within {} ms (request_timeout_ms)",
                relay.request_timeout.as_millis()
            ),
        ),
        Ok(Err(e)) => message(StatusCode::BAD_GATEWAY, &format!("cannot reach the container: {}", error_chain(&e))),
        Ok(Ok(response)) => {
            let (mut parts, body) = response.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            Response::from_parts(parts, Body::new(body))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn score_goes_to_the_scoring_route_and_the_rest_unchanged() {
        let uri = |s: &str| s.parse::<Uri>().expect("uri");
        assert_eq!(target(&uri("/score"), "/v1/models/m:predict"), "/v1/models/m:predict");
        assert_eq!(target(&uri("/score?a=1"), "/predict"), "/predict?a=1");
        assert_eq!(target(&uri("/score?a=1"), "/predict?v=2"), "/predict?v=2&a=1");
        assert_eq!(target(&uri("/v2/models/m/infer?x=y"), "/predict"), "/v2/models/m/infer?x=y");
        assert_eq!(target(&uri("/score/extra"), "/predict"), "/score/extra");
    }

    #[test]
    fn hop_by_hop_headers_are_dropped() {
        let mut headers = HeaderMap::new();
        headers.insert("connection", HeaderValue::from_static("keep-alive, x-private"));
        headers.insert("x-private", HeaderValue::from_static("1"));
        headers.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        strip_hop_by_hop(&mut headers);
        assert_eq!(headers.len(), 1);
        assert!(headers.contains_key("content-type"));
    }
}
