//! Log lines in logfmt: `ts=2026-05-09T13:00:00.123Z level=info target=smtp_prober::cli::serve
//! message=listening address=127.0.0.1:9741`. A value is written bare when it is one word, else
//! in double quotes with the escapes logfmt readers understand (go-logfmt's, which Loki,
//! Grafana and `hl` follow): `\"`, `\\`, `\n`, `\r`, `\t` and `\u00XX` for the other control
//! characters. A quote `'` stays as it is; logfmt has no `\'` (which tracing-logfmt writes, so
//! a reader shows a stray backslash).

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
use tracing_subscriber::fmt::FmtContext;
use tracing_subscriber::registry::LookupSpan;

/// The event formatter of `--log.format=logfmt`.
pub(crate) struct Logfmt;

impl<S, N> FormatEvent<S, N> for Logfmt
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut line = String::with_capacity(160);
        pair(
            &mut line,
            "ts",
            &crate::clock::rfc3339_millis(std::time::SystemTime::now()),
        );
        pair(
            &mut line,
            "level",
            &meta.level().as_str().to_ascii_lowercase(),
        );
        pair(&mut line, "target", meta.target());
        event.record(&mut Fields(&mut line));
        writeln!(writer, "{line}")
    }
}

/// Writes each field of an event as a pair.
struct Fields<'a>(&'a mut String);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        pair(self.0, field.name(), value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        pair(self.0, field.name(), &format!("{value:?}"));
    }
}

/// Appends ` key=value` (no space before the first pair).
fn pair(line: &mut String, key: &str, value: &str) {
    if !line.is_empty() {
        line.push(' ');
    }
    // Keys are our own field names; keep them to what needs no quoting anyway.
    line.extend(key.chars().filter(|c| !needs_quotes(*c)));
    line.push('=');
    quote(line, value);
}

/// Whether a character forces a value into quotes: space and control characters, `=` and `"`
/// (so that a value stays one word, and a line one line).
fn needs_quotes(c: char) -> bool {
    c <= ' ' || c == '=' || c == '"' || c == '\u{7f}'
}

/// Appends `value`, bare or quoted and escaped.
fn quote(line: &mut String, value: &str) {
    if !value.is_empty() && !value.chars().any(needs_quotes) {
        line.push_str(value);
        return;
    }
    line.push('"');
    for c in value.chars() {
        match c {
            '"' => line.push_str("\\\""),
            '\\' => line.push_str("\\\\"),
            '\n' => line.push_str("\\n"),
            '\r' => line.push_str("\\r"),
            '\t' => line.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(line, "\\u{:04x}", u32::from(c));
            }
            c => line.push(c),
        }
    }
    line.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quoted(value: &str) -> String {
        let mut line = String::new();
        quote(&mut line, value);
        line
    }

    #[test]
    fn values_are_escaped_as_logfmt_readers_expect() {
        assert_eq!(quoted("listening"), "listening");
        assert_eq!(quoted(""), "\"\"");
        // Before: tracing-logfmt wrote "the server's reply" as "the server\'s reply".
        assert_eq!(quoted("the server's reply"), "\"the server's reply\"");
        assert_eq!(quoted("a \"b\" c\\d"), r#""a \"b\" c\\d""#);
        assert_eq!(quoted("two\nlines\ttab"), r#""two\nlines\ttab""#);
        assert_eq!(quoted("esc\u{1b}[2J"), r#""esc\u001b[2J""#);
        assert_eq!(quoted("k=v"), r#""k=v""#);
        assert_eq!(quoted("grüße"), "grüße");
    }

    #[test]
    fn a_line_has_the_pairs_in_order() {
        let mut line = String::new();
        pair(&mut line, "level", "warn");
        pair(&mut line, "message", "reload failed: it's broken");
        assert_eq!(line, r#"level=warn message="reload failed: it's broken""#);
    }
}
