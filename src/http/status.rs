//! The status page (`/`): every scheduled target with its last result, the failed step and
//! reason, a step waterfall, the certificate chain, and links to its recent probe logs.
//! Plain HTML with inline CSS, no scripts; everything from a server or a file is escaped.

use std::fmt::Write as _;
use std::time::SystemTime;

use crate::clock::{rfc3339, unix_seconds as unix};
use crate::exporter::Exporter;
use crate::probe::ProbeOutcome;
use crate::report::{listed_certificates, millis};

/// Escapes text for HTML element content and quoted attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes a query value.
fn query_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn ms(d: std::time::Duration) -> String {
    millis(d, " ms")
}

const STYLE: &str = "body{font-family:sans-serif;margin:1.5em;color:#222}\
table{border-collapse:collapse}th,td{border-bottom:1px solid #ddd;padding:.3em .6em;\
text-align:left;vertical-align:top;font-size:.9em}th{background:#f4f4f4}\
.ok{color:#17733a;font-weight:bold}.fail{color:#b3261e;font-weight:bold}.pending{color:#777}\
.w{position:relative;width:240px;height:14px;background:#f4f4f4}\
.w span{position:absolute;top:2px;height:10px;background:#4a7bd0;min-width:1px}\
.w span.f{background:#b3261e}small{color:#666}";

/// Renders the page.
pub(super) fn render(exporter: &Exporter) -> String {
    let loaded = exporter.loaded();
    let targets = exporter.scheduler().targets();
    let now = unix(SystemTime::now());
    let mut out = String::with_capacity(2048 + targets.len() * 1024);
    let _ = write!(
        out,
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>smtp-prober</title>\
         <style>{STYLE}</style></head><body>\n<h1>smtp-prober</h1>\n<p>version {} · \
         configuration loaded {} (checksum <code>{}</code>) · {} modules, {} targets · \
         <a href=\"/metrics\">metrics</a> · <a href=\"/config\">configuration</a></p>\n",
        env!("CARGO_PKG_VERSION"),
        rfc3339(unix(loaded.loaded_at)),
        &loaded.config.checksum_hex()[..12],
        loaded.modules.len(),
        targets.len(),
    );
    if targets.is_empty() {
        out.push_str(
            "<p>No scheduled targets. Probe one with <code>/probe?module=NAME&amp;target=HOST:PORT\
             </code>.</p>\n</body></html>\n",
        );
        return out;
    }
    out.push_str(
        "<table><thead><tr><th>name</th><th>target</th><th>module</th><th>result</th>\
         <th>failed step</th><th>reason</th><th>duration</th><th>last probe</th>\
         <th>steps</th><th>certificate chain</th><th>logs</th></tr></thead><tbody>\n",
    );
    for t in targets.iter() {
        let name = esc(&t.spec.name);
        let _ = write!(
            out,
            "<tr><td>{name}</td><td>{}</td><td>{}</td>",
            esc(&t.spec.address.to_string()),
            esc(&t.spec.module)
        );
        match t.latest() {
            None => out.push_str(
                "<td class=\"pending\">pending</td><td></td><td></td><td></td><td></td><td></td><td></td>",
            ),
            Some(latest) => row(&mut out, &latest.outcome, now),
        }
        let _ = writeln!(
            out,
            "<td><a href=\"/logs?target={}\">logs</a></td></tr>",
            esc(&query_value(&t.spec.name))
        );
    }
    out.push_str("</tbody></table>\n</body></html>\n");
    out
}

/// The result cells of one target.
fn row(out: &mut String, o: &ProbeOutcome, now: i64) {
    match &o.failure {
        None => out.push_str("<td class=\"ok\">success</td><td></td><td></td>"),
        Some(f) => {
            let _ = write!(
                out,
                "<td class=\"fail\">failure</td><td>{}</td><td title=\"{}\">{}<br><small>{}</small></td>",
                f.step,
                esc(f.reason.hint()),
                f.reason,
                esc(&f.detail)
            );
        }
    }
    let started = unix(o.started_at);
    let _ = write!(
        out,
        "<td>{}</td><td>{}<br><small>{} s ago</small></td>",
        ms(o.duration),
        rfc3339(started),
        (now - started).max(0)
    );
    waterfall(out, o);
    chain(out, o, now);
}

/// One bar per step, placed by its offset and length within the whole probe.
fn waterfall(out: &mut String, o: &ProbeOutcome) {
    let total = o.duration.as_secs_f64().max(1e-9);
    out.push_str("<td><div class=\"w\">");
    for step in o.session.transcript.steps() {
        let left = (step.offset.as_secs_f64() / total * 100.0).clamp(0.0, 100.0);
        let width = (step.duration.as_secs_f64() / total * 100.0).clamp(0.0, 100.0 - left);
        let _ = write!(
            out,
            "<span{} style=\"left:{left:.2}%;width:{width:.2}%\" title=\"{} {}\"></span>",
            if step.failure.is_some() {
                " class=\"f\""
            } else {
                ""
            },
            step.name,
            ms(step.duration)
        );
    }
    out.push_str("</div></td>");
}

/// The chain verdict and each certificate's subject and days left.
fn chain(out: &mut String, o: &ProbeOutcome, now: i64) {
    out.push_str("<td>");
    if let Some(tls) = &o.session.tls {
        let c = &tls.chain;
        match &c.error {
            None => out.push_str("<span class=\"ok\">valid</span>"),
            Some(e) => {
                let _ = write!(
                    out,
                    "<span class=\"fail\" title=\"{}\">{}</span>",
                    esc(&e.detail),
                    e.reason
                );
            }
        }
        let _ = write!(
            out,
            " <small>{} sent, {}</small>",
            c.sent.len(),
            esc(&tls.version)
        );
        for cert in listed_certificates(c) {
            let days = (cert.not_after - now) / 86_400;
            let _ = write!(
                out,
                "<br><small>{} {} · {} d{}</small>",
                cert.depth,
                esc(if cert.subject_cn.is_empty() {
                    &cert.subject
                } else {
                    &cert.subject_cn
                }),
                days,
                if cert.sent { "" } else { " · local" }
            );
        }
    }
    out.push_str("</td>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_query_values() {
        assert_eq!(
            esc("<script>\"x\" & 'y'"),
            "&lt;script&gt;&quot;x&quot; &amp; &#39;y&#39;"
        );
        assert_eq!(query_value("o365 hq/a&b"), "o365%20hq%2Fa%26b");
    }
}
