//! Zero-copy bodies for warm blobs: `sendfile(2)` from the stored file straight into the client's
//! socket on plain-TCP HTTP/1.1 connections, with Pingora's HTTP session still in charge of
//! everything else (headers, `Content-Length` accounting, keep-alive, access-log byte counts).
//!
//! How the socket is reached without forking Pingora: [`ZeroCopyApp`] is the listener's
//! `ServerApp`; it wraps each plain-TCP connection in a [`SendfileStream`] (a Pingora `IO` type
//! that forwards everything to the real stream) before Pingora's own HTTP/1 and h2c handling
//! takes over. For a warm blob the handler *arms* that stream with the file and range, then
//! hands the session's body writer borrowed slices of [`PLACEHOLDER`]. The body writer counts
//! them like any body bytes; the stream recognises the placeholder's address and, instead of
//! copying those (never read) bytes, flushes whatever header bytes are buffered and sends the
//! same number of bytes of the file with `sendfile`. TLS, HTTP/2 and non-file backends never get
//! an armed stream and keep the buffered path in `respond::send_blob_range`.

use bytes::Bytes;
use nix::fcntl::{posix_fadvise, PosixFadviseAdvice};
use pingora::apps::ServerApp;
use pingora::protocols::http::ServerSession;
use pingora::protocols::l4::stream::Stream as TcpStream;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl,
    TimingDigest, UniqueID, UniqueIDType,
};
use pingora::server::ShutdownWatch;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};

/// Bytes per body write handed to Pingora: one `write_all` of this many placeholder bytes
/// becomes as many `sendfile` calls as the socket buffer needs. No more than `send_timeout`
/// is measured against.
const PLACEHOLDER_LEN: usize = crate::config::SEND_PIECE;

/// Stand-in body bytes; their address marks a write as "send the armed file instead". Never
/// read, so its pages are never touched (no memory cost).
static PLACEHOLDER: [u8; PLACEHOLDER_LEN] = [0; PLACEHOLDER_LEN];

/// How much of a range to ask the kernel to read ahead at once (on top of the sequential hint).
const WILLNEED: u64 = 8 << 20;

fn is_placeholder(buf: &[u8]) -> bool {
    let base = PLACEHOLDER.as_ptr() as usize;
    let p = buf.as_ptr() as usize;
    p >= base && p + buf.len() <= base + PLACEHOLDER_LEN
}

/// The listener app: wraps plain-TCP connections so warm blobs can be sent with `sendfile`,
/// then lets `A` (an ordinary Pingora HTTP app) serve them.
pub struct ZeroCopyApp<A> {
    inner: Arc<A>,
}

impl<A> ZeroCopyApp<A> {
    /// Wraps `app`.
    pub fn new(app: A) -> Self {
        ZeroCopyApp {
            inner: Arc::new(app),
        }
    }
}

#[async_trait::async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for ZeroCopyApp<A> {
    async fn process_new(
        self: &Arc<Self>,
        stream: pingora::protocols::Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<pingora::protocols::Stream> {
        // Only a bare TCP stream is a socket the file may go to; TLS streams stay as they are.
        let stream: pingora::protocols::Stream =
            if stream.as_any().is::<TcpStream>() && stream.get_ssl_digest().is_none() {
                match stream.into_any().downcast::<TcpStream>() {
                    Ok(tcp) => Box::new(SendfileStream::new(*tcp)),
                    Err(_) => return None, // cannot happen: checked just above
                }
            } else {
                stream
            };
        self.inner.process_new(stream, shutdown).await
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await
    }
}

/// What an armed stream sends in place of placeholder bytes.
struct Plan {
    file: Arc<File>,
    pos: u64,
    end: u64,
}

