//! Where one IMAP unit ends (RFC 3501 §4.3, §7): a response is a line ending in CRLF, except
//! that a line ending in a literal announcement `{n}` CRLF is followed by exactly `n` bytes of
//! literal data and then more of the same response. The [`Framer`] finds those units in the
//! bytes a server sent, in one pass over each byte, and enforces the [`Limits`] before anything
//! is handed on: an announced literal is judged by its announcement, before a byte of it is
//! read or a buffer is sized for it.

use std::fmt;

/// Caps for one IMAP connection of the delivery check. A delivery check reads a greeting, a
/// few lines per SELECT, one SEARCH line and the header fields of a handful of messages: these
/// caps are far above what an honest server sends for that, and far below what would hurt the
/// exporter when many probes meet a hostile server at once.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The longest line, CRLF included (a SEARCH answer listing ~9,000 UIDs fits).
    pub line: usize,
    /// The largest literal a server may announce (header fields, not whole messages).
    pub literal: usize,
    /// The most bytes in one response, its lines and literals together.
    pub response: usize,
    /// The most literals in one response.
    pub literals_per_response: usize,
    /// The most responses, tagged or not, in answer to one command.
    pub responses_per_command: usize,
    /// The most bytes in answer to one command.
    pub bytes_per_command: usize,
}

impl Limits {
    /// The caps of a delivery check.
    pub const DELIVERY: Limits = Limits {
        line: 64 * 1024,
        literal: 64 * 1024,
        response: 128 * 1024,
        literals_per_response: 16,
        responses_per_command: 1_000,
        bytes_per_command: 256 * 1024,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DELIVERY
    }
}

/// How a server broke the limits, or the deadline passed while waiting for it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    /// A line grew past [`Limits::line`] without its CRLF.
    #[error("the server sent a line longer than {limit} bytes")]
    LineTooLong {
        /// The cap.
        limit: usize,
    },
    /// A literal announcement over [`Limits::literal`] (or over what is left of the response).
    #[error("the server announced a literal of {announced} bytes (at most {limit} accepted)")]
    LiteralTooLarge {
        /// The size the server announced.
        announced: u64,
        /// The cap in force at that point.
        limit: usize,
    },
    /// More than [`Limits::literals_per_response`] literals in one response.
    #[error("the server sent more than {limit} literals in one response")]
    TooManyLiterals {
        /// The cap.
        limit: usize,
    },
    /// A response over [`Limits::response`] bytes.
    #[error("the server sent a response longer than {limit} bytes")]
    ResponseTooLong {
        /// The cap.
        limit: usize,
    },
    /// More than [`Limits::responses_per_command`] responses before the command completed.
    #[error("the server sent more than {limit} responses to one command")]
    TooManyResponses {
        /// The cap.
        limit: usize,
    },
    /// More than [`Limits::bytes_per_command`] bytes before the command completed.
    #[error("the server sent more than {limit} bytes in answer to one command")]
    TooMuchData {
        /// The cap.
        limit: usize,
    },
    /// The deadline passed while the exchange was still going on.
    #[error("the server had not answered when the deadline passed")]
    Deadline,
}

impl Violation {
    /// Whether the server broke the protocol or the limits (rather than just being slow).
    pub fn is_protocol(&self) -> bool {
        !matches!(self, Violation::Deadline)
    }
}

/// What the next unit of a response is.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Unit {
    /// A line of this many bytes, CRLF included.
    Line(usize),
    /// Literal data of this many bytes.
    Literal(usize),
}

impl Unit {
    /// Its length in bytes.
    pub fn len(self) -> usize {
        match self {
            Unit::Line(n) | Unit::Literal(n) => n,
        }
    }

    /// Whether it is empty (a `{0}` literal).
    pub fn is_empty(self) -> bool {
        self.len() == 0
    }
}

/// Finds unit boundaries in the bytes received and keeps the counts the limits apply to.
#[derive(Clone)]
pub struct Framer {
    limits: Limits,
    /// Literal bytes announced by the last line and not yet framed.
    literal_due: Option<usize>,
    /// How far the unframed bytes were already searched for LF (so a line arriving a byte at a
    /// time is scanned once, not once per byte).
    scanned: usize,
    response_bytes: usize,
    response_literals: usize,
    command_bytes: usize,
    command_responses: usize,
}

