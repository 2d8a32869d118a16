//! The public listener closes connections that hold on without sending a request
//! (`header_read_timeout_s`), so idle or trickling clients cannot use up the server's
//! connections; a client that keeps sending requests keeps its connection.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::harness::Server;

/// Reads until the server closes the connection; what came before the close.
/// The read deadline is far above the 1 s setting and only keeps a broken server from hanging the test.
fn read_to_close(stream: &mut TcpStream) -> Result<Vec<u8>, String> {
    stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Ok(got),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return Ok(got),
            Err(e) => return Err(format!("the connection stayed open: {e}")),
        }
    }
}

const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: sluice\r\n\r\n";

#[test]
fn connections_that_send_no_request_are_closed() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("sluice.yaml");
    std::fs::write(&config, "header_read_timeout_s: 1\n").unwrap();
    let server = Server::start_on(&tmp.path().join("data"), &["--config", config.to_str().unwrap()]);
    let addr = server.url.trim_start_matches("http://").to_owned();

    // Half a request head, never finished.
    let mut trickle = TcpStream::connect(&addr).unwrap();
    trickle.write_all(b"POST /endpoints/any/score HTTP/1.1\r\nHost: sluice\r\n").unwrap();
    // Nothing at all.
    let mut silent = TcpStream::connect(&addr).unwrap();
    // One answered request, then idle on a kept-alive connection.
    let mut idle = TcpStream::connect(&addr).unwrap();
    idle.write_all(HEALTHZ).unwrap();

    assert_eq!(read_to_close(&mut trickle).unwrap(), b"", "no answer to a head that never ended");
    assert_eq!(read_to_close(&mut silent).unwrap(), b"");
    let answered = String::from_utf8(read_to_close(&mut idle).unwrap()).unwrap();
    assert!(answered.starts_with("HTTP/1.1 200 OK\r\n") && answered.ends_with("ok"), "{answered}");
    assert_eq!(answered.matches("HTTP/1.1").count(), 1, "{answered}");

    // A client that keeps sending requests keeps its connection, past the timeout in all.
    let mut busy = TcpStream::connect(&addr).unwrap();
    busy.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    for _ in 0..4 {
        busy.write_all(HEALTHZ).unwrap();
        let mut buf = [0u8; 4096];
        let n = busy.read(&mut buf).unwrap();
        let answer = String::from_utf8_lossy(&buf[..n]);
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        std::thread::sleep(Duration::from_millis(400));
    }
}
