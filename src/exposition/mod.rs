//! The Prometheus text exposition format (0.0.4), written directly: every family, sample and
//! label value of `/probe` and `/metrics` goes through here, so escaping and number formatting
//! are done once, the same way everywhere.
//!
//! Scheduled mode serves the latest result of every target on `/metrics`. Encoding 10,000
//! targets' results on every scrape would cost far more than the "tens of milliseconds" budget
//! (DESIGN §10), so each target's samples are written once, when its result arrives, into a
//! [`Chunk`]: the sample lines, grouped by family. A scrape only concatenates.
//!
//! The text format wants every family's samples together under one `# HELP`/`# TYPE` header,
//! while each target holds samples of many families: [`merge`] regroups the chunks by family.
//! The families of a chunk come from one fixed table (for probe results,
//! [`crate::report::metrics`]), so the headers exist once, as constants, and the families keep
//! the table's order whatever order results arrive in.
//!
//! Histograms and counters of scheduled mode change with every result and would cost more
//! memory as text than as numbers: `scheduled` keeps them as numbers and writes them on every
//! scrape with `write_histogram` and `write_sample`, which do no more than a formatted copy.
//! Everything is written into a [`Sink`], which may be a `String` or the pieces of a streamed
//! response.

pub(crate) mod scheduled;

use std::fmt::Write as _;
use std::sync::Arc;

/// The labels every sample of a chunk starts with, rendered once: `{name="a",target="b"` (no
/// closing brace), or empty. A scheduled target renders its labels once and shares them with
/// each of its results' chunks, so that they are not stored once per sample.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeadingLabels(Arc<str>);

impl LeadingLabels {
    /// `labels`, escaped, as the start of a label set.
    pub(crate) fn new(labels: &[(&str, &str)]) -> LeadingLabels {
        if labels.is_empty() {
            return LeadingLabels::default();
        }
        let mut text = String::from("{");
        push_labels(&mut text, labels);
        LeadingLabels(text.into())
    }

    fn as_str(&self) -> &str {
        &self.0
    }
}

/// The samples of one result, as text without headers, grouped by family.
///
/// A sample is stored without what every sample of its family and chunk share: the family's
/// name and the leading labels. What is kept is the rest of the line: with leading labels,
/// `} 1` or `,step="ehlo"} 0.5`; without, ` 1` or `{step="ehlo"} 0.5`. [`merge`] puts the three
/// pieces back together. At 10,000 targets this keeps a target's latest result at a third of
/// its size as full lines.
///
/// Families whose samples many chunks have in common (those of a certificate chain, the same
/// for every target that presents it) can be written apart, into a [`Samples`] that all those
/// chunks share.
#[derive(Clone, Debug, Default)]
pub struct Chunk {
    /// The table the family indexes in `own` point into.
    families: &'static [Family],
    leading: LeadingLabels,
    /// This chunk's own samples.
    own: Samples,
    /// Samples shared with other chunks, of families `own` has none of.
    shared: Option<Arc<Samples>>,
}

/// Sample text of some families, without leading labels.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct Samples {
    /// The rest of each sample line, each ending in `\n`, family after family.
    text: Box<str>,
    /// `(family index, start, end)`: the byte range of each family's samples in `text`, in
    /// table order.
    parts: Box<[(u16, u32, u32)]>,
}

impl Chunk {
    /// The size of the stored samples, in bytes (the leading labels and shared samples are
    /// stored once for many chunks).
    pub fn len(&self) -> usize {
        self.own.text.len()
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.own.text.is_empty() && self.shared.as_ref().is_none_or(|s| s.text.is_empty())
    }

    /// How many samples it holds.
    pub fn samples(&self) -> usize {
        self.pieces()
            .map(|(text, _)| text.matches('\n').count())
            .sum()
    }

    /// The chunk's sample texts with their family ranges: its own, then the shared ones.
    fn pieces(&self) -> impl Iterator<Item = (&str, &[(u16, u32, u32)])> {
        std::iter::once(&self.own)
            .chain(self.shared.as_deref())
            .map(|s| (&*s.text, &*s.parts))
    }
}

/// Shared copies of [`Samples`] that many chunks have in common.
static SHARED: std::sync::LazyLock<crate::intern::Interner<Samples>> =
    std::sync::LazyLock::new(crate::intern::Interner::default);

/// Writes one result's samples into a [`Chunk`], every sample carrying the same leading labels
/// (in scheduled mode the target's `name`, `target`, `module` and own labels).
pub(crate) struct ChunkWriter {
    families: &'static [Family],
    leading: LeadingLabels,
    text: String,
    parts: Vec<(u16, u32, u32)>,
    /// The family being written and where its samples start.
    current: Option<(u16, usize)>,
    /// Samples shared with other chunks.
    shared: Option<Arc<Samples>>,
}

