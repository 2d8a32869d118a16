//! One proxied hop to a replica (connections: `crate::pool`), with the deployment's deadline.

use crate::names;
use crate::pool::{PoolError, nothing_answered};
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use bytes::Bytes;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::time::Duration;

pub use crate::pool::{ReplicaBody, ReplicaClient};

/// A connection to a replica, over TCP or its Unix socket.
pub enum ReplicaStream {
    Tcp(TokioIo<tokio::net::TcpStream>),
    Unix(TokioIo<sluice_net::QuietUnixStream>),
}

impl hyper::rt::Read for ReplicaStream {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => std::pin::Pin::new(s).poll_read(cx, buf),
            Self::Unix(s) => std::pin::Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl hyper::rt::Write for ReplicaStream {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Self::Tcp(s) => std::pin::Pin::new(s).poll_write(cx, buf),
            Self::Unix(s) => std::pin::Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => std::pin::Pin::new(s).poll_flush(cx),
            Self::Unix(s) => std::pin::Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => std::pin::Pin::new(s).poll_shutdown(cx),
            Self::Unix(s) => std::pin::Pin::new(s).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Self::Tcp(s) => std::pin::Pin::new(s).poll_write_vectored(cx, bufs),
            Self::Unix(s) => std::pin::Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Tcp(s) => s.is_write_vectored(),
            Self::Unix(s) => s.is_write_vectored(),
        }
    }
}

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
        // The caller's credential is for the gateway; the replica never sees it.
        names::strip(&mut headers, &[http::header::AUTHORIZATION, names::API_KEY]);
        if let Ok(v) = HeaderValue::from_str(request_id) {
            headers.insert(names::REQUEST_ID, v);
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
) -> Result<hyper::Response<ReplicaBody>, SendError> {
    let uri: Uri = out.path_and_query.parse().map_err(|_| SendError::Failed)?;
    let build = || {
        let mut req = hyper::Request::new(Body::from(out.body.clone()));
        *req.method_mut() = out.method.clone();
        *req.uri_mut() = uri.clone();
        *req.headers_mut() = out.headers.clone();
        req
    };
    let exchange = async {
        if let Some(answered) =
            client.request_mux(addr, &out.method, &out.path_and_query, &out.headers, &out.body).await
        {
            return answered;
        }
        client.request(addr, build).await
    };
    match tokio::time::timeout(timeout, exchange).await {
        Err(_) => Err(SendError::Timeout),
        // A replica that died with the request in hand (its connection was reset before any answer): scoring has no
        // side effects to repeat, so the request goes to another replica, as a proxy's retry on reset does.
        Ok(Err(PoolError::Connect(e))) => {
            tracing::debug!(replica = %addr, error = %e, "replica unreachable");
            Err(SendError::Unreachable)
        }
        Ok(Err(PoolError::Http(e))) if nothing_answered(&e) => Err(SendError::Unreachable),
        Ok(Err(PoolError::MuxClosed)) => Err(SendError::Unreachable),
        Ok(Err(PoolError::Http(e))) => {
            tracing::warn!(replica = %addr, error = %e, "replica request failed");
            Err(SendError::Failed)
        }
        Ok(Ok(resp)) => Ok(resp),
    }
}

