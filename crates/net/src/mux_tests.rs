use super::*;
use axum::routing::{get, post};
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::io::AsyncReadExt;

/// A fresh abstract socket name.
fn name() -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!("\0sluice-mux-test-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// Echoes the request: `<method> <path?query> <x-tag header> <body>`, with an `x-echo` header.
fn echo() -> axum::Router {
    let handler = |req: Request| async move {
        let (parts, body) = req.into_parts();
        let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
        let tag = parts.headers.get("x-tag").map_or("-", |v| v.to_str().unwrap()).to_owned();
        let text = format!("{} {} {tag} {}", parts.method, parts.uri, body.len());
        let mut response = Response::new(Body::from(text));
        response.headers_mut().insert("x-echo", HeaderValue::from_static("yes"));
        response
    };
    axum::Router::new()
        .route("/echo", post(handler).put(handler))
        .route("/big/{n}", get(|axum::extract::Path(n): axum::extract::Path<usize>| async move { vec![7u8; n] }))
        .route(
            "/panic",
            get(|| async {
                let failing = true;
                assert!(!failing, "the handler failed");
                "never"
            }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                "slow"
            }),
        )
}

/// A server on a fresh socket; returns its name and a sender that shuts it down.
fn server() -> (String, tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<io::Result<()>>) {
    let name = name();
    let listener = tokio::net::UnixListener::bind(&name).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(serve(listener, echo(), async move {
        let _ = stopped.await;
    }));
    (name, stop, served)
}

fn headers(tag: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("x-tag", HeaderValue::from_str(tag).unwrap());
    h
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_requests_at_once_each_get_their_own_answer() {
    let (name, _stop, _served) = server();
    let conn = Arc::new(Connection::connect(&name).await.unwrap());
    let sends = (0..200).map(|i| {
        let conn = Arc::clone(&conn);
        tokio::spawn(async move {
            let body = vec![b'x'; i * 37];
            let answer =
                conn.send(&Method::POST, &format!("/echo?i={i}"), &headers(&format!("t{i}")), &body).await.unwrap();
            (i, answer)
        })
    });
    for sent in futures_util::future::join_all(sends).await {
        let (i, answer) = sent.unwrap();
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.headers["x-echo"], "yes");
        assert_eq!(answer.body, format!("POST /echo?i={i} t{i} {}", i * 37));
    }
}