impl ChunkWriter {
    /// A writer for samples of `families`, each sample labelled `leading` first.
    pub(crate) fn new(families: &'static [Family], leading: LeadingLabels) -> ChunkWriter {
        ChunkWriter {
            families,
            leading,
            text: String::with_capacity(4096),
            parts: Vec::with_capacity(families.len()),
            current: None,
            shared: None,
        }
    }

    /// Adds one sample of `families[family]` with `labels` after the leading ones. A family's
    /// samples are written together; families may come in any order.
    pub(crate) fn sample(&mut self, family: usize, labels: &[(&str, &str)], value: f64) {
        let id = u16::try_from(family).unwrap_or(u16::MAX);
        if self.current.map(|(c, _)| c) != Some(id) {
            self.close();
            self.current = Some((id, self.text.len()));
        }
        let text = &mut self.text;
        match (self.leading.as_str().is_empty(), labels.is_empty()) {
            (true, true) => {}
            (true, false) => {
                text.push('{');
                push_labels(text, labels);
                text.push('}');
            }
            (false, true) => text.push('}'),
            (false, false) => {
                text.push(',');
                push_labels(text, labels);
                text.push('}');
            }
        }
        // The same number formatting as the client library's encoder: Rust's shortest
        // round-trip `Display`.
        let _ = writeln!(text, " {value}");
    }

    fn close(&mut self) {
        if let Some((id, start)) = self.current.take() {
            let end = self.text.len();
            if end > start {
                // A chunk is one target's samples: far below 4 GiB.
                self.parts.push((id, start as u32, end as u32));
            }
        }
    }

    /// The samples written, without spare capacity (they may be kept for a long time).
    fn take_samples(&mut self) -> Samples {
        self.close();
        if !self.parts.is_sorted_by_key(|&(id, _, _)| id) {
            // Merge walks every chunk in table order.
            self.parts.sort_by_key(|&(id, _, _)| id);
        }
        Samples {
            text: std::mem::take(&mut self.text).into_boxed_str(),
            parts: std::mem::take(&mut self.parts).into_boxed_slice(),
        }
    }

    /// A writer for samples that many chunks have in common, to be added to this one's chunk
    /// with [`ChunkWriter::share`]: same table, same leading labels.
    pub(crate) fn for_sharing(&self) -> ChunkWriter {
        ChunkWriter::new(self.families, self.leading.clone())
    }

    /// Adds the samples of `shared` (from [`ChunkWriter::for_sharing`]; families this writer
    /// writes none of) as a copy shared with every chunk that has the same ones.
    pub(crate) fn share(&mut self, mut shared: ChunkWriter) {
        debug_assert!(std::ptr::eq(self.families, shared.families));
        let samples = shared.take_samples();
        if samples.text.is_empty() {
            return;
        }
        // Without leading labels the chunk is a `/probe` answer, gone after one request: there
        // is nothing to share it with.
        self.shared = Some(if self.leading.as_str().is_empty() {
            Arc::new(samples)
        } else {
            SHARED.intern(samples)
        });
    }

    /// The chunk written.
    pub(crate) fn finish(mut self) -> Chunk {
        let own = self.take_samples();
        Chunk {
            families: self.families,
            leading: self.leading,
            own,
            shared: self.shared,
        }
    }
}

/// Where exposition text goes.
pub trait Sink {
    /// Appends text.
    fn put(&mut self, text: &str);

    /// Appends the pieces of one sample line (family name, leading labels, the rest): a sink
    /// that checks its size after each write checks once.
    fn put_line(&mut self, name: &str, leading: &str, rest: &str) {
        self.put(name);
        self.put(leading);
        self.put(rest);
    }
}

impl Sink for String {
    fn put(&mut self, text: &str) {
        self.push_str(text);
    }

    fn put_line(&mut self, name: &str, leading: &str, rest: &str) {
        self.push_str(name);
        self.push_str(leading);
        self.push_str(rest);
    }
}

/// The most sample text [`merge`] gathers at once: at 10,000 targets, all of it (about 16 MiB,
/// a quarter of the page it becomes); beyond, a group of families per pass.
const MERGE_BUFFER: usize = 16 * 1024 * 1024;

/// Writes the chunks as one exposition: every family of their table that has samples, once, in
/// table order, its samples from all chunks in chunk order. The chunks must share one table.
///
/// The text format wants a family's samples together, while each chunk holds samples of many
/// families. Visiting every chunk once per family reads each chunk's memory again for each of
/// the ~25 families; at 10,000 chunks those reads miss the caches and cost more than the
/// copying. So the families are written in groups of consecutive ones whose samples fit in
/// [`MERGE_BUFFER`]: one pass over the chunks gathers a group's samples (without family names
/// and labels, a quarter of the text they become) into one buffer per family, reading each
/// chunk's memory once and in order, and the group's families are then written from those
/// buffers. The page itself is only ever held a piece at a time by the [`Sink`].
pub fn merge(chunks: &[&Chunk], out: &mut impl Sink) {
    merge_in_groups(chunks, out, MERGE_BUFFER);
}

