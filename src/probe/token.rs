//! The token mail: a real message that looks like the MFA mail it stands in for, composed with
//! lettre (RFC 5322 headers, Message-ID, Date) and marked as ours so the delivery check can find
//! it and cleanup can never touch anything else.
//!
//! Headers beyond the usual: `Auto-Submitted: auto-generated` (RFC 3834, so no vacation replies)
//! and `X-Smtp-Prober-Id: <probe id>` (128 random bits). The token is a random 8-digit code from
//! the operating system's CSPRNG, substituted for `{token}` in subject and body; it is a secret.

use std::time::SystemTime;

use lettre::message::header::{Header, HeaderName, HeaderValue};
use rand::Rng;

use super::module::MessageSettings;
use crate::secret::Secret;
use crate::smtp::command::dot_stuff;
use crate::smtp::session::Envelope;

/// The header that marks our probe mails.
pub(crate) const PROBE_ID_HEADER: &str = "X-Smtp-Prober-Id";

/// A composed token mail.
#[derive(Clone, Debug)]
pub(crate) struct TokenMail {
    /// Unique id of this probe's mail (hex), in `X-Smtp-Prober-Id` and the Message-ID.
    pub(crate) probe_id: String,
    /// The token code, in the subject and body (read by the tests; never printed).
    #[allow(dead_code)]
    pub(crate) token: Secret,
    /// Envelope and wire content.
    pub(crate) envelope: Envelope,
    /// The domain of its Message-ID, `<probe_id@domain>`.
    pub(crate) domain: String,
}

/// Why the mail could not be composed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ComposeError {
    /// lettre refused an address.
    #[error("address {0:?}: {1}")]
    Address(String, String),
    /// lettre refused the message.
    #[error("message: {0}")]
    Message(String),
}

impl TokenMail {
    /// Composes a fresh token mail for one probe.
    pub(crate) fn compose(
        settings: &MessageSettings,
        now: SystemTime,
    ) -> Result<TokenMail, ComposeError> {
        let mut rng = rand::rng();
        let token = format!("{:08}", rng.random_range(0..100_000_000u32));
        let probe_id = hex::encode(rng.random::<[u8; 16]>());
        let domain = settings
            .from
            .as_str()
            .rsplit_once('@')
            .map(|(_, d)| d)
            .unwrap_or("smtp-prober.invalid");
        let message_id = format!("<{probe_id}@{domain}>");

        let parse = |a: &str| {
            a.parse::<lettre::message::Mailbox>()
                .map_err(|e| ComposeError::Address(a.to_string(), e.to_string()))
        };
        let mut builder = lettre::Message::builder()
            .from(parse(settings.from.as_str())?)
            .subject(settings.subject.replace("{token}", &token))
            .date(now)
            .message_id(Some(message_id))
            .header(AutoSubmitted)
            .header(ProbeId(probe_id.clone()));
        for to in &settings.to {
            builder = builder.to(parse(to.as_str())?);
        }
        let message = builder
            .body(settings.body.replace("{token}", &token))
            .map_err(|e| ComposeError::Message(e.to_string()))?;
        Ok(TokenMail {
            probe_id,
            token: Secret::new(token),
            envelope: Envelope {
                from: settings.from.clone(),
                to: settings.to.clone(),
                wire_content: dot_stuff(&message.formatted()),
            },
            domain: domain.to_string(),
        })
    }
}

/// `Auto-Submitted: auto-generated`.
#[derive(Clone, Debug)]
struct AutoSubmitted;

impl Header for AutoSubmitted {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("Auto-Submitted")
    }

    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(AutoSubmitted)
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), "auto-generated".into())
    }
}

/// `X-Smtp-Prober-Id: <hex>`.
#[derive(Clone, Debug)]
struct ProbeId(String);

impl Header for ProbeId {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str(PROBE_ID_HEADER)
    }

    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(ProbeId(s.trim().to_string()))
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), self.0.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::command::Mailbox;

    fn settings() -> MessageSettings {
        MessageSettings {
            from: Mailbox::new("probe@example.test").unwrap(),
            to: vec![Mailbox::new("inbox@example.test").unwrap()],
            subject: "MFA delivery probe {token}".into(),
            body: "Your authentication token code is {token}.\n.\n..leading dots\n".into(),
        }
    }

    #[test]
    fn composes_headers_token_and_dot_stuffing() {
        let mail = TokenMail::compose(&settings(), SystemTime::now()).unwrap();
        let token = mail.token.expose().to_string();
        assert_eq!(token.len(), 8);
        assert!(token.bytes().all(|b| b.is_ascii_digit()));
        assert_eq!(mail.probe_id.len(), 32);
        let wire = String::from_utf8(mail.envelope.wire_content.clone()).unwrap();
        assert!(
            wire.contains(&format!("Subject: MFA delivery probe {token}\r\n")),
            "{wire}"
        );
        assert!(wire.contains("From: probe@example.test\r\n"));
        assert!(wire.contains("To: inbox@example.test\r\n"));
        assert!(wire.contains("Auto-Submitted: auto-generated\r\n"));
        assert!(wire.contains(&format!("X-Smtp-Prober-Id: {}\r\n", mail.probe_id)));
        assert!(wire.contains(&format!("Message-ID: <{}@example.test>\r\n", mail.probe_id)));
        assert!(wire.contains("\r\nDate: "));
        assert!(wire.contains(&format!(
            "Your authentication token code is {token}.\r\n..\r\n...leading dots\r\n"
        )));
        assert!(wire.ends_with("\r\n.\r\n"));
        assert_eq!(
            wire.matches("\r\n.\r\n").count(),
            1,
            "only the terminator is a lone dot line"
        );
    }

    #[test]
    fn tokens_and_ids_differ_between_probes() {
        let a = TokenMail::compose(&settings(), SystemTime::now()).unwrap();
        let b = TokenMail::compose(&settings(), SystemTime::now()).unwrap();
        assert_ne!(a.probe_id, b.probe_id);
        assert!(format!("{a:?}").contains("<redacted>"));
        assert!(!format!("{a:?}").contains(&format!("token: {}", a.token.expose())));
    }
}
