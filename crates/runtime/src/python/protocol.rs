//! The replica ↔ Python worker wire protocol, one message each way per request (the worker answers
//! requests in the order they came, and the replica may write a request before the last answer):
//! `u32` big-endian header length, the header as UTF-8 JSON, `u64` big-endian body length, the
//! body. `python/sluice_worker/README.md` is the other side's description.

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest header accepted from a worker (headers are small; a bigger one is a broken worker).
const MAX_HEADER_BYTES: u32 = 1 << 20;
/// Largest body accepted from a worker.
pub const MAX_BODY_BYTES: u64 = 1 << 30;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RequestHead {
    pub id: u64,
    pub method: String,
    pub path: String,
    pub query: String,
    /// Lowercase names, in arrival order, repeated names kept.
    pub headers: Vec<(String, String)>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ResponseHead {
    pub id: u64,
    pub status: u16,
    #[serde(default)]
    pub headers: Vec<(String, String)>,
}

#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("worker connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("worker sent a malformed message: {0}")]
    Malformed(String),
}

pub async fn write_message<W: AsyncWrite + Unpin, H: Serialize>(
    w: &mut W,
    head: &H,
    body: &[u8],
) -> Result<(), ProtocolError> {
    let head = serde_json::to_vec(head).map_err(|e| ProtocolError::Malformed(e.to_string()))?;
    let head_len = u32::try_from(head.len()).map_err(|_| ProtocolError::Malformed("header too large".into()))?;
    // A small body goes in the same write as the header (one system call); a large one is not copied.
    let coalesce = body.len() <= 64 * 1024;
    let mut frame = Vec::with_capacity(12 + head.len() + if coalesce { body.len() } else { 0 });
    frame.extend_from_slice(&head_len.to_be_bytes());
    frame.extend_from_slice(&head);
    frame.extend_from_slice(&(body.len() as u64).to_be_bytes());
    if coalesce {
        frame.extend_from_slice(body);
        w.write_all(&frame).await?;
    } else {
        w.write_all(&frame).await?;
        w.write_all(body).await?;
    }
    w.flush().await?;
    Ok(())
}

pub async fn read_message<R: AsyncRead + Unpin, H: for<'de> Deserialize<'de>>(
    r: &mut R,
) -> Result<(H, Vec<u8>), ProtocolError> {
    let head_len = r.read_u32().await?;
    if head_len > MAX_HEADER_BYTES {
        return Err(ProtocolError::Malformed(format!("header of {head_len} bytes")));
    }
    let mut head = vec![0; head_len as usize];
    r.read_exact(&mut head).await?;
    let head: H = serde_json::from_slice(&head).map_err(|e| ProtocolError::Malformed(e.to_string()))?;
    let body_len = r.read_u64().await?;
    if body_len > MAX_BODY_BYTES {
        return Err(ProtocolError::Malformed(format!("body of {body_len} bytes")));
    }
    let mut body = vec![0; body_len as usize];
    r.read_exact(&mut body).await?;
    Ok((head, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn messages_round_trip() {
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        let head = RequestHead {
            id: 7,
            method: "POST".into(),
            path: "/score".into(),
            query: "a=1".into(),
            headers: vec![("content-type".into(), "application/json".into())],
        };
        write_message(&mut a, &head, b"{\"data\": 1}").await.unwrap();
        let (got, body): (RequestHead, Vec<u8>) = read_message(&mut b).await.unwrap();
        assert_eq!(got, head);
        assert_eq!(body, b"{\"data\": 1}");
    }

    #[tokio::test]
    async fn absurd_lengths_are_refused() {
        let (mut a, mut b) = tokio::io::duplex(64);
        tokio::spawn(async move { a.write_all(&u32::MAX.to_be_bytes()).await });
        let err = read_message::<_, ResponseHead>(&mut b).await.unwrap_err();
        assert!(err.to_string().contains("malformed"), "{err}");
    }
}