/// [`merge`], gathering at most `buffer` bytes of samples at once.
fn merge_in_groups(chunks: &[&Chunk], out: &mut impl Sink, buffer: usize) {
    let Some(families) = chunks.iter().map(|c| c.families).find(|f| !f.is_empty()) else {
        return;
    };
    debug_assert!(chunks
        .iter()
        .all(|c| c.is_empty() || std::ptr::eq(c.families, families)));
    // The bytes of each family's samples, and every chunk's leading labels in one buffer.
    let mut bytes = vec![0usize; families.len()];
    let mut leading = String::with_capacity(chunks.len() * 96);
    let mut leading_at: Vec<u32> = Vec::with_capacity(chunks.len() + 1);
    for c in chunks {
        leading_at.push(leading.len() as u32);
        leading.push_str(c.leading.as_str());
        for (_, parts) in c.pieces() {
            for &(id, start, end) in parts {
                if let Some(n) = bytes.get_mut(usize::from(id)) {
                    *n += (end - start) as usize;
                }
            }
        }
    }
    leading_at.push(leading.len() as u32);
    // Per family of a group: its samples, and where each chunk's end (chunk, end).
    let mut buffers: Vec<(String, Vec<(u32, u32)>)> = Vec::new();
    let mut first = 0;
    while first < families.len() {
        let mut last = first;
        let mut total = bytes[first];
        while last + 1 < families.len() && total + bytes[last + 1] <= buffer {
            last += 1;
            total += bytes[last];
        }
        buffers.resize_with(last - first + 1, Default::default);
        for (f, (text, ends)) in buffers.iter_mut().enumerate() {
            text.clear();
            text.reserve(bytes[first + f]);
            ends.clear();
        }
        for (i, c) in chunks.iter().enumerate() {
            for (samples, parts) in c.pieces() {
                for &(id, start, end) in parts {
                    let id = usize::from(id);
                    if id < first || id > last {
                        continue;
                    }
                    let (text, ends) = &mut buffers[id - first];
                    text.push_str(&samples[start as usize..end as usize]);
                    ends.push((i as u32, text.len() as u32));
                }
            }
        }
        for (f, (text, ends)) in buffers.iter().enumerate() {
            if ends.is_empty() {
                continue;
            }
            let family = &families[first + f];
            family.write_header(out);
            let mut at = 0;
            for &(chunk, end) in ends {
                let chunk = chunk as usize;
                let labels = &leading[leading_at[chunk] as usize..leading_at[chunk + 1] as usize];
                for rest in text[at..end as usize].split_inclusive('\n') {
                    out.put_line(family.name, labels, rest);
                }
                at = end as usize;
            }
        }
        first = last + 1;
    }
}

/// The metric types we write.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A counter.
    Counter,
    /// A gauge.
    Gauge,
    /// A histogram.
    Histogram,
}

impl Kind {
    /// The name in a `# TYPE` line.
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// A metric family: what its `# HELP` and `# TYPE` lines say.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) struct Family {
    /// The metric name.
    pub(crate) name: &'static str,
    /// The help text: one line, no backslash.
    pub(crate) help: &'static str,
    /// The type.
    pub(crate) kind: Kind,
}

impl Family {
    /// A gauge.
    pub(crate) const fn gauge(name: &'static str, help: &'static str) -> Family {
        Family {
            name,
            help,
            kind: Kind::Gauge,
        }
    }

    /// Writes the family's `# HELP` and `# TYPE` lines.
    pub(crate) fn write_header(&self, out: &mut impl Sink) {
        let Family { name, help, kind } = self;
        out.put(&format!(
            "# HELP {name} {help}\n# TYPE {name} {}\n",
            kind.as_str()
        ));
    }
}

/// Escapes a label value for the text format: backslash, double quote and line feed.
pub(crate) fn escape_label_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    push_label_value(&mut out, value);
    out
}

/// Appends a label value, escaped: backslash, double quote and line feed.
fn push_label_value(out: &mut String, value: &str) {
    if !value.contains(['\\', '"', '\n']) {
        out.push_str(value);
        return;
    }
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Appends `name="value"` pairs separated by commas, values escaped.
pub(crate) fn push_labels(out: &mut String, labels: &[(&str, &str)]) {
    for (i, (name, value)) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(name);
        out.push_str("=\"");
        push_label_value(out, value);
        out.push('"');
    }
}

