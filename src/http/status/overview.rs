//! `/`: every scheduled target on one screen (fits 1400 px): its result with the failed step,
//! reason and hint in plain sight, when it ran, its recent results, its chain, and links to its
//! page and transcripts.

use std::fmt::Write as _;
use std::time::SystemTime;

use super::{
    ago, chain_summary, esc, logs_href, ms, page_end, page_start, shown, strip, strip_summary,
    target_href, TEXT_MAX,
};
use crate::clock::unix_seconds;
use crate::exporter::Exporter;
use crate::probe::kept::KeptOutcome;
use crate::report;
use crate::scheduler::TargetState;
use crate::vocab::Audience;

/// Renders the overview.
pub(in crate::http) fn render(exporter: &Exporter) -> String {
    let targets = exporter.scheduler().targets();
    let now = unix_seconds(SystemTime::now());
    let mut out = String::with_capacity(4096 + targets.len() * 1536);
    page_start(&mut out, "smtp-prober", exporter, now);
    if targets.is_empty() {
        out.push_str(
            "<p>No scheduled targets. Probe one with <code>/probe?module=NAME&amp;target=HOST:PORT\
             </code>.</p>\n",
        );
        page_end(&mut out);
        return out;
    }
    summary(&mut out, &targets);
    out.push_str(
        "<table id=\"targets\"><colgroup><col style=\"width:13%\"><col style=\"width:14%\">\
         <col style=\"width:27%\"><col style=\"width:7%\"><col style=\"width:8%\">\
         <col style=\"width:12%\"><col style=\"width:14%\"><col style=\"width:5%\"></colgroup>\
         <thead><tr><th>name</th><th>target · module</th><th>result</th><th>duration</th>\
         <th>last probe</th><th>recent results</th><th>certificates</th><th></th></tr></thead>\
         <tbody>\n",
    );
    for t in targets.iter() {
        row(&mut out, t, now);
    }
    out.push_str("</tbody></table>\n");
    page_end(&mut out);
    out
}

/// "12 targets: 10 succeeding, 1 failing, 1 not probed yet".
fn summary(out: &mut String, targets: &[std::sync::Arc<TargetState>]) {
    let (mut ok, mut failing, mut pending) = (0, 0, 0);
    for t in targets {
        match t.latest() {
            None => pending += 1,
            Some(l) if l.outcome.success() => ok += 1,
            Some(_) => failing += 1,
        }
    }
    let _ = writeln!(
        out,
        "<p id=\"summary\">{} targets: <span class=\"ok\">{ok} succeeding</span>, \
         <span class=\"{}\">{failing} failing</span>{}</p>",
        targets.len(),
        if failing > 0 { "fail" } else { "muted" },
        if pending > 0 {
            format!(", {pending} not probed yet")
        } else {
            String::new()
        }
    );
}

/// One target's row.
fn row(out: &mut String, t: &TargetState, now: i64) {
    let name = &t.spec.name;
    let _ = write!(
        out,
        "<tr data-target=\"{}\"><td><a href=\"{}\">{}</a></td><td>{}<br><small>{}</small></td>",
        esc(name),
        target_href(name),
        esc(name),
        esc(&t.spec.address.to_string()),
        esc(&t.spec.module),
    );
    match t.latest() {
        None => out.push_str("<td class=\"pending\">not probed yet</td><td></td><td></td>"),
        Some(latest) => {
            let o = &latest.outcome;
            result_cell(out, o);
            let _ = write!(
                out,
                "<td>{}</td><td>{}</td>",
                ms(o.duration),
                ago(o.started_at, now)
            );
        }
    }
    let results = t.results();
    out.push_str("<td>");
    if !results.is_empty() {
        strip(out, &results);
        let _ = write!(out, "<small>{}</small>", strip_summary(&results));
    }
    out.push_str("</td><td>");
    if let Some(tls) = t.latest().as_ref().and_then(|l| l.outcome.tls.as_deref()) {
        chain_summary(out, tls, now);
    }
    let _ = writeln!(
        out,
        "</td><td><a href=\"{}\">details</a><br><a href=\"{}\">logs</a></td></tr>",
        target_href(name),
        logs_href(name)
    );
}

/// Success, or the failed step and reason with the server's words and the hint.
fn result_cell(out: &mut String, o: &KeptOutcome) {
    match &o.failure {
        None => out.push_str("<td><span class=\"ok\">success</span></td>"),
        Some(f) => {
            let _ = write!(
                out,
                "<td><span class=\"fail\">{}</span> at <strong>{}</strong><br><small>{}</small>",
                f.reason,
                f.step,
                shown(&f.detail, TEXT_MAX)
            );
            let (_, fix) = report::hint_of(f, o.provider_hint(), Audience::Config);
            let _ = write!(out, "<div class=\"hint\">{}</div>", esc(fix));
            out.push_str("</td>");
        }
    }
}
