//! A probe outcome as Prometheus metrics (the README's metric reference). Blackbox-compatible
//! names and label values are kept so that existing dashboards and alerts keep working.
//!
//! The samples are written as text straight into a [`Chunk`], so the same code serves a
//! `/probe` request (no extra labels) and the scheduled `/metrics` page (each target's `name`,
//! `target`, `module` and own labels first), where a target's chunk is written once per result
//! and copied on every scrape.
//!
//! A new per-probe metric is a line in the `families!` table (its place there is its place on
//! the page) and a `gauge` call where its value is known. Metrics that only scheduled mode has
//! (histograms, counters over many probes) belong in `crate::exposition::scheduled`.

use crate::exposition::{merge, Chunk, ChunkWriter, Family, LeadingLabels};
use crate::probe::ProbeOutcome;
use crate::smtp::reply::Reply;
use crate::tls::{
    blackbox_version_name, iana_cipher_name, CertFacts, ChainReport, OcspStaple, TlsReport,
};
use crate::vocab::StepName;

/// Declares the per-probe families in the order they are written: an enum to name each one
/// and the table of their names and help texts, kept in step by construction.
macro_rules! families {
    ($($id:ident: $name:literal, $help:literal;)*) => {
        /// A per-probe family: an index into [`FAMILIES`].
        #[derive(Copy, Clone, Debug)]
        enum F {
            $($id,)*
        }

        /// Every per-probe family, in page order. Each is a gauge.
        static FAMILIES: [Family; [$($name),*].len()] = [$(Family::gauge($name, $help),)*];
    };
}

families! {
    Success: "probe_success", "Whether every configured step of the probe passed.";
    Duration: "probe_duration_seconds", "How long the probe took.";
    Timeout: "probe_timeout_seconds", "The probe deadline in force.";
    DnsLookup: "probe_dns_lookup_time_seconds", "How long resolving the target took.";
    IpProtocol: "probe_ip_protocol", "IP protocol of the connection: 4 or 6.";
    IpAddrHash: "probe_ip_addr_hash", "Hash of the IP address connected to (FNV-1a, as blackbox_exporter): it changes when the address does.";
    StepDuration: "probe_smtp_step_duration_seconds", "Duration of each probe step that ran.";
    StepReplyCode: "probe_smtp_step_reply_code", "Last SMTP reply code of each step.";
    ReplyInfo: "probe_smtp_reply_info", "The reply of the failed step and of every step the server refused (4xx/5xx): code and enhanced status code.";
    FailedStep: "probe_smtp_failed_step_info", "The step the probe failed in and why.";
    Extensions: "probe_smtp_extensions_info", "ESMTP extension keywords offered (after TLS when TLS is used), sorted, comma-separated.";
    AuthMechanism: "probe_smtp_auth_mechanism_info", "SASL mechanisms offered in AUTH.";
    MessageAccepted: "probe_smtp_message_accepted", "Whether the token mail got a 2xx reply after its content.";
    TlsVersion: "probe_tls_version_info", "Negotiated TLS version (blackbox_exporter's spelling: TLS 1.3).";
    TlsCipher: "probe_tls_cipher_info", "Negotiated TLS cipher suite (IANA name).";
    TlsHandshake: "probe_tls_handshake_info", "Key exchange group and the scheme of the server's handshake signature (IANA names).";
    ChainValid: "probe_tls_chain_valid", "Whether a chain to a trust anchor verified.";
    ChainError: "probe_tls_chain_error_info", "Why the chain did not verify.";
    CertsSent: "probe_tls_certs_sent", "How many certificates the server sent.";
    ChainSentComplete: "probe_tls_chain_sent_complete", "Whether the sent certificates alone reach a trust anchor.";
    CertNotAfter: "probe_tls_cert_not_after_timestamp_seconds", "NotAfter of every certificate of the chain (sent=0: taken from a trust store).";
    CertNotBefore: "probe_tls_cert_not_before_timestamp_seconds", "NotBefore of every certificate of the chain (sent=0: taken from a trust store).";
    EarliestExpiry: "probe_ssl_earliest_cert_expiry", "Earliest NotAfter of the certificates the server sent.";
    LastChainExpiry: "probe_ssl_last_chain_expiry_timestamp_seconds", "Earliest NotAfter of the verified chain (only when it verified, as blackbox_exporter).";
    LastChainInfo: "probe_ssl_last_chain_info", "Facts of the leaf certificate.";
    OcspStapled: "probe_tls_ocsp_stapled", "Whether the server stapled an OCSP response to its handshake.";
    OcspInfo: "probe_tls_ocsp_info", "The stapled OCSP response: the responder's status and the leaf's status.";
    OcspNextUpdate: "probe_tls_ocsp_next_update_timestamp_seconds", "When the stapled OCSP response goes stale (its nextUpdate).";
    DeliverySuccess: "probe_delivery_success", "Whether the token mail was found in a mailbox in time.";
    DeliveryDuration: "probe_delivery_duration_seconds", "From the end of DATA to the token mail being visible.";
    DeliveryMailbox: "probe_delivery_mailbox_info", "The mailbox the token mail landed in.";
    DeliveryJunk: "probe_delivery_junk", "Whether the mailbox the token mail landed in is a Junk folder.";
    DeliveryHop: "probe_delivery_hop_duration_seconds", "Time from each hop of the token mail's Received trace to the next (hop 1: from the acceptance); negative when the hosts' clocks disagree.";
    DeliveryClockSkew: "probe_delivery_clock_skew_hops", "Hops of the Received trace negative beyond the one-second resolution of its dates: the hosts' clocks disagree.";
    DeliveryAuth: "probe_delivery_auth_result", "SPF, DKIM, DMARC and ARC results in the delivered token mail's Authentication-Results.";
}

