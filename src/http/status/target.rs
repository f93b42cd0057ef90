//! `/target?name=…`: one scheduled target. Its last probe as a step waterfall on a time axis
//! (every step a row with its name, what was sent, the reply code and text, its duration and its
//! bar; the failed step marked), the verdict with the hint, the certificate chain with each
//! certificate's days left, the delivery check, the recent results, and links to the
//! transcripts.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use super::{ago, esc, logs_href, ms, page_end, page_start, shown, strip, strip_summary, TEXT_MAX};
use crate::clock::{rfc3339, unix_seconds};
use crate::exporter::Exporter;
use crate::probe::ProbeOutcome;
use crate::report::{self, local_phase_words, source_name, validity_words};
use crate::scheduler::{ResultMark, TargetState};
use crate::tls::TlsReport;
use crate::vocab::Audience;

/// Renders the page of the target named `name`; `None` when there is none.
pub(in crate::http) fn render(exporter: &Exporter, name: &str) -> Option<String> {
    let t = exporter.scheduler().target(name)?;
    let now = unix_seconds(SystemTime::now());
    let mut out = String::with_capacity(16 * 1024);
    page_start(&mut out, &format!("{name} · smtp-prober"), exporter, now);
    facts(&mut out, &t);
    match t.latest() {
        None => out.push_str("<p class=\"pending\">Not probed yet.</p>\n"),
        Some(latest) => last_probe(&mut out, &latest.outcome.outcome(), now),
    }
    history(&mut out, &t.results(), now);
    page_end(&mut out);
    Some(out)
}

/// What the target is: address, module, interval, labels, links.
fn facts(out: &mut String, t: &TargetState) {
    let labels: Vec<String> = t
        .spec
        .labels
        .iter()
        .map(|(k, v)| format!("{}={}", esc(k), esc(v)))
        .collect();
    let _ = writeln!(
        out,
        "<p id=\"facts\"><strong>{}</strong> · module <strong>{}</strong> · every {}{} · \
         <a href=\"{}\">last transcripts</a></p>",
        esc(&t.spec.address.to_string()),
        esc(&t.spec.module),
        humantime::format_duration(t.spec.interval),
        if labels.is_empty() {
            String::new()
        } else {
            format!(" · labels {}", labels.join(", "))
        },
        logs_href(&t.spec.name),
    );
}

/// The verdict, the hint, the waterfall, the chain and the delivery check of the last probe.
fn last_probe(out: &mut String, o: &ProbeOutcome, now: i64) {
    let _ = write!(
        out,
        "<h2>Last probe</h2>\n<p id=\"verdict\">{} ({}), deadline {} · ",
        rfc3339(unix_seconds(o.started_at)),
        ago(o.started_at, now),
        humantime::format_duration(o.timeout),
    );
    match &o.failure {
        None => {
            let _ = writeln!(
                out,
                "<span class=\"ok\">success</span> in {}</p>",
                ms(o.duration)
            );
        }
        Some(f) => {
            let _ = writeln!(
                out,
                "<span class=\"fail\">failed</span> in step <strong>{}</strong>: \
                 <span class=\"fail\" id=\"reason\">{}</span> after {}<br>{}</p>",
                f.step,
                f.reason,
                ms(o.duration),
                shown(&f.detail, TEXT_MAX * 2)
            );
        }
    }
    if let Some((id, fix)) = report::hint(o, Audience::Config) {
        let _ = writeln!(
            out,
            "<div class=\"hint\" id=\"hint\"><strong>What to do{}:</strong> {}</div>",
            id.map(|id| format!(" ({id})")).unwrap_or_default(),
            esc(fix)
        );
    }
    waterfall(out, o);
    if let Some(tls) = &o.session.tls {
        chain(out, tls, now);
    }
    if let Some(d) = &o.delivery {
        let _ = writeln!(
            out,
            "<h2>Delivery</h2>\n<p id=\"delivery\">{}{}{}</p>",
            if d.success {
                "<span class=\"ok\">found</span>"
            } else {
                "<span class=\"fail\">not found</span>"
            },
            d.mailbox
                .as_ref()
                .map(|m| format!(" in {}", shown(m, 100)))
                .unwrap_or_default(),
            d.duration
                .map(|x| format!(" {} after the message was accepted", ms(x)))
                .unwrap_or_default(),
        );
    }
}

/// Ticks of the time axis: 0, a quarter, … the whole, in milliseconds.
fn axis(out: &mut String, end: Duration) {
    out.push_str("<div class=\"axis\">");
    for quarter in 0..=4u32 {
        let at = end.mul_f64(f64::from(quarter) / 4.0);
        // The last label sits against the right edge rather than past it.
        let place = if quarter == 4 {
            "right:0".to_string()
        } else {
            format!("left:{}%", quarter * 25)
        };
        let _ = write!(out, "<span style=\"{place}\">{}</span>", ms(at));
    }
    out.push_str("</div>");
}

