//! SMTP replies (RFC 5321 §4.2) with enhanced status codes (RFC 3463, RFC 2034).
//!
//! A reply is a three-digit code and one or more lines of text. Parsing works on a byte buffer
//! that may hold only part of a reply: it answers *incomplete* (read more) or *invalid* (the
//! server broke the protocol) as different outcomes, and it enforces the bounds of [`ReplyLimits`]
//! so that a hostile server costs us a failed probe, never memory.

use serde::Serialize;
use std::fmt;

/// Bounds on what one reply may be. A violation is a protocol error.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct ReplyLimits {
    /// Longest line, CRLF included. RFC 5321 §4.5.3.1.5 allows 512; real servers send more.
    pub max_line: usize,
    /// Most lines in one multiline reply (EHLO replies are the longest in practice).
    pub max_lines: usize,
    /// Most bytes in one reply.
    pub max_bytes: usize,
}

impl Default for ReplyLimits {
    fn default() -> Self {
        ReplyLimits {
            max_line: 4096,
            max_lines: 128,
            max_bytes: 64 * 1024,
        }
    }
}

/// An RFC 3463 enhanced status code, `class.subject.detail`, such as `5.1.1`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct EnhancedCode {
    /// 2 (success), 4 (persistent transient failure) or 5 (permanent failure).
    pub class: u8,
    /// 0 to 999: the kind of problem (1 addressing, 7 security or policy, …).
    pub subject: u16,
    /// 0 to 999: the detail within the subject.
    pub detail: u16,
}

impl EnhancedCode {
    /// Reads a code at the start of `text` (followed by a space or the end), as RFC 2034 places it.
    pub fn parse_prefix(text: &str) -> Option<EnhancedCode> {
        let word = text.split(' ').next()?;
        let mut parts = word.split('.');
        let class = parts.next()?;
        let subject = parts.next()?;
        let detail = parts.next()?;
        if parts.next().is_some() {
            return None;
        }
        let digits = |s: &str, max: usize| {
            !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_digit())
        };
        if !(digits(class, 1) && digits(subject, 3) && digits(detail, 3)) {
            return None;
        }
        let class: u8 = class.parse().ok()?;
        if !matches!(class, 2 | 4 | 5) {
            return None;
        }
        Some(EnhancedCode {
            class,
            subject: subject.parse().ok()?,
            detail: detail.parse().ok()?,
        })
    }
}

impl fmt::Display for EnhancedCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.class, self.subject, self.detail)
    }
}

impl Serialize for EnhancedCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// What the first digit of a reply code says (RFC 5321 §4.2.1).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Severity {
    /// 2yz: the command was accepted.
    PositiveCompletion,
    /// 3yz: send more (DATA's 354, AUTH's 334).
    PositiveIntermediate,
    /// 4yz: try again later.
    TransientNegative,
    /// 5yz: do not try again.
    PermanentNegative,
}

/// One complete reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit code, 200 to 599.
    pub code: u16,
    /// The enhanced status code at the start of the first line's text, when present.
    pub enhanced: Option<EnhancedCode>,
    /// The text of each line, code and separator removed. At least one (possibly empty) line.
    pub lines: Vec<String>,
}

impl Reply {
    /// What the code's first digit says.
    pub fn severity(&self) -> Severity {
        match self.code / 100 {
            2 => Severity::PositiveCompletion,
            3 => Severity::PositiveIntermediate,
            4 => Severity::TransientNegative,
            _ => Severity::PermanentNegative,
        }
    }

    /// 2yz.
    pub fn is_positive(&self) -> bool {
        self.severity() == Severity::PositiveCompletion
    }

    /// The text of all lines joined by a space, without the enhanced code of the first line.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for (i, line) in self.lines.iter().enumerate() {
            let line = if i == 0 || self.enhanced.is_some() {
                strip_enhanced(line, self.enhanced)
            } else {
                line.as_str()
            };
            if !out.is_empty() && !line.is_empty() {
                out.push(' ');
            }
            out.push_str(line);
        }
        out
    }

    /// The first line's text without its enhanced code.
    pub fn first_line(&self) -> &str {
        strip_enhanced(
            self.lines.first().map(String::as_str).unwrap_or(""),
            self.enhanced,
        )
    }
}

