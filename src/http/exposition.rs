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

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use prometheus::proto::MetricFamily;

use crate::probe::metrics::render_text;

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

/// Writes the chunks as one exposition: every family once, its samples from all chunks in
/// chunk order.
pub fn merge<'a>(chunks: impl IntoIterator<Item = &'a Chunk>, out: &mut String) {
    let mut per_family: Vec<String> = Vec::new();
    for chunk in chunks {
        for &(id, start, end) in &chunk.parts {
            let id = usize::from(id);
            if per_family.len() <= id {
                per_family.resize_with(id + 1, String::new);
            }
            per_family[id].push_str(&chunk.text[start as usize..end as usize]);
        }
    }
    let table = match headers().lock() {
        Ok(table) => table,
        Err(poisoned) => poisoned.into_inner(),
    };
    out.reserve(per_family.iter().map(String::len).sum::<usize>() + 128 * per_family.len());
    for (id, samples) in per_family.iter().enumerate() {
        if samples.is_empty() {
            continue;
        }
        if let Some(header) = table.text.get(id) {
            out.push_str(header);
            out.push_str(samples);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::metrics::Families;

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
        merge([&a, &b], &mut out);
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
    fn empty_merge_writes_nothing() {
        let mut out = String::new();
        merge(std::iter::empty(), &mut out);
        assert_eq!(out, "");
        assert!(Chunk::default().is_empty());
    }
}
