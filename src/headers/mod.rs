//! The header fields of a delivered mail that tell where it went and what the receiving side
//! thought of it: the `Received:` trace (RFC 5321 §4.4) with its dates (RFC 5322 §3.3, and the
//! variants real servers write), and `Authentication-Results:` (RFC 8601). Plain data in, plain
//! data out: no I/O, nothing about IMAP or Prometheus.
//!
//! The input is what a mail server sent us: every parser here takes bounded text (the delivery
//! check keeps at most [`MAX_FIELDS`] fields of [`MAX_FIELD_TEXT`] bytes each), never panics,
//! and keeps only short, printable pieces of it (label values are cut and restricted further).

pub mod auth_results;
pub mod date;
pub mod received;

/// The most fields of one name kept from a header block.
pub const MAX_FIELDS: usize = 32;
/// The most bytes of one field's value kept (unfolded).
pub const MAX_FIELD_TEXT: usize = 1024;

/// The values of every header `name` (case-insensitive) in a header block, continuation lines
/// joined (RFC 5322 §2.2.3), in the order they appear (for trace fields: newest first).
pub fn unfold(raw: &[u8], name: &str) -> Vec<String> {
    let text = String::from_utf8_lossy(raw);
    let mut out: Vec<String> = Vec::new();
    let mut current: Option<String> = None;
    for line in text.split('\n') {
        let line = line.trim_end_matches('\r');
        if line.starts_with([' ', '\t']) {
            if let Some(c) = current.as_mut() {
                c.push(' ');
                c.push_str(line.trim());
            }
            continue;
        }
        if let Some(c) = current.take() {
            out.push(c);
        }
        if let Some((field, value)) = line.split_once(':') {
            if field.trim().eq_ignore_ascii_case(name) {
                current = Some(value.trim().to_string());
            }
        }
    }
    out.extend(current);
    out
}

/// `text` without its comments (RFC 5322 §3.2.2: parenthesised, nestable, `\` quotes the next
/// character), each replaced by a space. An unclosed comment runs to the end.
pub(crate) fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut depth = 0usize;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' if depth > 0 => {
                chars.next();
            }
            '(' => {
                if depth == 0 {
                    out.push(' ');
                }
                depth += 1;
            }
            ')' if depth > 0 => depth -= 1,
            c if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

/// Splits `text` at every `sep` outside comments and quoted strings.
pub(crate) fn split_outside(text: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut quoted = false;
    let mut escaped = false;
    let mut start = 0;
    for (i, c) in text.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if quoted || depth > 0 => escaped = true,
            '"' if depth == 0 => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted && depth > 0 => depth -= 1,
            c if c == sep && depth == 0 && !quoted => {
                parts.push(&text[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

/// A short token fit for a label value or a transcript column: the characters a host name,
/// an address literal or a protocol keyword use, lowercased, at most `max` of them; `None` when
/// nothing is left.
pub(crate) fn token(text: &str, max: usize) -> Option<String> {
    let t: String = text
        .trim_matches(|c: char| c == '<' || c == '>' || c == ',' || c == ';')
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || ".-_:[]@+/".contains(*c))
        .take(max)
        .collect::<String>()
        .to_ascii_lowercase();
    (!t.is_empty()).then_some(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unfolds_fields_by_name() {
        let raw = b"Received: from mx1 (mx1 [127.0.0.1])\r\n\tby mx2 with ESMTPS id 1;\r\n Sun, 22 Nov 2026 08:00:00 +0000\r\nSubject: x\r\nreceived: by mx1; Sun, 22 Nov 2026 07:59:59 +0000\r\n\r\n";
        assert_eq!(
            unfold(raw, "Received"),
            vec![
                "from mx1 (mx1 [127.0.0.1]) by mx2 with ESMTPS id 1; Sun, 22 Nov 2026 08:00:00 +0000".to_string(),
                "by mx1; Sun, 22 Nov 2026 07:59:59 +0000".to_string(),
            ]
        );
        assert!(unfold(b"", "received").is_empty());
        // A continuation before any field, and a line without a colon, are ignored.
        assert_eq!(unfold(b" stray\r\nnonsense\r\nX: 1\r\n", "x"), vec!["1"]);
    }

    #[test]
    fn comments_are_stripped_and_nest() {
        assert_eq!(strip_comments("a (b (c) d) e"), "a   e");
        assert_eq!(strip_comments(r"a (b \) c) d"), "a   d");
        assert_eq!(strip_comments("a (unclosed"), "a  ");
        assert_eq!(strip_comments("a ) b"), "a ) b");
    }

    #[test]
    fn splits_outside_comments_and_quotes() {
        assert_eq!(
            split_outside(r#"a; b (x; y); "c;d"; e"#, ';'),
            vec!["a", " b (x; y)", r#" "c;d""#, " e"]
        );
        assert_eq!(split_outside("", ';'), vec![""]);
    }

    #[test]
    fn tokens_are_short_and_plain() {
        assert_eq!(
            token("MX1.Example.NET", 64).as_deref(),
            Some("mx1.example.net")
        );
        assert_eq!(token("<a@b>;", 64).as_deref(), Some("a@b"));
        assert_eq!(token("ab\"c{d}\u{7f}é", 64).as_deref(), Some("abcd"));
        assert_eq!(token("abcdef", 3).as_deref(), Some("abc"));
        assert_eq!(token("\"{}\"", 64), None);
    }
}