#[tokio::test]
async fn large_bodies_cross_both_ways_and_the_routers_answers_come_through() {
    let (name, _stop, _served) = server();
    let conn = Connection::connect(&name).await.unwrap();
    let body = vec![1u8; 3 << 20];
    let answer = conn.send(&Method::PUT, "/echo", &HeaderMap::new(), &body).await.unwrap();
    assert_eq!(answer.body, format!("PUT /echo - {}", 3 << 20));
    let answer = conn.send(&Method::GET, "/big/5000000", &HeaderMap::new(), b"").await.unwrap();
    assert_eq!(answer.body.len(), 5_000_000);
    assert!(answer.body.iter().all(|b| *b == 7));
    // The router's own answers: no route, wrong method.
    assert_eq!(
        conn.send(&Method::GET, "/nowhere", &HeaderMap::new(), b"").await.unwrap().status,
        StatusCode::NOT_FOUND
    );
    let wrong = conn.send(&Method::DELETE, "/echo", &HeaderMap::new(), b"").await.unwrap();
    assert_eq!(wrong.status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn a_handler_that_panics_is_answered_500_and_the_connection_goes_on() {
    let (name, _stop, _served) = server();
    let conn = Connection::connect(&name).await.unwrap();
    let answer = conn.send(&Method::GET, "/panic", &HeaderMap::new(), b"").await.unwrap();
    assert_eq!(answer.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(answer.body, "the replica failed while answering");
    let answer = conn.send(&Method::POST, "/echo", &headers("after"), b"ab").await.unwrap();
    assert_eq!(answer.body, "POST /echo after 2");
}

#[tokio::test]
async fn a_request_that_does_not_fit_a_frame_is_refused_before_sending() {
    let (name, _stop, _served) = server();
    let conn = Connection::connect(&name).await.unwrap();
    let long_path = format!("/echo?{}", "a".repeat(70_000));
    let refused = conn.send(&Method::POST, &long_path, &HeaderMap::new(), b"").await;
    assert!(matches!(refused, Err(MuxError::TooLarge)), "{refused:?}");
    let answer = conn.send(&Method::POST, "/echo", &headers("next"), b"").await.unwrap();
    assert_eq!(answer.body, "POST /echo next 0");
}

#[tokio::test]
async fn shutting_down_answers_what_was_read_then_ends_the_connection() {
    let (name, stop, served) = server();
    let conn = Arc::new(Connection::connect(&name).await.unwrap());
    let slow = tokio::spawn({
        let conn = Arc::clone(&conn);
        async move { conn.send(&Method::GET, "/slow", &HeaderMap::new(), b"").await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    stop.send(()).unwrap();
    let answer = slow.await.unwrap().unwrap();
    assert_eq!(answer.body, "slow");
    served.await.unwrap().unwrap();
    // The server closed the connection once the answer went out.
    for _ in 0..100 {
        if conn.is_closed() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(conn.is_closed());
    assert!(matches!(conn.send(&Method::POST, "/echo", &HeaderMap::new(), b"").await, Err(MuxError::Closed)));
}

#[tokio::test]
async fn a_replica_that_goes_away_fails_the_requests_it_held() {
    let name = name();
    let listener = tokio::net::UnixListener::bind(&name).unwrap();
    // Takes the connection, reads the request and closes without answering.
    let replica = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 1024];
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 8);
    });
    let conn = Connection::connect(&name).await.unwrap();
    let failed = conn.send(&Method::POST, "/echo", &HeaderMap::new(), b"x").await;
    replica.await.unwrap();
    assert!(matches!(failed, Err(MuxError::Closed)), "{failed:?}");
    assert!(conn.is_closed());
}

/// Requests queued together leave in one write: a raw replica reads them all at once.
#[tokio::test]
async fn requests_queued_together_leave_in_one_message() {
    let name = name();
    let listener = tokio::net::UnixListener::bind(&name).unwrap();
    let conn = Arc::new(Connection::connect(&name).await.unwrap());
    let (mut s, _) = listener.accept().await.unwrap();
    // On this one-thread runtime the sends all queue before the connection's task runs.
    let sends: Vec<_> = (0..16)
        .map(|i| {
            let conn = Arc::clone(&conn);
            tokio::spawn(async move { conn.send(&Method::POST, "/echo", &headers(&format!("t{i}")), b"body").await })
        })
        .collect();
    let mut buf = vec![0u8; 1 << 16];
    let n = s.read(&mut buf).await.unwrap();
    let mut read = BytesMut::from(&buf[..n]);
    let mut frames = 0;
    while next_frame(&mut read).unwrap().is_some() {
        frames += 1;
    }
    assert_eq!(frames, 16, "one read took {frames} of the 16 requests");
    assert!(read.is_empty());
    drop(s);
    for send in sends {
        assert!(matches!(send.await.unwrap(), Err(MuxError::Closed)));
    }
}

/// What a hostile or broken client sends: a request frame that cannot be read is answered 400; a
/// frame length over the bound ends the connection.
#[tokio::test]
async fn a_malformed_request_is_answered_400_and_an_oversized_frame_ends_the_connection() {
    use tokio::io::AsyncWriteExt;
    let (name, _stop, _served) = server();
    let mut s = tokio::net::UnixStream::connect(&name).await.unwrap();
    // id 9, method length 200 with 3 bytes following.
    let mut frame = vec![];
    frame.extend_from_slice(&8u32.to_le_bytes());
    frame.extend_from_slice(&9u32.to_le_bytes());
    frame.extend_from_slice(&[200, b'G', b'E', b'T']);
    s.write_all(&frame).await.unwrap();
    let mut buf = BytesMut::new();
    let (id, payload) = loop {
        s.read_buf(&mut buf).await.unwrap();
        if let Some(frame) = next_frame(&mut buf).unwrap() {
            break frame;
        }
    };
    assert_eq!(id, 9);
    let answer = read_answer(payload).unwrap();
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(answer.body, "a malformed request frame");
    s.write_all(&(MAX_FRAME as u32 + 1).to_le_bytes()).await.unwrap();
    let mut rest = vec![];
    assert_eq!(s.read_to_end(&mut rest).await.unwrap(), 0, "the connection ends");
}

#[test]
fn frames_round_trip() {
    let mut out = vec![];
    let mut h = HeaderMap::new();
    h.append("x-a", HeaderValue::from_static("1"));
    h.append("x-a", HeaderValue::from_static("2"));
    h.insert("content-type", HeaderValue::from_static("application/json"));
    put_request(&mut out, 7, &Method::PATCH, "/p?q=1", &h, b"{}").unwrap();
    put_answer(&mut out, 8, StatusCode::IM_A_TEAPOT, &h, b"tea").unwrap();
    let mut buf = BytesMut::from(&out[..]);
    let (id, payload) = next_frame(&mut buf).unwrap().unwrap();
    assert_eq!(id, 7);
    let request = read_request(payload).unwrap();
    assert_eq!(request.method(), Method::PATCH);
    assert_eq!(request.uri(), "/p?q=1");
    assert_eq!(request.headers(), &h);
    let (id, payload) = next_frame(&mut buf).unwrap().unwrap();
    assert_eq!(id, 8);
    let answer = read_answer(payload).unwrap();
    assert_eq!((answer.status, &answer.headers, &answer.body[..]), (StatusCode::IM_A_TEAPOT, &h, &b"tea"[..]));
    assert!(next_frame(&mut buf).unwrap().is_none());
    // A frame cut short waits for the rest; a field cut short is unreadable.
    let mut partial = BytesMut::from(&out[..10]);
    assert!(next_frame(&mut partial).unwrap().is_none());
    assert!(read_answer(Bytes::from_static(&[200])).is_none());
}