impl fmt::Debug for Framer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Framer")
            .field("literal_due", &self.literal_due)
            .field("response_bytes", &self.response_bytes)
            .field("command_bytes", &self.command_bytes)
            .field("command_responses", &self.command_responses)
            .finish_non_exhaustive()
    }
}

impl Framer {
    /// A framer at the start of a connection.
    pub fn new(limits: Limits) -> Framer {
        Framer {
            limits,
            literal_due: None,
            scanned: 0,
            response_bytes: 0,
            response_literals: 0,
            command_bytes: 0,
            command_responses: 0,
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// A command was sent: the per-command counts start again. (A response in progress keeps
    /// its own counts.)
    pub fn command_sent(&mut self) {
        self.command_bytes = 0;
        self.command_responses = 0;
    }

    /// The next complete unit at the start of `unframed` (the bytes received and not yet framed),
    /// `Ok(None)` when more bytes are needed first, or the limit the server broke. Once a unit
    /// is returned, the caller consumes exactly its length before calling again.
    pub fn next_unit(&mut self, unframed: &[u8]) -> Result<Option<Unit>, Violation> {
        if let Some(n) = self.literal_due {
            if unframed.len() < n {
                return Ok(None);
            }
            self.literal_due = None;
            return Ok(Some(Unit::Literal(n)));
        }
        let from = self.scanned.min(unframed.len());
        let Some(lf) = unframed[from..].iter().position(|&b| b == b'\n') else {
            self.scanned = unframed.len();
            if unframed.len() > self.limits.line {
                return Err(Violation::LineTooLong {
                    limit: self.limits.line,
                });
            }
            return Ok(None);
        };
        self.scanned = 0;
        let len = from + lf + 1;
        if len > self.limits.line {
            return Err(Violation::LineTooLong {
                limit: self.limits.line,
            });
        }
        self.count(len)?;
        match literal_announced(&unframed[..len]) {
            Some(announced) => {
                self.response_literals += 1;
                if self.response_literals > self.limits.literals_per_response {
                    return Err(Violation::TooManyLiterals {
                        limit: self.limits.literals_per_response,
                    });
                }
                // Judge the announcement against every cap it would break once read, so
                // that nothing downstream sizes a buffer for it.
                let room = (self.limits.literal)
                    .min(self.limits.response - self.response_bytes)
                    .min(self.limits.bytes_per_command - self.command_bytes);
                if announced > room as u64 {
                    return Err(Violation::LiteralTooLarge {
                        announced,
                        limit: room,
                    });
                }
                let n = announced as usize;
                self.count(n)?;
                self.literal_due = Some(n);
            }
            None => {
                self.response_bytes = 0;
                self.response_literals = 0;
                self.command_responses += 1;
                if self.command_responses > self.limits.responses_per_command {
                    return Err(Violation::TooManyResponses {
                        limit: self.limits.responses_per_command,
                    });
                }
            }
        }
        Ok(Some(Unit::Line(len)))
    }

    fn count(&mut self, n: usize) -> Result<(), Violation> {
        self.response_bytes += n;
        self.command_bytes += n;
        if self.response_bytes > self.limits.response {
            return Err(Violation::ResponseTooLong {
                limit: self.limits.response,
            });
        }
        if self.command_bytes > self.limits.bytes_per_command {
            return Err(Violation::TooMuchData {
                limit: self.limits.bytes_per_command,
            });
        }
        Ok(())
    }
}

/// The size a line announces when it ends in a literal announcement: `{n}` or `~{n}`
/// (RFC 3516 literal8) right before CRLF. Anything else (no CRLF, no digits, `{n+}`, which only
/// clients send) is no announcement; a parser that disagrees fails on the line instead.
fn literal_announced(line: &[u8]) -> Option<u64> {
    let body = line.strip_suffix(b"}\r\n")?;
    let open = body.iter().rposition(|&b| b == b'{')?;
    let digits = &body[open + 1..];
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // More than 19 digits is beyond u64: saturate, it is refused as too large all the same.
    Some(
        digits
            .iter()
            .try_fold(0u64, |n, &d| {
                n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
            })
            .unwrap_or(u64::MAX),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Frames `input` completely, as the transport does, and returns the units.
    fn frame(framer: &mut Framer, input: &[u8]) -> Result<Vec<Unit>, Violation> {
        let mut units = Vec::new();
        let mut at = 0;
        while let Some(unit) = framer.next_unit(&input[at..])? {
            at += unit.len();
            units.push(unit);
        }
        Ok(units)
    }

    fn small() -> Limits {
        Limits {
            line: 32,
            literal: 16,
            response: 64,
            literals_per_response: 2,
            responses_per_command: 3,
            bytes_per_command: 100,
        }
    }

    #[test]
    fn frames_lines_and_literals() {
        let mut f = Framer::new(Limits::DELIVERY);
        let input =
            b"* OK ready\r\n* 1 FETCH (UID 7 BODY[HEADER] {5}\r\nab\r\n\r)\r\nA1 OK done\r\n";
        assert_eq!(
            frame(&mut f, input).unwrap(),
            vec![
                Unit::Line(12),
                Unit::Line(35),
                Unit::Literal(5),
                Unit::Line(3),
                Unit::Line(12)
            ]
        );
    }

    #[test]
    fn waits_for_the_end_of_a_line_and_of_a_literal() {
        let mut f = Framer::new(Limits::DELIVERY);
        assert_eq!(f.next_unit(b"* OK rea").unwrap(), None);
        assert_eq!(f.next_unit(b"* OK ready").unwrap(), None);
        assert_eq!(
            f.scanned, 10,
            "bytes already searched are not searched again"
        );
        assert_eq!(
            f.next_unit(b"* OK ready\r\n* 1").unwrap(),
            Some(Unit::Line(12))
        );
        assert_eq!(
            f.next_unit(b"* 1 FETCH (X {4}\r\n").unwrap(),
            Some(Unit::Line(18))
        );
        assert_eq!(f.next_unit(b"abc").unwrap(), None);
        assert_eq!(f.next_unit(b"abcd)").unwrap(), Some(Unit::Literal(4)));
        assert_eq!(f.next_unit(b")\r\n").unwrap(), Some(Unit::Line(3)));
    }

    #[test]
    fn units_do_not_depend_on_how_the_bytes_arrive() {
        let input: &[u8] =
            b"* OK hi\r\n* 1 FETCH (A {3}\r\na\nb B ~{0}\r\n)\r\n* SEARCH 1 2\r\nA1 OK\r\n";
        let whole = frame(&mut Framer::new(Limits::DELIVERY), input).unwrap();
        // Every split into two arrivals, and a byte at a time.
        for split in 0..=input.len() {
            let mut f = Framer::new(Limits::DELIVERY);
            let mut units = Vec::new();
            let mut at = 0;
            for arrived in [split, input.len()] {
                while let Some(unit) = f.next_unit(&input[at..arrived]).unwrap() {
                    at += unit.len();
                    units.push(unit);
                }
            }
            assert_eq!(units, whole, "split at {split}");
        }
        let mut f = Framer::new(Limits::DELIVERY);
        let (mut units, mut at) = (Vec::new(), 0);
        for arrived in 0..=input.len() {
            while let Some(unit) = f.next_unit(&input[at..arrived]).unwrap() {
                at += unit.len();
                units.push(unit);
            }
        }
        assert_eq!(units, whole);
    }

    #[test]
    fn literal_announcements() {
        assert_eq!(literal_announced(b"* 1 FETCH (BODY[] {12}\r\n"), Some(12));
        assert_eq!(literal_announced(b"* 1 FETCH (BINARY[] ~{0}\r\n"), Some(0));
        assert_eq!(
            literal_announced(b"{99999999999999999999999}\r\n"),
            Some(u64::MAX)
        );
        assert_eq!(literal_announced(b"* OK {12}\n"), None);
        assert_eq!(literal_announced(b"* OK {12+}\r\n"), None);
        assert_eq!(literal_announced(b"* OK {}\r\n"), None);
        assert_eq!(literal_announced(b"* OK }\r\n"), None);
        assert_eq!(literal_announced(b"* OK {1 2}\r\n"), None);
    }

    #[test]
    fn refuses_a_large_literal_by_its_announcement() {
        let mut f = Framer::new(Limits::DELIVERY);
        // Nothing of the literal has arrived: the announcement alone is refused.
        assert_eq!(
            f.next_unit(b"* 1 FETCH (BODY[] {536000000}\r\n"),
            Err(Violation::LiteralTooLarge {
                announced: 536_000_000,
                limit: 64 * 1024
            })
        );
    }

    #[test]
    fn a_literal_must_fit_what_is_left_of_the_response() {
        let mut f = Framer::new(Limits {
            response: 50,
            ..small()
        });
        assert_eq!(
            f.next_unit(b"* 1 FETCH (A {16}\r\n"),
            Ok(Some(Unit::Line(19)))
        );
        assert_eq!(f.next_unit(&[b'x'; 16]), Ok(Some(Unit::Literal(16))));
        // 44 bytes of this response with the next line: 6 left for its literal.
        assert_eq!(
            f.next_unit(b" B {16}\r\n"),
            Err(Violation::LiteralTooLarge {
                announced: 16,
                limit: 6
            })
        );
    }

    #[test]
    fn caps_line_length_with_or_without_its_end() {
        let mut f = Framer::new(small());
        let long = [b'a'; 40];
        assert_eq!(
            f.next_unit(&long),
            Err(Violation::LineTooLong { limit: 32 })
        );
        let mut f = Framer::new(small());
        let mut line = vec![b'a'; 31];
        line.extend_from_slice(b"\r\n");
        assert_eq!(
            f.next_unit(&line),
            Err(Violation::LineTooLong { limit: 32 })
        );
        let mut f = Framer::new(small());
        assert_eq!(f.next_unit(&line[2..]), Ok(Some(Unit::Line(31))));
    }

    #[test]
    fn caps_literals_per_response_and_responses_per_command() {
        let mut f = Framer::new(small());
        assert_eq!(
            frame(&mut f, b"* 1 X {0}\r\n{0}\r\n{0}\r\n"),
            Err(Violation::TooManyLiterals { limit: 2 })
        );
        let mut f = Framer::new(small());
        assert_eq!(
            frame(
                &mut f,
                b"* 1 EXISTS\r\n* 1 EXISTS\r\n* 1 EXISTS\r\n* 1 EXISTS\r\n"
            ),
            Err(Violation::TooManyResponses { limit: 3 })
        );
        // A new command starts the count again.
        let mut f = Framer::new(small());
        assert_eq!(
            frame(&mut f, b"* 1 EXISTS\r\n* 1 EXISTS\r\n")
                .unwrap()
                .len(),
            2
        );
        f.command_sent();
        assert_eq!(
            frame(&mut f, b"* 1 EXISTS\r\n* 1 EXISTS\r\n")
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn caps_bytes_per_response_and_per_command() {
        let mut f = Framer::new(Limits {
            response: 40,
            ..small()
        });
        let mut input = b"* 1 X {0}\r\n".to_vec();
        input.extend_from_slice(&[b'a'; 28]);
        input.extend_from_slice(b"\r\n");
        assert_eq!(
            frame(&mut f, &input),
            Err(Violation::ResponseTooLong { limit: 40 })
        );
        let mut f = Framer::new(Limits {
            responses_per_command: 100,
            ..small()
        });
        let input = b"* 1 EXISTS\r\n".repeat(9);
        assert_eq!(
            frame(&mut f, &input),
            Err(Violation::TooMuchData { limit: 100 })
        );
    }

    #[test]
    fn only_deadlines_are_not_protocol_violations() {
        assert!(!Violation::Deadline.is_protocol());
        assert!(Violation::LineTooLong { limit: 1 }.is_protocol());
    }
}
