//! Reading a request body whole before it is forwarded: bounded in size, in how long the client
//! may leave it unfinished, and in how much memory all bodies being held take together.
//!
//! hyper's header read timeout (`sluice_net::serve`) ends once the head is in; a client that then
//! sends less body than its `Content-Length` promised, or sends it a byte at a time, would hold its
//! connection and task for as long as it liked. Like nginx's `client_body_timeout` (default 60 s),
//! the bound is on the wait for each next piece, not on the whole upload, so a large body on a
//! slow link still gets through.
//!
//! Each body may be up to 100 MiB and is held until its request is answered (a retry or a mirrored
//! copy re-sends it), so a few dozen large uploads at once could take all the server's memory.
//! [`BodyBudget`] bounds the total: a body's bytes beyond its first [`FREE_BODY_BYTES`] are
//! counted against it, up front by its `Content-Length` and again as pieces arrive, and a body
//! that does not fit is refused at once (503, `Retry-After`) instead of being read. Small requests,
//! the usual scoring call, never touch it.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use http::{HeaderValue, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Body as _;
use tokio::sync::{Semaphore, SemaphorePermit};

/// The first bytes of every body, not counted against the [`BodyBudget`].
pub const FREE_BODY_BYTES: usize = 64 << 10;

/// The bytes of request bodies the gateway holds at once, over all requests, beyond each body's
/// first [`FREE_BODY_BYTES`]; counted in KiB. Cheap to clone (shared).
#[derive(Clone, Debug)]
pub struct BodyBudget {
    kib: Arc<Semaphore>,
    mib: usize,
}

impl BodyBudget {
    /// A budget of `bytes` (at least 1 KiB).
    pub fn new(bytes: usize) -> Self {
        let kib = (bytes >> 10).clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
        Self { kib: Arc::new(Semaphore::new(kib)), mib: bytes >> 20 }
    }

    /// The budget's size in MiB, for messages.
    pub fn mib(&self) -> usize {
        self.mib
    }
}

impl Default for BodyBudget {
    fn default() -> Self {
        Self::new(1 << 30)
    }
}

/// What a body being read holds of the budget.
struct Charge<'a> {
    budget: &'a Semaphore,
    held: Option<SemaphorePermit<'a>>,
    kib: u32,
}

impl<'a> Charge<'a> {
    /// Holds enough of the budget for a body of `total` bytes, or says it does not fit.
    fn to(&mut self, total: u64) -> Result<(), BodyError> {
        let Some(counted) = total.checked_sub(FREE_BODY_BYTES as u64).filter(|c| *c > 0) else { return Ok(()) };
        let want = u32::try_from(counted.div_ceil(1024)).map_err(|_| BodyError::Busy)?;
        if want <= self.kib {
            return Ok(());
        }
        let more = self.budget.try_acquire_many(want - self.kib).map_err(|_| BodyError::Busy)?;
        match &mut self.held {
            Some(held) => held.merge(more),
            None => self.held = Some(more),
        }
        self.kib = want;
        Ok(())
    }
}

/// A body read whole, holding its share of the [`BodyBudget`] until dropped.
pub(crate) struct ReadBody<'a> {
    pub bytes: Bytes,
    /// Keep it until the request is answered.
    pub held: Option<SemaphorePermit<'a>>,
}

/// The default longest wait for the next piece of a request body.
pub const DEFAULT_BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// A request body that stopped arriving: nothing of it came for `.0` before its end. The
/// management API's bodies fail with it too, so both planes say the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyStalled(pub Duration);

impl std::fmt::Display for BodyStalled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the request body stopped arriving: nothing came for {} s before its end (a Content-Length larger than the body sent?)",
            self.0.as_secs()
        )
    }
}

impl std::error::Error for BodyStalled {}

/// Why a body could not be read.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum BodyError {
    /// Over the limit, by its `Content-Length` or by what arrived.
    TooLarge,
    /// Nothing arrived for the idle timeout before the body ended.
    Stalled,
    /// The connection failed while the body was being read (the client went away).
    Failed,
    /// Bodies already held take the [`BodyBudget`]; this one does not fit beside them.
    Busy,
}

