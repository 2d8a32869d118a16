//! The gateway's connections to replicas: HTTP/1.1 over a local replica's Unix socket (else TCP),
//! kept open and reused, one exchange at a time per connection.
//!
//! Written here instead of using hyper-util's pooled `Client`, which keys its pool by scheme and
//! authority (the replica's address formatted into a URI and hashed again on every request),
//! checks a connection out through a future of its own and puts it back through another; with
//! the URI formatting that was about 12 % of the gateway's instructions per request
//! (`bench/callgrind.sh`). Here a replica is known by its socket address, a request is sent in
//! origin form with a `Host` header made once per connection, and a connection goes back to its
//! replica's idle list when the answer's body has been read to the end.
//!
//! A local native replica also takes many requests at once on one connection (`sluice_net::mux`):
//! a request goes there first when the replica has that socket, and over HTTP/1.1 otherwise, or
//! when it does not fit a frame. The gateway keeps one such connection per replica.
//!
//! A connection that went idle may have been closed by its replica since (a replica that stopped
//! or was replaced): a request that fails on a reused connection before any answer arrived is sent
//! once more on a new connection, and the replica's other idle connections are dropped, as
//! hyper-util's client retries a request its pooled connection never sent.

use crate::table::FastMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use bytes::Bytes;
use http::HeaderValue;
use hyper::body::Body as _;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use sluice_net::mux;

use crate::proxy::ReplicaStream;

/// How long an unused connection is kept.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// The most idle connections kept per replica (more are closed as they come back).
const MAX_IDLE_PER_REPLICA: usize = 256;
/// How long a replica found without a multiplexed socket is sent HTTP/1.1 before that socket is
/// tried again (a new replica may come up on the same port).
const MUX_RETRY: Duration = Duration::from_secs(10);

/// Pooled connections to every replica; cheap to clone (shared).
#[derive(Clone)]
pub struct ReplicaClient {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    idle: Mutex<FastMap<SocketAddr, Vec<Conn>>>,
    mux: Mutex<FastMap<SocketAddr, MuxSlot>>,
}

/// A replica's multiplexed connection, or when it was last found to have none.
enum MuxSlot {
    Open(Arc<mux::Connection>),
    Absent(Instant),
}

struct Conn {
    sender: SendRequest<Body>,
    /// `Host: <addr>`, made when the connection was.
    host: HeaderValue,
    idle_since: Instant,
}

/// Why an exchange with a replica failed.
#[derive(Debug)]
pub(crate) enum PoolError {
    /// No connection could be made: nothing was sent.
    Connect(std::io::Error),
    /// The exchange failed on an open connection.
    Http(hyper::Error),
    /// The multiplexed connection ended before the answer came.
    MuxClosed,
}

impl Default for ReplicaClient {
    fn default() -> Self {
        Self::new()
    }
}

