//! The product's finite vocabulary (DESIGN §5): the names of probe steps and the reasons a probe
//! fails. Both become Prometheus label values, so both are closed enums with stable spellings.

use serde::Serialize;
use std::fmt;

/// One exchange of a probe, in the order a full probe runs them.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepName {
    Resolve,
    Connect,
    Greeting,
    Ehlo,
    Starttls,
    TlsHandshake,
    EhloTls,
    OauthToken,
    Auth,
    Mail,
    Rcpt,
    Data,
    Message,
    Quit,
    Delivery,
}

impl StepName {
    /// Every step, in probe order.
    pub const ALL: [StepName; 15] = [
        StepName::Resolve,
        StepName::Connect,
        StepName::Greeting,
        StepName::Ehlo,
        StepName::Starttls,
        StepName::TlsHandshake,
        StepName::EhloTls,
        StepName::OauthToken,
        StepName::Auth,
        StepName::Mail,
        StepName::Rcpt,
        StepName::Data,
        StepName::Message,
        StepName::Quit,
        StepName::Delivery,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            StepName::Resolve => "resolve",
            StepName::Connect => "connect",
            StepName::Greeting => "greeting",
            StepName::Ehlo => "ehlo",
            StepName::Starttls => "starttls",
            StepName::TlsHandshake => "tls_handshake",
            StepName::EhloTls => "ehlo_tls",
            StepName::OauthToken => "oauth_token",
            StepName::Auth => "auth",
            StepName::Mail => "mail",
            StepName::Rcpt => "rcpt",
            StepName::Data => "data",
            StepName::Message => "message",
            StepName::Quit => "quit",
            StepName::Delivery => "delivery",
        }
    }
}

impl fmt::Display for StepName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a probe failed. Each variant carries a one-line hint for the person reading a transcript.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    DnsError,
    ConnectRefused,
    ConnectTimeout,
    Timeout,
    GreetingRejected,
    EhloRejected,
    StarttlsNotOffered,
    StarttlsRejected,
    TlsModeMismatch,
    TlsHandshakeFailed,
    CertUnknownIssuer,
    CertIncompleteChain,
    CertExpired,
    CertNotYetValid,
    CertHostnameMismatch,
    CertSelfSigned,
    CertBadSignature,
    CertExpiringSoon,
    AuthNotOffered,
    AuthFailed,
    OauthTokenFailed,
    SenderRejected,
    RecipientRejected,
    DataRejected,
    MessageRejected,
    ProtocolError,
    ConnectionClosed,
    DeliveryTimeout,
    ImapError,
    ImapProtocolError,
    ProberOverloaded,
    DeliveredToJunk,
    GraphError,
}

