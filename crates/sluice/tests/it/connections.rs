//! The public listener closes connections that hold on without sending a request
//! (`header_read_timeout_s`), so idle or trickling clients cannot use up the server's
//! connections; a client that keeps sending requests keeps its connection. A scoring request
//! whose body stops arriving is answered 408 (`body_idle_timeout_s`), and one that does not fit
//! beside the large bodies already held is answered 503 (`request_body_memory_mib`). The same
//! idle bound holds for management API bodies (JSON specs, uploads, batch job submissions).

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::harness::{Server, deploy_iris, primary_key};

/// Reads until the server closes the connection; what came before the close.
/// The read deadline is far above the 1-2 s settings and only keeps a broken server from hanging the test.
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

/// One iris row in the v2 protocol.
const IRIS_ROW: &[u8] =
    br#"{"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]}"#;

/// A server with `config` as its config file, and its `host:port`; keep the directory alive.
fn start(config: &str) -> (Server, String, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("sluice.yaml");
    std::fs::write(&file, config).unwrap();
    let server = Server::start_on(&tmp.path().join("data"), &["--config", file.to_str().unwrap()]);
    let addr = server.url.trim_start_matches("http://").to_owned();
    (server, addr, tmp)
}

/// [`start`], with the iris model deployed behind `iris-ep`; also its primary key.
fn start_deployed(config: &str) -> (Server, String, String, tempfile::TempDir) {
    let (server, addr, tmp) = start(config);
    deploy_iris(&server);
    let key = primary_key(&server, "iris-ep");
    (server, addr, key, tmp)
}

/// A scoring request's head for `path` under the iris endpoint, with `Content-Length: length`.
fn head(path: &str, key: &str, length: usize, extra: &str) -> String {
    format!(
        "POST /endpoints/iris-ep/{path} HTTP/1.1\r\nHost: sluice\r\nAuthorization: Bearer {key}\r\n\
         Content-Type: application/json\r\nContent-Length: {length}\r\n{extra}\r\n"
    )
}

#[test]
fn connections_that_send_no_request_are_closed() {
    let (_server, addr, _tmp) = start("header_read_timeout_s: 2\n");

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
    for _ in 0..6 {
        busy.write_all(HEALTHZ).unwrap();
        let mut buf = [0u8; 4096];
        let n = busy.read(&mut buf).unwrap();
        let answer = String::from_utf8_lossy(&buf[..n]);
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        std::thread::sleep(Duration::from_millis(600));
    }
}