/// Turns a replica's answer into the client's. Azure reports a scoring container's non-2xx as
/// 424 with the original status in a header; `map_model_errors` asks for that.
pub(crate) fn client_response(resp: hyper::Response<ReplicaBody>, map_model_errors: bool) -> Response {
    let (mut parts, body) = resp.into_parts();
    names::strip(&mut parts.headers, &[]);
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

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn answer(listener_says: &'static str) -> axum::Router {
        axum::Router::new().route("/", axum::routing::get(move || async move { listener_says }))
    }

    async fn get(client: &ReplicaClient, port: u16) -> String {
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let resp =
            client.request(addr, || hyper::Request::get("/").body(Body::empty()).unwrap()).await.expect("answer");
        String::from_utf8(resp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
    }

    #[test]
    fn the_replica_gets_neither_the_clients_hop_headers_nor_its_credential() {
        let mut h = HeaderMap::new();
        for (name, value) in [
            ("connection", "keep-alive"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("host", "gateway:80"),
            ("authorization", "Bearer secret-1"),
            ("api-key", "secret-2"),
            ("x-request-id", "from-the-client"),
            ("content-type", "application/json"),
            ("azureml-model-deployment", "blue"),
        ] {
            h.insert(http::HeaderName::from_static(name), HeaderValue::from_static(value));
        }
        let out = Outgoing::new(Method::POST, "/score".into(), h, Bytes::new(), "id-1");
        let mut left: Vec<_> = out.headers.iter().map(|(k, v)| format!("{k}: {}", v.to_str().unwrap())).collect();
        left.sort();
        assert_eq!(left, ["azureml-model-deployment: blue", "content-type: application/json", "x-request-id: id-1"]);
    }

    #[tokio::test]
    async fn a_local_replica_is_reached_on_its_unix_socket_and_over_tcp_without_one() {
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = tcp.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(tcp, answer("tcp").await).await });
        // No Unix socket yet: TCP.
        assert_eq!(get(&ReplicaClient::new(), port).await, "tcp");
        // With the replica's socket for that port, a new client connects there.
        let unix = tokio::net::UnixListener::bind(sluice_domain::replica_socket_name(port)).unwrap();
        tokio::spawn(async move { axum::serve(unix, answer("unix").await).await });
        assert_eq!(get(&ReplicaClient::new(), port).await, "unix");
    }

    /// A replica's multiplexed socket answering `says` until the returned sender fires.
    async fn mux_replica(
        port: u16,
        says: &'static str,
    ) -> (tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::UnixListener::bind(sluice_domain::replica_mux_socket_name(port)).unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let router = axum::Router::new().route(
            "/v2/models/m/infer",
            axum::routing::post(move |headers: HeaderMap, body: Bytes| async move {
                let id = headers.get(names::REQUEST_ID).map_or("", |v| v.to_str().unwrap()).to_owned();
                format!("{says} {id} {}", String::from_utf8_lossy(&body))
            }),
        );
        let served = tokio::spawn(async move {
            sluice_net::mux::serve(listener, router, async move {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        (stop, served)
    }

    async fn infer(client: &ReplicaClient, port: u16, body: &'static str) -> Result<(StatusCode, String), SendError> {
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let out = Outgoing::new(
            Method::POST,
            "/v2/models/m/infer".into(),
            HeaderMap::new(),
            Bytes::from_static(body.as_bytes()),
            "id-7",
        );
        let resp = send(client, addr, &out, Duration::from_secs(5)).await?;
        let status = resp.status();
        Ok((status, String::from_utf8(resp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()))
    }

    #[tokio::test]
    async fn a_native_replicas_multiplexed_socket_is_preferred_and_a_replaced_replica_found_again() {
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = tcp.local_addr().unwrap().port();
        let http = axum::Router::new().route("/v2/models/m/infer", axum::routing::post(|| async { "http" }));
        tokio::spawn(async move { axum::serve(tcp, http).await });
        let client = ReplicaClient::new();
        // No multiplexed socket: HTTP/1.1, and that is remembered for a while.
        assert_eq!(infer(&client, port, "a").await.unwrap(), (StatusCode::OK, "http".into()));
        // A client that has not looked yet finds the multiplexed socket; the request id and body cross.
        let (stop, served) = mux_replica(port, "mux").await;
        let client = ReplicaClient::new();
        let answers = futures_util::future::join_all((0..50).map(|_| infer(&client, port, "b"))).await;
        assert!(answers.into_iter().all(|a| a.unwrap() == (StatusCode::OK, "mux id-7 b".into())));
        // The replica is replaced (its connection ends) and a new one comes up on the same port: the
        // next request finds it.
        stop.send(()).unwrap();
        served.await.unwrap();
        let (_stop, _served) = mux_replica(port, "mux2").await;
        assert_eq!(infer(&client, port, "c").await.unwrap(), (StatusCode::OK, "mux2 id-7 c".into()));
    }

    #[tokio::test]
    async fn a_multiplexed_replica_that_dies_holding_a_request_leaves_it_for_another_replica() {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = tcp.local_addr().unwrap().port();
        let listener = tokio::net::UnixListener::bind(sluice_domain::replica_mux_socket_name(port)).unwrap();
        // Reads the request and closes without answering, on every connection.
        tokio::spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = vec![0u8; 4096];
                let _ = tokio::io::AsyncReadExt::read(&mut s, &mut buf).await;
            }
        });
        let failed = infer(&ReplicaClient::new(), port, "x").await;
        assert!(matches!(failed, Err(SendError::Unreachable)), "{:?}", failed.err());
    }
}