impl ReplicaClient {
    pub fn new() -> Self {
        let inner = Arc::new(Inner::default());
        // Closes connections idle too long, and forgets replicas that are gone.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let weak: Weak<Inner> = Arc::downgrade(&inner);
            rt.spawn(async move {
                let mut tick = tokio::time::interval(IDLE_TIMEOUT / 2);
                loop {
                    tick.tick().await;
                    let Some(inner) = weak.upgrade() else { return };
                    inner.idle.lock().expect("replica pool").retain(|_, list| {
                        list.retain(|c| !c.sender.is_closed() && c.idle_since.elapsed() < IDLE_TIMEOUT);
                        !list.is_empty()
                    });
                    inner.mux.lock().expect("replica pool").retain(|_, slot| match slot {
                        MuxSlot::Open(c) => !c.is_closed(),
                        MuxSlot::Absent(since) => since.elapsed() < MUX_RETRY,
                    });
                }
            });
        }
        Self { inner }
    }

    /// Sends `build()`'s request to the replica at `addr` on an idle connection, else a new one,
    /// and once more on a new connection when a reused one turned out to be closed. The answer's
    /// body gives the connection back when it has been read to the end.
    pub(crate) async fn request(
        &self,
        addr: SocketAddr,
        build: impl Fn() -> hyper::Request<Body>,
    ) -> Result<hyper::Response<ReplicaBody>, PoolError> {
        if let Some(mut conn) = self.checkout(addr).await {
            match conn.send(build()).await {
                Ok(resp) => return Ok(self.answer(addr, conn, resp)),
                Err(e) if nothing_answered(&e) => {
                    // Its siblings are likely as stale (the replica restarted): start afresh.
                    self.inner.idle.lock().expect("replica pool").remove(&addr);
                }
                Err(e) => return Err(PoolError::Http(e)),
            }
        }
        let mut conn = connect(addr).await?;
        let resp = conn.send(build()).await.map_err(PoolError::Http)?;
        Ok(self.answer(addr, conn, resp))
    }

    /// Sends a request over `addr`'s multiplexed connection (made on first use), and once more on
    /// a new one when a connection made earlier turned out to have ended. `None` when the replica
    /// has no multiplexed socket (it is not local, or not a native replica), or the request does
    /// not fit a frame: the caller sends it over HTTP/1.1.
    pub(crate) async fn request_mux(
        &self,
        addr: SocketAddr,
        method: &http::Method,
        path_and_query: &str,
        headers: &http::HeaderMap,
        body: &[u8],
    ) -> Option<Result<hyper::Response<ReplicaBody>, PoolError>> {
        if !cfg!(target_os = "linux")
            || !addr.ip().is_loopback()
            || matches!(*method, http::Method::HEAD | http::Method::CONNECT)
        {
            return None;
        }
        let mut fresh = false;
        loop {
            let known = if fresh { None } else { self.known_mux(addr) };
            let conn = match known {
                Some(MuxSlot::Open(conn)) => conn,
                Some(MuxSlot::Absent(_)) => return None,
                None => {
                    fresh = true;
                    self.connect_mux(addr).await?
                }
            };
            match conn.send(method, path_and_query, headers, body).await {
                Ok(answer) => {
                    let mut response = hyper::Response::new(ReplicaBody::whole(answer.body));
                    *response.status_mut() = answer.status;
                    *response.headers_mut() = answer.headers;
                    return Some(Ok(response));
                }
                Err(mux::MuxError::TooLarge) => return None,
                Err(mux::MuxError::Closed) if fresh => return Some(Err(PoolError::MuxClosed)),
                // Made before this request: the replica may have been replaced since.
                Err(mux::MuxError::Closed) => fresh = true,
            }
        }
    }

    /// What is known of `addr`'s multiplexed socket: an open connection, or that it was lately found
    /// to have none; `None` when it is worth connecting (never tried, closed, or tried long ago).
    fn known_mux(&self, addr: SocketAddr) -> Option<MuxSlot> {
        match self.inner.mux.lock().expect("replica pool").get(&addr)? {
            MuxSlot::Open(conn) if !conn.is_closed() => Some(MuxSlot::Open(Arc::clone(conn))),
            MuxSlot::Absent(since) if since.elapsed() < MUX_RETRY => Some(MuxSlot::Absent(*since)),
            _ => None,
        }
    }

    /// Makes `addr`'s multiplexed connection, or records that it has none.
    async fn connect_mux(&self, addr: SocketAddr) -> Option<Arc<mux::Connection>> {
        let made = mux::Connection::connect(&sluice_domain::replica_mux_socket_name(addr.port())).await;
        let mut slots = self.inner.mux.lock().expect("replica pool");
        match made {
            Ok(conn) => {
                let conn = Arc::new(conn);
                slots.insert(addr, MuxSlot::Open(Arc::clone(&conn)));
                Some(conn)
            }
            Err(_) => {
                slots.insert(addr, MuxSlot::Absent(Instant::now()));
                None
            }
        }
    }

    /// The most recently used idle connection to `addr` that is still open and ready.
    async fn checkout(&self, addr: SocketAddr) -> Option<Conn> {
        loop {
            let mut conn = self.inner.idle.lock().expect("replica pool").get_mut(&addr)?.pop()?;
            if conn.sender.is_closed() || conn.idle_since.elapsed() >= IDLE_TIMEOUT {
                continue;
            }
            // At once for a connection whose last answer ended; an error if it has closed since.
            if conn.sender.ready().await.is_ok() {
                return Some(conn);
            }
        }
    }

    fn answer(&self, addr: SocketAddr, conn: Conn, resp: hyper::Response<Incoming>) -> hyper::Response<ReplicaBody> {
        let (parts, body) = resp.into_parts();
        let mut body = ReplicaBody::http(body, (Arc::downgrade(&self.inner), addr, conn));
        // An empty answer (Content-Length: 0) may never be polled: its connection is free now.
        if body.is_end_stream() {
            body.give_back();
        }
        hyper::Response::from_parts(parts, body)
    }

    #[cfg(test)]
    fn idle_count(&self, addr: SocketAddr) -> usize {
        self.inner.idle.lock().unwrap().get(&addr).map_or(0, Vec::len)
    }
}