/// The metrics of one probe as `/probe` returns them (and `probe --format=prometheus` prints).
pub fn render(outcome: &ProbeOutcome) -> String {
    let mut page = String::with_capacity(4096);
    merge(&[&chunk(outcome, LeadingLabels::default())], &mut page);
    page
}

/// Every metric of one probe outcome, each sample carrying the `leading` labels first.
pub(crate) fn chunk(outcome: &ProbeOutcome, leading: LeadingLabels) -> Chunk {
    let mut out = Gauges(ChunkWriter::new(&FAMILIES, leading));
    summary(&mut out, outcome);
    steps(&mut out, outcome);
    server(&mut out, outcome);
    if let Some(tls) = &outcome.session.tls {
        session_tls(&mut out, tls);
        // The chain's samples are the same for every target that presents it: kept once for
        // all of them.
        let mut chain = Gauges(out.0.for_sharing());
        certificates(&mut chain, &tls.chain);
        out.0.share(chain.0);
        ocsp(&mut out, tls.ocsp.as_ref());
    }
    delivery(&mut out, outcome);
    out.0.finish()
}

/// The chunk being written, one gauge sample at a time.
struct Gauges(ChunkWriter);

impl Gauges {
    fn gauge(&mut self, family: F, labels: &[(&str, &str)], value: f64) {
        self.0.sample(family as usize, labels, value);
    }

    /// A 0/1 gauge.
    fn flag(&mut self, family: F, value: bool) {
        self.gauge(family, &[], if value { 1.0 } else { 0.0 });
    }

    /// An `_info` sample: the labels are the information, the value is 1.
    fn info(&mut self, family: F, labels: &[(&str, &str)]) {
        self.gauge(family, labels, 1.0);
    }
}

fn secs(d: std::time::Duration) -> f64 {
    d.as_secs_f64()
}

/// Verdict, duration, deadline, DNS time and IP protocol.
fn summary(out: &mut Gauges, o: &ProbeOutcome) {
    out.flag(F::Success, o.success());
    out.gauge(F::Duration, &[], secs(o.duration));
    out.gauge(F::Timeout, &[], secs(o.timeout));
    if let Some(step) = o.session.transcript.step(StepName::Resolve) {
        out.gauge(F::DnsLookup, &[], secs(step.duration));
    }
    if let Some(peer) = o.session.peer {
        let protocol = if peer.is_ipv4() { 4.0 } else { 6.0 };
        out.gauge(F::IpProtocol, &[], protocol);
        out.gauge(F::IpAddrHash, &[], f64::from(ip_addr_hash(peer.ip())));
    }
}

