//! The bounded IMAP transport of the delivery check (RFC 3501). The protocol itself is
//! async-imap's; what it does not bound is bounded here, from outside:
//! - [`BoundedStream`] sits between the TLS stream and async-imap: whole units only, caps on
//!   lines, literals, responses and bytes per command ([`Limits`]), and the deadline enforced
//!   in every read.
//! - [`Trouble`] says what went wrong with an exchange in a few printable words: never
//!   async-imap's error text, which quotes server bytes with `Debug` and without bound.
//! - [`crate::printable`] bounds and escapes any server text we show.
//!
//! Collections of responses (FETCH, SEARCH) are the caller's to keep small: the transport bounds
//! how many responses one command can bring, the caller keeps only what it needs of each.

mod framing;
mod stream;

use std::fmt;

pub use framing::{Framer, Limits, Unit, Violation};
pub use stream::BoundedStream;

/// At most this many bytes of server text go into a message.
pub const SHOWN_TEXT: usize = 200;

/// What went wrong with an IMAP exchange, in words fit for a failure detail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Trouble {
    /// The server broke a limit or the protocol; no use going on with the connection.
    Protocol(String),
    /// The deadline passed with the answer still outstanding.
    Deadline,
    /// The server answered NO or BAD; the text is its answer, bounded and escaped.
    Refused(String),
    /// The connection ended or failed.
    Connection(String),
}

impl Trouble {
    /// Classifies an async-imap error, reading the facts from the transport rather than from
    /// the error's own text.
    pub fn of<S>(err: &async_imap::error::Error, stream: &BoundedStream<S>) -> Trouble {
        use async_imap::error::Error;
        if let Some(v) = stream.violation().or_else(|| violation_in(err)) {
            return Trouble::of_violation(v, stream);
        }
        let last = stream.shown_last_line(SHOWN_TEXT);
        match err {
            Error::No(_) | Error::Bad(_) => Trouble::Refused(last),
            Error::ConnectionLost => Trouble::Connection("the server closed the connection".into()),
            Error::Io(e) => match e.kind() {
                // async-imap reports input it cannot parse as `Other`, quoting all of it.
                std::io::ErrorKind::Other => Trouble::Protocol(format!(
                    "the server sent a response that is not IMAP (last line: {last})"
                )),
                std::io::ErrorKind::UnexpectedEof => {
                    Trouble::Connection("the server closed the connection mid-response".into())
                }
                kind => Trouble::Connection(format!("connection error ({kind})")),
            },
            Error::Parse(_) => Trouble::Protocol(format!(
                "the server sent a response the client could not use (last line: {last})"
            )),
            Error::Validate(v) => Trouble::Connection(format!("invalid command argument: {v}")),
            _ => Trouble::Protocol(format!("unexpected answer (last line: {last})")),
        }
    }

    /// A violation the transport detected, with the line that broke it.
    pub fn of_violation<S>(v: &Violation, stream: &BoundedStream<S>) -> Trouble {
        if !v.is_protocol() {
            return Trouble::Deadline;
        }
        if stream.last_line().is_empty() {
            Trouble::Protocol(format!("{v}; a delivery check accepts no more"))
        } else {
            Trouble::Protocol(format!(
                "{v}; a delivery check accepts no more (line: {})",
                stream.shown_last_line(SHOWN_TEXT)
            ))
        }
    }

    /// Whether the server broke the protocol or the limits.
    pub fn is_protocol(&self) -> bool {
        matches!(self, Trouble::Protocol(_))
    }
}

impl fmt::Display for Trouble {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Trouble::Protocol(s) | Trouble::Connection(s) => f.write_str(s),
            Trouble::Refused(s) => write!(f, "the server answered {s}"),
            Trouble::Deadline => f.write_str("no answer before the deadline"),
        }
    }
}

fn violation_in(err: &async_imap::error::Error) -> Option<&Violation> {
    match err {
        async_imap::error::Error::Io(e) => e.get_ref()?.downcast_ref::<Violation>(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trouble_never_quotes_async_imap_error_text() {
        let stream = BoundedStream::new(&b""[..], Limits::DELIVERY, std::time::Instant::now());
        let huge = format!(
            "Error {{ input: [42, 32, 49{} during parsing of",
            ", 42".repeat(100_000)
        );
        let err = async_imap::error::Error::Io(std::io::Error::other(huge));
        let t = Trouble::of(&err, &stream);
        assert!(t.is_protocol());
        assert!(t.to_string().len() < 300, "{t}");
        assert!(!t.to_string().contains("42, 42"));

        let err = async_imap::error::Error::No("code: None, info: Some(\"x\")".into());
        assert_eq!(Trouble::of(&err, &stream), Trouble::Refused(String::new()));
        let v = Violation::TooManyResponses { limit: 1000 };
        let err = async_imap::error::Error::Io(std::io::Error::other(v.clone()));
        assert_eq!(
            Trouble::of(&err, &stream).to_string(),
            "the server sent more than 1000 responses to one command; a delivery check accepts no more"
        );
        let err = async_imap::error::Error::Io(std::io::Error::other(Violation::Deadline));
        assert_eq!(Trouble::of(&err, &stream), Trouble::Deadline);
    }
}
