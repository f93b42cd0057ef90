//! The JSON result of `probe --format=json`: the same facts as the transcript, as one
//! object. Secrets never appear: commands are shown masked, the token mail as its size.

use serde::Serialize;

use super::{cert_json, openssl_verdict, CertJson, SessionJson};
use crate::clock::{rfc3339, rfc3339_millis};
use crate::printable::shown;
use crate::probe::delivery::DeliveryReport;
use crate::probe::ProbeOutcome;
use crate::vocab::Audience;

/// The JSON document.
#[derive(Serialize)]
pub(crate) struct ProbeJson<'a> {
    target: &'a str,
    module: &'a str,
    /// When the probe started (RFC 3339, UTC, milliseconds).
    started_at: String,
    success: bool,
    duration_seconds: f64,
    timeout_seconds: f64,
    failed_step: Option<&'static str>,
    reason: Option<&'static str>,
    detail: Option<&'a str>,
    hint: Option<&'static str>,
    provider_hint: Option<ProviderHintJson>,
    peer: Option<String>,
    steps: Vec<StepJson<'a>>,
    extensions: Vec<String>,
    auth_mechanism: Option<&'static str>,
    message_accepted: bool,
    probe_id: Option<&'a str>,
    tls: Option<TlsJson<'a>>,
    delivery: Option<DeliveryJson<'a>>,
}

#[derive(Serialize)]
struct ProviderHintJson {
    id: &'static str,
    fix: &'static str,
}

#[derive(Serialize)]
struct StepJson<'a> {
    step: &'static str,
    offset_seconds: f64,
    duration_seconds: f64,
    sent: Option<&'a str>,
    reply_code: Option<u16>,
    enhanced_code: Option<String>,
    reply: Option<String>,
    error: Option<&'a str>,
}

#[derive(Serialize)]
struct TlsJson<'a> {
    #[serde(flatten)]
    session: SessionJson<'a>,
    server_name: &'a str,
    chain_valid: bool,
    chain_error: Option<&'static str>,
    chain_error_detail: Option<&'a str>,
    /// The code `openssl s_client -verify_return_error` reports for the same chain (0: ok),
    /// and its words; `None` where OpenSSL has no single equivalent.
    openssl_verify_code: Option<u32>,
    openssl_verify_text: Option<&'static str>,
    chain_sent_complete: bool,
    certs_sent: usize,
    certificates: Vec<CertJson<'a>>,
}

#[derive(Serialize)]
struct DeliveryJson<'a> {
    success: bool,
    duration_seconds: Option<f64>,
    mailbox: Option<&'a str>,
    junk: bool,
    hops: Vec<HopJson<'a>>,
    auth_results: Vec<AuthJson<'a>>,
    late: Vec<LateJson<'a>>,
}

#[derive(Serialize)]
struct HopJson<'a> {
    hop: usize,
    by: Option<&'a str>,
    from: Option<&'a str>,
    from_ip: Option<&'a str>,
    with: Option<&'a str>,
    received_at: Option<String>,
    seconds: Option<f64>,
    clock_skew: bool,
}

#[derive(Serialize)]
struct AuthJson<'a> {
    method: &'a str,
    result: &'a str,
    authserv_id: Option<&'a str>,
    property: Option<&'a str>,
}

#[derive(Serialize)]
struct LateJson<'a> {
    probe_id: &'a str,
    mailbox: &'a str,
    arrived_at: Option<String>,
    cleaned_up: bool,
}

