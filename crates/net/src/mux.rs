//! Many requests at once on one gateway–replica connection.
//!
//! HTTP/1.1 carries one exchange at a time, so the gateway holds a connection per request in flight
//! to a replica, and every request costs a write and a read on each side of the Unix socket, and a
//! wake-up of the replica for each. Under load that is most of what the replica spends outside
//! inference, and a large part of the gateway's kernel time (`docs/performance.md`, "Where a
//! request's CPU goes").
//!
//! Here one connection carries every request in flight, each tagged with an id, and the answers
//! come back tagged in whatever order they finish. Each side writes everything that has
//! accumulated since its last write in one `write`, and takes everything that has arrived in one
//! `read`: 32 requests that reach the gateway together cross to the replica in one message and
//! their answers come back in a few. A request arriving alone costs what it did over HTTP/1.1.
//!
//! The replica answers each request with the same service it serves HTTP with, on a task of its
//! own (so a replica with several cores runs them in parallel; with one worker thread, a request
//! answered in its first poll is answered on the connection's task), reads the answer's body to the
//! end and sends it whole; this is for answers that are complete when they are made (the native
//! ONNX replica's), not for streams.
//!
//! Frames, both ways: `[length of the rest: u32][id: u32][payload]`, little-endian.
//! - A request's payload: method (`u8` length, bytes), path and query (`u16` length, bytes), the
//!   number of headers (`u16`), each header's name and value (`u16` length, bytes, each), then
//!   the body up to the frame's end.
//! - An answer's payload: status (`u16`), the headers as above, then the body.
//!
//! A frame over [`MAX_FRAME`] is a protocol error and ends the connection; so does any frame the
//! client cannot read. A request the server cannot read is answered 400.

use std::convert::Infallible;
use std::future::{Future, poll_fn};
use std::io;
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use bytes::{Buf, Bytes, BytesMut};
use futures_util::task::AtomicWaker;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use tokio::io::AsyncWrite;
use tokio::sync::oneshot;
use tokio::task::JoinSet;
use tokio_util::io::poll_read_buf;
use tower::{Service, ServiceExt};

use crate::QuietUnixStream;

/// The largest frame either side sends or takes (the gateway's bodies are at most 100 MiB).
pub const MAX_FRAME: usize = 256 << 20;
/// A connection reads no more requests while this many are being answered.
const MAX_IN_FLIGHT: usize = 4096;
/// How much room a read is given at least.
const READ_ROOM: usize = 64 << 10;

/// A request that cannot be put in a frame (nothing was sent).
#[derive(Debug)]
pub struct TooLarge;

/// Why [`Connection::send`] got no answer.
#[derive(Debug)]
pub enum MuxError {
    /// The connection ended (or had ended) before the answer came.
    Closed,
    /// The request does not fit a frame (a field over its length's range, or the whole over
    /// [`MAX_FRAME`]); nothing was sent.
    TooLarge,
}

/// A replica's answer, whole.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

// ---------------------------------------------------------------------------------------------
// Frames

fn put_u16(out: &mut Vec<u8>, v: usize) -> Result<(), TooLarge> {
    out.extend_from_slice(&u16::try_from(v).map_err(|_| TooLarge)?.to_le_bytes());
    Ok(())
}

fn put_short(out: &mut Vec<u8>, bytes: &[u8]) -> Result<(), TooLarge> {
    put_u16(out, bytes.len())?;
    out.extend_from_slice(bytes);
    Ok(())
}

/// Appends one frame to `out`: `id`, then what `payload` writes; `out` is left as it was when that
/// fails or the frame is over [`MAX_FRAME`].
fn put_frame(
    out: &mut Vec<u8>,
    id: u32,
    payload: impl FnOnce(&mut Vec<u8>) -> Result<(), TooLarge>,
) -> Result<(), TooLarge> {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&id.to_le_bytes());
    let written = payload(out).and_then(|()| {
        let length = out.len() - start - 4;
        if length > MAX_FRAME {
            return Err(TooLarge);
        }
        let length = u32::try_from(length).map_err(|_| TooLarge)?;
        out[start..start + 4].copy_from_slice(&length.to_le_bytes());
        Ok(())
    });
    if written.is_err() {
        out.truncate(start);
    }
    written
}

fn put_headers(out: &mut Vec<u8>, headers: &HeaderMap) -> Result<(), TooLarge> {
    put_u16(out, headers.len())?;
    for (name, value) in headers {
        put_short(out, name.as_str().as_bytes())?;
        put_short(out, value.as_bytes())?;
    }
    Ok(())
}

