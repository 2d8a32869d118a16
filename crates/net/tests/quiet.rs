//! `QuietUnixStream` over real socket pairs on a real tokio reactor: what it registers with epoll
//! (read from the kernel's own account of the reactor, `/proc/self/fdinfo`), and that reads, writes
//! larger than the socket buffer, end of stream and the listener all behave as a socket should.

use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;

use sluice_net::{QuietUnixListener, QuietUnixStream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const EPOLLIN: u32 = 0x1;
const EPOLLOUT: u32 = 0x4;

/// The event masks every epoll instance of this process holds for descriptor `fd`, one per
/// registration (mio holds its epoll under two descriptors, so each is listed twice).
fn epoll_interest(fd: i32) -> Vec<u32> {
    let mut masks = std::collections::BTreeMap::new();
    for entry in std::fs::read_dir("/proc/self/fd").expect("/proc/self/fd") {
        let entry = entry.expect("fd entry");
        let is_epoll = std::fs::read_link(entry.path())
            .map(|target| target.to_string_lossy() == "anon_inode:[eventpoll]")
            .unwrap_or(false);
        if !is_epoll {
            continue;
        }
        let name = entry.file_name();
        let Ok(info) = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", name.to_string_lossy())) else {
            continue;
        };
        // Lines look like "tfd:        9 events: 80002005 data: ... pos:0 ino:... sdev:...".
        for line in info.lines() {
            let mut words = line.split_whitespace();
            if words.next() != Some("tfd:") || words.next() != Some(fd.to_string().as_str()) {
                continue;
            }
            let (Some("events:"), Some(mask), Some("data:"), Some(data)) =
                (words.next(), words.next(), words.next(), words.next())
            else {
                panic!("unexpected fdinfo line: {line}");
            };
            // `data` is the registration's token, unique within one epoll instance.
            masks.insert(data.to_string(), u32::from_str_radix(mask, 16).expect("hex events mask"));
        }
    }
    masks.into_values().collect()
}

#[tokio::test]
async fn registers_for_readability_only_where_tokio_registers_for_both() {
    let (a, b) = UnixStream::pair().unwrap();
    let (a_fd, b_fd) = (a.as_raw_fd(), b.as_raw_fd());
    b.set_nonblocking(true).unwrap();
    let quiet = QuietUnixStream::new(a).unwrap();
    let plain = tokio::net::UnixStream::from_std(b).unwrap();

    let quiet_masks = epoll_interest(a_fd);
    assert_eq!(quiet_masks.len(), 1, "one registration for the quiet stream: {quiet_masks:x?}");
    assert_ne!(quiet_masks[0] & EPOLLIN, 0, "the quiet stream is woken for reads: {:x}", quiet_masks[0]);
    assert_eq!(
        quiet_masks[0] & EPOLLOUT,
        0,
        "the quiet stream must not be woken for write space: {:x}",
        quiet_masks[0]
    );

    // The check above means something: tokio's own stream asks for write space too.
    let plain_masks = epoll_interest(b_fd);
    assert_eq!(plain_masks.len(), 1, "{plain_masks:x?}");
    assert_ne!(plain_masks[0] & EPOLLOUT, 0, "tokio's UnixStream: {:x}", plain_masks[0]);
    drop((quiet, plain));
}

#[tokio::test]
async fn small_messages_go_both_ways_and_end_of_stream_is_seen() {
    let (a, b) = UnixStream::pair().unwrap();
    let mut a = QuietUnixStream::new(a).unwrap();
    let mut b = QuietUnixStream::new(b).unwrap();

    a.write_all(b"request").await.unwrap();
    let mut buf = [0u8; 7];
    b.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"request");

    b.write_all(b"answer!").await.unwrap();
    a.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"answer!");

    // Shutting down the write half ends the peer's reads; the other direction still works.
    a.shutdown().await.unwrap();
    let mut rest = Vec::new();
    assert_eq!(b.read_to_end(&mut rest).await.unwrap(), 0);
    b.write_all(b"late").await.unwrap();
    let mut late = [0u8; 4];
    a.read_exact(&mut late).await.unwrap();
    assert_eq!(&late, b"late");

    // A dropped peer: end of stream for reads, an error (not a hang) for writes.
    drop(b);
    assert_eq!(a.read(&mut late).await.unwrap(), 0);
    let mut broken = None;
    for _ in 0..4 {
        if let Err(e) = a.write_all(&[0u8; 1024]).await {
            broken = Some(e.kind());
            break;
        }
    }
    assert_eq!(broken, Some(std::io::ErrorKind::BrokenPipe));
}

/// Bytes whose order shows if anything is lost, repeated or reordered.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3] ^ seed).collect()
}

