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

use crate::clock::{days, rfc3339};
use crate::probe::ProbeOutcome;
use crate::smtp::reply::Reply;
use crate::smtp::transcript::Step;
use crate::tls::{
    iana_cipher_name, openssl_verify_text, CertFacts, CertSource, ChainReport, OcspCertStatus,
    OcspStaple, TlsReport,
};
use crate::vocab::Audience;

/// `250 2.0.0 text`: the code, the enhanced code when there is one, the text (printable and
/// bounded).
pub(crate) fn reply_text(r: &Reply) -> String {
    let enh = r.enhanced.map(|e| format!("{e} ")).unwrap_or_default();
    format!("{} {}{}", r.code, enh, crate::printable::shown(&r.text()))
}

/// What a local phase (no command, no reply) arrived at: the peer's address for resolve and
/// connect, the protocol and cipher for the TLS handshake; empty for the others.
pub(crate) fn local_phase_words(st: &Step) -> String {
    st.found.clone().unwrap_or_default()
}

/// The TLS session as OpenSSL prints it: `TLSv1.3 TLS_AES_256_GCM_SHA384` (the IANA cipher
/// name; the metrics spell the version as Blackbox does).
pub(crate) fn tls_words(tls: &TlsReport) -> String {
    format!("{} {}", tls.version, iana_cipher_name(&tls.cipher))
}

/// The key exchange group and the server's signature scheme, as `openssl s_client` shows them
/// ("Negotiated TLS1.3 group", "Peer signature type"): `key exchange X25519, server signature
/// ecdsa_secp256r1_sha256`; empty when neither is known.
pub(crate) fn handshake_words(tls: &TlsReport) -> String {
    let mut parts = Vec::new();
    if let Some(g) = &tls.key_exchange_group {
        parts.push(format!("key exchange {g}"));
    }
    if let Some(s) = &tls.signature_scheme {
        parts.push(format!("server signature {s}"));
    }
    parts.join(", ")
}

/// OpenSSL's verify code for the chain and its words: 0 ("ok") for a chain that verified, the
/// code OpenSSL reports for the same fault otherwise, `None` where it has no single one.
pub(crate) fn openssl_verdict(chain: &ChainReport) -> Option<(u32, &'static str)> {
    let code = match &chain.error {
        None => Some(0),
        Some(e) => e.openssl_code,
    };
    code.map(|c| (c, openssl_verify_text(c)))
}

/// `openssl: Verify return code: 20 (unable to get local issuer certificate)`: the line
/// `openssl s_client` prints for the same chain, which an admin finds quoted in vendor
/// articles; for a chain that did not verify.
pub(crate) fn openssl_words(chain: &ChainReport) -> Option<String> {
    chain.error.as_ref()?;
    openssl_verdict(chain)
        .map(|(code, text)| format!("openssl: Verify return code: {code} ({text})"))
}

/// The stapled OCSP response in words, as `openssl s_client -status` tells it: the leaf's
/// status, the responder's when it did not answer, the dates, and staleness; or that none was
/// stapled.
pub(crate) fn ocsp_words(staple: Option<&OcspStaple>, now: i64) -> String {
    let Some(o) = staple else {
        return "no response stapled".to_string();
    };
    let mut words = match o.cert_status {
        Some(OcspCertStatus::Good) => "good".to_string(),
        Some(OcspCertStatus::Revoked) => match o.revoked_at {
            Some(at) => format!("REVOKED at {}", rfc3339(at)),
            None => "REVOKED".to_string(),
        },
        Some(OcspCertStatus::Unknown) => "unknown to the responder".to_string(),
        None if o.response_status.is_empty() => "unreadable".to_string(),
        None if o.response_status != "successful" => {
            format!("the responder said {}", o.response_status)
        }
        None => "no status for the leaf".to_string(),
    };
    if let Some(t) = o.produced_at {
        words.push_str(&format!(", produced {}", rfc3339(t)));
    }
    if let Some(t) = o.next_update {
        if t < now {
            words.push_str(&format!(
                ", STALE: next update was {} ({} ago)",
                rfc3339(t),
                days(now - t)
            ));
        } else {
            words.push_str(&format!(
                ", next update {} (in {})",
                rfc3339(t),
                days(t - now)
            ));
        }
    }
    if let Some(p) = &o.problem {
        words.push_str(&format!("; {}", crate::printable::shown(p)));
    }
    words
}

