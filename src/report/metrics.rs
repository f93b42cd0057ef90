//! A probe outcome as Prometheus metric families (DESIGN §6). Blackbox-compatible names are kept
//! so existing dashboards and alerts keep working.
//!
//! The families are built directly (no registry), so the same code serves a `/probe` request
//! (no extra labels) and the scheduled `/metrics` page (each target's `name`, `target`, `module`
//! and own labels prepended).

use prometheus::proto::{Gauge, LabelPair, Metric, MetricFamily, MetricType};

use crate::exposition::render_text;
use crate::probe::ProbeOutcome;
use crate::tls::CertFacts;

/// Builds metric families in insertion order, merging samples of the same name.
#[derive(Default)]
pub struct Families {
    families: Vec<MetricFamily>,
    common: Vec<LabelPair>,
}

impl Families {
    /// A builder whose every sample carries `common` labels first.
    pub fn with_labels(common: &[(&str, &str)]) -> Families {
        Families {
            families: Vec::new(),
            common: common.iter().map(|(k, v)| label(k, v)).collect(),
        }
    }

    /// Adds one gauge sample.
    pub fn gauge(&mut self, name: &str, help: &str, labels: &[(&str, &str)], value: f64) {
        let mut g = Gauge::default();
        g.set_value(value);
        let mut m = Metric::from_gauge(g);
        let mut pairs = self.common.clone();
        pairs.extend(labels.iter().map(|(k, v)| label(k, v)));
        m.set_label(pairs);
        self.family(name, help, MetricType::GAUGE)
            .mut_metric()
            .push(m);
    }

    fn family(&mut self, name: &str, help: &str, kind: MetricType) -> &mut MetricFamily {
        let at = match self.families.iter().position(|f| f.name() == name) {
            Some(i) => i,
            None => {
                let mut f = MetricFamily::default();
                f.set_name(name.to_string());
                f.set_help(help.to_string());
                f.set_field_type(kind);
                self.families.push(f);
                self.families.len() - 1
            }
        };
        &mut self.families[at]
    }

    /// The families built.
    pub fn finish(self) -> Vec<MetricFamily> {
        self.families
    }
}

fn label(name: &str, value: &str) -> LabelPair {
    let mut l = LabelPair::default();
    l.set_name(name.to_string());
    l.set_value(value.to_string());
    l
}

fn secs(d: std::time::Duration) -> f64 {
    d.as_secs_f64()
}