/// Writes one sample. `labels` are rendered pairs without braces (`a="1",b="2"`), may be empty.
pub(crate) fn write_sample(
    out: &mut String,
    name: &str,
    labels: &str,
    value: impl std::fmt::Display,
) {
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
pub(crate) fn write_histogram(
    out: &mut String,
    name: &str,
    labels: &str,
    le: &[impl AsRef<str>],
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
        bucket(out, bound.as_ref(), cumulative);
    }
    let total = cumulative + above;
    bucket(out, "+Inf", total);
    use std::fmt::Write as _;
    let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
    let _ = writeln!(out, "{name}_count{{{labels}}} {total}");
}

/// Appends the decimal digits of `n`.
pub(crate) fn push_u64(out: &mut String, mut n: u64) {
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
    // ASCII digits: always UTF-8.
    out.push_str(std::str::from_utf8(&digits[at..]).unwrap_or_default());
}

#[cfg(test)]
mod tests {
    use super::*;

    static TWO: [Family; 2] = [
        Family::gauge("test_exposition_success", "Success."),
        Family::gauge("test_exposition_step_seconds", "Steps."),
    ];

    fn chunk(target: &str, success: f64) -> Chunk {
        let mut f = ChunkWriter::new(&TWO, LeadingLabels::new(&[("name", target)]));
        f.sample(0, &[], success);
        f.sample(1, &[("step", "ehlo")], 0.5);
        f.finish()
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
    fn merge_regroups_families_written_out_of_order() {
        // `late` comes after `test_exposition_mid` in the table, but first in `b`.
        static TABLE: [Family; 2] = [
            Family::gauge("test_exposition_mid", "Mid."),
            Family::gauge("test_exposition_late", "Late."),
        ];
        let mut f = ChunkWriter::new(&TABLE, LeadingLabels::default());
        f.sample(0, &[("t", "a")], 1.0);
        let a = f.finish();
        let mut f = ChunkWriter::new(&TABLE, LeadingLabels::default());
        f.sample(1, &[("t", "b")], 2.0);
        f.sample(0, &[("t", "b")], 3.0);
        let b = f.finish();
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
    fn merge_keeps_chunk_order_within_each_family_across_many_chunks() {
        // More chunks than the look-ahead, families present in some chunks only.
        let chunks: Vec<Chunk> = (0..20)
            .map(|i| {
                let name = format!("t{i}");
                let mut f = ChunkWriter::new(&TWO, LeadingLabels::new(&[("name", &name)]));
                if i % 3 == 0 {
                    f.sample(1, &[("step", "ehlo")], f64::from(i));
                }
                f.sample(0, &[], f64::from(i));
                f.finish()
            })
            .collect();
        let refs: Vec<&Chunk> = chunks.iter().collect();
        let mut out = String::new();
        merge(&refs, &mut out);
        // The same when every family is gathered on its own.
        let mut one_by_one = String::new();
        merge_in_groups(&refs, &mut one_by_one, 1);
        assert_eq!(one_by_one, out);
        let mut want = String::new();
        TWO[0].write_header(&mut want);
        for i in 0..20 {
            want.push_str(&format!("test_exposition_success{{name=\"t{i}\"}} {i}\n"));
        }
        TWO[1].write_header(&mut want);
        for i in (0..20).step_by(3) {
            want.push_str(&format!(
                "test_exposition_step_seconds{{name=\"t{i}\",step=\"ehlo\"}} {i}\n"
            ));
        }
        assert_eq!(out, want);
    }

    #[test]
    fn shared_samples_merge_like_own_ones_and_are_kept_once() {
        let write = |target: &str, shared: bool| {
            let mut f = ChunkWriter::new(&TWO, LeadingLabels::new(&[("name", target)]));
            f.sample(0, &[], 1.0);
            if shared {
                let mut s = f.for_sharing();
                s.sample(1, &[("step", "ehlo")], 0.5);
                f.share(s);
            } else {
                f.sample(1, &[("step", "ehlo")], 0.5);
            }
            f.finish()
        };
        let (a, b) = (write("a", true), write("b\"q", true));
        let (sa, sb) = (a.shared.as_ref().unwrap(), b.shared.as_ref().unwrap());
        assert!(Arc::ptr_eq(sa, sb));
        assert_eq!((a.samples(), a.len()), (2, "} 1\n".len()));
        let mut shared_page = String::new();
        merge(&[&a, &b], &mut shared_page);
        let mut own_page = String::new();
        merge(&[&write("a", false), &write("b\"q", false)], &mut own_page);
        assert_eq!(shared_page, own_page);
        assert!(shared_page
            .contains("test_exposition_step_seconds{name=\"b\\\"q\",step=\"ehlo\"} 0.5\n"));
    }

    #[test]
    fn empty_merge_writes_nothing() {
        let mut out = String::new();
        merge(&[], &mut out);
        assert_eq!(out, "");
        assert!(Chunk::default().is_empty());
    }
}