/// Each step's duration and reply, and the failed step.
fn steps(out: &mut Gauges, o: &ProbeOutcome) {
    // Steps that ran more than once (one RCPT per recipient) sum their durations and keep the
    // last reply: the label set stays one sample per step.
    let mut per_step: Vec<(StepName, f64, Option<&Reply>)> = Vec::new();
    for step in o.session.transcript.steps() {
        match per_step.iter_mut().find(|(n, _, _)| *n == step.name) {
            Some(entry) => {
                entry.1 += secs(step.duration);
                if step.reply.is_some() {
                    entry.2 = step.reply.as_ref();
                }
            }
            None => per_step.push((step.name, secs(step.duration), step.reply.as_ref())),
        }
    }
    for (name, duration, _) in &per_step {
        out.gauge(F::StepDuration, &[("step", name.as_str())], *duration);
    }
    for (name, _, reply) in &per_step {
        if let Some(r) = reply {
            out.gauge(
                F::StepReplyCode,
                &[("step", name.as_str())],
                f64::from(r.code),
            );
        }
    }
    // The reply's enhanced status code says what went wrong; for a positive reply the code
    // above says everything. So the full reply only for the failed step and refusals.
    let failed = o.failure.as_ref().map(|f| f.step);
    for (name, _, reply) in &per_step {
        let Some(r) = reply else { continue };
        if r.code < 400 && failed != Some(*name) {
            continue;
        }
        let code = r.code.to_string();
        let enhanced = r.enhanced.map(|e| e.to_string()).unwrap_or_default();
        let labels = [
            ("step", name.as_str()),
            ("code", code.as_str()),
            ("enhanced_code", enhanced.as_str()),
        ];
        out.info(F::ReplyInfo, &labels);
    }
    if let Some(failure) = &o.failure {
        let labels = [
            ("step", failure.step.as_str()),
            ("reason", failure.reason.as_str()),
        ];
        out.info(F::FailedStep, &labels);
    }
}

/// Longest `extensions` label value: an honest server's keywords take about 100 bytes; a
/// hostile one's are cut here (whole keywords) rather than in the time series database.
const MAX_EXTENSIONS_LABEL: usize = 512;

/// The extension keywords as one label value: sorted (a server's order is not a change worth
/// a new series), without repeats, comma-separated, bounded.
fn extensions_label(server: &crate::smtp::extension::ServerInfo) -> String {
    let mut keywords: Vec<&str> = server.extensions.iter().map(|e| e.keyword()).collect();
    keywords.sort_unstable();
    keywords.dedup();
    let mut label = String::new();
    for k in keywords {
        if label.len() + k.len() + 1 > MAX_EXTENSIONS_LABEL {
            break;
        }
        if !label.is_empty() {
            label.push(',');
        }
        label.push_str(k);
    }
    label
}

/// What the server offered, and whether it took the token mail.
fn server(out: &mut Gauges, o: &ProbeOutcome) {
    let s = &o.session;
    if let Some(server) = s.effective_server() {
        out.info(F::Extensions, &[("extensions", &extensions_label(server))]);
        for mech in server.auth_mechanisms() {
            out.info(F::AuthMechanism, &[("mechanism", &mech)]);
        }
    }
    if o.message_configured {
        out.flag(F::MessageAccepted, s.message_accepted);
    }
}

/// The TLS session and the chain's verdict.
fn session_tls(out: &mut Gauges, tls: &TlsReport) {
    // Label values as blackbox_exporter spells them, so that its dashboards and alerts match.
    let version = blackbox_version_name(&tls.version);
    out.info(F::TlsVersion, &[("version", &version)]);
    let cipher = iana_cipher_name(&tls.cipher);
    out.info(F::TlsCipher, &[("cipher", &cipher)]);
    let labels = [
        (
            "key_exchange_group",
            tls.key_exchange_group.as_deref().unwrap_or_default(),
        ),
        (
            "signature_scheme",
            tls.signature_scheme.as_deref().unwrap_or_default(),
        ),
    ];
    out.info(F::TlsHandshake, &labels);
    let chain = &tls.chain;
    out.flag(F::ChainValid, chain.valid());
    if let Some(e) = &chain.error {
        out.info(F::ChainError, &[("reason", e.reason.as_str())]);
    }
    out.gauge(F::CertsSent, &[], chain.sent.len() as f64);
    out.flag(F::ChainSentComplete, chain.sent_complete);
}