impl<'a> ProbeJson<'a> {
    /// Builds the document from an outcome.
    pub(crate) fn new(o: &'a ProbeOutcome) -> ProbeJson<'a> {
        let s = &o.session;
        ProbeJson {
            target: &o.target,
            module: &o.module,
            started_at: rfc3339_millis(o.started_at),
            success: o.success(),
            duration_seconds: o.duration.as_secs_f64(),
            timeout_seconds: o.timeout.as_secs_f64(),
            failed_step: o.failure.as_ref().map(|f| f.step.as_str()),
            reason: o.failure.as_ref().map(|f| f.reason.as_str()),
            detail: o.failure.as_ref().map(|f| f.detail.as_str()),
            // The JSON document is the `probe` command's: its hints name the flags.
            hint: o.failure.as_ref().map(|f| f.reason.hint_for(Audience::Cli)),
            provider_hint: o.provider_hint().map(|h| ProviderHintJson {
                id: h.id,
                fix: h.fix,
            }),
            peer: s.peer.map(|p| p.to_string()),
            steps: s
                .transcript
                .steps()
                .iter()
                .map(|st| StepJson {
                    step: st.name.as_str(),
                    offset_seconds: st.offset.as_secs_f64(),
                    duration_seconds: st.duration.as_secs_f64(),
                    sent: st.sent.as_deref(),
                    reply_code: st.reply.as_ref().map(|r| r.code),
                    enhanced_code: st
                        .reply
                        .as_ref()
                        .and_then(|r| r.enhanced)
                        .map(|e| e.to_string()),
                    reply: st.reply.as_ref().map(|r| shown(&r.text())),
                    error: st.failure.as_ref().map(|f| f.detail.as_str()),
                })
                .collect(),
            extensions: s
                .effective_server()
                .map(|i| i.extensions.iter().map(|e| e.describe()).collect())
                .unwrap_or_default(),
            auth_mechanism: s.auth_mechanism,
            message_accepted: s.message_accepted,
            probe_id: o.probe_id.as_deref(),
            tls: s.tls.as_ref().map(|t| TlsJson {
                session: SessionJson::new(t),
                server_name: &t.chain.server_name,
                chain_valid: t.chain.valid(),
                chain_error: t.chain.error.as_ref().map(|e| e.reason.as_str()),
                chain_error_detail: t.chain.error.as_ref().map(|e| e.detail.as_str()),
                openssl_verify_code: openssl_verdict(&t.chain).map(|(code, _)| code),
                openssl_verify_text: openssl_verdict(&t.chain).map(|(_, text)| text),
                chain_sent_complete: t.chain.sent_complete,
                certs_sent: t.chain.sent.len(),
                certificates: t.chain.listed().iter().map(|c| cert_json(c)).collect(),
            }),
            delivery: o.delivery.as_ref().map(DeliveryJson::new),
        }
    }
}

impl<'a> DeliveryJson<'a> {
    fn new(d: &'a DeliveryReport) -> DeliveryJson<'a> {
        DeliveryJson {
            success: d.success,
            duration_seconds: d.duration.map(|d| d.as_secs_f64()),
            mailbox: d.mailbox.as_deref(),
            junk: d.junk,
            hops: d
                .hops
                .iter()
                .map(|h| HopJson {
                    hop: h.index,
                    by: h.received.by.as_deref(),
                    from: h.received.from.as_deref(),
                    from_ip: h.received.from_ip.as_deref(),
                    with: h.received.with.as_deref(),
                    received_at: h.received.date.map(rfc3339),
                    seconds: h.seconds,
                    clock_skew: h.clock_skew,
                })
                .collect(),
            auth_results: d
                .auth
                .iter()
                .map(|v| AuthJson {
                    method: v.method,
                    result: v.result,
                    authserv_id: v.authserv_id.as_deref(),
                    property: v.property.as_deref(),
                })
                .collect(),
            late: d
                .late
                .iter()
                .map(|l| LateJson {
                    probe_id: &l.probe_id,
                    mailbox: &l.mailbox,
                    arrived_at: l.arrived_at.map(rfc3339),
                    cleaned_up: l.cleaned_up,
                })
                .collect(),
        }
    }
}

/// The outcome as a pretty-printed JSON document.
pub fn to_json(outcome: &ProbeOutcome) -> String {
    serde_json::to_string_pretty(&ProbeJson::new(outcome))
        .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}
