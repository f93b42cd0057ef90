//! Server text as we show it: every byte a server (or a certificate it sent) chose, before it
//! reaches a terminal, a log line, a JSON document, a web page or a metric label, goes through
//! [`printable`]. Invalid UTF-8 is replaced, control and other non-printing characters are
//! escaped (`\n`, `\u{1b}`, `\u{202e}`), and the result is bounded, so a reply text or a
//! certificate subject can neither draw a fake line on the reader's terminal nor fill a page.

/// At most this many bytes of one server text are shown ([`shown`]).
pub const SHOWN_BYTES: usize = 1024;

/// Server text as it may be shown anywhere: invalid UTF-8 replaced, control and other
/// non-printing characters escaped (`\r`, `\n`, `\u{1b}`), a trailing CRLF dropped, and at most
/// `max` bytes of the result (cut on a character, then `…` and the length of the original).
pub fn printable(text: &[u8], max: usize) -> String {
    printable_cut(text, text.len(), max)
}

/// [`printable`] with the bound of [`SHOWN_BYTES`], for text already in a `str`. Text that needs
/// no change is returned as it is.
pub fn shown(text: &str) -> String {
    if text.len() <= SHOWN_BYTES && !text.chars().any(needs_escape) {
        return text.to_owned();
    }
    printable(text.as_bytes(), SHOWN_BYTES)
}

/// Whether `c` would be escaped.
fn needs_escape(c: char) -> bool {
    !matches!(c, '"' | '\'' | '\\') && c.escape_debug().len() > 1
}

/// [`printable`] of `text`, the beginning of something `full` bytes long.
pub(crate) fn printable_cut(text: &[u8], full: usize, max: usize) -> String {
    let whole = text.len() >= full;
    let text = text.strip_suffix(b"\r\n").unwrap_or(text);
    // Escaping never shrinks text: no need to look at more than `max` bytes of it.
    let mut cut = !whole || text.len() > max;
    let text = String::from_utf8_lossy(&text[..text.len().min(max)]);
    let mut out = String::with_capacity(max.min(text.len() * 2) + 24);
    for c in text.chars() {
        let before = out.len();
        if needs_escape(c) {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
        if out.len() > max {
            out.truncate(before);
            cut = true;
            break;
        }
    }
    if cut {
        out.push_str(&format!("… ({full} bytes)"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_escapes_and_bounds() {
        assert_eq!(
            printable(b"A1 NO [AUTHENTICATIONFAILED] no\r\n", 200),
            "A1 NO [AUTHENTICATIONFAILED] no"
        );
        assert_eq!(
            printable(b"CN=x\n\x1b[2J\x1b[31mFAKE: verdict: SUCCESS", 200),
            "CN=x\\n\\u{1b}[2J\\u{1b}[31mFAKE: verdict: SUCCESS"
        );
        assert_eq!(printable(b"tab\there \"q\" \\", 200), "tab\\there \"q\" \\");
        assert_eq!(printable("\u{202e}evil".as_bytes(), 200), "\\u{202e}evil");
        assert_eq!(printable(b"\xff\xfeok", 200), "\u{fffd}\u{fffd}ok");
        assert_eq!(printable_cut(b"abc", 5000, 200), "abc… (5000 bytes)");
        assert_eq!(printable_cut(b"abc\r\n", 5, 200), "abc");
        let long = vec![b'a'; 10_000];
        let shown = printable(&long, 200);
        assert_eq!(shown, format!("{}… (10000 bytes)", "a".repeat(200)));
        // Escaping lengthens text; the bound is on what is shown.
        let nasty = vec![0x1bu8; 10_000];
        let shown = printable(&nasty, 200);
        assert_eq!(shown, format!("{}… (10000 bytes)", "\\u{1b}".repeat(33)));
        assert_eq!(printable(b"\x07\x07", 7), "\\u{7}… (2 bytes)");
    }

    #[test]
    fn shown_keeps_plain_text_and_bounds_the_rest() {
        assert_eq!(
            shown("250 2.0.0 Ok: queued as 4Zx"),
            "250 2.0.0 Ok: queued as 4Zx"
        );
        assert_eq!(shown("O=Example\\, Inc."), "O=Example\\, Inc.");
        assert_eq!(shown("é ü 日本"), "é ü 日本");
        assert_eq!(
            shown("localhost\n\x1b[2J\x1b[31mFAKE: verdict: SUCCESS"),
            "localhost\\n\\u{1b}[2J\\u{1b}[31mFAKE: verdict: SUCCESS"
        );
        let long = "x".repeat(100_000);
        let s = shown(&long);
        assert!(s.len() < SHOWN_BYTES + 32, "{}", s.len());
        assert!(s.ends_with("… (100000 bytes)"));
    }
}