#[test]
fn a_scoring_body_that_stops_arriving_is_answered_408() {
    let (_server, addr, key, _tmp) = start_deployed("body_idle_timeout_s: 2\n");

    // 100 bytes promised, 10 sent.
    let mut short = TcpStream::connect(&addr).unwrap();
    short.write_all(head("score", &key, 100, "").as_bytes()).unwrap();
    short.write_all(br#"{"inputs":"#).unwrap();
    let answer = String::from_utf8(read_to_close(&mut short).unwrap()).unwrap();
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
    assert!(answer.contains("the request body stopped arriving: nothing came for 2 s"), "{answer}");

    // A body sent in pieces, each within the timeout, is scored.
    let body = IRIS_ROW;
    let mut slow = TcpStream::connect(&addr).unwrap();
    slow.write_all(head("v2/models/iris/infer", &key, body.len(), "Connection: close\r\n").as_bytes()).unwrap();
    for piece in body.chunks(body.len() / 4 + 1) {
        std::thread::sleep(Duration::from_millis(800));
        slow.write_all(piece).unwrap();
    }
    let answer = String::from_utf8(read_to_close(&mut slow).unwrap()).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.contains(r#""name":"label""#), "{answer}");
}

#[test]
fn a_large_body_that_does_not_fit_beside_the_others_is_answered_503() {
    let (_server, addr, key, _tmp) = start_deployed("request_body_memory_mib: 128\n");

    // A 40 MiB body whose client gives up after the head: 503 when it does not fit, else it is
    // admitted to reading and the missing body makes it a 400.
    let try_40_mib = || {
        let mut next = TcpStream::connect(&addr).unwrap();
        next.write_all(head("score", &key, 40 << 20, "").as_bytes()).unwrap();
        next.shutdown(std::net::Shutdown::Write).unwrap();
        String::from_utf8(read_to_close(&mut next).unwrap()).unwrap()
    };
    // Tries until the answer starts with `status` (the server may not have read the other
    // connection's head yet, or not yet seen it closed).
    let until = |status: &str| {
        let mut answer = try_40_mib();
        for _ in 0..100 {
            if answer.starts_with(status) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
            answer = try_40_mib();
        }
        answer
    };
    assert!(until("HTTP/1.1 400 ").starts_with("HTTP/1.1 400 "), "fits while nothing else is held");

    // 100 MiB promised and being sent: its share of the 128 MiB is held from the head on, and
    // 40 MiB more does not fit: refused at once, before its body is read.
    let mut large = TcpStream::connect(&addr).unwrap();
    large.write_all(head("score", &key, 100 << 20, "").as_bytes()).unwrap();
    large.write_all(b"[").unwrap();
    let answer = until("HTTP/1.1 503 ");
    assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("retry-after: 1\r\n"), "{answer}");
    assert!(answer.contains("holding 128 MiB of request bodies already"), "{answer}");
    // A small request is served meanwhile.
    let body = IRIS_ROW;
    let mut small = TcpStream::connect(&addr).unwrap();
    small.write_all(head("score", &key, body.len(), "Connection: close\r\n").as_bytes()).unwrap();
    small.write_all(body).unwrap();
    let answer = String::from_utf8(read_to_close(&mut small).unwrap()).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");

    // Once the large upload is abandoned its share is given back, and the 40 MiB body fits again.
    drop(large);
    let answer = until("HTTP/1.1 400 ");
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
    assert!(answer.contains("the request body could not be read"), "{answer}");
}

/// A request with `body` (all of it sent) after `head`, on a connection of its own; the answer.
fn exchange(addr: &str, head: &str, body: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    String::from_utf8(read_to_close(&mut stream).unwrap()).unwrap()
}

#[test]
fn a_management_body_that_stops_arriving_is_answered_408() {
    let (server, addr, _tmp) = start("body_idle_timeout_s: 2\n");
    let token = server.admin_token();
    let api = |method: &str, path: &str, content_type: &str, length: usize| {
        format!(
            "{method} {path} HTTP/1.1\r\nHost: sluice\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: {content_type}\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n"
        )
    };
    let stalled = |head: String| {
        let answer = exchange(&addr, &head, b"{\"name\":");
        assert!(answer.starts_with("HTTP/1.1 408 "), "{head}\n{answer}");
        assert!(answer.contains(r#""code":"RequestTimeout""#), "{answer}");
        assert!(answer.contains("the request body stopped arriving: nothing came for 2 s"), "{answer}");
    };

    // A JSON spec, on the management routes and on the batch ones; an upload.
    stalled(api("POST", "/api/v1/workspaces/default/online-endpoints", "application/json", 100));
    stalled(api("POST", "/api/v1/workspaces/default/batch-endpoints", "application/json", 100));
    stalled(api("POST", "/api/v1/workspaces/default/artifacts", "application/gzip", 100));
    // A job submitted on the data plane to a batch endpoint.
    server.cli_ok(&["batch-endpoint", "create", "--name", "idle-batch"]);
    stalled(api("POST", "/endpoints/idle-batch/jobs", "application/json", 100));

    // Nothing was created by the stalled spec, and a spec sent in pieces, each within the
    // timeout, is taken.
    let endpoints = server.cli_ok(&["online-endpoint", "list"]);
    assert!(!endpoints.contains("slow-ep"), "{endpoints}");
    let spec = br#"{"name": "slow-ep", "auth_mode": "key"}"#;
    let mut slow = TcpStream::connect(&addr).unwrap();
    slow.write_all(
        api("POST", "/api/v1/workspaces/default/online-endpoints", "application/json", spec.len()).as_bytes(),
    )
    .unwrap();
    for piece in spec.chunks(spec.len() / 3 + 1) {
        std::thread::sleep(Duration::from_millis(800));
        slow.write_all(piece).unwrap();
    }
    let answer = String::from_utf8(read_to_close(&mut slow).unwrap()).unwrap();
    assert!(answer.starts_with("HTTP/1.1 201 "), "{answer}");
    assert!(server.cli_ok(&["online-endpoint", "list"]).contains("slow-ep"));

    // A job body cut short by its client is a 400 that says so, not "too large".
    let mut cut = TcpStream::connect(&addr).unwrap();
    cut.write_all(api("POST", "/endpoints/idle-batch/jobs", "application/json", 100).as_bytes()).unwrap();
    cut.write_all(b"{").unwrap();
    cut.shutdown(std::net::Shutdown::Write).unwrap();
    let answer = String::from_utf8(read_to_close(&mut cut).unwrap()).unwrap();
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
    assert!(answer.contains("the request body could not be read"), "{answer}");
}
