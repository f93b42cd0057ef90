//! The status pages: `/` ([`overview`], every scheduled target on one screen) and
//! `/target?name=…` ([`target`], one target's last probe as a labelled step waterfall, its
//! certificate chain, the hint, its recent results). Plain HTML with inline CSS: no scripts, no
//! external assets (the pages work offline), a `refresh` header so that an open page follows the
//! probes. Everything that came from a server, a file or the configuration is bounded and escaped.

mod overview;
mod target;

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

pub(super) use overview::render as overview;
pub(super) use target::render as target;

use crate::clock::{rfc3339, unix_seconds};
use crate::exporter::Exporter;
use crate::report::{millis, validity_words};
use crate::scheduler::ResultMark;
use crate::tls::TlsReport;

/// How often an open page reloads itself, in seconds.
const REFRESH_SECONDS: u32 = 15;

/// The most bytes of server or error text shown in one place.
const TEXT_MAX: usize = 300;

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

/// Text from a server or a file as the page shows it: non-printing characters escaped, at most
/// `max` bytes, then HTML-escaped.
fn shown(text: &str, max: usize) -> String {
    esc(&crate::printable::printable(text.as_bytes(), max))
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

fn ms(d: Duration) -> String {
    millis(d, " ms")
}

/// "12 s ago", "5 min ago", "3 h ago", "2 d ago".
fn ago(then: SystemTime, now: i64) -> String {
    let secs = (now - unix_seconds(then)).max(0);
    match secs {
        0..=119 => format!("{secs} s ago"),
        120..=7199 => format!("{} min ago", secs / 60),
        7200..=172_799 => format!("{} h ago", secs / 3600),
        _ => format!("{} d ago", secs / 86_400),
    }
}

const STYLE: &str = "\
*{box-sizing:border-box}\
body{font:14px/1.4 system-ui,sans-serif;margin:16px;color:#1d1d1f;max-width:1600px}\
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:20px 0 6px}\
a{color:#0b57d0}small,.muted{color:#5f6368}code{font-size:12px}\
table{border-collapse:collapse;width:100%;table-layout:fixed}\
th,td{border-bottom:1px solid #e3e3e3;padding:5px 6px;text-align:left;vertical-align:top;\
overflow-wrap:anywhere}\
th{background:#f3f4f6;font-weight:600}\
.ok{color:#137333;font-weight:600}.fail{color:#b3261e;font-weight:600}.pending{color:#5f6368}\
.banner{background:#fce8e6;border:1px solid #b3261e;color:#5c0f0a;padding:8px 10px;margin:10px 0;\
border-radius:4px}\
.hint{background:#fef7e0;border-left:4px solid #f9ab00;padding:6px 10px;margin:6px 0}\
.strip{display:flex;gap:2px;flex-wrap:wrap}\
.strip i{display:block;width:7px;height:14px;background:#137333;border-radius:1px}\
.strip i.f{background:#b3261e}\
.lane{position:relative;height:18px;background:#f3f4f6}\
.bar{position:absolute;top:3px;height:12px;background:#4a7bd0;min-width:2px;border-radius:2px}\
.bar.f{background:#b3261e}\
tr.failed td{background:#fdf1f0}\
.axis{position:relative;height:16px;font-size:11px;color:#5f6368}\
.axis span{position:absolute;top:0;white-space:nowrap}\
";

/// The page up to the end of its header: title, refresh, style, the exporter's line, and the
/// banner when the last reload failed.
fn page_start(out: &mut String, title: &str, exporter: &Exporter, now: i64) {
    let loaded = exporter.loaded();
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"{REFRESH_SECONDS}\">\
         <link rel=\"icon\" href=\"data:,\">\
         <title>{}</title><style>{STYLE}</style></head><body>\n",
        esc(title)
    );
    let targets = exporter.scheduler().targets().len();
    let shard = exporter.shard();
    let shard_words = if shard.count() > 1 {
        format!(
            " · shard {shard}: {targets} of {} targets",
            loaded.config.targets.len()
        )
    } else {
        String::new()
    };
    let _ = writeln!(
        out,
        "<h1>{}</h1>\n<p class=\"muted\">smtp-prober {} · configuration loaded {} ({}, checksum \
         <code>{}</code>) · {} modules, {targets} scheduled targets{shard_words} · \
         <a href=\"/\">overview</a> · <a href=\"/metrics\">metrics</a> · \
         <a href=\"/config\">configuration</a> · refreshes every {REFRESH_SECONDS} s</p>",
        esc(title),
        env!("CARGO_PKG_VERSION"),
        rfc3339(unix_seconds(loaded.loaded_at)),
        ago(loaded.loaded_at, now),
        &loaded.config.checksum_hex()[..12],
        loaded.modules.len(),
    );
    if let Some(failure) = exporter.reload_failure() {
        let _ = writeln!(
            out,
            "<div class=\"banner\" id=\"reload-failed\"><strong>The last configuration reload \
             failed</strong> ({}, {}): {}<br>smtp-prober keeps running the configuration loaded \
             {}. Fix the file and reload again (SIGHUP or POST /-/reload).</div>",
            rfc3339(unix_seconds(failure.at)),
            ago(failure.at, now),
            shown(&failure.error, TEXT_MAX * 2),
            rfc3339(unix_seconds(loaded.loaded_at)),
        );
    }
}