/// Every step of the transcript as a labelled row on one time axis.
fn waterfall(out: &mut String, o: &ProbeOutcome) {
    let steps = o.session.transcript.steps();
    let end = steps
        .iter()
        .map(|s| s.offset + s.duration)
        .max()
        .unwrap_or_default()
        .max(o.duration);
    let total = end.as_secs_f64().max(1e-9);
    out.push_str(
        "<h2>Steps</h2>\n<table id=\"waterfall\"><colgroup><col style=\"width:16%\">\
         <col style=\"width:17%\"><col style=\"width:25%\"><col style=\"width:8%\">\
         <col style=\"width:34%\"></colgroup><thead><tr><th>step</th><th>sent</th>\
         <th>reply</th><th>took</th><th>",
    );
    axis(out, end);
    out.push_str("</th></tr></thead><tbody>\n");
    for st in steps {
        let left = (st.offset.as_secs_f64() / total * 100.0).clamp(0.0, 100.0);
        let width = (st.duration.as_secs_f64() / total * 100.0).clamp(0.0, 100.0 - left);
        let failed = st.failure.is_some();
        let _ = write!(
            out,
            "<tr data-step=\"{}\"{}><td><strong>{}</strong>",
            st.name,
            if failed { " class=\"failed\"" } else { "" },
            st.name
        );
        if let Some(f) = &st.failure {
            let _ = write!(
                out,
                "<br><span class=\"fail\">✗ failed: {}</span>",
                f.reason
            );
        }
        let sent = st
            .sent
            .as_deref()
            .map(|s| shown(s, 120))
            .unwrap_or_default();
        let reply = match &st.reply {
            Some(r) => shown(&report::reply_text(r), 200),
            None => esc(&local_phase_words(st)),
        };
        let _ = writeln!(
            out,
            "</td><td><code>{sent}</code></td><td>{reply}</td><td>{}<br><small>at +{}</small></td>\
             <td><div class=\"lane\"><div class=\"bar{}\" style=\"left:{left:.2}%;width:{width:.2}%\">\
             </div></div></td></tr>",
            ms(st.duration),
            ms(st.offset),
            if failed { " f" } else { "" },
        );
    }
    out.push_str("</tbody></table>\n");
}

/// The TLS session, the chain's verdict and every certificate with its validity in words.
fn chain(out: &mut String, tls: &TlsReport, now: i64) {
    let c = &tls.chain;
    let _ = write!(
        out,
        "<h2>Certificate chain</h2>\n<p id=\"chain\">{} · checked as {} · ",
        esc(&report::tls_words(tls)),
        shown(&c.server_name, 100)
    );
    match &c.error {
        None => out.push_str("<span class=\"ok\">valid</span>"),
        Some(e) => {
            let _ = write!(
                out,
                "<span class=\"fail\">{}</span>: {}",
                e.reason,
                shown(&e.detail, TEXT_MAX)
            );
        }
    }
    if !c.sent_complete && c.error.is_none() {
        out.push_str(" · an intermediate came from a local trust source, not from the server");
    }
    out.push_str(
        "</p>\n<table id=\"certificates\"><colgroup><col style=\"width:6%\">\
         <col style=\"width:27%\"><col style=\"width:27%\"><col style=\"width:16%\">\
         <col style=\"width:24%\"></colgroup><thead><tr><th>depth</th><th>subject</th>\
         <th>issuer</th><th>from</th><th>valid until</th></tr></thead><tbody>\n",
    );
    for cert in c.listed() {
        let words = validity_words(cert, now).to_lowercase();
        let class = if now > cert.not_after || now < cert.not_before {
            "fail"
        } else {
            "muted"
        };
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}<br>\
             <span class=\"{class}\">{}</span></td></tr>",
            cert.depth,
            shown(&cert.subject, 200),
            shown(&cert.issuer, 200),
            if cert.sent {
                "the server".to_string()
            } else {
                shown(&source_name(&cert.source), 100)
            },
            rfc3339(cert.not_after),
            esc(&words),
        );
    }
    out.push_str("</tbody></table>\n");
}

/// The recent results: the strip, then each result, newest first.
fn history(out: &mut String, results: &[ResultMark], now: i64) {
    if results.is_empty() {
        return;
    }
    let _ = write!(
        out,
        "<h2>Recent results</h2>\n<div id=\"history\">{}",
        strip_summary(results)
    );
    strip(out, results);
    out.push_str(
        "</div>\n<table id=\"results\"><thead><tr><th>started</th><th>result</th><th>step</th>\
         <th>reason</th><th>took</th></tr></thead><tbody>\n",
    );
    for r in results.iter().rev() {
        let (result, step, reason) = match r.failure {
            None => (
                "<span class=\"ok\">success</span>",
                String::new(),
                String::new(),
            ),
            Some((step, reason)) => (
                "<span class=\"fail\">failure</span>",
                step.to_string(),
                reason.to_string(),
            ),
        };
        let _ = writeln!(
            out,
            "<tr><td>{} <small>{}</small></td><td>{result}</td><td>{step}</td><td>{reason}</td>\
             <td>{}</td></tr>",
            rfc3339(unix_seconds(r.started_at)),
            ago(r.started_at, now),
            ms(r.duration)
        );
    }
    out.push_str("</tbody></table>\n");
}
