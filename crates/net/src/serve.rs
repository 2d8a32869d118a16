//! The server's public listener: HTTP/1.1 connections with a bound on how long a client may hold
//! one without sending a request.
//!
//! `axum::serve` gives hyper no timer, so hyper's `header_read_timeout` never fires: a client that
//! opens a connection and sends half a request head, or nothing at all, or keeps a connection
//! idle after an answer, holds it (a task and a file descriptor) for as long as it likes, and
//! enough such clients (a slowloris) leave the server unable to accept anyone. axum 0.8 has no
//! setting for it, so this loop does what `axum::serve` does (accept, `TCP_NODELAY`, one hyper
//! connection per client, graceful shutdown) with hyper's HTTP/1.1 builder given a timer: a
//! connection that has not sent a complete request head within the timeout, counted from when
//! it opened or from the end of its previous answer, is closed.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::{Service, ServiceExt};

/// hyper's own default, which it applies only when given a timer.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves `service` on `listener` until `shutdown` resolves; then stops accepting, lets requests
/// in flight finish and closes idle connections (as `axum::serve(..).with_graceful_shutdown`).
pub async fn serve_http1<S>(
    listener: TcpListener,
    service: S,
    header_read_timeout: Duration,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(header_read_timeout);
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    accept_error(e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service =
            TowerToHyperService::new(service.clone().map_request(|req: http::Request<Incoming>| req.map(Body::new)));
        // No upgrades: the gateway strips `Upgrade` as a hop-by-hop header and serves no WebSocket.
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "client connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// A client that gave up before `accept` returned is nothing to wait for; anything else (out of
/// file descriptors, above all) is logged and waited out for a second, as `axum::serve` does.
async fn accept_error(e: io::Error) {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(e.kind(), ConnectionAborted | ConnectionRefused | ConnectionReset) {
        return;
    }
    tracing::error!(error = %e, "cannot accept a connection; retrying in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}