fn bool01(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

/// The metrics of one probe as `/probe` returns them (and `probe --format=prometheus` prints).
pub fn render(outcome: &ProbeOutcome) -> String {
    render_text(&outcome_families(outcome, &[]))
}

/// Every metric of one probe outcome, each sample carrying `common` labels first.
pub(crate) fn outcome_families(
    outcome: &ProbeOutcome,
    common: &[(&str, &str)],
) -> Vec<MetricFamily> {
    let mut f = Families::with_labels(common);
    let s = &outcome.session;
    f.gauge(
        "probe_success",
        "Whether every configured step of the probe passed.",
        &[],
        bool01(outcome.success()),
    );
    f.gauge(
        "probe_duration_seconds",
        "How long the probe took.",
        &[],
        secs(outcome.duration),
    );
    f.gauge(
        "probe_timeout_seconds",
        "The probe deadline in force.",
        &[],
        secs(outcome.timeout),
    );
    if let Some(step) = s.transcript.step(crate::vocab::StepName::Resolve) {
        f.gauge(
            "probe_dns_lookup_time_seconds",
            "How long resolving the target took.",
            &[],
            secs(step.duration),
        );
    }
    if let Some(peer) = s.peer {
        f.gauge(
            "probe_ip_protocol",
            "IP protocol of the connection: 4 or 6.",
            &[],
            if peer.is_ipv4() { 4.0 } else { 6.0 },
        );
    }

    // Steps that ran more than once (one RCPT per recipient) sum their durations and keep the
    // last reply: the label set stays one sample per step.
    let mut per_step: Vec<(
        crate::vocab::StepName,
        f64,
        Option<&crate::smtp::reply::Reply>,
    )> = Vec::new();
    for step in s.transcript.steps() {
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
        f.gauge(
            "probe_smtp_step_duration_seconds",
            "Duration of each probe step that ran.",
            &[("step", name.as_str())],
            *duration,
        );
    }
    for (name, _, reply) in &per_step {
        if let Some(r) = reply {
            f.gauge(
                "probe_smtp_step_reply_code",
                "Last SMTP reply code of each step.",
                &[("step", name.as_str())],
                f64::from(r.code),
            );
        }
    }
    for (name, _, reply) in &per_step {
        if let Some(r) = reply {
            let code = r.code.to_string();
            let enhanced = r.enhanced.map(|e| e.to_string()).unwrap_or_default();
            f.gauge(
                "probe_smtp_reply_info",
                "The reply of each step: code and enhanced status code.",
                &[
                    ("step", name.as_str()),
                    ("code", &code),
                    ("enhanced_code", &enhanced),
                ],
                1.0,
            );
        }
    }
    if let Some(failure) = &outcome.failure {
        f.gauge(
            "probe_smtp_failed_step_info",
            "The step the probe failed in and why.",
            &[
                ("step", failure.step.as_str()),
                ("reason", failure.reason.as_str()),
            ],
            1.0,
        );
    }
    if let Some(server) = s.effective_server() {
        for ext in &server.extensions {
            f.gauge(
                "probe_smtp_extension_info",
                "ESMTP extensions offered (after TLS when TLS is used).",
                &[("extension", ext.keyword())],
                1.0,
            );
        }
        for mech in server.auth_mechanisms() {
            f.gauge(
                "probe_smtp_auth_mechanism_info",
                "SASL mechanisms offered in AUTH.",
                &[("mechanism", &mech)],
                1.0,
            );
        }
    }
    if outcome.message_configured {
        f.gauge(
            "probe_smtp_message_accepted",
            "Whether the token mail got a 2xx reply after its content.",
            &[],
            bool01(s.message_accepted),
        );
    }

    if let Some(tls) = &s.tls {
        f.gauge(
            "probe_tls_version_info",
            "Negotiated TLS version.",
            &[("version", &tls.version)],
            1.0,
        );
        f.gauge(
            "probe_tls_cipher_info",
            "Negotiated TLS cipher suite.",
            &[("cipher", &tls.cipher)],
            1.0,
        );
        let chain = &tls.chain;
        f.gauge(
            "probe_tls_chain_valid",
            "Whether a chain to a trust anchor verified.",
            &[],
            bool01(chain.valid()),
        );
        if let Some(e) = &chain.error {
            f.gauge(
                "probe_tls_chain_error_info",
                "Why the chain did not verify.",
                &[("reason", e.reason.as_str())],
                1.0,
            );
        }
        f.gauge(
            "probe_tls_certs_sent",
            "How many certificates the server sent.",
            &[],
            chain.sent.len() as f64,
        );
        f.gauge(
            "probe_tls_chain_sent_complete",
            "Whether the sent certificates alone reach a trust anchor.",
            &[],
            bool01(chain.sent_complete),
        );
        // Every certificate of the built chain; when building stopped early, the sent ones it
        // did not reach are still shown, since their dates matter as much.
        let mut shown: Vec<&CertFacts> = chain.built.iter().collect();
        for c in &chain.sent {
            if !shown
                .iter()
                .any(|b| b.fingerprint_sha256 == c.fingerprint_sha256)
            {
                shown.push(c);
            }
        }
        for (i, c) in shown.iter().enumerate() {
            let depth = i.to_string();
            f.gauge(
                "probe_tls_cert_not_after_timestamp_seconds",
                "NotAfter of every certificate of the chain (sent=0: taken from a trust store).",
                &[
                    ("depth", &depth),
                    ("subject_cn", &c.subject_cn),
                    ("issuer_cn", &c.issuer_cn),
                    ("serial", &c.serial),
                    ("fingerprint_sha256", &c.fingerprint_sha256),
                    ("sent", if c.sent { "1" } else { "0" }),
                ],
                c.not_after as f64,
            );
        }
        if let Some(earliest) = chain.sent.iter().map(|c| c.not_after).min() {
            f.gauge(
                "probe_ssl_earliest_cert_expiry",
                "Earliest NotAfter of the certificates the server sent.",
                &[],
                earliest as f64,
            );
        }
        let built_known = chain
            .built
            .iter()
            .map(|c| c.not_after)
            .filter(|&t| t > 0)
            .min();
        if let Some(expiry) = built_known {
            f.gauge(
                "probe_ssl_last_chain_expiry_timestamp_seconds",
                "Earliest NotAfter in the chain built to a trust anchor.",
                &[],
                expiry as f64,
            );
        }
        if let Some(leaf) = chain.sent.first() {
            let sans = leaf.sans.join(",");
            f.gauge(
                "probe_ssl_last_chain_info",
                "Facts of the leaf certificate.",
                &[
                    ("fingerprint_sha256", &leaf.fingerprint_sha256),
                    ("subject", &leaf.subject),
                    ("issuer", &leaf.issuer),
                    ("subjectalternative", &sans),
                    ("serialnumber", &leaf.serial),
                ],
                1.0,
            );
        }
    }

    if let Some(d) = &outcome.delivery {
        f.gauge(
            "probe_delivery_success",
            "Whether the token mail was found in a mailbox in time.",
            &[],
            bool01(d.success),
        );
        if let Some(duration) = d.duration {
            f.gauge(
                "probe_delivery_duration_seconds",
                "From the end of DATA to the token mail being visible.",
                &[],
                secs(duration),
            );
        }
        if let Some(mailbox) = &d.mailbox {
            f.gauge(
                "probe_delivery_mailbox_info",
                "The mailbox the token mail landed in.",
                &[("mailbox", mailbox)],
                1.0,
            );
        }
    }
    f.finish()
}