impl Conn {
    async fn send(&mut self, mut req: hyper::Request<Body>) -> Result<hyper::Response<Incoming>, hyper::Error> {
        req.headers_mut().insert(http::header::HOST, self.host.clone());
        self.sender.send_request(req).await
    }
}

/// Connects to a replica: for a loopback address, through the replica's Unix socket when it has one
/// (`sluice_domain::replica_socket_name`: native ONNX and scoring-script replicas do), which costs the kernel less per
/// message than TCP; otherwise, and whenever that connect fails, over TCP.
async fn connect(addr: SocketAddr) -> Result<Conn, PoolError> {
    let stream = 'stream: {
        if cfg!(target_os = "linux")
            && addr.ip().is_loopback()
            && let Ok(s) = sluice_net::QuietUnixStream::connect(&sluice_domain::replica_socket_name(addr.port())).await
        {
            break 'stream ReplicaStream::Unix(TokioIo::new(s));
        }
        let s = tokio::net::TcpStream::connect(addr).await.map_err(PoolError::Connect)?;
        let _ = s.set_nodelay(true);
        ReplicaStream::Tcp(TokioIo::new(s))
    };
    let (sender, connection) = http1::handshake(stream).await.map_err(PoolError::Http)?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let host = HeaderValue::from_str(&addr.to_string()).expect("a socket address is a valid header value");
    Ok(Conn { sender, host, idle_since: Instant::now() })
}

/// The exchange failed before any answer: the connection was closed, or reset, under the request.
pub(crate) fn nothing_answered(e: &hyper::Error) -> bool {
    let reset = std::error::Error::source(e).and_then(|s| s.downcast_ref::<std::io::Error>()).is_some_and(|io| {
        matches!(
            io.kind(),
            std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::UnexpectedEof
        )
    });
    e.is_incomplete_message() || e.is_canceled() || e.is_closed() || reset
}

/// A replica's answer body: an HTTP/1.1 one, whose connection goes back to the idle list when it
/// has been read to the end, or a multiplexed connection's, which came whole.
pub struct ReplicaBody(BodyKind);

enum BodyKind {
    Http { body: Incoming, back: Option<(Weak<Inner>, SocketAddr, Conn)> },
    Whole(Option<Bytes>),
}

impl ReplicaBody {
    fn whole(body: Bytes) -> Self {
        Self(BodyKind::Whole((!body.is_empty()).then_some(body)))
    }

    fn http(body: Incoming, back: (Weak<Inner>, SocketAddr, Conn)) -> Self {
        Self(BodyKind::Http { body, back: Some(back) })
    }

    fn give_back(&mut self) {
        let BodyKind::Http { back, .. } = &mut self.0 else { return };
        let Some((inner, addr, mut conn)) = back.take() else { return };
        let Some(inner) = inner.upgrade() else { return };
        if conn.sender.is_closed() {
            return;
        }
        conn.idle_since = Instant::now();
        let mut idle = inner.idle.lock().expect("replica pool");
        let list = idle.entry(addr).or_default();
        if list.len() < MAX_IDLE_PER_REPLICA {
            list.push(conn);
        }
    }
}