/// A plain TCP connection that can send ranges of files with `sendfile(2)`.
#[derive(Debug)]
pub struct SendfileStream {
    inner: TcpStream,
    plan: Mutex<Option<Plan>>,
    /// A duplicate of the socket registered with tokio for write readiness (the original's
    /// registration is private to Pingora's stream); made on the first zero-copy response.
    ready: Option<AsyncFd<OwnedFd>>,
    /// Body bytes go to the socket at once instead of waiting in Pingora's write buffer (see
    /// [`WriteThrough`]).
    write_through: AtomicBool,
}

impl std::fmt::Debug for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Plan({}..{})", self.pos, self.end)
    }
}

impl SendfileStream {
    fn new(inner: TcpStream) -> Self {
        SendfileStream {
            inner,
            plan: Mutex::new(None),
            ready: None,
            write_through: AtomicBool::new(false),
        }
    }

    /// The socket's duplicate registered for write readiness (made on first use).
    fn socket(&mut self) -> io::Result<&AsyncFd<OwnedFd>> {
        if self.ready.is_none() {
            // SAFETY: the fd belongs to `self.inner`, which is alive for this call; it is only
            // borrowed long enough to duplicate it.
            let fd = unsafe { BorrowedFd::borrow_raw(self.inner.as_raw_fd()) };
            let dup = fd.try_clone_to_owned()?;
            // SAFETY: `dup` is an `OwnedFd`: it stays open, the same descriptor, as long as the
            // `AsyncFd` owning it.
            self.ready = Some(unsafe { AsyncFd::register_with_interest(dup, Interest::WRITABLE) }?);
        }
        Ok(self.ready.as_ref().expect("registered above"))
    }

    /// Writes `buf` straight to the socket, after whatever Pingora's buffer holds.
    fn poll_write_through(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        ready!(Pin::new(&mut self.inner).poll_flush(cx))?;
        let sock = self.socket()?;
        loop {
            let mut guard = ready!(sock.poll_write_ready(cx))?;
            match guard.try_io(|s| nix::unistd::write(s.get_ref(), buf).map_err(io::Error::from)) {
                Ok(r) => return Poll::Ready(r),
                Err(_would_block) => continue,
            }
        }
    }

    /// Sends up to `len` bytes of the armed file, after the buffered header bytes.
    fn poll_sendfile(&mut self, cx: &mut Context<'_>, len: usize) -> Poll<io::Result<usize>> {
        let armed = {
            let plan = self.plan.get_mut().unwrap_or_else(|p| p.into_inner());
            plan.as_ref().is_some_and(|p| p.end - p.pos >= len as u64)
        };
        if !armed {
            // Never send the placeholder's zeros as if they were blob bytes.
            return Poll::Ready(Err(io::Error::other(
                "zero-copy body write without a file range to send",
            )));
        }
        ready!(Pin::new(&mut self.inner).poll_flush(cx))?;
        self.socket()?;
        let (Some(sock), Some(plan)) = (
            self.ready.as_ref(),
            self.plan
                .get_mut()
                .unwrap_or_else(|p| p.into_inner())
                .as_mut(),
        ) else {
            return Poll::Ready(Err(io::Error::other(
                "zero-copy send lost its file or socket",
            )));
        };
        loop {
            let mut guard = ready!(sock.poll_write_ready(cx))?;
            let mut off = plan.pos as i64;
            match guard.try_io(|s| {
                nix::sys::sendfile::sendfile(s.get_ref(), &*plan.file, Some(&mut off), len)
                    .map_err(io::Error::from)
            }) {
                Ok(Ok(0)) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "stored blob is shorter than its recorded size",
                    )))
                }
                Ok(Ok(n)) => {
                    plan.pos += n as u64;
                    return Poll::Ready(Ok(n));
                }
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => continue,
            }
        }
    }
}

