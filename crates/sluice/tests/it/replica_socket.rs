//! A native replica also answers on its port's Unix sockets (abstract names, see
//! `sluice_domain::replica_socket_name` and `replica_mux_socket_name`), which the gateway uses on the
//! same machine.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{Server, deploy_iris, primary_key, replica_pids, wait_for_200};

/// The abstract Unix sockets (name without the leading NUL, and whether it is the listening one) that process
/// `pid` holds; an accepted connection shows its listener's name.
pub(crate) fn abstract_sockets_of(pid: u32) -> Vec<(String, bool)> {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("fds")
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|t| t.to_str()?.strip_prefix("socket:[")?.strip_suffix(']').map(str::to_owned))
        .collect();
    std::fs::read_to_string("/proc/net/unix")
        .expect("/proc/net/unix")
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (flags, inode, path) = (fields.get(3)?, fields.get(6)?, fields.get(7)?);
            let listening = *flags == "00010000"; // __SO_ACCEPTCON
            let name = path.strip_prefix('@')?.to_owned();
            inodes.iter().any(|i| i == inode).then_some((name, listening))
        })
        .collect()
}

#[tokio::test]
async fn a_native_replica_answers_on_its_unix_sockets_and_the_gateway_uses_the_multiplexed_one() {
    let server = Server::start();
    deploy_iris(&server);
    let key = primary_key(&server, "iris-ep");
    let body = std::fs::read(crate::harness::repo().join("examples/iris/request.json")).expect("sample");
    let url = format!("{}/endpoints/iris-ep/v2/models/iris/infer", server.url);
    let (status, answer) = wait_for_200(&url, &key, &body).await;
    assert_eq!(status, 200, "{answer}");

    let pids = replica_pids(&server);
    assert_eq!(pids.len(), 1, "one replica: {pids:?}");
    let sockets: Vec<(String, bool)> =
        abstract_sockets_of(pids[0]).into_iter().filter(|(n, _)| n.starts_with("sluice-replica-")).collect();
    let mut names: Vec<&String> = sockets.iter().filter(|(_, listening)| *listening).map(|(n, _)| n).collect();
    names.sort();
    let [http, mux] = names[..] else { panic!("the replica listens on two replica sockets: {sockets:?}") };
    let port = http.strip_prefix("sluice-replica-").expect("named after the port");
    assert_eq!(mux, &format!("sluice-replica-mux-{port}"), "{sockets:?}");
    // The gateway answered the request above over the multiplexed socket, and keeps the connection for the next one.
    assert!(sockets.iter().any(|(n, listening)| !listening && n == mux), "no gateway connection: {sockets:?}");
    // The same routes as on TCP: readiness, over HTTP/1.1 on the other socket.
    let mut stream = tokio::net::UnixStream::connect(format!("\0{http}")).await.expect("connect");
    stream.write_all(b"GET /v2/health/ready HTTP/1.1\r\nhost: replica\r\nconnection: close\r\n\r\n").await.unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).await.unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.contains(r#"{"ready":true}"#), "{reply}");
    // And on the multiplexed socket: scoring, and the router's own answers.
    let conn = sluice_net::mux::Connection::connect(&format!("\0{mux}")).await.expect("connect");
    let mut headers = axum::http::HeaderMap::new();
    headers.insert("content-type", axum::http::HeaderValue::from_static("application/json"));
    let scored = conn.send(&axum::http::Method::POST, "/v2/models/iris/infer", &headers, &body).await.expect("answer");
    let text = String::from_utf8_lossy(&scored.body);
    assert_eq!(scored.status, 200, "{text}");
    assert!(text.contains(r#""model_name":"iris""#), "{text}");
    let ready =
        conn.send(&axum::http::Method::GET, "/v2/health/ready", &axum::http::HeaderMap::new(), b"").await.unwrap();
    assert_eq!((ready.status.as_u16(), &ready.body[..]), (200, &br#"{"ready":true}"#[..]));
    let missing = conn.send(&axum::http::Method::POST, "/v2/models/nope/infer", &headers, &body).await.unwrap();
    assert_eq!(missing.status, 404, "{}", String::from_utf8_lossy(&missing.body));
}