fn put_request(
    out: &mut Vec<u8>,
    id: u32,
    method: &Method,
    path_and_query: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), TooLarge> {
    put_frame(out, id, |out| {
        let method = method.as_str().as_bytes();
        out.push(u8::try_from(method.len()).map_err(|_| TooLarge)?);
        out.extend_from_slice(method);
        put_short(out, path_and_query.as_bytes())?;
        put_headers(out, headers)?;
        out.extend_from_slice(body);
        Ok(())
    })
}

fn put_answer(
    out: &mut Vec<u8>,
    id: u32,
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), TooLarge> {
    put_frame(out, id, |out| {
        out.extend_from_slice(&status.as_u16().to_le_bytes());
        put_headers(out, headers)?;
        out.extend_from_slice(body);
        Ok(())
    })
}

/// Takes the next whole frame (its id and payload) off the front of `buf`; `None` until one has
/// arrived. A length over [`MAX_FRAME`] is an error.
fn next_frame(buf: &mut BytesMut) -> io::Result<Option<(u32, Bytes)>> {
    let Some(head) = buf.get(..4) else { return Ok(None) };
    let length = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
    if !(4..=MAX_FRAME).contains(&length) {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("a frame of {length} bytes")));
    }
    if buf.len() < 4 + length {
        buf.reserve(4 + length - buf.len());
        return Ok(None);
    }
    buf.advance(4);
    let mut frame = buf.split_to(length).freeze();
    let id = frame.get_u32_le();
    Ok(Some((id, frame)))
}

/// Reads a frame's fields in order; `None` once one runs past the end.
struct Fields(Bytes);

impl Fields {
    fn take(&mut self, n: usize) -> Option<Bytes> {
        (self.0.len() >= n).then(|| self.0.split_to(n))
    }

    fn u16(&mut self) -> Option<u16> {
        (self.0.len() >= 2).then(|| self.0.get_u16_le())
    }

    fn short(&mut self) -> Option<Bytes> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }

    fn headers(&mut self) -> Option<HeaderMap> {
        let count = self.u16()?;
        let mut headers = HeaderMap::with_capacity(usize::from(count));
        for _ in 0..count {
            let name = HeaderName::from_bytes(&self.short()?).ok()?;
            let value = HeaderValue::from_maybe_shared(self.short()?).ok()?;
            headers.append(name, value);
        }
        Some(headers)
    }
}

fn read_request(payload: Bytes) -> Option<Request> {
    let mut f = Fields(payload);
    let method_len = *f.take(1)?.first()?;
    let method = Method::from_bytes(&f.take(usize::from(method_len))?).ok()?;
    let uri = Uri::from_maybe_shared(f.short()?).ok()?;
    let headers = f.headers()?;
    let mut request = Request::new(Body::from(f.0));
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.headers_mut() = headers;
    Some(request)
}

fn read_answer(payload: Bytes) -> Option<Answer> {
    let mut f = Fields(payload);
    let status = StatusCode::from_u16(f.u16()?).ok()?;
    let headers = f.headers()?;
    Some(Answer { status, headers, body: f.0 })
}

/// Gives `buf` at least [`READ_ROOM`] bytes of room and reads into it.
fn poll_read_more(io: &mut QuietUnixStream, cx: &mut Context<'_>, buf: &mut BytesMut) -> Poll<io::Result<usize>> {
    if buf.capacity() - buf.len() < READ_ROOM {
        buf.reserve(READ_ROOM);
    }
    poll_read_buf(Pin::new(io), cx, buf)
}