/// Tells the connection under `session` to send `file[start..end]` for the next body writes;
/// `false` when it cannot (TLS, HTTP/2, not a plain socket), and the caller copies instead.
fn arm(session: &ServerSession, file: Arc<File>, start: u64, end: u64) -> bool {
    let Some(s) = session
        .stream()
        .and_then(|s| s.as_any().downcast_ref::<SendfileStream>())
    else {
        return false;
    };
    // Hints only: a failure changes speed, not bytes.
    let len = (end - start) as i64;
    let _ = posix_fadvise(
        &*file,
        start as i64,
        len,
        PosixFadviseAdvice::POSIX_FADV_SEQUENTIAL,
    );
    let ahead = (end - start).min(WILLNEED) as i64;
    let _ = posix_fadvise(
        &*file,
        start as i64,
        ahead,
        PosixFadviseAdvice::POSIX_FADV_WILLNEED,
    );
    *s.plan.lock().unwrap_or_else(|p| p.into_inner()) = Some(Plan {
        file,
        pos: start,
        end,
    });
    true
}

/// What became of a zero-copy send.
pub enum Sent {
    /// The connection cannot send files: nothing was written, copy instead.
    Unsupported,
    /// The body went out whole (this many bytes).
    Done(u64),
    /// The client went away or a send failed: cut the connection.
    Failed,
}

/// Sends `file[start..end]` as the response body (its header already written) with
/// `sendfile`, when the connection allows.
pub async fn send_file_range(
    session: &mut ServerSession,
    file: Arc<File>,
    start: u64,
    end: u64,
) -> Sent {
    if !arm(session, file, start, end) {
        return Sent::Unsupported;
    }
    let mut pos = start;
    while pos < end {
        let n = (end - pos).min(PLACEHOLDER_LEN as u64) as usize;
        let last = pos + n as u64 >= end;
        let chunk = Bytes::from_static(&PLACEHOLDER[..n]);
        if session.write_response_body(chunk, last).await.is_err() {
            return Sent::Failed;
        }
        pos += n as u64;
    }
    disarm(session);
    Sent::Done(end - start)
}

/// Lets go of the file after a complete body (a kept-alive connection must not hold it open).
fn disarm(session: &ServerSession) {
    if let Some(s) = session
        .stream()
        .and_then(|s| s.as_any().downcast_ref::<SendfileStream>())
    {
        *s.plan.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

/// Turns write-through on or off for `session`'s connection: while on, body bytes go to the
/// socket at once. On TLS and HTTP/2 connections it does nothing.
///
/// Pingora keeps up to 1,460 bytes of a `Content-Length` body in its write buffer until the next
/// write or the body's end. A fill hands its readers whatever upstream sent before a pause, often
/// a few bytes; buffered, they would wait out the pause (for the bytes before the final one, the
/// whole verification) on breakwater's side of the socket.
pub fn write_through(session: &ServerSession, on: bool) {
    if let Some(s) = session
        .stream()
        .and_then(|s| s.as_any().downcast_ref::<SendfileStream>())
    {
        s.write_through.store(on, Ordering::Relaxed);
    }
}

impl AsyncRead for SendfileStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for SendfileStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if is_placeholder(buf) {
            return self.poll_sendfile(cx, buf.len());
        }
        if self.write_through.load(Ordering::Relaxed) {
            return self.poll_write_through(cx, buf);
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if let Some(b) = bufs.iter().find(|b| !b.is_empty()) {
            if is_placeholder(b) {
                return self.poll_sendfile(cx, b.len());
            }
            if self.write_through.load(Ordering::Relaxed) {
                return self.poll_write_through(cx, b);
            }
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[async_trait::async_trait]
impl Shutdown for SendfileStream {
    async fn shutdown(&mut self) {
        Shutdown::shutdown(&mut self.inner).await
    }
}

impl UniqueID for SendfileStream {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for SendfileStream {}

#[async_trait::async_trait]
impl Peek for SendfileStream {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}

impl GetTimingDigest for SendfileStream {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for SendfileStream {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest)
    }
}

impl GetSocketDigest for SendfileStream {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest)
    }
}
