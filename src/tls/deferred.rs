//! The transport under a client TLS stream: writes made during the handshake wait until the
//! client next reads, or writes after the handshake, and then go out together.
//!
//! A TLS 1.3 client ends its handshake with a flight (its Finished) that the server does not
//! answer; the client's first request follows right after it. Written as they come, they are
//! two system calls and two segments, and the server wakes up twice. Held back, the Finished
//! leaves with the first request (an SMTP `EHLO`, an HTTP request) in one write. Nothing waits
//! longer for it: a client that reads next (the greeting of implicit TLS; TLS 1.2, whose
//! client Finished the server answers) sends what it holds first.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes held back are the handshake's own flights (a few hundred bytes) plus one write; a
/// write past this size goes out on its own.
const MAX_HELD: usize = 16 * 1024;

/// A stream whose writes are held back while `holding`, and sent before the next read.
#[derive(Debug)]
pub struct Deferred<S> {
    inner: S,
    held: Vec<u8>,
    /// Whether writes are held (during the handshake).
    holding: bool,
}

impl<S> Deferred<S> {
    /// Holds writes until [`Deferred::release`].
    pub(crate) fn holding(inner: S) -> Deferred<S> {
        Deferred {
            inner,
            held: Vec::new(),
            holding: true,
        }
    }

    /// Stops holding writes: what is held goes out with the next write, read, flush or
    /// shutdown.
    pub(crate) fn release(&mut self) {
        self.holding = false;
    }

    /// The stream underneath.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: AsyncWrite + Unpin> Deferred<S> {
    /// Writes what is held, until all of it is out.
    fn poll_send_held(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.held.is_empty() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.held))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.held.drain(..n);
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Deferred<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // The peer may be waiting for what is held before it says anything.
        ready!(this.poll_send_held(cx))?;
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Deferred<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.held.is_empty() && !this.holding {
            return Pin::new(&mut this.inner).poll_write(cx, buf);
        }
        if this.held.len() + buf.len() > MAX_HELD {
            ready!(this.poll_send_held(cx))?;
            return Pin::new(&mut this.inner).poll_write(cx, buf);
        }
        this.held.extend_from_slice(buf);
        if !this.holding {
            // Out now, with what was held, in one write when the socket takes it all; what it
            // does not take goes out on the next call.
            if let Poll::Ready(Err(e)) = this.poll_send_held(cx) {
                return Poll::Ready(Err(e));
            }
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.held.is_empty() && !this.holding {
            return Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        }
        // Held bytes go first: gathered with these into one buffer.
        let Some(first) = bufs.iter().find(|b| !b.is_empty()) else {
            return Poll::Ready(Ok(0));
        };
        let mut written = 0;
        for b in bufs {
            if this.held.len() + b.len() > MAX_HELD && written > 0 {
                break;
            }
            if this.held.len() + b.len() > MAX_HELD {
                // Larger than what is held back: the held bytes first, then this write alone.
                ready!(this.poll_send_held(cx))?;
                return Pin::new(&mut this.inner).poll_write(cx, first);
            }
            this.held.extend_from_slice(b);
            written += b.len();
        }
        if !this.holding {
            if let Poll::Ready(Err(e)) = this.poll_send_held(cx) {
                return Poll::Ready(Err(e));
            }
        }
        Poll::Ready(Ok(written))
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.holding {
            // The handshake flushes each flight; held, it goes out before the next read.
            return Poll::Ready(Ok(()));
        }
        ready!(this.poll_send_held(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_send_held(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn held_writes_go_out_before_a_read_and_with_the_first_write_after() {
        let (near, mut far) = tokio::io::duplex(64 * 1024);
        let mut stream = Deferred::holding(near);
        stream.write_all(b"hello ").await.unwrap();
        stream.flush().await.unwrap();
        // Nothing sent while holding, flush or not.
        let mut buf = [0u8; 64];
        let nothing =
            tokio::time::timeout(std::time::Duration::from_millis(50), far.read(&mut buf)).await;
        assert!(nothing.is_err(), "sent while holding");
        // A read sends what is held first (the peer may be waiting for it).
        far.write_all(b"reply").await.unwrap();
        let n = stream.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"reply");
        let n = far.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"hello ");
        // Held again, then released: the held bytes leave with the next write, in one piece.
        stream.holding = true;
        stream.write_all(b"finished ").await.unwrap();
        stream.release();
        stream.write_all(b"EHLO").await.unwrap();
        stream.flush().await.unwrap();
        let n = far.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"finished EHLO");
        // Released and empty: writes pass straight through.
        stream.write_all(b"QUIT").await.unwrap();
        let n = far.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"QUIT");
    }

    #[tokio::test]
    async fn vectored_and_large_writes_keep_their_order() {
        let (near, mut far) = tokio::io::duplex(256 * 1024);
        let mut stream = Deferred::holding(near);
        stream.write_all(b"a").await.unwrap();
        let big = vec![b'x'; MAX_HELD + 10];
        stream.release();
        let slices = [io::IoSlice::new(b"b"), io::IoSlice::new(b"c")];
        let n = stream.write_vectored(&slices).await.unwrap();
        assert_eq!(n, 2);
        stream.write_all(&big).await.unwrap();
        stream.shutdown().await.unwrap();
        let mut got = Vec::new();
        far.read_to_end(&mut got).await.unwrap();
        assert_eq!(&got[..3], b"abc");
        assert_eq!(got.len(), 3 + big.len());
    }
}
