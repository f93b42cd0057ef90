//! Reading a probe outcome in tests: its failure, its metrics page, its steps with reply codes.

use smtp_prober::probe::ProbeOutcome;
use smtp_prober::report;
use smtp_prober::vocab::{Reason, StepName};

/// Where and why the probe failed; panics with the transcript when it did not.
pub fn failure(o: &ProbeOutcome) -> (StepName, Reason) {
    let f = o
        .failure
        .as_ref()
        .unwrap_or_else(|| panic!("expected a failure:\n{}", report::text::render(o)));
    (f.step, f.reason)
}

/// The outcome as a `/probe` page would show it.
pub fn metrics(o: &ProbeOutcome) -> String {
    report::metrics::render(o)
}

/// Every step that ran, with its reply code.
pub fn step_codes(o: &ProbeOutcome) -> Vec<(&'static str, Option<u16>)> {
    o.session
        .transcript
        .steps()
        .iter()
        .map(|s| (s.name.as_str(), s.reply.as_ref().map(|r| r.code)))
        .collect()
}

/// The steps and codes of a full STARTTLS probe with AUTH and a token mail.
pub const FULL_STARTTLS_SEND: [(&str, Option<u16>); 13] = [
    ("resolve", None),
    ("connect", None),
    ("greeting", Some(220)),
    ("ehlo", Some(250)),
    ("starttls", Some(220)),
    ("tls_handshake", None),
    ("ehlo_tls", Some(250)),
    ("auth", Some(235)),
    ("mail", Some(250)),
    ("rcpt", Some(250)),
    ("data", Some(354)),
    ("message", Some(250)),
    ("quit", Some(221)),
];