fn strip_enhanced(line: &str, enhanced: Option<EnhancedCode>) -> &str {
    match enhanced {
        Some(_) if EnhancedCode::parse_prefix(line).is_some() => {
            line.split_once(' ').map(|(_, rest)| rest).unwrap_or("")
        }
        _ => line,
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let last = self.lines.len().saturating_sub(1);
        for (i, line) in self.lines.iter().enumerate() {
            let sep = if i == last { ' ' } else { '-' };
            write!(f, "{}{}{}", self.code, sep, line)?;
            if i != last {
                f.write_str("\r\n")?;
            }
        }
        Ok(())
    }
}

/// Why bytes from the server are not a valid reply.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    /// A line does not start with a three-digit code followed by space, hyphen or the end.
    #[error("malformed reply line: {0:?}")]
    Malformed(String),
    /// The lines of a multiline reply carry different codes.
    #[error("multiline reply mixes codes {first} and {other}")]
    MixedCodes { first: u16, other: u16 },
    /// A line is longer than the limit.
    #[error("reply line longer than {0} bytes")]
    LineTooLong(usize),
    /// More lines than the limit.
    #[error("reply has more than {0} lines")]
    TooManyLines(usize),
    /// More bytes than the limit.
    #[error("reply longer than {0} bytes")]
    TooLarge(usize),
}

/// Tries to parse one reply from the start of `buf`.
///
/// `Ok(Some((reply, used)))`: a complete reply occupying `buf[..used]`. `Ok(None)`: what is there
/// is a valid beginning; read more. `Err`: the server broke the protocol or a limit.
/// Lines end with CRLF; a bare LF is accepted, since some servers send it and nothing is lost.
pub fn parse_reply(buf: &[u8], limits: &ReplyLimits) -> Result<Option<(Reply, usize)>, ReplyError> {
    let mut pos = 0;
    let mut code: Option<u16> = None;
    let mut lines = Vec::new();
    loop {
        let rest = &buf[pos..];
        let nl = rest.iter().position(|&b| b == b'\n');
        // What can be checked now, so garbage or a giant line fails fast instead of waiting
        // for the deadline, even before the line ends.
        check_line(rest, nl, pos, limits)?;
        let Some(nl) = nl else {
            return Ok(None);
        };
        let mut line = &rest[..nl];
        if line.last() == Some(&b'\r') {
            line = &line[..line.len() - 1];
        }
        pos += nl + 1;
        let (line_code, last, text) = parse_line(line)?;
        match code {
            None => code = Some(line_code),
            Some(first) if first != line_code => {
                return Err(ReplyError::MixedCodes {
                    first,
                    other: line_code,
                })
            }
            Some(_) => {}
        }
        if lines.len() >= limits.max_lines {
            return Err(ReplyError::TooManyLines(limits.max_lines));
        }
        lines.push(text);
        if last {
            let code = code.unwrap_or(line_code);
            let enhanced = lines.first().and_then(|l| EnhancedCode::parse_prefix(l));
            // An enhanced code only counts when its class agrees with the reply code.
            let enhanced = enhanced.filter(|e| u16::from(e.class) == code / 100);
            return Ok(Some((
                Reply {
                    code,
                    enhanced,
                    lines,
                },
                pos,
            )));
        }
    }
}

/// The bytes read from a server, turned into replies as they complete.
///
/// Parsing again from the start after every read would make a server that drip-feeds a long
/// reply cost time quadratic in its size. The buffer re-parses only when a read could have
/// changed the verdict: a line ended, a line just started (so garbage is caught on its first
/// bytes), or a bound was crossed. Between those, a read costs only the copy.
#[derive(Debug)]
pub struct ReplyBuffer {
    buf: Vec<u8>,
    limits: ReplyLimits,
    /// Bytes since the last line feed: the line being read.
    partial: usize,
    /// Whether a parse could give a different answer than the last one.
    dirty: bool,
}