impl Reason {
    /// Every reason, for documentation and exhaustive tests.
    pub const ALL: [Reason; 33] = [
        Reason::DnsError,
        Reason::ConnectRefused,
        Reason::ConnectTimeout,
        Reason::Timeout,
        Reason::GreetingRejected,
        Reason::EhloRejected,
        Reason::StarttlsNotOffered,
        Reason::StarttlsRejected,
        Reason::TlsModeMismatch,
        Reason::TlsHandshakeFailed,
        Reason::CertUnknownIssuer,
        Reason::CertIncompleteChain,
        Reason::CertExpired,
        Reason::CertNotYetValid,
        Reason::CertHostnameMismatch,
        Reason::CertSelfSigned,
        Reason::CertBadSignature,
        Reason::CertExpiringSoon,
        Reason::AuthNotOffered,
        Reason::AuthFailed,
        Reason::OauthTokenFailed,
        Reason::SenderRejected,
        Reason::RecipientRejected,
        Reason::DataRejected,
        Reason::MessageRejected,
        Reason::ProtocolError,
        Reason::ConnectionClosed,
        Reason::DeliveryTimeout,
        Reason::ImapError,
        Reason::ImapProtocolError,
        Reason::ProberOverloaded,
        Reason::DeliveredToJunk,
        Reason::GraphError,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::DnsError => "dns_error",
            Reason::ConnectRefused => "connect_refused",
            Reason::ConnectTimeout => "connect_timeout",
            Reason::Timeout => "timeout",
            Reason::GreetingRejected => "greeting_rejected",
            Reason::EhloRejected => "ehlo_rejected",
            Reason::StarttlsNotOffered => "starttls_not_offered",
            Reason::StarttlsRejected => "starttls_rejected",
            Reason::TlsModeMismatch => "tls_mode_mismatch",
            Reason::TlsHandshakeFailed => "tls_handshake_failed",
            Reason::CertUnknownIssuer => "cert_unknown_issuer",
            Reason::CertIncompleteChain => "cert_incomplete_chain",
            Reason::CertExpired => "cert_expired",
            Reason::CertNotYetValid => "cert_not_yet_valid",
            Reason::CertHostnameMismatch => "cert_hostname_mismatch",
            Reason::CertSelfSigned => "cert_self_signed",
            Reason::CertBadSignature => "cert_bad_signature",
            Reason::CertExpiringSoon => "cert_expiring_soon",
            Reason::AuthNotOffered => "auth_not_offered",
            Reason::AuthFailed => "auth_failed",
            Reason::OauthTokenFailed => "oauth_token_failed",
            Reason::SenderRejected => "sender_rejected",
            Reason::RecipientRejected => "recipient_rejected",
            Reason::DataRejected => "data_rejected",
            Reason::MessageRejected => "message_rejected",
            Reason::ProtocolError => "protocol_error",
            Reason::ConnectionClosed => "connection_closed",
            Reason::DeliveryTimeout => "delivery_timeout",
            Reason::ImapError => "imap_error",
            Reason::ImapProtocolError => "imap_protocol_error",
            Reason::ProberOverloaded => "prober_overloaded",
            Reason::DeliveredToJunk => "delivered_to_junk",
            Reason::GraphError => "graph_error",
        }
    }

    /// Whether this is a certificate-chain verdict (the `cert_*` family).
    pub fn is_certificate(self) -> bool {
        self.as_str().starts_with("cert_")
    }

    /// A one-line hint of the usual fix as the exporter's readers need it (transcripts on
    /// `/logs` and `/probe?debug=true`, alert annotations): in terms of configuration keys.
    pub fn hint(self) -> &'static str {
        match self {
            Reason::DnsError => "the target's host name does not resolve; check the name and the resolver",
            Reason::ConnectRefused => "nothing listens on that address and port, or a firewall rejects the connection",
            Reason::ConnectTimeout => "no answer to the TCP connection; a firewall may drop the packets, or the port is wrong",
            Reason::Timeout => "the server stopped answering in the named step before the probe deadline",
            Reason::GreetingRejected => "the server refused the session in its greeting (busy, blocked client address or maintenance)",
            Reason::EhloRejected => "the server rejected EHLO; check the name the prober sends (ehlo: a fully qualified name the server accepts)",
            Reason::StarttlsNotOffered => "the server does not advertise STARTTLS; enable TLS on this port, or set tls: implicit if it speaks TLS from the first byte (port 465)",
            Reason::StarttlsRejected => "the server advertised STARTTLS but refused it; check its TLS key and certificate setup",
            Reason::TlsModeMismatch => "the module's tls does not match the port: set tls: implicit for a server that speaks TLS from the first byte (SMTPS, port 465), tls: starttls for one that greets in plain text (ports 587 and 25)",
            Reason::TlsHandshakeFailed => "the TLS handshake failed; compare protocol versions, ciphers and the server's certificate setup",
            Reason::CertUnknownIssuer => "the chain ends at a root the prober does not trust; add your CA's root to tls_config.ca_files (`smtp-prober chain TARGET` names the root to get)",
            Reason::CertIncompleteChain => "the server does not send the intermediate certificate; configure the full chain on the server",
            Reason::CertExpired => "a certificate in the chain has expired; renew it on the server",
            Reason::CertNotYetValid => "a certificate in the chain is not valid yet; check the server's certificate and both clocks",
            Reason::CertHostnameMismatch => "the certificate does not name the host probed; fix the certificate or set tls_config.server_name",
            Reason::CertSelfSigned => "the server presents a self-signed certificate; use a CA-issued one, or trust this one with tls_config.ca_files after checking its fingerprint",
            Reason::CertBadSignature => "a certificate's signature does not verify against its issuer; the chain is corrupt or mixed up",
            Reason::CertExpiringSoon => "a certificate in the chain expires within expect.cert_min_validity; renew it",
            Reason::AuthNotOffered => "the server does not offer a usable AUTH mechanism (often only after STARTTLS)",
            Reason::AuthFailed => "the server rejected the credentials; check user, password or token and that SMTP AUTH is enabled for the mailbox",
            Reason::OauthTokenFailed => "the OAuth 2.0 token endpoint did not issue a token; check client id, secret, scope and tenant",
            Reason::SenderRejected => "the server rejected MAIL FROM; the account may not send as this sender",
            Reason::RecipientRejected => "the server rejected RCPT TO; check the recipient address and relay permissions",
            Reason::DataRejected => "the server refused DATA",
            Reason::MessageRejected => "the server rejected the message after its content was sent (content filter, size or policy)",
            Reason::ProtocolError => "the server's reply broke the SMTP protocol (malformed, overlong or unexpected)",
            Reason::ConnectionClosed => "the server closed the connection unexpectedly",
            Reason::DeliveryTimeout => "the message was accepted but did not appear in the mailbox in time",
            Reason::ImapError => "the IMAP check failed (login, mailbox, TLS, or the IMAP server stopped answering); see the delivery step",
            Reason::ImapProtocolError => "the IMAP server's answer broke the protocol or the delivery check's limits (overlong line, oversized literal, endless responses); the mail server's IMAP side needs a look, not the mail flow",
            Reason::ProberOverloaded => "the exporter ran out of file descriptors (too many probes or connections at once), not the target; raise its limit (ulimit -n, LimitNOFILE) or lower --probe.max-concurrency and scheduler.max_concurrency",
            Reason::DeliveredToJunk => "the token mail arrived, but in a Junk folder (delivery.junk_is_failure is set); see its SPF, DKIM and DMARC results: a failing DKIM signature or SPF record is the usual cause",
            Reason::GraphError => "the Microsoft Graph mailbox check failed (permission, mailbox or folder, or Graph stopped answering); see the delivery step",
        }
    }
}

