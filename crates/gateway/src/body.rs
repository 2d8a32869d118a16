//! Reading a request body whole before it is forwarded: bounded in size, and in how long the
//! client may leave it unfinished.
//!
//! hyper's header read timeout (`sluice_net::serve`) ends once the head is in; a client that then
//! sends less body than its `Content-Length` promised, or sends it a byte at a time, would hold its
//! connection and task for as long as it liked. Like nginx's `client_body_timeout` (default 60 s),
//! the bound is on the wait for each next piece, not on the whole upload, so a large body on a
//! slow link still gets through.

use std::time::Duration;

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::Body as _;

/// The default longest wait for the next piece of a request body.
pub const DEFAULT_BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a body could not be read.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum BodyError {
    /// Over the limit, by its `Content-Length` or by what arrived.
    TooLarge,
    /// Nothing arrived for the idle timeout before the body ended.
    Stalled,
    /// The connection failed while the body was being read (the client went away).
    Failed,
}

/// The whole body, or why not. A body that arrives in one piece (the usual small request) is
/// returned without a copy.
pub(crate) async fn read_body(body: Body, limit: usize, idle: Duration) -> Result<Bytes, BodyError> {
    if body.size_hint().lower() > limit as u64 {
        return Err(BodyError::TooLarge);
    }
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
        match (&first, &mut joined) {
            (None, _) => first = Some(data),
            (Some(f), None) => {
                let expected = usize::try_from(body.size_hint().lower()).unwrap_or(0).min(limit);
                let mut all = BytesMut::with_capacity(expected.max(total));
                all.extend_from_slice(f);
                all.extend_from_slice(&data);
                joined = Some(all);
            }
            (Some(_), Some(all)) => all.extend_from_slice(&data),
        }
    }
    Ok(match (joined, first) {
        (Some(all), _) => all.freeze(),
        (None, Some(one)) => one,
        (None, None) => Bytes::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::{StreamExt, stream};
    use std::convert::Infallible;

    fn chunks(parts: &[&'static [u8]]) -> Body {
        let parts: Vec<Result<Bytes, Infallible>> = parts.iter().map(|p| Ok(Bytes::from_static(p))).collect();
        Body::from_stream(stream::iter(parts))
    }

    #[tokio::test]
    async fn whole_bodies_in_one_piece_or_many() {
        let one = read_body(Body::from("abc"), 10, DEFAULT_BODY_IDLE_TIMEOUT).await.unwrap();
        assert_eq!(one, "abc");
        let many = read_body(chunks(&[b"ab", b"", b"cd", b"e"]), 10, DEFAULT_BODY_IDLE_TIMEOUT).await.unwrap();
        assert_eq!(many, "abcde");
        assert_eq!(read_body(Body::empty(), 10, DEFAULT_BODY_IDLE_TIMEOUT).await.unwrap(), "");
        let exact = read_body(chunks(&[b"12345", b"67890"]), 10, DEFAULT_BODY_IDLE_TIMEOUT).await.unwrap();
        assert_eq!(exact, "1234567890");
    }

    #[tokio::test]
    async fn too_large_by_length_or_by_what_arrives() {
        assert_eq!(read_body(Body::from("0123456789a"), 10, DEFAULT_BODY_IDLE_TIMEOUT).await, Err(BodyError::TooLarge));
        let streamed = read_body(chunks(&[b"012345", b"6789a"]), 10, DEFAULT_BODY_IDLE_TIMEOUT).await;
        assert_eq!(streamed, Err(BodyError::TooLarge));
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_stops_coming_is_given_up() {
        // Two pieces, then nothing: the stream never ends.
        let stalled = stream::iter([Ok::<_, Infallible>(Bytes::from_static(b"ab")), Ok(Bytes::from_static(b"cd"))])
            .chain(stream::pending());
        let started = tokio::time::Instant::now();
        let got = read_body(Body::from_stream(stalled), 100, Duration::from_secs(60)).await;
        assert_eq!(got, Err(BodyError::Stalled));
        assert_eq!(started.elapsed(), Duration::from_secs(60), "given up after one idle timeout (paused clock)");

        // Pieces 59 s apart keep it going: the bound is per piece, not for the whole body.
        let slow = stream::iter([b"a", b"b", b"c"]).then(|p| async move {
            tokio::time::sleep(Duration::from_secs(59)).await;
            Ok::<_, Infallible>(Bytes::from_static(p))
        });
        let got = read_body(Body::from_stream(slow), 100, Duration::from_secs(60)).await;
        assert_eq!(got.unwrap(), "abc");
    }

    #[tokio::test]
    async fn a_failing_body_is_not_mistaken_for_a_large_one() {
        let broken = stream::iter([Ok(Bytes::from_static(b"ab")), Err(std::io::Error::other("reset"))]);
        assert_eq!(read_body(Body::from_stream(broken), 100, DEFAULT_BODY_IDLE_TIMEOUT).await, Err(BodyError::Failed));
    }
}
