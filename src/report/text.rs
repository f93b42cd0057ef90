//! The human transcript of `smtp-prober probe`: one line per exchange in the spirit of a mail
//! client's debug log (offset, direction, code, enhanced code, text, duration), then the TLS
//! session, the certificate chain, and a one-line verdict with the reason and a hint.
//!
//! It is written in three parts so that the `probe` command can print it as the probe runs:
//! the [`header`], each step's lines as the step happens ([`sending_line`] when a command goes
//! out, [`ended_lines`] when its reply is in), and the [`summary`] once the probe is over.
//! [`render`] is the three at once, for outputs that show a finished probe.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use super::{
    handshake_words, local_phase_words, millis, ocsp_words, openssl_words, reply_text, source_name,
    tls_words, validity_words,
};
use crate::clock::{rfc3339, unix_seconds};
use crate::probe::{DeliveryReport, ProbeOutcome};
use crate::smtp::transcript::Step;
use crate::tls::TlsReport;
use crate::vocab::{Audience, StepName};

fn ms(d: Duration) -> String {
    millis(d, "ms")
}

/// Renders the transcript of a finished probe, its hints for the exporter's readers
/// (configuration keys).
pub fn render(o: &ProbeOutcome) -> String {
    render_for(o, Audience::Config)
}

/// Renders the transcript of a finished probe, its hints phrased for `audience`.
pub fn render_for(o: &ProbeOutcome, audience: Audience) -> String {
    let mut out = header(&o.target, &o.module, o.timeout);
    for st in o.session.transcript.steps() {
        out.push_str(&step_lines(st));
    }
    out.push_str(&summary(o, audience));
    out
}

/// The first line: what is probed, with which module and deadline.
pub fn header(target: &str, module: &str, timeout: Duration) -> String {
    format!(
        "probe {target} (module {module}, deadline {})\n",
        humantime::format_duration(timeout)
    )
}

/// Every line of one step: what was sent, what came back (or what a local phase arrived at),
/// and its failure.
pub fn step_lines(st: &Step) -> String {
    match &st.sent {
        Some(sent) => sending_line(st.name, st.offset, sent) + &ended_lines(st),
        None => ended_lines(st),
    }
}

/// The line of a command on its way: offset, step, `-> command`.
pub fn sending_line(name: StepName, offset: Duration, shown: &str) -> String {
    let offset = format!("+{:.4}s", offset.as_secs_f64());
    format!("{offset:>10}  {:<13} -> {shown}\n", name.as_str())
}

/// The lines of a step once it ended: for a step that sent a command, its reply (the command's
/// line is [`sending_line`]); for the others, their one line; then the failure, if any.
pub fn ended_lines(st: &Step) -> String {
    let mut out = String::new();
    let offset = format!("+{:.4}s", st.offset.as_secs_f64());
    let name = st.name.as_str();
    let took = ms(st.duration);
    match (&st.sent, &st.reply) {
        (Some(_), Some(r)) => {
            let _ = writeln!(out, "{:>10}  {:<13} <- {}  ({took})", "", "", reply_text(r));
        }
        (Some(_), None) => {
            let _ = writeln!(out, "{:>10}  {:<13} <- (no reply)  ({took})", "", "");
        }
        (None, Some(r)) => {
            let _ = writeln!(
                out,
                "{offset:>10}  {name:<13} <- {}  ({took})",
                reply_text(r)
            );
        }
        (None, None) => {
            let what = local_phase_words(st);
            let _ = writeln!(out, "{offset:>10}  {name:<13}    {what}  ({took})");
        }
    }
    if let Some(f) = &st.failure {
        let _ = writeln!(out, "{:>10}  {:<13} !! {}: {}", "", "", f.reason, f.detail);
    }
    out
}

/// Everything after the steps: the EHLO extensions, the TLS session and chain, the delivery
/// check and the verdict with its hint.
pub fn summary(o: &ProbeOutcome, audience: Audience) -> String {
    let mut out = String::with_capacity(1024);
    let s = &o.session;
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
    verdict(&mut out, o, audience);
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

/// The TLS session, the stapled OCSP response, the chain's verdict and every listed
/// certificate.
fn session_tls(out: &mut String, tls: &TlsReport) {
    let now = unix_seconds(SystemTime::now());
    let handshake = handshake_words(tls);
    let _ = writeln!(
        out,
        "\nTLS: {}{}{handshake}",
        tls_words(tls),
        if handshake.is_empty() { "" } else { ", " }
    );
    let _ = writeln!(out, "OCSP: {}", ocsp_words(tls.ocsp.as_ref(), now));
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
            if let Some(openssl) = openssl_words(chain) {
                let _ = writeln!(out, "  {openssl}");
            }
        }
    }
    for c in chain.listed() {
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
fn verdict(out: &mut String, o: &ProbeOutcome, audience: Audience) {
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
            // The chain's verdict in OpenSSL's words too, when that is why the probe failed.
            let openssl = o
                .session
                .tls
                .as_ref()
                .filter(|t| t.chain.error.as_ref().is_some_and(|e| e.reason == f.reason))
                .and_then(|t| openssl_words(&t.chain));
            if let Some(openssl) = openssl {
                let _ = writeln!(out, "{openssl}");
            }
            match super::hint(o, audience) {
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