#[tokio::test]
async fn writes_larger_than_the_socket_buffer_wait_for_space_and_arrive_whole() {
    // Several megabytes each way, at the same time: each writer fills the buffer many times over
    // and must be woken when the reader frees space (the path a plain write never takes).
    const LEN: usize = 8 << 20;
    let (a, b) = UnixStream::pair().unwrap();
    let (mut a_read, mut a_write) = tokio::io::split(QuietUnixStream::new(a).unwrap());
    let (mut b_read, mut b_write) = tokio::io::split(QuietUnixStream::new(b).unwrap());

    let a_to_b = tokio::spawn(async move {
        a_write.write_all(&pattern(LEN, 1)).await.unwrap();
        a_write.shutdown().await.unwrap();
        a_write
    });
    let b_to_a = tokio::spawn(async move {
        // Vectored, as hyper writes head and body.
        let body = pattern(LEN, 2);
        let (head, tail) = body.split_at(1000);
        let mut written = 0;
        while written < LEN {
            let slices = if written < head.len() {
                vec![std::io::IoSlice::new(&head[written..]), std::io::IoSlice::new(tail)]
            } else {
                vec![std::io::IoSlice::new(&body[written..])]
            };
            written += b_write.write_vectored(&slices).await.unwrap();
        }
        b_write.shutdown().await.unwrap();
        b_write
    });
    let mut at_b = Vec::new();
    let mut at_a = Vec::new();
    // A writer never woken for space would hang here: fail instead (the transfer takes milliseconds).
    let (read_b, read_a) = tokio::time::timeout(std::time::Duration::from_secs(120), async {
        tokio::join!(b_read.read_to_end(&mut at_b), a_read.read_to_end(&mut at_a))
    })
    .await
    .expect("a writer waiting for buffer space was never woken");
    assert_eq!(read_b.unwrap(), LEN);
    assert_eq!(read_a.unwrap(), LEN);
    assert!(at_b == pattern(LEN, 1), "a to b: bytes differ");
    assert!(at_a == pattern(LEN, 2), "b to a: bytes differ");

    // Once the writes went through, no registration for write space is left behind.
    let a = a_read.unsplit(a_to_b.await.unwrap());
    let b = b_read.unsplit(b_to_a.await.unwrap());
    for entry in std::fs::read_dir("/proc/self/fd").unwrap() {
        let Ok(fd) = entry.unwrap().file_name().to_string_lossy().parse::<i32>() else { continue };
        for mask in epoll_interest(fd) {
            assert_eq!(mask & EPOLLOUT, 0, "fd {fd} is still registered for write space");
        }
    }
    drop((a, b));
}

#[tokio::test]
async fn the_listener_serves_http_over_quiet_streams() {
    let dir = std::env::temp_dir().join(format!("sluice-net-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("listener.sock");
    let _ = std::fs::remove_file(&path);
    let listener = QuietUnixListener(tokio::net::UnixListener::bind(&path).unwrap());
    let app =
        axum::Router::new().route("/echo", axum::routing::post(|body: String| async move { body.to_uppercase() }));
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let mut client = QuietUnixStream::connect(path.to_str().unwrap()).await.unwrap();
    for word in ["first", "second"] {
        // Two requests on one connection: keep-alive works through the quiet stream.
        let request = format!("POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n{word}", word.len());
        client.write_all(request.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        let mut buf = [0u8; 1024];
        while !answer.ends_with(word.to_uppercase().as_bytes()) {
            let n = client.read(&mut buf).await.unwrap();
            assert_ne!(n, 0, "connection closed early: {}", String::from_utf8_lossy(&answer));
            answer.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8(answer).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
    }
    server.abort();
    let _ = std::fs::remove_dir_all(&dir);
}

/// This thread's `read(2)` calls so far (`syscr` in `/proc/thread-self/io`), the file's own read
/// included (`read_to_string` takes a few).
fn reads_by_this_thread() -> u64 {
    let io = std::fs::read_to_string("/proc/thread-self/io").unwrap();
    io.lines().find_map(|l| l.strip_prefix("syscr: ")).unwrap().trim().parse().unwrap()
}

#[tokio::test] // one thread: the echo task and the test's own reads both count here
async fn a_read_that_empties_the_socket_waits_for_the_next_message_without_reading_again() {
    let (a, b) = UnixStream::pair().unwrap();
    let mut a = QuietUnixStream::new(a).unwrap();
    let mut b = QuietUnixStream::new(b).unwrap();
    // As hyper does with a keep-alive connection: read whatever came, answer it, read again.
    let echo = tokio::spawn(async move {
        let mut buf = vec![0u8; 8192];
        loop {
            let n = b.read(&mut buf).await.unwrap();
            if n == 0 {
                return;
            }
            b.write_all(&buf[..n]).await.unwrap();
        }
    });
    const ROUNDS: u64 = 200;
    let mut buf = vec![0u8; 8192];
    let before = reads_by_this_thread();
    for round in 0..ROUNDS {
        let message = [round as u8; 64];
        a.write_all(&message).await.unwrap();
        let mut answer = Vec::new();
        while answer.len() < message.len() {
            let n = a.read(&mut buf).await.unwrap();
            assert_ne!(n, 0, "the echo ended early");
            answer.extend_from_slice(&buf[..n]);
        }
        assert_eq!(answer, message);
    }
    let reads = reads_by_this_thread() - before;
    // One read per message on each side (the few over are the two reads of the counter). A stream
    // that kept its readiness after a read that emptied the socket would try once more on each
    // side and get EAGAIN: four per round.
    assert!(reads <= 2 * ROUNDS + 8, "{reads} reads for {ROUNDS} round trips");
    drop(a);
    echo.await.unwrap();
}
