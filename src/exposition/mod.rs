//! Pre-rendered Prometheus text exposition, merged per metric name.
//!
//! Scheduled mode serves the latest result of every target on `/metrics`. Encoding 10,000
//! targets' families on every scrape would cost far more than the "tens of milliseconds" budget
//! (DESIGN §10), so each target's families are rendered to text once, when its result arrives,
//! and kept as a [`Chunk`]: the sample lines, grouped by family. A scrape only concatenates.
//!
//! The text format wants every family's samples together under one `# HELP`/`# TYPE` header,
//! while each target holds samples of many families: [`merge`] regroups the chunks by family,
//! and the header of each family is kept once, in a process-wide table, not once per target.
//!
//! Histograms and counters of scheduled mode change with every result and would cost more
//! memory as text than as numbers, so they are written on the fly by [`write_histogram`] and
//! [`write_sample`], which do no more than a formatted copy. Everything is written into a
//! [`Sink`], which may be a `String` or the pieces of a streamed response.

pub(crate) mod scheduled;

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use prometheus::proto::MetricFamily;
use prometheus::Encoder as _;

/// Renders families in the Prometheus text exposition format.
pub fn render_text(families: &[MetricFamily]) -> String {
    let mut out = Vec::with_capacity(4096);
    // Encoding into a Vec cannot fail for I/O reasons; a malformed family would be our bug.
    if let Err(e) = prometheus::TextEncoder::new().encode(families, &mut out) {
        tracing::error!(error = %e, "encoding metrics");
    }
    String::from_utf8(out).unwrap_or_default()
}

/// Family headers (`# HELP` and `# TYPE` lines) by family id, in the order families were
/// first seen; the ids index [`Chunk`] parts.
#[derive(Default)]
struct Headers {
    ids: HashMap<String, u16>,
    text: Vec<String>,
}

/// The process-wide header table. Family names are a small, fixed set (the metric names of the
/// probe and of the scheduler), so the table stays small.
fn headers() -> &'static Mutex<Headers> {
    static HEADERS: OnceLock<Mutex<Headers>> = OnceLock::new();
    HEADERS.get_or_init(Mutex::default)
}

/// The samples of some metric families as text, without their headers.
#[derive(Clone, Debug, Default)]
pub struct Chunk {
    /// Sample lines, each ending in `\n`, family after family.
    text: String,
    /// `(family id, start, end)`: the byte range of each family's samples in `text`.
    parts: Vec<(u16, u32, u32)>,
}

impl Chunk {
    /// Renders `families` once.
    pub fn from_families(families: &[MetricFamily]) -> Chunk {
        Chunk::from_text(&render_text(families))
    }