/// Every certificate's expiry, the blackbox-compatible expiry gauges and the leaf's facts.
fn certificates(out: &mut Gauges, chain: &ChainReport) {
    // Every certificate of the built chain; when building stopped early, the sent ones it did
    // not reach are still shown, since their dates matter as much.
    let mut shown: Vec<&CertFacts> = chain.built.iter().map(|c| &**c).collect();
    for c in &chain.sent {
        if !shown
            .iter()
            .any(|b| b.fingerprint_sha256 == c.fingerprint_sha256)
        {
            shown.push(c);
        }
    }
    type Date = fn(&CertFacts) -> i64;
    let dates: [(F, Date); 2] = [
        (F::CertNotAfter, |c| c.not_after),
        (F::CertNotBefore, |c| c.not_before),
    ];
    for (family, date) in dates {
        for (i, c) in shown.iter().enumerate() {
            let depth = i.to_string();
            let labels = [
                ("depth", depth.as_str()),
                ("subject_cn", &c.subject_cn),
                ("issuer_cn", &c.issuer_cn),
                ("serial", &c.serial),
                ("fingerprint_sha256", &c.fingerprint_sha256),
                ("sent", if c.sent { "1" } else { "0" }),
            ];
            out.gauge(family, &labels, date(c) as f64);
        }
    }
    if let Some(earliest) = chain.sent.iter().map(|c| c.not_after).min() {
        out.gauge(F::EarliestExpiry, &[], earliest as f64);
    }
    // blackbox_exporter exports it for its verified chains only: a chain that stopped short of
    // an anchor, or one that failed on dates or the name, has no "last chain".
    let verified_expiry = chain
        .built
        .iter()
        .map(|c| c.not_after)
        .filter(|&t| t > 0)
        .min()
        .filter(|_| chain.valid());
    if let Some(expiry) = verified_expiry {
        out.gauge(F::LastChainExpiry, &[], expiry as f64);
    }
    if let Some(leaf) = chain.sent.first() {
        let sans = leaf.names(",");
        let labels = [
            ("fingerprint_sha256", leaf.fingerprint_sha256.as_str()),
            ("subject", &leaf.subject),
            ("issuer", &leaf.issuer),
            ("subjectalternative", &sans),
            ("serialnumber", &leaf.serial),
        ];
        out.info(F::LastChainInfo, &labels);
    }
}

/// blackbox_exporter's `probe_ip_addr_hash`: FNV-1a (32 bits) of the address's bytes, four for
/// IPv4, sixteen for IPv6.
fn ip_addr_hash(ip: std::net::IpAddr) -> u32 {
    let bytes = match ip {
        std::net::IpAddr::V4(v4) => v4.octets().to_vec(),
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            // Go's To4() also takes an IPv4-mapped IPv6 address as IPv4.
            Some(v4) => v4.octets().to_vec(),
            None => v6.octets().to_vec(),
        },
    };
    bytes.iter().fold(0x811c_9dc5_u32, |hash, &b| {
        (hash ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// Whether the server stapled an OCSP response, and what it says.
fn ocsp(out: &mut Gauges, staple: Option<&OcspStaple>) {
    out.flag(F::OcspStapled, staple.is_some());
    let Some(staple) = staple else {
        return;
    };
    let labels = [
        ("response_status", staple.response_status),
        (
            "cert_status",
            staple.cert_status.map(|s| s.as_str()).unwrap_or_default(),
        ),
    ];
    out.info(F::OcspInfo, &labels);
    if let Some(next) = staple.next_update {
        out.gauge(F::OcspNextUpdate, &[], next as f64);
    }
}

/// Whether, how fast and where the token mail landed.
fn delivery(out: &mut Gauges, o: &ProbeOutcome) {
    let Some(d) = &o.delivery else {
        return;
    };
    out.flag(F::DeliverySuccess, d.success);
    if let Some(duration) = d.duration {
        out.gauge(F::DeliveryDuration, &[], secs(duration));
    }
    if let Some(mailbox) = &d.mailbox {
        out.info(F::DeliveryMailbox, &[("mailbox", mailbox)]);
    }
    if d.success {
        out.flag(F::DeliveryJunk, d.junk);
    }
    for hop in &d.hops {
        if let Some(seconds) = hop.seconds {
            let index = hop.index.to_string();
            let by = hop.received.by.as_deref().unwrap_or_default();
            out.gauge(F::DeliveryHop, &[("hop", &index), ("by", by)], seconds);
        }
    }
    if !d.hops.is_empty() {
        let skewed = d.hops.iter().filter(|h| h.clock_skew).count();
        out.gauge(F::DeliveryClockSkew, &[], skewed as f64);
    }
    for v in &d.auth {
        out.info(
            F::DeliveryAuth,
            &[("method", v.method), ("result", v.result)],
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn family_names_are_unique_and_valid() {
        let mut names: Vec<&str> = FAMILIES.iter().map(|f| f.name).collect();
        assert!(names
            .iter()
            .all(|n| n.chars().all(|c| c.is_ascii_lowercase() || c == '_')));
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), FAMILIES.len());
        assert_eq!(
            FAMILIES[F::DeliveryMailbox as usize].name,
            "probe_delivery_mailbox_info"
        );
    }

    #[test]
    fn ip_addr_hash_is_blackbox_exporters() {
        // What blackbox_exporter 0.23 exports for these addresses (its tcp prober, run
        // against 127.0.0.1:1 and [::1]:1).
        let hash = |ip: &str| ip_addr_hash(ip.parse().unwrap());
        assert_eq!(hash("127.0.0.1"), 3_668_918_509);
        assert_eq!(hash("::1"), 1_751_717_746);
        assert_eq!(hash("::ffff:127.0.0.1"), hash("127.0.0.1"));
    }
}