/// Writes `buf[*written..]` until it is all written or the socket is full; `Ok(true)` when
/// something was written.
fn poll_write_out(io: &mut QuietUnixStream, cx: &mut Context<'_>, buf: &[u8], written: &mut usize) -> io::Result<bool> {
    let mut wrote = false;
    while *written < buf.len() {
        match Pin::new(&mut *io).poll_write(cx, &buf[*written..]) {
            Poll::Ready(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
            Poll::Ready(Ok(n)) => {
                *written += n;
                wrote = true;
            }
            Poll::Ready(Err(e)) => return Err(e),
            Poll::Pending => break,
        }
    }
    Ok(wrote)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing here panics while holding a lock; a poisoned one still holds consistent data.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

// ---------------------------------------------------------------------------------------------
// The replica's side

/// Serves `service` on `listener`'s connections until `shutdown` resolves; then stops accepting,
/// stops reading requests, answers those already read and closes each connection (requests still
/// unread are never answered: the client sees its connection end and sends them elsewhere).
pub async fn serve<S>(
    listener: tokio::net::UnixListener,
    service: S,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut connections = JoinSet::new();
    let mut shutdown = pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        match accepted.and_then(|(stream, _)| QuietUnixStream::new(stream.into_std()?)) {
            Ok(stream) => {
                let mut stopped = stopped.clone();
                let until = async move {
                    let _ = stopped.wait_for(|s| *s).await;
                };
                connections.spawn(serve_connection(stream, service.clone(), until));
            }
            Err(e) => {
                // As axum's listeners: out of descriptors, say; retried after a pause.
                tracing::debug!(error = %e, "cannot accept a replica connection");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    let _ = stop.send(true);
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// Answers written by request tasks, waiting for the connection's task to send them.
struct Outbox {
    bytes: Vec<u8>,
    in_flight: usize,
}

struct ServerShared {
    outbox: Mutex<Outbox>,
    /// The connection's task: woken when an answer is put in the outbox.
    task: AtomicWaker,
}

async fn serve_connection<S>(mut io: QuietUnixStream, service: S, stopped: impl Future<Output = ()>)
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let shared = Arc::new(ServerShared {
        outbox: Mutex::new(Outbox { bytes: Vec::new(), in_flight: 0 }),
        task: AtomicWaker::new(),
    });
    // With one worker thread a task of its own runs no sooner than this one: a request that is
    // answered at once (a quick model on an idle pool) is answered here, without a task and two
    // wake-ups.
    let in_place = tokio::runtime::Handle::current().metrics().num_workers() == 1;
    let mut stopped = pin!(stopped);
    let mut reading = true;
    let mut read = BytesMut::new();
    let mut out = Vec::new();
    let mut written = 0;
    let ended = poll_fn(move |cx| -> Poll<io::Result<()>> {
        shared.task.register(cx.waker());
        loop {
            let mut progress = false;
            if reading && stopped.as_mut().poll(cx).is_ready() {
                reading = false;
            }
            if reading && lock(&shared.outbox).in_flight < MAX_IN_FLIGHT {
                match poll_read_more(&mut io, cx, &mut read) {
                    Poll::Ready(Ok(0)) => reading = false,
                    Poll::Ready(Ok(_)) => {
                        progress = true;
                        while let Some((id, payload)) = next_frame(&mut read)? {
                            answer(&shared, &service, id, payload, in_place.then_some(&mut *cx));
                        }
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => {}
                }
            }
            if written == out.len() {
                out.clear();
                written = 0;
                std::mem::swap(&mut out, &mut lock(&shared.outbox).bytes);
            }
            progress |= poll_write_out(&mut io, cx, &out, &mut written)?;
            if !reading && written == out.len() {
                let outbox = lock(&shared.outbox);
                if outbox.in_flight == 0 && outbox.bytes.is_empty() {
                    return Poll::Ready(Ok(()));
                }
            }
            if !progress {
                return Poll::Pending;
            }
        }
    })
    .await;
    if let Err(e) = ended {
        tracing::debug!(error = %e, "replica connection ended with an error");
    }
}

/// Answers one request into the connection's outbox: on a task of its own, or, when `in_place`,
/// first right here, and on a task of its own only if it is not answered in that first poll.
fn answer<S>(shared: &Arc<ServerShared>, service: &S, id: u32, payload: Bytes, in_place: Option<&mut Context<'_>>)
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    lock(&shared.outbox).in_flight += 1;
    let mut answering = Answering { shared: Arc::clone(shared), id, done: false };
    let service = service.clone();
    let answered = async move {
        let Some(request) = read_request(payload) else {
            answering.send(StatusCode::BAD_REQUEST, HeaderMap::new(), b"a malformed request frame");
            return;
        };
        let Ok(response) = service.oneshot(request).await;
        let (parts, body) = response.into_parts();
        match axum::body::to_bytes(body, MAX_FRAME).await {
            Ok(body) => answering.send(parts.status, parts.headers, &body),
            Err(_) => {
                answering.send(StatusCode::INTERNAL_SERVER_ERROR, HeaderMap::new(), b"the answer could not be read")
            }
        }
    };
    match in_place {
        Some(cx) => {
            let mut answered = Box::pin(answered);
            // A future registers its waker on every poll, so the task's first poll takes over from
            // this one.
            // A handler that panics is answered 500 when `answered` is dropped (as a task's would be),
            // and the connection goes on.
            let polled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| answered.as_mut().poll(cx)));
            if matches!(polled, Ok(Poll::Pending)) {
                tokio::spawn(answered);
            }
        }
        None => {
            tokio::spawn(answered);
        }
    }
}

/// One request being answered; dropped unanswered (its task panicked, or the runtime stopped),
/// it answers 500 so the client is not left waiting.
struct Answering {
    shared: Arc<ServerShared>,
    id: u32,
    done: bool,
}

impl Answering {
    fn send(&mut self, status: StatusCode, headers: HeaderMap, body: &[u8]) {
        self.done = true;
        let mut outbox = lock(&self.shared.outbox);
        if put_answer(&mut outbox.bytes, self.id, status, &headers, body).is_err() {
            let too_large = b"the answer is too large for the replica connection";
            let _ =
                put_answer(&mut outbox.bytes, self.id, StatusCode::INTERNAL_SERVER_ERROR, &HeaderMap::new(), too_large);
        }
        outbox.in_flight -= 1;
        drop(outbox);
        self.shared.task.wake();
    }
}

impl Drop for Answering {
    fn drop(&mut self) {
        if !self.done {
            self.send(StatusCode::INTERNAL_SERVER_ERROR, HeaderMap::new(), b"the replica failed while answering");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The gateway's side

struct ClientState {
    /// Requests not yet handed to the socket.
    out: Vec<u8>,
    pending: std::collections::HashMap<u32, oneshot::Sender<Answer>, foldhash::fast::RandomState>,
    next_id: u32,
    /// The connection ended (or its owner dropped it): nothing more is sent.
    closed: bool,
}

struct ClientShared {
    state: Mutex<ClientState>,
    /// The connection's task: woken when a request is queued.
    task: AtomicWaker,
}

/// One multiplexed connection to a replica. Dropping it closes the connection.
pub struct Connection {
    shared: Arc<ClientShared>,
}

impl Connection {
    /// Connects to the replica's multiplexed socket `name` (a leading NUL names a Linux abstract
    /// socket). Must be called inside a tokio runtime.
    pub async fn connect(name: &str) -> io::Result<Self> {
        let io = QuietUnixStream::connect(name).await?;
        let shared = Arc::new(ClientShared {
            state: Mutex::new(ClientState {
                out: Vec::new(),
                pending: std::collections::HashMap::default(),
                next_id: 0,
                closed: false,
            }),
            task: AtomicWaker::new(),
        });
        tokio::spawn(drive(io, Arc::clone(&shared)));
        Ok(Self { shared })
    }

    /// Whether the connection has ended: [`Connection::send`] would fail at once.
    pub fn is_closed(&self) -> bool {
        lock(&self.shared.state).closed
    }

    /// Sends one request and waits for its answer. A request given up before its answer came is
    /// still answered by the replica; the answer is dropped.
    pub async fn send(
        &self,
        method: &Method,
        path_and_query: &str,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Answer, MuxError> {
        let answered = {
            let mut state = lock(&self.shared.state);
            if state.closed {
                return Err(MuxError::Closed);
            }
            let mut id = state.next_id;
            while state.pending.contains_key(&id) {
                id = id.wrapping_add(1);
            }
            state.next_id = id.wrapping_add(1);
            put_request(&mut state.out, id, method, path_and_query, headers, body)
                .map_err(|TooLarge| MuxError::TooLarge)?;
            let (tx, rx) = oneshot::channel();
            state.pending.insert(id, tx);
            rx
        };
        self.shared.task.wake();
        answered.await.map_err(|_| MuxError::Closed)
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        lock(&self.shared.state).closed = true;
        self.shared.task.wake();
    }
}

/// The connection's task: writes queued requests, hands answers to their requests, and ends the
/// connection on an error, on the replica's end of it, or when its owner drops it.
async fn drive(mut io: QuietUnixStream, shared: Arc<ClientShared>) {
    let mut read = BytesMut::new();
    let mut out = Vec::new();
    let mut written = 0;
    let ended = poll_fn(|cx| -> Poll<io::Result<()>> {
        shared.task.register(cx.waker());
        loop {
            let mut progress = false;
            if written == out.len() {
                out.clear();
                written = 0;
                let mut state = lock(&shared.state);
                if state.closed {
                    // Closed by the owner: nothing can be waiting (a send holds the connection).
                    return Poll::Ready(Ok(()));
                }
                std::mem::swap(&mut out, &mut state.out);
            }
            progress |= poll_write_out(&mut io, cx, &out, &mut written)?;
            match poll_read_more(&mut io, cx, &mut read) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into())),
                Poll::Ready(Ok(_)) => {
                    progress = true;
                    let mut answers = Vec::new();
                    while let Some((id, payload)) = next_frame(&mut read)? {
                        let answer = read_answer(payload)
                            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "a malformed answer frame"))?;
                        answers.push((id, answer));
                    }
                    let mut state = lock(&shared.state);
                    for (id, answer) in answers {
                        if let Some(waiting) = state.pending.remove(&id) {
                            let _ = waiting.send(answer);
                        }
                    }
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {}
            }
            if !progress {
                return Poll::Pending;
            }
        }
    })
    .await;
    let mut state = lock(&shared.state);
    state.closed = true;
    // Their requests fail with `MuxError::Closed`.
    state.pending.clear();
    state.out.clear();
    drop(state);
    if let Err(e) = ended {
        tracing::debug!(error = %e, "replica connection ended");
    }
}

#[cfg(test)]
#[path = "mux_tests.rs"]
mod tests;