    /// Splits text in the exposition format into headers (kept in the shared table) and
    /// samples. Label values and help texts escape line breaks, so every line is one record.
    fn from_text(rendered: &str) -> Chunk {
        let mut chunk = Chunk {
            text: String::with_capacity(rendered.len()),
            parts: Vec::new(),
        };
        let mut table = match headers().lock() {
            Ok(table) => table,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut help: Option<&str> = None;
        let mut current: Option<(u16, usize)> = None;
        for line in rendered.lines() {
            if line.starts_with("# HELP ") {
                help = Some(line);
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                chunk.close(current.take());
                let name = rest.split(' ').next().unwrap_or_default();
                let id = match table.ids.get(name) {
                    Some(&id) => id,
                    None => {
                        let id = u16::try_from(table.text.len()).unwrap_or(u16::MAX);
                        let mut header = String::new();
                        if let Some(h) = help {
                            header.push_str(h);
                            header.push('\n');
                        }
                        header.push_str(line);
                        header.push('\n');
                        table.ids.insert(name.to_string(), id);
                        table.text.push(header);
                        id
                    }
                };
                help = None;
                current = Some((id, chunk.text.len()));
            } else if !line.is_empty() && !line.starts_with('#') {
                chunk.text.push_str(line);
                chunk.text.push('\n');
            }
        }
        chunk.close(current);
        // Merge walks every chunk in family-id order.
        chunk.parts.sort_unstable_by_key(|&(id, _, _)| id);
        chunk
    }

    fn close(&mut self, family: Option<(u16, usize)>) {
        if let Some((id, start)) = family {
            let end = self.text.len();
            if end > start {
                // A chunk is one target's samples: far below 4 GiB.
                self.parts.push((id, start as u32, end as u32));
            }
        }
    }

    /// The size of the samples, in bytes.
    pub fn len(&self) -> usize {
        self.text.len()
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }
}

/// Where exposition text goes.
pub trait Sink {
    /// Appends text.
    fn put(&mut self, text: &str);
}

impl Sink for String {
    fn put(&mut self, text: &str) {
        self.push_str(text);
    }
}

/// Writes the chunks as one exposition: every family once, its samples from all chunks in
/// chunk order.
pub fn merge(chunks: &[&Chunk], out: &mut impl Sink) {
    let headers: Vec<String> = match headers().lock() {
        Ok(table) => table.text.clone(),
        Err(poisoned) => poisoned.into_inner().text.clone(),
    };
    // Each chunk's parts are sorted by family id: one cursor per chunk, one pass per family.
    let mut cursors = vec![0usize; chunks.len()];
    for (id, header) in headers.iter().enumerate() {
        let id = u16::try_from(id).unwrap_or(u16::MAX);
        let mut wrote_header = false;
        for (chunk, cursor) in chunks.iter().zip(cursors.iter_mut()) {
            while let Some(&(part_id, start, end)) = chunk.parts.get(*cursor) {
                if part_id > id {
                    break;
                }
                *cursor += 1;
                if part_id < id {
                    continue;
                }
                if !wrote_header {
                    out.put(header);
                    wrote_header = true;
                }
                out.put(&chunk.text[start as usize..end as usize]);
            }
        }
    }
}

/// The metric types written by hand.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A counter.
    Counter,
    /// A gauge.
    Gauge,
    /// A histogram.
    Histogram,
}