impl Reason {
    /// The hint for `audience`: the same fix, named by the flags of the command line or the
    /// keys of the configuration.
    pub fn hint_for(self, audience: Audience) -> &'static str {
        match audience {
            Audience::Config => self.hint(),
            Audience::Cli => self.cli_hint().unwrap_or_else(|| self.hint()),
        }
    }

    /// The hints that name a setting, with the command line's flag instead.
    fn cli_hint(self) -> Option<&'static str> {
        Some(match self {
            Reason::EhloRejected => "the server rejected EHLO; check the name the prober sends (--ehlo=NAME: a fully qualified name the server accepts)",
            Reason::StarttlsNotOffered => "the server does not advertise STARTTLS; enable TLS on this port, or use --tls=implicit if it speaks TLS from the first byte (port 465)",
            Reason::TlsModeMismatch => "--tls does not match the port: use --tls=implicit for a server that speaks TLS from the first byte (SMTPS, port 465), --tls=starttls for one that greets in plain text (ports 587 and 25)",
            Reason::CertUnknownIssuer => "the chain ends at a root the prober does not trust; add your CA's root with --ca-file (`smtp-prober chain TARGET` names the root to get)",
            Reason::CertHostnameMismatch => "the certificate does not name the host probed; fix the certificate, or probe with the name clients use (--server-name)",
            Reason::CertSelfSigned => "the server presents a self-signed certificate; use a CA-issued one, or trust this one with --ca-file after checking its fingerprint",
            Reason::CertExpiringSoon => "a certificate in the chain expires within the module's expect.cert_min_validity; renew it",
            _ => return None,
        })
    }
}

/// Who reads a hint: a person at the command line, who fixes things with flags (`--ca-file`),
/// or one who runs the exporter and edits its configuration (`tls_config.ca_files`).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Audience {
    /// The `probe` and `chain` commands.
    Cli,
    /// The exporter: `/logs`, `/probe?debug=true`, the status page, alert annotations.
    Config,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_spelling_matches_label_value() {
        for r in Reason::ALL {
            assert_eq!(serde_json::to_value(r).unwrap(), r.as_str());
        }
        for s in StepName::ALL {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
    }

    #[test]
    fn cli_hints_name_flags_and_config_hints_name_keys() {
        for r in Reason::ALL {
            let (cli, config) = (r.hint_for(Audience::Cli), r.hint_for(Audience::Config));
            assert_eq!(config, r.hint());
            for key in ["tls_config.", "ca_files", "tls: ", "ehlo:"] {
                assert!(!cli.contains(key), "{r}: {cli}");
            }
            for flag in ["--ca-file", "--tls", "--server-name", "--ehlo"] {
                assert!(!config.contains(flag), "{r}: {config}");
            }
        }
        assert!(Reason::CertUnknownIssuer
            .hint_for(Audience::Cli)
            .contains("--ca-file"));
        assert!(Reason::TlsModeMismatch
            .hint_for(Audience::Cli)
            .contains("--tls=implicit"));
        // The probe's hint promises no export: when no trust source holds the root, `chain
        // --export-dir` has nothing to write (before: "see `smtp-prober chain --export-dir`").
        for audience in [Audience::Cli, Audience::Config] {
            let hint = Reason::CertUnknownIssuer.hint_for(audience);
            assert!(!hint.contains("--export-dir"), "{hint}");
        }
    }

    #[test]
    fn label_values_are_unique() {
        let mut seen = std::collections::HashSet::new();
        assert!(Reason::ALL.iter().all(|r| seen.insert(r.as_str())));
        let mut seen = std::collections::HashSet::new();
        assert!(StepName::ALL.iter().all(|s| seen.insert(s.as_str())));
    }
}