impl BodyError {
    /// The answer, in the caller's error shape: `answer(status, code, message)`, where `code` is
    /// the status's name as Azure's error bodies spell it. `limit` is the body limit that applied.
    pub(crate) fn answer(
        self,
        limit: usize,
        idle: Duration,
        budget: &BodyBudget,
        answer: impl FnOnce(StatusCode, &'static str, String) -> Response,
    ) -> Response {
        match self {
            Self::Busy => {
                let text = format!(
                    "the server is holding {} MiB of request bodies already (request_body_memory_mib); retry shortly",
                    budget.mib()
                );
                let mut response = answer(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable", text);
                response.headers_mut().insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
                response
            }
            Self::TooLarge => answer(
                StatusCode::PAYLOAD_TOO_LARGE,
                "PayloadTooLarge",
                format!("request body over {} MiB", limit >> 20),
            ),
            Self::Stalled => answer(StatusCode::REQUEST_TIMEOUT, "RequestTimeout", BodyStalled(idle).to_string()),
            Self::Failed => {
                answer(StatusCode::BAD_REQUEST, "BadRequest", "the request body could not be read".to_owned())
            }
        }
    }
}

/// The whole body, or why not. A body that arrives in one piece (the usual small request) is
/// returned without a copy.
pub(crate) async fn read_body<'a>(
    body: Body,
    limit: usize,
    idle: Duration,
    budget: &'a BodyBudget,
) -> Result<ReadBody<'a>, BodyError> {
    let promised = body.size_hint().lower();
    if promised > limit as u64 {
        return Err(BodyError::TooLarge);
    }
    let mut charge = Charge { budget: &budget.kib, held: None, kib: 0 };
    charge.to(promised)?;
    let mut body = body;
    let mut first: Option<Bytes> = None;
    let mut joined: Option<BytesMut> = None;
    let mut total = 0usize;
    loop {
        // A piece already received is taken without arming a timer (the usual small request
        // arrives with its head); only a wait is timed.
        let mut next = std::pin::pin!(body.frame());
        let polled = match futures_util::FutureExt::now_or_never(next.as_mut()) {
            Some(polled) => polled,
            None => tokio::time::timeout(idle, next).await.map_err(|_| BodyError::Stalled)?,
        };
        let frame = match polled {
            None => break,
            Some(Err(_)) => return Err(BodyError::Failed),
            Some(Ok(frame)) => frame,
        };
        let Ok(data) = frame.into_data() else { continue };
        total += data.len();
        if total > limit {
            return Err(BodyError::TooLarge);
        }
        charge.to(total as u64)?;
        match (&first, &mut joined) {
            (None, _) => first = Some(data),
            (Some(f), None) => {
                // What is still to come, by its Content-Length (already counted in the budget).
                let remaining = usize::try_from(body.size_hint().lower()).unwrap_or(0);
                let mut all = BytesMut::with_capacity(total.saturating_add(remaining).min(limit));
                all.extend_from_slice(f);
                all.extend_from_slice(&data);
                joined = Some(all);
            }
            (Some(_), Some(all)) => all.extend_from_slice(&data),
        }
    }
    let bytes = match (joined, first) {
        (Some(all), _) => all.freeze(),
        (None, Some(one)) => one,
        (None, None) => Bytes::new(),
    };
    Ok(ReadBody { bytes, held: charge.held })
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::{StreamExt, stream};
    use std::convert::Infallible;

    async fn read(body: Body, limit: usize, idle: Duration) -> Result<Bytes, BodyError> {
        let budget = BodyBudget::default();
        read_body(body, limit, idle, &budget).await.map(|b| b.bytes)
    }

