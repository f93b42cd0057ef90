//! The human transcript of `smtp-prober probe`: one line per exchange in the spirit of a mail
//! client's debug log (offset, direction, code, enhanced code, text, duration), then the TLS
//! session, the certificate chain, and a one-line verdict with the reason and a hint.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use super::{
    listed_certificates, local_phase_words, millis, reply_text, source_name, validity_words,
};
use crate::clock::{rfc3339, unix_seconds};
use crate::probe::{DeliveryReport, ProbeOutcome};
use crate::smtp::session::SessionReport;
use crate::smtp::transcript::Step;
use crate::tls::TlsReport;

fn ms(d: Duration) -> String {
    millis(d, "ms")
}

/// Renders the transcript.
pub fn render(o: &ProbeOutcome) -> String {
    let mut out = String::with_capacity(2048);
    let s = &o.session;
    let _ = writeln!(
        out,
        "probe {} (module {}, deadline {})",
        o.target,
        o.module,
        humantime::format_duration(o.timeout)
    );
    for st in s.transcript.steps() {
        step(&mut out, st, s);
    }
    if let Some(info) = s.effective_server() {
        let exts: Vec<String> = info.extensions.iter().map(|e| e.describe()).collect();
        let _ = writeln!(out, "\nextensions: {}", exts.join(", "));
        if let Some(m) = s.auth_mechanism {
            let _ = writeln!(out, "auth mechanism used: {m}");
        }
    }
    if let Some(tls) = &s.tls {
        session_tls(&mut out, tls);
    }
    if let Some(d) = &o.delivery {
        delivery(&mut out, d);
    }
    verdict(&mut out, o);
    out
}

/// Where the token mail was found and how it got there: its hops like a traceroute (the time
/// each took since the one before, from the `Received:` trace), the authentication verdicts,
/// and the earlier probes' mails that turned up.
fn delivery(out: &mut String, d: &DeliveryReport) {
    let _ = writeln!(
        out,
        "\ndelivery: {}{}{}{}",
        if d.success { "found" } else { "not found" },
        d.mailbox
            .as_ref()
            .map(|m| format!(" in {m}"))
            .unwrap_or_default(),
        if d.junk { " (a Junk folder)" } else { "" },
        d.duration
            .map(|x| format!(" after {}", ms(x)))
            .unwrap_or_default()
    );
    if !d.hops.is_empty() {
        let _ = writeln!(
            out,
            "  hops (Received trace, oldest first; time since the hop before, dates to the second):"
        );
        for hop in &d.hops {
            let took = match hop.seconds {
                Some(s) => format!("{s:+.2}s"),
                None => "?".to_string(),
            };
            let r = &hop.received;
            let mut line = format!(
                "  {:>3}  {:>9}  {}",
                hop.index,
                took,
                r.by.as_deref().unwrap_or("(no by)")
            );
            if let Some(with) = &r.with {
                line.push_str(&format!(" with {with}"));
            }
            match (&r.from, &r.from_ip) {
                (Some(from), Some(ip)) => line.push_str(&format!(" from {from} [{ip}]")),
                (Some(from), None) => line.push_str(&format!(" from {from}")),
                (None, Some(ip)) => line.push_str(&format!(" from [{ip}]")),
                (None, None) => {}
            }
            if hop.clock_skew {
                line.push_str("  CLOCK SKEW: this host's clock is behind the previous one's");
            }
            let _ = writeln!(out, "{line}");
        }
    } else if d.success && !d.received.is_empty() {
        let _ = writeln!(
            out,
            "  hops: the Received trace is longer than what is read of it; no split"
        );
    }
    if !d.auth.is_empty() {
        let words: Vec<String> = d
            .auth
            .iter()
            .map(|v| match &v.property {
                Some(p) => format!("{}={} ({p})", v.method, v.result),
                None => format!("{}={}", v.method, v.result),
            })
            .collect();
        let by = d
            .auth
            .iter()
            .find_map(|v| v.authserv_id.as_deref())
            .map(|id| format!(" by {id}"))
            .unwrap_or_default();
        let _ = writeln!(out, "  authentication results{by}: {}", words.join(", "));
    }
    for late in &d.late {
        let _ = writeln!(
            out,
            "  late: the mail of an earlier probe ({}) turned up in {}{}{}",
            late.probe_id,
            late.mailbox,
            late.arrived_at
                .map(|t| format!(", arrived {}", rfc3339(t)))
                .unwrap_or_default(),
            if late.cleaned_up { ", deleted" } else { "" }
        );
    }
}