fn page_end(out: &mut String) {
    out.push_str("</body></html>\n");
}

/// The link to a target's page.
fn target_href(name: &str) -> String {
    format!("/target?name={}", esc(&query_value(name)))
}

/// The link to a target's recent transcripts.
fn logs_href(name: &str) -> String {
    format!("/logs?target={}", esc(&query_value(name)))
}

/// The last results as a strip of marks, oldest first; each mark's title says when and what.
fn strip(out: &mut String, results: &[ResultMark]) {
    out.push_str("<div class=\"strip\">");
    for r in results {
        let when = rfc3339(unix_seconds(r.started_at));
        match r.failure {
            None => {
                let _ = write!(out, "<i title=\"{when} success\"></i>");
            }
            Some((step, reason)) => {
                let _ = write!(
                    out,
                    "<i class=\"f\" title=\"{when} {reason} at {step}\"></i>"
                );
            }
        }
    }
    out.push_str("</div>");
}

/// "18 of 20 succeeded".
fn strip_summary(results: &[ResultMark]) -> String {
    let ok = results.iter().filter(|r| r.failure.is_none()).count();
    format!("{ok} of {} succeeded", results.len())
}

/// The chain's verdict and its soonest-expiring certificate, in a few words.
fn chain_summary(out: &mut String, tls: &TlsReport, now: i64) {
    match &tls.chain.error {
        None => out.push_str("<span class=\"ok\">valid</span>"),
        Some(e) => {
            let _ = write!(out, "<span class=\"fail\">{}</span>", e.reason);
        }
    }
    if let Some(soonest) = tls.chain.listed().iter().min_by_key(|c| c.not_after) {
        let _ = write!(
            out,
            "<br><small>{}: {}</small>",
            if soonest.depth == 0 {
                "leaf".to_string()
            } else {
                format!("depth {}", soonest.depth)
            },
            esc(&validity_words(soonest, now).to_lowercase())
        );
    }
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

    #[test]
    fn server_text_is_bounded_escaped_and_printable() {
        let hostile = format!("<img src=x>\u{1b}[31m\r\n{}", "a".repeat(1000));
        let out = shown(&hostile, 50);
        assert!(
            out.starts_with("&lt;img src=x&gt;\\u{1b}[31m\\r\\n"),
            "{out}"
        );
        assert!(out.len() < 120 && out.ends_with("bytes)"), "{out}");
    }

    #[test]
    fn ago_in_words() {
        let now = 100_000_000;
        let at = |s: i64| SystemTime::UNIX_EPOCH + Duration::from_secs((now - s) as u64);
        assert_eq!(ago(at(5), now), "5 s ago");
        assert_eq!(ago(at(600), now), "10 min ago");
        assert_eq!(ago(at(3 * 3600), now), "3 h ago");
        assert_eq!(ago(at(698 * 86_400), now), "698 d ago");
    }
}
