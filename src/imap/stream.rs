//! [`BoundedStream`]: the byte stream async-imap reads from, with the limits async-imap lacks.
//!
//! async-imap parses its whole buffer again after every read that does not complete a
//! response, sizes its buffer by any literal a server announces (up to 512 MiB), and stops
//! only at a tagged completion however much comes before it. Rather than fork it, the bytes it
//! reads pass through this wrapper, which
//! - hands on whole units only (a complete line, or a complete literal), so async-imap parses
//!   a response at most once per unit: reading stays linear in the bytes received;
//! - frames the bytes itself ([`Framer`]) and refuses, before handing anything on, a line over
//!   the cap, a literal announced over the cap, and responses or bytes beyond the caps per
//!   command;
//! - enforces the deadline inside every read and write, so a server that never stops sending
//!   cannot keep the task busy past it;
//! - keeps the beginning of the last line for error messages, so no caller needs async-imap's
//!   own error text (which quotes the whole unparsed input).
//!
//! A violation is sticky: every later read and write fails the same way.

use std::fmt;
use std::future::Future as _;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

use super::framing::{Framer, Limits, Unit, Violation};

/// How many bytes one read from the server asks for.
const READ_CHUNK: usize = 8 * 1024;
/// How much of the last line is kept for error messages.
const LAST_LINE_KEPT: usize = 256;

/// A stream to an IMAP server that hands async-imap whole units within [`Limits`] and a
/// deadline.
pub struct BoundedStream<S> {
    inner: S,
    framer: Framer,
    /// Received bytes; `buf[start..]` are not handed on yet.
    buf: Vec<u8>,
    start: usize,
    /// Bytes of the unit being handed on that are still in `buf`.
    unit_left: usize,
    /// Where reads from the server land, so `buf` only grows by what arrived.
    scratch: Box<[u8]>,
    deadline: Instant,
    /// Fires at the deadline while the server keeps us waiting (set at the first wait).
    timer: Option<Pin<Box<Sleep>>>,
    violation: Option<Violation>,
    /// The first bytes of the last complete line handed on (or of the line refused), and the
    /// length of that whole line.
    last_line: Vec<u8>,
    last_line_len: usize,
    /// The most bytes ever held in `buf`.
    peak_buffered: usize,
}

impl<S> fmt::Debug for BoundedStream<S> {
    // Never the bytes: async-imap's Debug of a session includes this, and server bytes are
    // not ours to print unbounded.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoundedStream")
            .field("framer", &self.framer)
            .field("buffered", &(self.buf.len() - self.start))
            .field("violation", &self.violation)
            .finish_non_exhaustive()
    }
}

impl<S> BoundedStream<S> {
    /// Wraps `inner`; every exchange must be over by `deadline`. Reading and writing need a
    /// Tokio runtime with its timer enabled.
    pub fn new(inner: S, limits: Limits, deadline: Instant) -> BoundedStream<S> {
        BoundedStream {
            inner,
            framer: Framer::new(limits),
            buf: Vec::new(),
            start: 0,
            unit_left: 0,
            scratch: vec![0; READ_CHUNK].into_boxed_slice(),
            deadline,
            timer: None,
            violation: None,
            last_line: Vec::new(),
            last_line_len: 0,
            peak_buffered: 0,
        }
    }

    /// The limit the server broke or the deadline, once either happened.
    pub fn violation(&self) -> Option<&Violation> {
        self.violation.as_ref()
    }

    /// The beginning of the last line the server sent (at most 256 bytes), for messages.
    pub fn last_line(&self) -> &[u8] {
        &self.last_line
    }

    /// The last line the server sent as it may be shown: at most `max` bytes of it, escaped,
    /// with its whole length when cut (see [`printable`](crate::printable::printable)).
    pub fn shown_last_line(&self, max: usize) -> String {
        crate::printable::printable_cut(&self.last_line, self.last_line_len, max)
    }

    /// The most bytes this stream held at once (its share of memory, besides async-imap's
    /// buffer, which never holds more than one response).
    pub fn peak_buffered(&self) -> usize {
        self.peak_buffered
    }

    /// The wrapped stream. Bytes received and not handed on are dropped with the wrapper:
    /// after STARTTLS that is what RFC 3501 §6.2.1 requires (nothing sent before the TLS
    /// handshake may be taken as part of the protected session).
    pub fn into_inner(self) -> S {
        self.inner
    }

    fn violate(&mut self, v: Violation) -> io::Error {
        if self.violation.is_none() {
            if v.is_protocol() && self.unit_left == 0 {
                // The refused line is the most useful thing to show.
                let unframed = &self.buf[self.start..];
                let end = unframed
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(unframed.len(), |i| i + 1);
                self.keep_line(self.start, end);
            }
            self.violation = Some(v);
        }
        self.error()
    }