/// One step: what was sent, what came back (or the local phase's result), and its failure.
fn step(out: &mut String, st: &Step, s: &SessionReport) {
    let offset = format!("+{:.4}s", st.offset.as_secs_f64());
    let name = st.name.as_str();
    let took = ms(st.duration);
    match (&st.sent, &st.reply) {
        (Some(sent), reply) => {
            let _ = writeln!(out, "{offset:>10}  {name:<13} -> {sent}");
            match reply {
                Some(r) => {
                    let _ = writeln!(out, "{:>10}  {:<13} <- {}  ({took})", "", "", reply_text(r));
                }
                None => {
                    let _ = writeln!(out, "{:>10}  {:<13} <- (no reply)  ({took})", "", "");
                }
            }
        }
        (None, Some(r)) => {
            let _ = writeln!(
                out,
                "{offset:>10}  {name:<13} <- {}  ({took})",
                reply_text(r)
            );
        }
        (None, None) => {
            let what = local_phase_words(st, s);
            let _ = writeln!(out, "{offset:>10}  {name:<13}    {what}  ({took})");
        }
    }
    if let Some(f) = &st.failure {
        let _ = writeln!(out, "{:>10}  {:<13} !! {}: {}", "", "", f.reason, f.detail);
    }
}

/// The TLS session, the chain's verdict and every listed certificate.
fn session_tls(out: &mut String, tls: &TlsReport) {
    let _ = writeln!(out, "\nTLS: {} {}", tls.version, tls.cipher);
    let chain = &tls.chain;
    match &chain.error {
        None => {
            let _ = writeln!(
                out,
                "certificate chain for {:?}: valid{}",
                chain.server_name,
                if chain.sent_complete {
                    ""
                } else {
                    " (an intermediate came from a local trust source, not from the server)"
                }
            );
        }
        Some(e) => {
            let _ = writeln!(
                out,
                "certificate chain for {:?}: INVALID, {} ({})",
                chain.server_name, e.reason, e.detail
            );
        }
    }
    let now = unix_seconds(SystemTime::now());
    for c in listed_certificates(chain) {
        let _ = writeln!(
            out,
            "  {} {:<7} {}\n              issuer {}\n              valid {} .. {} ({}), {}, {}",
            c.depth,
            if c.sent { "sent" } else { "local" },
            c.subject,
            c.issuer,
            rfc3339(c.not_before),
            rfc3339(c.not_after),
            validity_words(c, now),
            c.key,
            if c.sent {
                "from the server".to_string()
            } else {
                format!("from {}", source_name(&c.source))
            }
        );
    }
}

/// The verdict line, and the hint for a failure.
fn verdict(out: &mut String, o: &ProbeOutcome) {
    match &o.failure {
        None => {
            let _ = writeln!(out, "\nverdict: SUCCESS in {}", ms(o.duration));
        }
        Some(f) => {
            let _ = writeln!(
                out,
                "\nverdict: FAILED in step {}: {} ({})",
                f.step, f.reason, f.detail
            );
            match super::hint(o) {
                Some((Some(id), fix)) => {
                    let _ = writeln!(out, "hint ({id}): {fix}");
                }
                Some((None, fix)) => {
                    let _ = writeln!(out, "hint: {fix}");
                }
                None => {}
            }
        }
    }
}
