//! Reading a replica's stdout and stderr: bounded lines into its log, the readiness line out.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::oneshot;

use crate::logfile::SharedLog;

/// The line a replica prints on stdout once its model is loaded and it is listening.
pub const READY_PREFIX: &str = "SLUICE_REPLICA_LISTENING ";

/// Longer lines are cut (the rest of the line is read and dropped).
const MAX_LINE_BYTES: usize = 16 * 1024;

/// Lines of each stream kept in memory for failure reasons.
const TAIL_LINES: usize = 20;

/// The last lines a stream printed during one run of a replica.
#[derive(Debug, Clone, Default)]
pub(crate) struct OutputTail(Arc<Mutex<VecDeque<String>>>);

impl OutputTail {
    fn push(&self, line: &str) {
        let mut lines = self.0.lock().expect("tail lock");
        if lines.len() == TAIL_LINES {
            lines.pop_front();
        }
        lines.push_back(line.to_owned());
    }

    pub(crate) fn lines(&self) -> Vec<String> {
        self.0.lock().expect("tail lock").iter().cloned().collect()
    }
}

/// Copies one stream of a run into the slot's log until end of file.
pub(crate) struct StreamPump {
    pub(crate) stream: &'static str,
    pub(crate) log: SharedLog,
    pub(crate) generation: u64,
    pub(crate) tail: OutputTail,
    /// Stdout only: where the address of the readiness line goes (the first valid one).
    pub(crate) ready: Option<oneshot::Sender<SocketAddr>>,
}

impl StreamPump {
    pub(crate) async fn run(mut self, reader: impl AsyncRead + Unpin) {
        let mut lines = LineReader::new(reader);
        loop {
            let line = match lines.next_line().await {
                Ok(Some(line)) => line,
                Ok(None) => break,
                Err(error) => {
                    self.write("sluice", &format!("cannot read {}: {error}", self.stream));
                    break;
                }
            };
            if self.ready.is_some()
                && let Some(rest) = line.strip_prefix(READY_PREFIX)
            {
                match rest.trim().parse::<SocketAddr>() {
                    Ok(addr) => {
                        if let Some(ready) = self.ready.take() {
                            // The run may have ended meanwhile; then nobody listens.
                            let _ = ready.send(addr);
                        }
                        continue;
                    }
                    Err(error) => {
                        self.write("sluice", &format!("ignored readiness line with a bad address {rest:?}: {error}"))
                    }
                }
            }
            self.tail.push(&line);
            let stream = self.stream;
            self.write(stream, &line);
        }
    }

    fn write(&self, stream: &str, text: &str) {
        self.log.lock().expect("log lock").write(self.generation, stream, text);
    }
}

/// Splits a byte stream into lines of at most [`MAX_LINE_BYTES`], so a replica that never
/// prints a newline cannot grow our memory.
struct LineReader<R> {
    inner: BufReader<R>,
    buf: Vec<u8>,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    fn new(inner: R) -> Self {
        Self { inner: BufReader::new(inner), buf: Vec::new() }
    }

    async fn next_line(&mut self) -> io::Result<Option<String>> {
        self.buf.clear();
        let mut truncated = false;
        loop {
            let available = self.inner.fill_buf().await?;
            if available.is_empty() {
                if self.buf.is_empty() && !truncated {
                    return Ok(None);
                }
                return Ok(Some(self.finish(truncated)));
            }
            let newline = available.iter().position(|&b| b == b'\n');
            let end = newline.unwrap_or(available.len());
            let room = MAX_LINE_BYTES - self.buf.len();
            truncated |= end > room;
            self.buf.extend_from_slice(&available[..end.min(room)]);
            let used = newline.map_or(end, |n| n + 1);
            self.inner.consume(used);
            if newline.is_some() {
                return Ok(Some(self.finish(truncated)));
            }
        }
    }

    fn finish(&mut self, truncated: bool) -> String {
        if self.buf.last() == Some(&b'\r') {
            self.buf.pop();
        }
        let mut line = String::from_utf8_lossy(&self.buf).into_owned();
        if truncated {
            line.push_str(" [line truncated]");
        }
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logfile::{ReplicaLog, tail};

    async fn lines_of(input: &[u8]) -> Vec<String> {
        let mut reader = LineReader::new(input);
        let mut out = Vec::new();
        while let Some(line) = reader.next_line().await.unwrap() {
            out.push(line);
        }
        out
    }

    #[tokio::test]
    async fn lines_are_split_and_bounded() {
        assert_eq!(lines_of(b"a\r\nb\n\nc").await, ["a", "b", "", "c"]);
        let long = vec![b'x'; MAX_LINE_BYTES * 3];
        let got = lines_of(&[long.as_slice(), b"\nnext\n"].concat()).await;
        assert_eq!(got.len(), 2);
        assert!(got[0].ends_with("[line truncated]"));
        assert_eq!(got[0].len(), MAX_LINE_BYTES + " [line truncated]".len());
        assert_eq!(got[1], "next");
    }

    #[tokio::test]
    async fn the_readiness_line_is_taken_out_of_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("replica-0.log");
        let (tx, rx) = oneshot::channel();
        let pump = StreamPump {
            stream: "stdout",
            log: ReplicaLog::new(path.clone(), 1 << 20),
            generation: 4,
            tail: OutputTail::default(),
            ready: Some(tx),
        };
        let input = b"loading\nSLUICE_REPLICA_LISTENING nope\nSLUICE_REPLICA_LISTENING 127.0.0.1:9\n";
        pump.run(&input[..]).await;
        assert_eq!(rx.await.unwrap(), "127.0.0.1:9".parse().unwrap());
        let logged = tail(&path, 10).unwrap();
        assert_eq!(logged.len(), 3, "{logged:?}");
        assert!(logged[0].ends_with("[g4 stdout] loading"));
        assert!(logged[1].contains("bad address \"nope\""));
        assert!(logged[2].ends_with("[g4 stdout] SLUICE_REPLICA_LISTENING nope"));
    }
}