    fn error(&self) -> io::Error {
        match &self.violation {
            Some(v) => io::Error::other(v.clone()),
            None => io::Error::other("no violation"),
        }
    }

    fn keep_line(&mut self, at: usize, len: usize) {
        self.last_line_len = len;
        let kept = len.min(LAST_LINE_KEPT);
        self.last_line.clear();
        self.last_line.extend_from_slice(&self.buf[at..at + kept]);
    }

    /// Checks the deadline first, then whether the timer fired while `inner` was pending.
    fn overdue(&mut self, cx: &mut Context<'_>, pending: bool) -> bool {
        if Instant::now() >= self.deadline {
            return true;
        }
        if !pending {
            return false;
        }
        let deadline = self.deadline;
        self.timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline.into())))
            .as_mut()
            .poll(cx)
            .is_ready()
    }

    /// Drops bytes already handed on once they are at least half the buffer (amortised O(1)
    /// per byte, and the buffer never holds more than a unit and a read).
    fn compact(&mut self) {
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > 0 && self.start >= self.buf.len() / 2 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for BoundedStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.violation.is_some() {
            return Poll::Ready(Err(this.error()));
        }
        if this.overdue(cx, false) {
            return Poll::Ready(Err(this.violate(Violation::Deadline)));
        }
        loop {
            if this.unit_left > 0 {
                let n = this.unit_left.min(out.remaining());
                out.put_slice(&this.buf[this.start..this.start + n]);
                this.start += n;
                this.unit_left -= n;
                this.compact();
                return Poll::Ready(Ok(()));
            }
            match this.framer.next_unit(&this.buf[this.start..]) {
                Err(v) => return Poll::Ready(Err(this.violate(v))),
                Ok(Some(unit)) => {
                    if let Unit::Line(len) = unit {
                        this.keep_line(this.start, len);
                    }
                    this.unit_left = unit.len();
                    if unit.is_empty() {
                        continue;
                    }
                    if out.remaining() == 0 {
                        return Poll::Ready(Ok(()));
                    }
                    continue;
                }
                Ok(None) => {}
            }
            // More bytes are needed to complete the unit.
            let mut read = ReadBuf::new(&mut this.scratch);
            match Pin::new(&mut this.inner).poll_read(cx, &mut read) {
                Poll::Pending => {
                    if this.overdue(cx, true) {
                        return Poll::Ready(Err(this.violate(Violation::Deadline)));
                    }
                    return Poll::Pending;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => {
                    let got = read.filled().len();
                    if got == 0 {
                        // End of stream: async-imap tells a clean end from one mid-response.
                        return Poll::Ready(Ok(()));
                    }
                    this.compact();
                    this.buf.extend_from_slice(&this.scratch[..got]);
                    this.peak_buffered = this.peak_buffered.max(this.buf.len());
                    // A server that never stops sending must not keep this loop from the
                    // deadline: reads that are always ready never let the timer run.
                    if this.overdue(cx, false) {
                        return Poll::Ready(Err(this.violate(Violation::Deadline)));
                    }
                }
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for BoundedStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.violation.is_some() {
            return Poll::Ready(Err(this.error()));
        }
        // Whatever the server sends from now on answers this command.
        this.framer.command_sent();
        match Pin::new(&mut this.inner).poll_write(cx, data) {
            Poll::Pending if this.overdue(cx, true) => {
                Poll::Ready(Err(this.violate(Violation::Deadline)))
            }
            other => other,
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.violation.is_some() {
            return Poll::Ready(Err(this.error()));
        }
        match Pin::new(&mut this.inner).poll_flush(cx) {
            Poll::Pending if this.overdue(cx, true) => {
                Poll::Ready(Err(this.violate(Violation::Deadline)))
            }
            other => other,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    fn far() -> Instant {
        Instant::now() + Duration::from_secs(30)
    }

    /// Reads with a 4 KiB buffer, as async-imap does, and returns the size of each read.
    async fn reads<S: AsyncRead + Unpin>(s: &mut BoundedStream<S>) -> io::Result<Vec<usize>> {
        let mut sizes = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = s.read(&mut buf).await?;
            if n == 0 {
                return Ok(sizes);
            }
            sizes.push(n);
        }
    }

    #[tokio::test]
    async fn hands_on_one_unit_per_read() {
        let input: &[u8] = b"* OK hi\r\n* 1 FETCH (BODY[] {3}\r\nabc)\r\nA1 OK done\r\n";
        let mut s = BoundedStream::new(input, Limits::DELIVERY, far());
        assert_eq!(reads(&mut s).await.unwrap(), vec![9, 23, 3, 3, 12]);
        assert_eq!(s.last_line(), b"A1 OK done\r\n");
    }

    #[tokio::test]
    async fn a_unit_larger_than_the_reader_buffer_comes_in_pieces() {
        let mut input = b"* SEARCH".to_vec();
        for uid in 0..2000 {
            input.extend_from_slice(format!(" {uid}").as_bytes());
        }
        input.extend_from_slice(b"\r\n");
        let mut s = BoundedStream::new(&input[..], Limits::DELIVERY, far());
        let sizes = reads(&mut s).await.unwrap();
        assert_eq!(sizes.iter().sum::<usize>(), input.len());
        assert_eq!(sizes[0], 4096);
    }

    #[tokio::test]
    async fn a_violation_is_refused_and_sticks() {
        let input: &[u8] = b"* OK hi\r\n* 1 FETCH (BODY[] {536000000}\r\n";
        let io = tokio::io::join(input, tokio::io::sink());
        let mut s = BoundedStream::new(io, Limits::DELIVERY, far());
        let err = reads(&mut s).await.unwrap_err();
        let v = err.get_ref().unwrap().downcast_ref::<Violation>().unwrap();
        assert!(matches!(
            v,
            Violation::LiteralTooLarge {
                announced: 536_000_000,
                ..
            }
        ));
        assert_eq!(s.last_line(), b"* 1 FETCH (BODY[] {536000000}\r\n");
        assert!(s.read(&mut [0u8; 16]).await.is_err());
        assert!(s.write_all(b"A2 LOGOUT\r\n").await.is_err());
        assert!(s.peak_buffered() < 100);
    }

    #[tokio::test]
    async fn an_endless_line_stops_at_the_cap_with_its_beginning_kept() {
        let endless = tokio::io::repeat(b'x');
        let mut s = BoundedStream::new(endless, Limits::DELIVERY, far());
        let err = reads(&mut s).await.unwrap_err();
        assert!(
            err.to_string().contains("line longer than 65536 bytes"),
            "{err}"
        );
        assert_eq!(s.last_line(), &[b'x'; 256][..]);
        assert!(s.peak_buffered() <= 64 * 1024 + READ_CHUNK);
    }

    #[tokio::test]
    async fn the_deadline_holds_against_a_server_that_never_stops_sending() {
        // Small responses forever, each within every cap but the deadline's.
        let limits = Limits {
            responses_per_command: usize::MAX,
            bytes_per_command: usize::MAX,
            ..Limits::DELIVERY
        };
        let flood = tokio::io::repeat(b'\n');
        let began = Instant::now();
        let mut s = BoundedStream::new(flood, limits, began + Duration::from_millis(200));
        let err = reads(&mut s).await.unwrap_err();
        assert_eq!(s.violation(), Some(&Violation::Deadline), "{err}");
        assert!(began.elapsed() < Duration::from_millis(300));
    }

    #[tokio::test]
    async fn the_deadline_holds_against_a_silent_server() {
        let (client, _server) = tokio::io::duplex(64);
        let began = Instant::now();
        let mut s =
            BoundedStream::new(client, Limits::DELIVERY, began + Duration::from_millis(100));
        let err = s.read(&mut [0u8; 64]).await.unwrap_err();
        assert_eq!(s.violation(), Some(&Violation::Deadline), "{err}");
        let took = began.elapsed();
        assert!(took >= Duration::from_millis(100) && took < Duration::from_millis(200));
    }

    #[tokio::test]
    async fn a_write_starts_a_new_command() {
        let limits = Limits {
            responses_per_command: 2,
            ..Limits::DELIVERY
        };
        let (client, mut server) = tokio::io::duplex(1024);
        let mut s = BoundedStream::new(client, limits, far());
        server
            .write_all(b"* 1 EXISTS\r\n* 2 EXISTS\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(s.read(&mut buf).await.unwrap(), 12);
        assert_eq!(s.read(&mut buf).await.unwrap(), 12);
        s.write_all(b"A1 NOOP\r\n").await.unwrap();
        server
            .write_all(b"* 3 EXISTS\r\n* 4 EXISTS\r\n* 5 EXISTS\r\n")
            .await
            .unwrap();
        assert_eq!(s.read(&mut buf).await.unwrap(), 12);
        assert_eq!(s.read(&mut buf).await.unwrap(), 12);
        assert!(s.read(&mut buf).await.is_err());
        assert_eq!(
            s.violation(),
            Some(&Violation::TooManyResponses { limit: 2 })
        );
    }

    #[tokio::test]
    async fn a_drip_fed_line_is_handed_on_once() {
        let (client, mut server) = tokio::io::duplex(64);
        let mut s = BoundedStream::new(client, Limits::DELIVERY, far());
        let line = b"* OK [CAPABILITY IMAP4rev1] ready\r\n";
        let writer = tokio::spawn(async move {
            for b in line {
                server.write_all(&[*b]).await.unwrap();
                tokio::task::yield_now().await;
            }
            server
        });
        let mut buf = [0u8; 4096];
        assert_eq!(s.read(&mut buf).await.unwrap(), line.len());
        assert_eq!(&buf[..line.len()], line);
        drop(writer.await.unwrap());
    }
}