    fn chunks(parts: &[&'static [u8]]) -> Body {
        let parts: Vec<Result<Bytes, Infallible>> = parts.iter().map(|p| Ok(Bytes::from_static(p))).collect();
        Body::from_stream(stream::iter(parts))
    }

    #[tokio::test]
    async fn whole_bodies_in_one_piece_or_many() {
        let one = read(Body::from("abc"), 10, DEFAULT_BODY_IDLE_TIMEOUT).await.unwrap();
        assert_eq!(one, "abc");
        let many = read(chunks(&[b"ab", b"", b"cd", b"e"]), 10, DEFAULT_BODY_IDLE_TIMEOUT).await.unwrap();
        assert_eq!(many, "abcde");
        assert_eq!(read(Body::empty(), 10, DEFAULT_BODY_IDLE_TIMEOUT).await.unwrap(), "");
        let exact = read(chunks(&[b"12345", b"67890"]), 10, DEFAULT_BODY_IDLE_TIMEOUT).await.unwrap();
        assert_eq!(exact, "1234567890");
    }

    #[tokio::test]
    async fn too_large_by_length_or_by_what_arrives() {
        assert_eq!(read(Body::from("0123456789a"), 10, DEFAULT_BODY_IDLE_TIMEOUT).await, Err(BodyError::TooLarge));
        let streamed = read(chunks(&[b"012345", b"6789a"]), 10, DEFAULT_BODY_IDLE_TIMEOUT).await;
        assert_eq!(streamed, Err(BodyError::TooLarge));
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_stops_coming_is_given_up() {
        // Two pieces, then nothing: the stream never ends.
        let stalled = stream::iter([Ok::<_, Infallible>(Bytes::from_static(b"ab")), Ok(Bytes::from_static(b"cd"))])
            .chain(stream::pending());
        let started = tokio::time::Instant::now();
        let got = read(Body::from_stream(stalled), 100, Duration::from_secs(60)).await;
        assert_eq!(got, Err(BodyError::Stalled));
        assert_eq!(started.elapsed(), Duration::from_secs(60), "given up after one idle timeout (paused clock)");

        // Pieces 59 s apart keep it going: the bound is per piece, not for the whole body.
        let slow = stream::iter([b"a", b"b", b"c"]).then(|p| async move {
            tokio::time::sleep(Duration::from_secs(59)).await;
            Ok::<_, Infallible>(Bytes::from_static(p))
        });
        let got = read(Body::from_stream(slow), 100, Duration::from_secs(60)).await;
        assert_eq!(got.unwrap(), "abc");
    }

    #[tokio::test]
    async fn large_bodies_share_a_budget_and_small_ones_never_touch_it() {
        const KIB: usize = 1024;
        let budget = BodyBudget::new(100 * KIB);
        let sized = |n: usize| Body::from(vec![b'x'; n]);
        // 150 KiB counts 86 KiB (the first 64 KiB are free): held while `a` lives.
        let a = read_body(sized(150 * KIB), usize::MAX, DEFAULT_BODY_IDLE_TIMEOUT, &budget).await.unwrap();
        assert_eq!(a.bytes.len(), 150 * KIB);
        assert_eq!(budget.kib.available_permits(), 14);
        // 100 KiB would count 36 KiB: refused before it is read.
        let b = read_body(sized(100 * KIB), usize::MAX, DEFAULT_BODY_IDLE_TIMEOUT, &budget).await;
        assert_eq!(b.err(), Some(BodyError::Busy));
        // A small body is read whatever the budget holds.
        let small = read_body(sized(64 * KIB), usize::MAX, DEFAULT_BODY_IDLE_TIMEOUT, &budget).await.unwrap();
        assert_eq!(small.bytes.len(), 64 * KIB);
        // A body without a length is counted as it arrives, and given up when it no longer fits.
        let pieces: Vec<Result<Bytes, Infallible>> = (0..4).map(|_| Ok(Bytes::from(vec![b'y'; 32 * KIB]))).collect();
        let grown = read_body(Body::from_stream(stream::iter(pieces)), usize::MAX, DEFAULT_BODY_IDLE_TIMEOUT, &budget);
        assert_eq!(grown.await.err(), Some(BodyError::Busy));
        assert_eq!(budget.kib.available_permits(), 14, "what the refused body held is back");
        drop(a);
        assert_eq!(budget.kib.available_permits(), 100);
        let b = read_body(sized(100 * KIB), usize::MAX, DEFAULT_BODY_IDLE_TIMEOUT, &budget).await.unwrap();
        assert_eq!(b.bytes.len(), 100 * KIB);
        assert_eq!(budget.kib.available_permits(), 64);
    }

    #[tokio::test]
    async fn a_failing_body_is_not_mistaken_for_a_large_one() {
        let broken = stream::iter([Ok(Bytes::from_static(b"ab")), Err(std::io::Error::other("reset"))]);
        assert_eq!(read(Body::from_stream(broken), 100, DEFAULT_BODY_IDLE_TIMEOUT).await, Err(BodyError::Failed));
    }
}
