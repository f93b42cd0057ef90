//! Every rendering of a probe's findings, side by side: the human transcript ([`text`]), the
//! JSON document ([`json`]), the Prometheus families ([`metrics`]) and the chain command's
//! explanation ([`chain`]). Each reads the same plain data ([`ProbeOutcome`], [`ChainReport`])
//! and none reaches into another: what they share (time, validity and source words) is here.
//!
//! [`ProbeOutcome`]: crate::probe::ProbeOutcome
//! [`ChainReport`]: crate::tls::ChainReport

pub mod chain;
pub mod json;
pub mod metrics;
pub mod text;

use std::time::Duration;

use crate::probe::ProbeOutcome;
use crate::smtp::reply::Reply;
use crate::smtp::session::SessionReport;
use crate::smtp::transcript::Step;
use crate::tls::{CertFacts, CertSource, ChainReport};
use crate::vocab::StepName;

/// `250 2.0.0 text`: the code, the enhanced code when there is one, the text (printable and
/// bounded).
pub(crate) fn reply_text(r: &Reply) -> String {
    let enh = r.enhanced.map(|e| format!("{e} ")).unwrap_or_default();
    format!("{} {}{}", r.code, enh, crate::printable::shown(&r.text()))
}

/// What a local phase (no command, no reply) arrived at: the peer's address for resolve and
/// connect, the protocol and cipher for the TLS handshake; empty for the others.
pub(crate) fn local_phase_words(st: &Step, s: &SessionReport) -> String {
    match st.name {
        StepName::Connect | StepName::Resolve => s.peer.map(|p| p.to_string()).unwrap_or_default(),
        StepName::TlsHandshake => s
            .tls
            .as_ref()
            .map(|t| format!("{} {}", t.version, t.cipher))
            .unwrap_or_default(),
        _ => String::new(),
    }
}

/// The hint of a failed probe: the provider's fix for the reply that failed it when the table
/// knows one (with its id), else the reason's hint; `None` for a success.
pub(crate) fn hint(o: &ProbeOutcome) -> Option<(Option<&'static str>, &'static str)> {
    let failure = o.failure.as_ref()?;
    Some(match o.provider_hint() {
        Some(h) => (Some(h.id), h.fix),
        None => (None, failure.reason.hint()),
    })
}

/// A duration in milliseconds as the transcripts show it: two decimals below 10 ms, none above;
/// `unit` follows the number (`"ms"`, or `" ms"` on the status page).
pub(crate) fn millis(d: Duration, unit: &str) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.2}{unit}")
    } else {
        format!("{ms:.0}{unit}")
    }
}

/// Where a certificate came from, in one word (`server`, `system`, `bundled`, `file:PATH`).
pub(crate) fn source_name(source: &CertSource) -> String {
    match source {
        CertSource::Server => "server".into(),
        CertSource::System => "system".into(),
        CertSource::Bundled => "bundled".into(),
        CertSource::File(p) => format!("file:{}", p.display()),
    }
}

/// "365 days left", "EXPIRED 3.0 days ago", "NOT YET VALID, starts in 2.0 days", counted from
/// `now` (Unix seconds).
pub(crate) fn validity_words(c: &CertFacts, now: i64) -> String {
    let days = |secs: i64| secs as f64 / 86_400.0;
    if now < c.not_before {
        format!(
            "NOT YET VALID, starts in {:.1} days",
            days(c.not_before - now)
        )
    } else if now > c.not_after {
        format!("EXPIRED {:.1} days ago", days(now - c.not_after))
    } else {
        format!("{:.0} days left", days(c.not_after - now).floor())
    }
}

/// The certificates a report lists: the chain built to a trust anchor, or what the server sent
/// when nothing could be built.
pub(crate) fn listed_certificates(chain: &ChainReport) -> &[CertFacts] {
    if chain.built.is_empty() {
        &chain.sent
    } else {
        &chain.built
    }
}