impl hyper::body::Body for ReplicaBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let (body, back) = match &mut this.0 {
            BodyKind::Whole(whole) => return Poll::Ready(whole.take().map(|b| Ok(Frame::data(b)))),
            BodyKind::Http { body, back } => (body, back),
        };
        let polled = Pin::new(&mut *body).poll_frame(cx);
        let ended = match &polled {
            Poll::Ready(None) => true,
            // A reader that trusts Content-Length may not poll again after the last bytes.
            Poll::Ready(Some(Ok(_))) => body.is_end_stream(),
            // A failed body leaves its connection unusable.
            Poll::Ready(Some(Err(_))) => {
                *back = None;
                false
            }
            Poll::Pending => false,
        };
        if ended {
            this.give_back();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match &self.0 {
            BodyKind::Http { body, .. } => body.is_end_stream(),
            BodyKind::Whole(whole) => whole.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0 {
            BodyKind::Http { body, .. } => body.size_hint(),
            BodyKind::Whole(whole) => SizeHint::with_exact(whole.as_ref().map_or(0, |b| b.len() as u64)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// How a test replica answers.
    #[derive(Clone, Copy)]
    enum Replica {
        /// HTTP/1.1 with keep-alive, this body (empty: 204).
        KeepAlive(&'static str),
        /// Answers a connection's first request with "ok" and keeps it open, then closes it on the
        /// second request without answering (a replica stopping while the connection was idle).
        ClosesAfterOne,
    }

    /// A replica on loopback TCP; returns its address and how many connections it accepted.
    async fn replica(kind: Replica) -> (SocketAddr, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    match kind {
                        Replica::ClosesAfterOne => {
                            let mut buf = vec![0u8; 4096];
                            let _ = s.read(&mut buf).await;
                            let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
                            let _ = s.read(&mut buf).await; // the next request, left unanswered
                        }
                        Replica::KeepAlive(body) => {
                            let svc = hyper::service::service_fn(move |_| async move {
                                let mut r = hyper::Response::new(Full::new(Bytes::from_static(body.as_bytes())));
                                if body.is_empty() {
                                    *r.status_mut() = http::StatusCode::NO_CONTENT;
                                }
                                Ok::<_, std::convert::Infallible>(r)
                            });
                            let _ =
                                hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(s), svc).await;
                        }
                    }
                });
            }
        });
        (addr, accepted)
    }

    /// A GET's answer, its body not read yet.
    async fn answer(client: &ReplicaClient, addr: SocketAddr) -> hyper::Response<ReplicaBody> {
        client.request(addr, || hyper::Request::get("/x").body(Body::empty()).unwrap()).await.expect("answer")
    }

    async fn get(client: &ReplicaClient, addr: SocketAddr) -> String {
        let resp = answer(client, addr).await;
        String::from_utf8(resp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
    }

    #[tokio::test]
    async fn a_connection_is_reused_once_its_answer_was_read() {
        let (addr, accepted) = replica(Replica::KeepAlive("ok")).await;
        let client = ReplicaClient::new();
        for _ in 0..20 {
            assert_eq!(get(&client, addr).await, "ok");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        assert_eq!(client.idle_count(addr), 1);
        // Four at once: the idle one and three new ones, all kept afterwards.
        let answers = futures_util::future::join_all((0..4).map(|_| get(&client, addr))).await;
        assert!(answers.iter().all(|a| a == "ok"));
        assert_eq!(accepted.load(Ordering::SeqCst), 4);
        assert_eq!(client.idle_count(addr), 4);
    }

    #[tokio::test]
    async fn an_empty_answer_frees_its_connection_unread() {
        let (addr, accepted) = replica(Replica::KeepAlive("")).await;
        let client = ReplicaClient::new();
        for _ in 0..5 {
            let resp = answer(&client, addr).await;
            assert_eq!(resp.status(), http::StatusCode::NO_CONTENT);
            drop(resp); // never polled
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn an_answer_dropped_half_read_does_not_give_its_connection_back() {
        let (addr, accepted) = replica(Replica::KeepAlive("a body")).await;
        let client = ReplicaClient::new();
        for _ in 0..3 {
            drop(answer(&client, addr).await);
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
        assert_eq!(client.idle_count(addr), 0);
    }

    #[tokio::test]
    async fn a_connection_the_replica_closed_is_replaced_and_the_request_still_answered() {
        let (addr, accepted) = replica(Replica::ClosesAfterOne).await;
        let client = ReplicaClient::new();
        for _ in 0..20 {
            assert_eq!(get(&client, addr).await, "ok");
        }
        // Every request but the first went to the last one's connection first, then to a new one.
        assert_eq!(accepted.load(Ordering::SeqCst), 20);
    }

    #[tokio::test]
    async fn a_replica_that_is_not_there_is_a_connect_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let result = ReplicaClient::new().request(addr, || hyper::Request::new(Body::empty())).await;
        assert!(matches!(result, Err(PoolError::Connect(_))), "{:?}", result.err());
    }
}