impl ReplyBuffer {
    /// An empty buffer with these bounds.
    pub fn new(limits: ReplyLimits) -> ReplyBuffer {
        ReplyBuffer {
            buf: Vec::with_capacity(1024),
            limits,
            partial: 0,
            dirty: false,
        }
    }

    /// Appends bytes as read from the connection.
    pub fn extend(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        match bytes.iter().rposition(|&b| b == b'\n') {
            Some(i) => {
                self.partial = bytes.len() - i - 1;
                self.dirty = true;
            }
            None => {
                // The first four bytes of a line (code and separator) are checked as they come.
                let line_start = self.partial < 4;
                self.partial += bytes.len();
                let over =
                    self.partial >= self.limits.max_line || self.buf.len() > self.limits.max_bytes;
                self.dirty |= line_start || over;
            }
        }
    }

    /// The next complete reply, if the buffer holds one; `Ok(None)`: read more.
    pub fn next_reply(&mut self) -> Result<Option<Reply>, ReplyError> {
        if !self.dirty {
            return Ok(None);
        }
        match parse_reply(&self.buf, &self.limits)? {
            Some((reply, used)) => {
                self.buf.drain(..used);
                self.partial = match self.buf.iter().rposition(|&b| b == b'\n') {
                    Some(i) => self.buf.len() - i - 1,
                    None => self.buf.len(),
                };
                // Another reply may already be here (a pipelining server).
                self.dirty = !self.buf.is_empty();
                Ok(Some(reply))
            }
            None => {
                self.dirty = false;
                Ok(None)
            }
        }
    }