/// Writes a family's `# HELP` and `# TYPE` lines. `help` must be a single line.
pub fn write_header(out: &mut impl Sink, name: &str, help: &str, kind: Kind) {
    let kind = match kind {
        Kind::Counter => "counter",
        Kind::Gauge => "gauge",
        Kind::Histogram => "histogram",
    };
    out.put(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
}

/// Escapes a label value for the text format: backslash, double quote and line feed.
pub fn escape_label_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Writes one sample. `labels` are rendered pairs without braces (`a="1",b="2"`), may be empty.
pub fn write_sample(out: &mut String, name: &str, labels: &str, value: impl std::fmt::Display) {
    use std::fmt::Write as _;
    if labels.is_empty() {
        let _ = writeln!(out, "{name} {value}");
    } else {
        let _ = writeln!(out, "{name}{{{labels}}} {value}");
    }
}

/// Writes one histogram series: `le` holds each bound's label value, `counts` the observations
/// per bucket (not cumulative), `above` those above the last bound.
///
/// At 10,000 targets this writes most of the `/metrics` lines, so it appends pieces instead of
/// going through the formatting machinery.
pub fn write_histogram(
    out: &mut String,
    name: &str,
    labels: &str,
    le: &[&str],
    counts: &[u64],
    above: u64,
    sum: f64,
) {
    let mut cumulative = 0u64;
    let bucket = |out: &mut String, bound: &str, value: u64| {
        out.push_str(name);
        out.push_str("_bucket{");
        out.push_str(labels);
        out.push_str(",le=\"");
        out.push_str(bound);
        out.push_str("\"} ");
        push_u64(out, value);
        out.push('\n');
    };
    for (bound, count) in le.iter().zip(counts) {
        cumulative += count;
        bucket(out, bound, cumulative);
    }
    let total = cumulative + above;
    bucket(out, "+Inf", total);
    use std::fmt::Write as _;
    let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
    let _ = writeln!(out, "{name}_count{{{labels}}} {total}");
}

/// Appends the decimal digits of `n`.
fn push_u64(out: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &d in &digits[at..] {
        out.push(char::from(d));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::metrics::Families;

    fn chunk(target: &str, success: f64) -> Chunk {
        let mut f = Families::with_labels(&[("name", target)]);
        f.gauge("test_exposition_success", "Success.", &[], success);
        f.gauge(
            "test_exposition_step_seconds",
            "Steps.",
            &[("step", "ehlo")],
            0.5,
        );
        Chunk::from_families(&f.finish())
    }

    #[test]
    fn merges_families_across_chunks() {
        let a = chunk("a", 1.0);
        let b = chunk("b\"q", 0.0);
        let mut out = String::new();
        merge(&[&a, &b], &mut out);
        assert_eq!(
            out,
            "# HELP test_exposition_success Success.\n\
             # TYPE test_exposition_success gauge\n\
             test_exposition_success{name=\"a\"} 1\n\
             test_exposition_success{name=\"b\\\"q\"} 0\n\
             # HELP test_exposition_step_seconds Steps.\n\
             # TYPE test_exposition_step_seconds gauge\n\
             test_exposition_step_seconds{name=\"a\",step=\"ehlo\"} 0.5\n\
             test_exposition_step_seconds{name=\"b\\\"q\",step=\"ehlo\"} 0.5\n"
        );
    }

    #[test]
    fn merge_regroups_families_first_seen_out_of_order() {
        // `late` gets its id after `test_exposition_mid`, but comes first in `b`.
        let mut f = Families::default();
        f.gauge("test_exposition_mid", "Mid.", &[("t", "a")], 1.0);
        let a = Chunk::from_families(&f.finish());
        let mut f = Families::default();
        f.gauge("test_exposition_late", "Late.", &[("t", "b")], 2.0);
        f.gauge("test_exposition_mid", "Mid.", &[("t", "b")], 3.0);
        let b = Chunk::from_families(&f.finish());
        let mut out = String::new();
        merge(&[&a, &b], &mut out);
        assert_eq!(
            out,
            "# HELP test_exposition_mid Mid.\n# TYPE test_exposition_mid gauge\n\
             test_exposition_mid{t=\"a\"} 1\ntest_exposition_mid{t=\"b\"} 3\n\
             # HELP test_exposition_late Late.\n# TYPE test_exposition_late gauge\n\
             test_exposition_late{t=\"b\"} 2\n"
        );
    }

    #[test]
    fn histogram_lines() {
        let mut out = String::new();
        let labels = format!(
            "name=\"{}\",step=\"ehlo\"",
            escape_label_value("a\"b\\c\nd")
        );
        write_histogram(&mut out, "h", &labels, &["0.1", "1"], &[2, 0], 1, 2.5);
        assert_eq!(
            out,
            "h_bucket{name=\"a\\\"b\\\\c\\nd\",step=\"ehlo\",le=\"0.1\"} 2\n\
             h_bucket{name=\"a\\\"b\\\\c\\nd\",step=\"ehlo\",le=\"1\"} 2\n\
             h_bucket{name=\"a\\\"b\\\\c\\nd\",step=\"ehlo\",le=\"+Inf\"} 3\n\
             h_sum{name=\"a\\\"b\\\\c\\nd\",step=\"ehlo\"} 2.5\n\
             h_count{name=\"a\\\"b\\\\c\\nd\",step=\"ehlo\"} 3\n"
        );
        let mut out = String::new();
        write_sample(&mut out, "c_total", "", 3);
        assert_eq!(out, "c_total 3\n");
        for n in [0, 7, 10, 1234567890, u64::MAX] {
            let mut out = String::new();
            push_u64(&mut out, n);
            assert_eq!(out, n.to_string());
        }
    }

    #[test]
    fn empty_merge_writes_nothing() {
        let mut out = String::new();
        merge(&[], &mut out);
        assert_eq!(out, "");
        assert!(Chunk::default().is_empty());
    }
}
