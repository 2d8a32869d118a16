//! The gateway–replica Unix socket's connections, woken for reads only.
//!
//! tokio registers every socket for both readability and writability (edge-triggered). On a TCP
//! socket that costs nothing: the kernel reports new write space only to a writer that once found
//! the send buffer full. A Unix stream socket reports it every time the peer reads a message, so a
//! request–answer exchange wakes each side once more than it needs: the gateway when the replica
//! reads its request, the replica when the gateway reads its answer. With both on one core, that
//! is two extra context switches per request out of about six, when requests arrive one at a time.
//!
//! [`QuietUnixStream`] registers the socket for readability only, and writes straight to it. Only a
//! write that finds the buffer full registers a duplicate of the descriptor for writability, and
//! drops it again once a write goes through, so a connection that never fills its buffer (a request
//! or an answer under the socket's buffer size, about 200 KB) is never woken for write space.
//! [`QuietUnixListener`] accepts such connections for `axum::serve`.
//!
//! [`hot::HotRoute`] answers a server's one hot route in front of its axum router.
//!
//! [`mux`] carries many requests at once on one gateway–replica connection.
//!
//! [`serve::serve_http1`] is the server's public listener, with a bound on how long a client may
//! hold a connection without sending a request.

pub mod hot;
pub mod mux;
pub mod serve;

use std::io::{self, IoSlice, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};

/// A connected Unix stream registered with tokio for readability only (module documentation).
#[derive(Debug)]
pub struct QuietUnixStream {
    read: AsyncFd<UnixStream>,
    /// A duplicate of the descriptor registered for writability, held only while a write waits for
    /// buffer space.
    write_space: Option<AsyncFd<OwnedFd>>,
}

impl QuietUnixStream {
    /// Takes over a connected stream. Must be called inside a tokio runtime with IO enabled.
    pub fn new(stream: UnixStream) -> io::Result<Self> {
        stream.set_nonblocking(true)?;
        Ok(Self { read: register(stream, Interest::READABLE)?, write_space: None })
    }

    /// Connects to `path` (a leading NUL names a Linux abstract socket, as in tokio).
    pub async fn connect(path: &str) -> io::Result<Self> {
        let stream = tokio::net::UnixStream::connect(path).await?;
        Self::new(stream.into_std()?)
    }

    /// Writes with `write`, or waits for buffer space when the socket has none.
    fn poll_write_with(
        &mut self,
        cx: &mut Context<'_>,
        mut write: impl FnMut(&UnixStream) -> io::Result<usize>,
    ) -> Poll<io::Result<usize>> {
        loop {
            match write(self.read.get_ref()) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                result => {
                    self.write_space = None;
                    return Poll::Ready(result);
                }
            }
            if self.write_space.is_none() {
                // Registering reports the socket's current state, so space freed since the failed
                // write is not missed.
                let duplicate = OwnedFd::from(self.read.get_ref().try_clone()?);
                self.write_space = Some(register(duplicate, Interest::WRITABLE)?);
            }
            let Some(space) = self.write_space.as_ref() else { continue };
            let mut guard = ready!(space.poll_write_ready(cx))?;
            guard.clear_ready();
        }
    }
}

/// Registers `fd` with the current runtime's reactor for `interest`.
#[allow(unsafe_code)] // tokio asks the caller to promise the descriptor stays valid, see below.
fn register<T: AsRawFd>(fd: T, interest: Interest) -> io::Result<AsyncFd<T>> {
    // SAFETY: `T` is a `UnixStream` or an `OwnedFd`, which own their descriptor and close it only when
    // dropped, which happens when the `AsyncFd` is; nothing here replaces or closes it before.
    Ok(unsafe { AsyncFd::register_with_interest(fd, interest) }?)
}

impl AsyncRead for QuietUnixStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            let mut guard = ready!(this.read.poll_read_ready(cx))?;
            let room = buf.remaining();
            match read_uninit(guard.get_inner(), buf) {
                Ok(n) => {
                    // A read that left room in the buffer emptied the socket: the next one waits
                    // for the next message's edge instead of trying first and getting EAGAIN, a
                    // syscall per message saved on both ends (tokio's own sockets do the same).
                    // The guard's tick keeps an edge that came since from being cleared.
                    if n > 0 && n < room {
                        guard.clear_ready();
                    }
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => guard.clear_ready(),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

/// Reads from `stream` into the unfilled part of `buf` without zeroing it first, and marks what
/// was read as filled. hyper hands over its whole spare read buffer (8 KB and up, growing under
/// load) uninitialised on every read; `ReadBuf::initialize_unfilled` would clear all of it each
/// time, a memset per read that made this stream slower than tokio's under load. tokio's own
/// sockets read the same way.
#[allow(unsafe_code)] // see the SAFETY comments
fn read_uninit(stream: &UnixStream, buf: &mut ReadBuf<'_>) -> io::Result<usize> {
    // SAFETY: `unfilled_mut` is only written through the raw pointer, by the kernel, never read.
    let unfilled = unsafe { buf.unfilled_mut() };
    // SAFETY: the pointer and length describe `unfilled`, writable memory borrowed for this call,
    // and the descriptor is the stream's own, open while `stream` is borrowed.
    let n = unsafe { libc::read(stream.as_raw_fd(), unfilled.as_mut_ptr().cast(), unfilled.len()) };
    let n = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
    // SAFETY: `read` returned `n`, so the kernel wrote the first `n` bytes of the unfilled part.
    unsafe { buf.assume_init(n) };
    buf.advance(n);
    Ok(n)
}

impl AsyncWrite for QuietUnixStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.get_mut().poll_write_with(cx, |mut stream| stream.write(buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().poll_write_with(cx, |mut stream| stream.write_vectored(bufs))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.read.get_ref().shutdown(std::net::Shutdown::Write))
    }
}

/// Accepts [`QuietUnixStream`]s, for `axum::serve`.
#[derive(Debug)]
pub struct QuietUnixListener(pub tokio::net::UnixListener);

impl axum::serve::Listener for QuietUnixListener {
    type Io = QuietUnixStream;
    type Addr = tokio::net::unix::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.0.accept().await {
                Ok((stream, address)) => match stream.into_std().and_then(QuietUnixStream::new) {
                    Ok(stream) => return (stream, address),
                    // The connection is dropped; the next one may do better.
                    Err(_) => continue,
                },
                // As axum's own listeners do: a failed accept (out of descriptors, a connection reset
                // before it was taken) is retried after a pause rather than ending the server.
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr()
    }
}