    /// Whether no byte is waiting.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

/// Checks a line starting `pos` bytes into the reply: `rest` is what has arrived of it (and
/// after it), `nl` where it ends, if it has. Of the problems found (a bad start, a line over
/// `max_line`, a reply over `max_bytes`), the one named is the one whose byte came first, so
/// the verdict is the same whether the bytes arrive whole or in pieces of any size.
fn check_line(
    rest: &[u8],
    nl: Option<usize>,
    pos: usize,
    limits: &ReplyLimits,
) -> Result<(), ReplyError> {
    let content = nl.unwrap_or(rest.len());
    let arrived = nl.map_or(rest.len(), |n| n + 1);
    // (the byte count of the reply at which the problem shows, the problem); the first wins,
    // and on a tie the one listed first.
    let mut first: Option<(usize, ReplyError)> = None;
    let mut note = |at: usize, problem: ReplyError| {
        if first.as_ref().is_none_or(|(seen, _)| at < *seen) {
            first = Some((at, problem));
        }
    };
    // A bad start shows at its first bad byte (one of the first four).
    if let Some(bad) = bad_prefix_byte(&rest[..content]) {
        note(
            pos + bad + 1,
            ReplyError::Malformed(lossy(&rest[..content])),
        );
    }
    // Too long: `max_line` bytes and no line end among them.
    if content >= limits.max_line {
        note(
            pos + limits.max_line,
            ReplyError::LineTooLong(limits.max_line),
        );
    }
    if pos + arrived > limits.max_bytes {
        note(limits.max_bytes + 1, ReplyError::TooLarge(limits.max_bytes));
    }
    first.map_or(Ok(()), |(_, problem)| Err(problem))
}

/// Where the start of a line (code and separator, its first four bytes) goes wrong, if it
/// does: the index of the first byte that cannot begin a reply line.
fn bad_prefix_byte(line: &[u8]) -> Option<usize> {
    line.iter().take(4).enumerate().position(|(i, &b)| match i {
        0 => !(b'2'..=b'5').contains(&b),
        1 | 2 => !b.is_ascii_digit(),
        _ => !(b == b' ' || b == b'-' || b == b'\r'),
    })
}

/// Splits `250-text` into (250, false, "text"); `250 text` or `250` ends the reply.
fn parse_line(line: &[u8]) -> Result<(u16, bool, String), ReplyError> {
    let malformed = || ReplyError::Malformed(lossy(line));
    if line.len() < 3
        || !line[..3].iter().all(u8::is_ascii_digit)
        || !(b'2'..=b'5').contains(&line[0])
    {
        return Err(malformed());
    }
    let code = u16::from(line[0] - b'0') * 100
        + u16::from(line[1] - b'0') * 10
        + u16::from(line[2] - b'0');
    let (last, text) = match line.get(3) {
        None => (true, &line[3..3]),
        Some(b' ') => (true, &line[4..]),
        Some(b'-') => (false, &line[4..]),
        Some(_) => return Err(malformed()),
    };
    if text.contains(&0) {
        return Err(malformed());
    }
    Ok((code, last, String::from_utf8_lossy(text).into_owned()))
}

fn lossy(bytes: &[u8]) -> String {
    let shown = &bytes[..bytes.len().min(80)];
    String::from_utf8_lossy(shown).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Option<(Reply, usize)>, ReplyError> {
        parse_reply(s.as_bytes(), &ReplyLimits::default())
    }

    #[test]
    fn single_line() {
        let (r, used) = parse("220 mail.example ESMTP Postfix\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(r.code, 220);
        assert_eq!(r.lines, vec!["mail.example ESMTP Postfix"]);
        assert_eq!(used, 32);
        assert!(r.is_positive());
        assert_eq!(r.enhanced, None);
    }

    #[test]
    fn multiline_with_trailing_data() {
        let input = "250-mail.example\r\n250-PIPELINING\r\n250 STARTTLS\r\n221 next";
        let (r, used) = parse(input).unwrap().unwrap();
        assert_eq!(r.code, 250);
        assert_eq!(r.lines, vec!["mail.example", "PIPELINING", "STARTTLS"]);
        assert_eq!(&input[used..], "221 next");
    }

    #[test]
    fn multiline_greeting_and_bare_code() {
        let (r, _) = parse("220-first\r\n220-second\r\n220\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(r.lines, vec!["first", "second", ""]);
        assert_eq!(r.text(), "first second");
    }

    #[test]
    fn enhanced_code_is_read_and_stripped() {
        let (r, _) = parse("550 5.1.1 <nobody@example.com>: Recipient address rejected\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(
            r.enhanced,
            Some(EnhancedCode {
                class: 5,
                subject: 1,
                detail: 1
            })
        );
        assert_eq!(r.enhanced.unwrap().to_string(), "5.1.1");
        assert_eq!(
            r.first_line(),
            "<nobody@example.com>: Recipient address rejected"
        );
        assert_eq!(r.severity(), Severity::PermanentNegative);
    }

    #[test]
    fn enhanced_code_class_must_match() {
        let (r, _) = parse("250 5.1.1 odd\r\n").unwrap().unwrap();
        assert_eq!(r.enhanced, None);
        assert_eq!(
            EnhancedCode::parse_prefix("2.0.0"),
            Some(EnhancedCode {
                class: 2,
                subject: 0,
                detail: 0
            })
        );
        assert_eq!(
            EnhancedCode::parse_prefix("5.7.139 Authentication unsuccessful").map(|e| e.detail),
            Some(139)
        );
        assert_eq!(EnhancedCode::parse_prefix("3.1.1"), None);
        assert_eq!(EnhancedCode::parse_prefix("5.1"), None);
        assert_eq!(EnhancedCode::parse_prefix("5.1.1.1"), None);
        assert_eq!(EnhancedCode::parse_prefix("5.1234.1"), None);
        assert_eq!(EnhancedCode::parse_prefix("Ok"), None);
    }

    #[test]
    fn incomplete_replies_ask_for_more() {
        assert_eq!(parse("").unwrap(), None);
        assert_eq!(parse("2").unwrap(), None);
        assert_eq!(parse("250-mail.example\r\n250-PIPE").unwrap(), None);
        assert_eq!(parse("250 ok\r").unwrap(), None);
    }

    #[test]
    fn bare_lf_is_accepted() {
        let (r, used) = parse("250 ok\n").unwrap().unwrap();
        assert_eq!((r.code, used), (250, 7));
    }

    #[test]
    fn invalid_replies() {
        assert!(matches!(
            parse("HTTP/1.1 400 Bad Request\r\n"),
            Err(ReplyError::Malformed(_))
        ));
        assert!(
            matches!(parse("HTTP"), Err(ReplyError::Malformed(_))),
            "garbage is caught before the line ends"
        );
        assert!(matches!(parse("25x ok\r\n"), Err(ReplyError::Malformed(_))));
        assert!(matches!(parse("250_ok\r\n"), Err(ReplyError::Malformed(_))));
        assert!(matches!(
            parse("199 too low\r\n"),
            Err(ReplyError::Malformed(_))
        ));
        assert!(matches!(
            parse("600 too high\r\n"),
            Err(ReplyError::Malformed(_))
        ));
        assert!(matches!(parse("25\r\n"), Err(ReplyError::Malformed(_))));
        assert!(matches!(
            parse("250 nul\0inside\r\n"),
            Err(ReplyError::Malformed(_))
        ));
        assert_eq!(
            parse("250-a\r\n550 b\r\n"),
            Err(ReplyError::MixedCodes {
                first: 250,
                other: 550
            })
        );
    }

    #[test]
    fn overlong_line_fails_before_it_ends() {
        let limits = ReplyLimits {
            max_line: 64,
            max_lines: 4,
            max_bytes: 200,
        };
        let long = format!("250 {}", "x".repeat(100));
        assert_eq!(
            parse_reply(long.as_bytes(), &limits),
            Err(ReplyError::LineTooLong(64))
        );
        let long_done = format!("250 {}\r\n", "x".repeat(100));
        assert_eq!(
            parse_reply(long_done.as_bytes(), &limits),
            Err(ReplyError::LineTooLong(64))
        );
    }

    #[test]
    fn too_many_lines_and_bytes() {
        let limits = ReplyLimits {
            max_line: 64,
            max_lines: 4,
            max_bytes: 60,
        };
        let many = "250-a\r\n".repeat(5) + "250 z\r\n";
        assert_eq!(
            parse_reply(many.as_bytes(), &limits),
            Err(ReplyError::TooManyLines(4))
        );
        let big = format!("250-{}\r\n250-{}\r\n", "y".repeat(30), "y".repeat(30));
        assert_eq!(
            parse_reply(big.as_bytes(), &limits),
            Err(ReplyError::TooLarge(60))
        );
    }

    #[test]
    fn reply_buffer_in_any_split() {
        let input = b"250-mail.example\r\n250-PIPELINING\r\n250 STARTTLS\r\n221 bye\r\n";
        for step in [1, 2, 3, 5, 7, 64] {
            let mut rb = ReplyBuffer::new(ReplyLimits::default());
            let mut replies = Vec::new();
            for piece in input.chunks(step) {
                rb.extend(piece);
                while let Some(r) = rb.next_reply().unwrap() {
                    replies.push(r.code);
                }
            }
            assert_eq!(replies, vec![250, 221], "step {step}");
            assert!(rb.is_empty());
        }
    }

    #[test]
    fn reply_buffer_catches_garbage_and_overlong_lines_while_dripping() {
        let mut rb = ReplyBuffer::new(ReplyLimits::default());
        rb.extend(b"H");
        assert!(matches!(rb.next_reply(), Err(ReplyError::Malformed(_))));
        let mut rb = ReplyBuffer::new(ReplyLimits::default());
        rb.extend(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03");
        assert!(
            matches!(rb.next_reply(), Err(ReplyError::Malformed(_))),
            "a TLS record in one read"
        );
        let mut rb = ReplyBuffer::new(ReplyLimits::default());
        rb.extend(b"220-ok\r\n2");
        assert_eq!(rb.next_reply(), Ok(None));
        rb.extend(b"2x and more");
        assert!(
            matches!(rb.next_reply(), Err(ReplyError::Malformed(_))),
            "garbage in the second line"
        );

        let limits = ReplyLimits {
            max_line: 64,
            max_lines: 4,
            max_bytes: 200,
        };
        let mut rb = ReplyBuffer::new(limits);
        let mut outcome = Ok(None);
        for _ in 0..100 {
            rb.extend(b"x");
            outcome = rb.next_reply();
            if outcome.is_err() {
                break;
            }
        }
        assert!(
            matches!(outcome, Err(ReplyError::Malformed(_))),
            "x is not a digit: {outcome:?}"
        );

        let mut rb = ReplyBuffer::new(limits);
        rb.extend(b"250 ");
        let mut outcome = Ok(None);
        for _ in 0..100 {
            rb.extend(b"y");
            outcome = rb.next_reply();
            if outcome.is_err() {
                break;
            }
        }
        assert_eq!(outcome, Err(ReplyError::LineTooLong(64)));
    }

    /// Found by fuzzing: a long line that starts badly was `LineTooLong` when it arrived whole
    /// and `Malformed` when its first bytes arrived alone. The bad start is named either way.
    #[test]
    fn a_bad_start_is_named_whether_the_line_comes_whole_or_in_pieces() {
        let limits = ReplyLimits {
            max_line: 64,
            max_lines: 8,
            max_bytes: 256,
        };
        let line = format!("7535 5.7.1{}\r\n", "x".repeat(100));
        let whole = parse_reply(line.as_bytes(), &limits);
        assert!(matches!(whole, Err(ReplyError::Malformed(_))), "{whole:?}");
        let partial = parse_reply(&line.as_bytes()[..80], &limits);
        assert!(
            matches!(partial, Err(ReplyError::Malformed(_))),
            "{partial:?}"
        );
        let mut rb = ReplyBuffer::new(limits);
        rb.extend(&line.as_bytes()[..2]);
        assert!(matches!(rb.next_reply(), Err(ReplyError::Malformed(_))));
    }

    /// Found by fuzzing: a long last line past the reply's byte limit was `LineTooLong` when it
    /// arrived whole and `TooLarge` when it came in small pieces. The limit whose byte came
    /// first is named either way.
    #[test]
    fn the_limit_crossed_first_is_named_whole_or_in_pieces() {
        let limits = ReplyLimits {
            max_line: 64,
            max_lines: 8,
            max_bytes: 256,
        };
        let verdicts = |reply: &str| {
            let whole = parse_reply(reply.as_bytes(), &limits).map(|r| r.map(|(r, _)| r));
            let pieces: Vec<_> = [1, 6, 16]
                .iter()
                .map(|&size| {
                    let mut rb = ReplyBuffer::new(limits);
                    for piece in reply.as_bytes().chunks(size) {
                        rb.extend(piece);
                        match rb.next_reply() {
                            Ok(None) => continue,
                            other => return other,
                        }
                    }
                    Ok(None)
                })
                .collect();
            (whole, pieces)
        };
        let line = |n: usize| format!("250-{}\r\n", "x".repeat(n));
        // 248 bytes, then a line of 86: the 257th byte comes before the line's 64th.
        let late = format!("{}{}", line(56).repeat(4), line(80));
        let (whole, pieces) = verdicts(&late);
        assert_eq!(whole, Err(ReplyError::TooLarge(256)));
        assert!(
            pieces.iter().all(|p| *p == Err(ReplyError::TooLarge(256))),
            "{pieces:?}"
        );
        // 124 bytes, then a line of 106: its 64th byte comes first.
        let early = format!("{}{}", line(56).repeat(2), line(100));
        let (whole, pieces) = verdicts(&early);
        assert_eq!(whole, Err(ReplyError::LineTooLong(64)));
        assert!(
            pieces
                .iter()
                .all(|p| *p == Err(ReplyError::LineTooLong(64))),
            "{pieces:?}"
        );
    }

    #[test]
    fn display_is_the_wire_form() {
        let (r, _) = parse("250-a\r\n250 b\r\n").unwrap().unwrap();
        assert_eq!(r.to_string(), "250-a\r\n250 b");
    }
}
