//! HTTP probes of a ready replica, and the consecutive-result counting that turns them into
//! "out of rotation", "back in rotation" and "restart".
//!
//! A probe is one `GET` over a fresh HTTP/1.1 connection (`Connection: close`); only the
//! status line is read, then the connection is closed. Replicas listen on loopback and answer
//! their health route with a few bytes, so nothing more of HTTP is needed.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, Interval, MissedTickBehavior};

use crate::spec::ProbeConfig;

/// A status line longer than this is not one.
const MAX_STATUS_LINE: usize = 1024;

/// Probes `GET http://<addr><path>` once; `Err` says why it failed, in words for a status
/// message: `timed out after 2s`, `status 503`, `cannot connect: Connection refused (os
/// error 111)`.
pub(crate) async fn probe(addr: SocketAddr, path: &str, timeout: Duration) -> Result<(), String> {
    match tokio::time::timeout(timeout, status_of(addr, path)).await {
        Err(_elapsed) => Err(format!("timed out after {timeout:?}")),
        Ok(Err(why)) => Err(why),
        Ok(Ok(code)) if (200..300).contains(&code) => Ok(()),
        Ok(Ok(code)) => Err(format!("status {code}")),
    }
}

async fn status_of(addr: SocketAddr, path: &str) -> Result<u16, String> {
    let mut conn = TcpStream::connect(addr).await.map_err(|e| format!("cannot connect: {e}"))?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: sluice-probe\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    );
    conn.write_all(request.as_bytes()).await.map_err(|e| format!("cannot send the request: {e}"))?;
    let mut head = Vec::with_capacity(128);
    let mut chunk = [0u8; 256];
    while !head.contains(&b'\n') && head.len() < MAX_STATUS_LINE {
        let n = conn.read(&mut chunk).await.map_err(|e| format!("cannot read the answer: {e}"))?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&chunk[..n]);
    }
    let _ = conn.shutdown().await;
    parse_status_line(&head)
}

/// `HTTP/1.1 503 Service Unavailable` → 503.
fn parse_status_line(head: &[u8]) -> Result<u16, String> {
    if head.is_empty() {
        return Err("the connection closed without an answer".into());
    }
    let line_end = head.iter().position(|&b| b == b'\n').unwrap_or(head.len());
    let line = String::from_utf8_lossy(&head[..line_end]);
    let line = line.trim_end();
    let mut parts = line.split(' ');
    let version = parts.next().unwrap_or_default();
    let code = parts.next().unwrap_or_default();
    let three_digits = code.len() == 3 && code.bytes().all(|b| b.is_ascii_digit());
    match code.parse::<u16>() {
        Ok(code) if version.starts_with("HTTP/") && three_digits => Ok(code),
        _ => {
            let shown: String = line.chars().take(80).collect();
            Err(format!("not an HTTP answer: {shown:?}"))
        }
    }
}

/// The probe's schedule: first tick after `initial_delay`, then every `period`; a probe slower
/// than the period delays the next one instead of bunching them up.
pub(crate) fn schedule(cfg: &ProbeConfig) -> Interval {
    let mut ticks = tokio::time::interval_at(Instant::now() + cfg.initial_delay, cfg.period);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ticks
}

/// What a probe result changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    /// `failure_threshold` consecutive failures after passing.
    Failed,
    /// `success_threshold` consecutive successes after failing.
    Passed,
}

/// Consecutive results of one probe of one replica, and whether it passes now (it does until
/// it fails `failure_threshold` times in a row).
#[derive(Debug)]
pub(crate) struct ProbeState {
    success_threshold: u32,
    failure_threshold: u32,
    pub(crate) passing: bool,
    pub(crate) successes: u32,
    pub(crate) failures: u32,
}

impl ProbeState {
    pub(crate) fn new(cfg: &ProbeConfig) -> Self {
        Self {
            success_threshold: cfg.success_threshold.max(1),
            failure_threshold: cfg.failure_threshold.max(1),
            passing: true,
            successes: 0,
            failures: 0,
        }
    }