/// The hint of a failed probe: the provider's fix for the reply that failed it when the table
/// knows one (with its id), else the reason's hint; `None` for a success.
pub(crate) fn hint(
    o: &ProbeOutcome,
    audience: Audience,
) -> Option<(Option<&'static str>, &'static str)> {
    Some(hint_of(o.failure.as_ref()?, o.provider_hint(), audience))
}

/// The hint for `failure`: `provider`'s fix (the one matching the reply that failed the probe)
/// with its id, else the reason's hint.
pub(crate) fn hint_of(
    failure: &crate::smtp::transcript::Failure,
    provider: Option<&'static crate::smtp::hints::ProviderHint>,
    audience: Audience,
) -> (Option<&'static str>, &'static str) {
    match provider {
        Some(h) => (Some(h.id), h.fix),
        None => (None, failure.reason.hint_for(audience)),
    }
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
/// `now` (Unix seconds), in the one wording of durations ([`days`]).
pub(crate) fn validity_words(c: &CertFacts, now: i64) -> String {
    if now < c.not_before {
        format!("NOT YET VALID, starts in {}", days(c.not_before - now))
    } else if now > c.not_after {
        format!("EXPIRED {} ago", days(now - c.not_after))
    } else {
        format!("{} left", days(c.not_after - now))
    }
}

/// A certificate in the JSON documents (`probe --format=json`, `chain --format=json`).
#[derive(serde::Serialize)]
pub(crate) struct CertJson<'a> {
    depth: usize,
    subject: &'a str,
    issuer: &'a str,
    not_before: String,
    not_after: String,
    serial: &'a str,
    fingerprint_sha256: &'a str,
    sent: bool,
    source: String,
    key: &'a str,
    signature_algorithm: &'a str,
    sans: Vec<String>,
}

/// A certificate's facts for the JSON documents.
pub(crate) fn cert_json(c: &CertFacts) -> CertJson<'_> {
    CertJson {
        depth: c.depth,
        subject: &c.subject,
        issuer: &c.issuer,
        not_before: rfc3339(c.not_before),
        not_after: rfc3339(c.not_after),
        serial: &c.serial,
        fingerprint_sha256: &c.fingerprint_sha256,
        sent: c.sent,
        source: source_name(&c.source),
        key: &c.key,
        signature_algorithm: &c.signature_algorithm,
        sans: c.names_listed(),
    }
}

/// The TLS session in the JSON documents: version and cipher as OpenSSL spells them, the key
/// exchange group, the server's signature scheme and the stapled OCSP response.
#[derive(serde::Serialize)]
pub(crate) struct SessionJson<'a> {
    version: &'a str,
    cipher: String,
    key_exchange_group: Option<&'a str>,
    signature_scheme: Option<&'a str>,
    ocsp: Option<OcspJson<'a>>,
}

/// A stapled OCSP response in the JSON documents; times in RFC 3339.
#[derive(serde::Serialize)]
struct OcspJson<'a> {
    response_status: &'static str,
    cert_status: Option<&'static str>,
    produced_at: Option<String>,
    this_update: Option<String>,
    next_update: Option<String>,
    revoked_at: Option<String>,
    problem: Option<&'a str>,
}

impl<'a> SessionJson<'a> {
    pub(crate) fn new(tls: &'a TlsReport) -> SessionJson<'a> {
        SessionJson {
            version: &tls.version,
            cipher: iana_cipher_name(&tls.cipher),
            key_exchange_group: tls.key_exchange_group.as_deref(),
            signature_scheme: tls.signature_scheme.as_deref(),
            ocsp: tls.ocsp.as_ref().map(|o| OcspJson {
                response_status: o.response_status,
                cert_status: o.cert_status.map(|s| s.as_str()),
                produced_at: o.produced_at.map(rfc3339),
                this_update: o.this_update.map(rfc3339),
                next_update: o.next_update.map(rfc3339),
                revoked_at: o.revoked_at.map(rfc3339),
                problem: o.problem.as_deref(),
            }),
        }
    }
}