    pub(crate) fn record(&mut self, ok: bool) -> Option<Change> {
        if ok {
            self.failures = 0;
            self.successes = self.successes.saturating_add(1);
            if !self.passing && self.successes >= self.success_threshold {
                self.passing = true;
                return Some(Change::Passed);
            }
        } else {
            self.successes = 0;
            self.failures = self.failures.saturating_add(1);
            if self.passing && self.failures >= self.failure_threshold {
                self.passing = false;
                return Some(Change::Failed);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncBufReadExt;
    use tokio::net::TcpListener;

    fn config(success_threshold: u32, failure_threshold: u32) -> ProbeConfig {
        ProbeConfig { success_threshold, failure_threshold, ..ProbeConfig::default() }
    }

    #[test]
    fn thresholds_count_consecutive_results() {
        let mut s = ProbeState::new(&config(2, 3));
        assert_eq!([s.record(false), s.record(false), s.record(true)], [None; 3], "a success breaks the streak");
        assert_eq!([s.record(false), s.record(false)], [None, None]);
        assert_eq!(s.record(false), Some(Change::Failed));
        assert_eq!((s.passing, s.failures), (false, 3));
        assert_eq!(s.record(false), None, "failing already");
        assert_eq!([s.record(true), s.record(false), s.record(true)], [None; 3], "a failure breaks the streak");
        assert_eq!(s.record(true), Some(Change::Passed));
        assert_eq!((s.passing, s.successes), (true, 2));
        assert_eq!(s.record(true), None);
    }

    #[test]
    fn status_lines_are_parsed() {
        assert_eq!(parse_status_line(b"HTTP/1.1 200 OK\r\ncontent-length: 7\r\n"), Ok(200));
        assert_eq!(parse_status_line(b"HTTP/1.0 503 Service Unavailable\r\n"), Ok(503));
        assert_eq!(parse_status_line(b"HTTP/1.1 204\r\n"), Ok(204));
        assert!(parse_status_line(b"").unwrap_err().contains("closed without an answer"));
        let junk = parse_status_line(b"generation 1 slot 0 pid 7\n").unwrap_err();
        assert_eq!(junk, "not an HTTP answer: \"generation 1 slot 0 pid 7\"");
        assert!(parse_status_line(b"HTTP/1.1 2000 X\r\n").is_err());
        assert!(parse_status_line(b"HTTP/1.1 +20 X\r\n").is_err());
    }

    /// A one-connection server that checks the request and answers `answer` (or nothing).
    async fn serve_once(answer: Option<&'static str>) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (conn, _) = listener.accept().await.unwrap();
            let mut conn = tokio::io::BufReader::new(conn);
            let mut line = String::new();
            conn.read_line(&mut line).await.unwrap();
            assert_eq!(line, "GET /health?x=1 HTTP/1.1\r\n");
            loop {
                line.clear();
                conn.read_line(&mut line).await.unwrap();
                if line == "\r\n" {
                    break;
                }
            }
            match answer {
                Some(answer) => conn.get_mut().write_all(answer.as_bytes()).await.unwrap(),
                None => tokio::time::sleep(Duration::from_secs(3600)).await,
            }
        });
        addr
    }

    #[tokio::test]
    async fn probes_say_why_they_failed() {
        let second = Duration::from_secs(5);
        let ok = serve_once(Some("HTTP/1.1 200 OK\r\ncontent-length: 7\r\n\r\nHealthy")).await;
        assert_eq!(probe(ok, "/health?x=1", second).await, Ok(()));
        let busy = serve_once(Some("HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n")).await;
        assert_eq!(probe(busy, "/health?x=1", second).await, Err("status 503".into()));
        let hung = serve_once(None).await;
        let short = Duration::from_millis(100);
        assert_eq!(probe(hung, "/health?x=1", short).await, Err("timed out after 100ms".into()));

        let closed = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
        let refused = probe(closed, "/", second).await.unwrap_err();
        assert!(refused.starts_with("cannot connect: "), "{refused}");
    }
}
