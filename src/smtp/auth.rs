//! SASL for SMTP AUTH (RFC 4954): PLAIN (RFC 4616), LOGIN, XOAUTH2 and OAUTHBEARER (RFC 7628).
//!
//! A mechanism is a small state machine: an optional initial response, then one answer per 334
//! challenge. Everything it produces is a secret; the session masks it in the transcript.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

use crate::secret::Secret;

/// The SASL mechanism to use (`auth.mechanism`).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MechanismChoice {
    /// The best mechanism the server offers that the credentials can satisfy.
    #[default]
    Auto,
    /// PLAIN (RFC 4616).
    Plain,
    /// LOGIN (draft-murchison-sasl-login).
    Login,
    /// XOAUTH2 (Google and Microsoft).
    Xoauth2,
    /// OAUTHBEARER (RFC 7628).
    Oauthbearer,
}

/// A mechanism we can speak, by its registered name.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Mechanism {
    /// PLAIN.
    Plain,
    /// LOGIN.
    Login,
    /// XOAUTH2.
    Xoauth2,
    /// OAUTHBEARER.
    Oauthbearer,
}

impl Mechanism {
    /// The name as sent in `AUTH` and offered in EHLO.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Login => "LOGIN",
            Mechanism::Xoauth2 => "XOAUTH2",
            Mechanism::Oauthbearer => "OAUTHBEARER",
        }
    }

    /// Whether the mechanism takes a bearer token rather than a password.
    pub fn uses_token(self) -> bool {
        matches!(self, Mechanism::Xoauth2 | Mechanism::Oauthbearer)
    }
}

/// What kind of secret the configuration holds.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum SecretKind {
    /// A password.
    Password,
    /// An OAuth 2.0 bearer token.
    BearerToken,
}

/// Picks the mechanism: the configured one if the server offers it, or for `auto` the best the
/// server offers that the secret can satisfy (token: XOAUTH2, then OAUTHBEARER; password: PLAIN,
/// then LOGIN). `None` when nothing fits.
pub fn choose(choice: MechanismChoice, kind: SecretKind, offered: &[String]) -> Option<Mechanism> {
    let offers = |m: Mechanism| offered.iter().any(|o| o.eq_ignore_ascii_case(m.name()));
    let wanted: &[Mechanism] = match (choice, kind) {
        (MechanismChoice::Plain, _) => &[Mechanism::Plain],
        (MechanismChoice::Login, _) => &[Mechanism::Login],
        (MechanismChoice::Xoauth2, _) => &[Mechanism::Xoauth2],
        (MechanismChoice::Oauthbearer, _) => &[Mechanism::Oauthbearer],
        (MechanismChoice::Auto, SecretKind::BearerToken) => {
            &[Mechanism::Xoauth2, Mechanism::Oauthbearer]
        }
        (MechanismChoice::Auto, SecretKind::Password) => &[Mechanism::Plain, Mechanism::Login],
    };
    wanted.iter().copied().find(|&m| offers(m))
}

/// One SASL exchange in progress.
#[derive(Debug)]
pub struct SaslClient<'a> {
    mechanism: Mechanism,
    username: &'a str,
    secret: &'a Secret,
    host: &'a str,
    port: u16,
    round: u8,
}

impl<'a> SaslClient<'a> {
    /// Starts an exchange. `host` and `port` go into OAUTHBEARER's GS2 header.
    pub fn new(
        mechanism: Mechanism,
        username: &'a str,
        secret: &'a Secret,
        host: &'a str,
        port: u16,
    ) -> Self {
        SaslClient {
            mechanism,
            username,
            secret,
            host,
            port,
            round: 0,
        }
    }

    /// The mechanism.
    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }

    /// The base64 initial response to send with `AUTH`, if the mechanism has one.
    pub fn initial_response(&mut self) -> Option<String> {
        match self.mechanism {
            Mechanism::Login => None,
            _ => {
                self.round = 1;
                Some(B64.encode(self.payload()))
            }
        }
    }

    /// The answer to a 334 challenge (its text, base64). For the OAuth mechanisms, a challenge
    /// after the initial response is the server's JSON error: OAUTHBEARER answers it with the
    /// dummy response `%x01` (RFC 7628 §3.2.3), XOAUTH2 with an empty line (Google's and
    /// Microsoft's protocol), and the server then sends the final failure.
    pub fn respond(&mut self, challenge: &str) -> String {
        let decoded = B64.decode(challenge.trim()).unwrap_or_default();
        self.round = self.round.saturating_add(1);
        match self.mechanism {
            Mechanism::Login => {
                let prompt = String::from_utf8_lossy(&decoded).to_ascii_lowercase();
                if prompt.starts_with("password") || (self.round > 1 && !prompt.starts_with("user"))
                {
                    B64.encode(self.secret.expose())
                } else {
                    B64.encode(self.username)
                }
            }
            Mechanism::Plain if self.round == 1 => B64.encode(self.payload()),
            Mechanism::Oauthbearer if self.round > 1 => B64.encode("\x01"),
            _ => String::new(),
        }
    }

    /// The server's error challenge decoded, for the OAuth mechanisms (JSON text).
    pub fn decode_challenge(challenge: &str) -> Option<String> {
        let bytes = B64.decode(challenge.trim()).ok()?;
        String::from_utf8(bytes).ok()
    }

    fn payload(&self) -> String {
        let (user, secret) = (self.username, self.secret.expose());
        match self.mechanism {
            Mechanism::Plain => format!("\0{user}\0{secret}"),
            Mechanism::Login => String::new(),
            Mechanism::Xoauth2 => format!("user={user}\x01auth=Bearer {secret}\x01\x01"),
            Mechanism::Oauthbearer => format!(
                "n,a={},\x01host={}\x01port={}\x01auth=Bearer {secret}\x01\x01",
                user.replace('=', "=3D").replace(',', "=2C"),
                self.host,
                self.port
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offered(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn auto_prefers_plain_then_login_for_passwords() {
        let pw = SecretKind::Password;
        assert_eq!(
            choose(MechanismChoice::Auto, pw, &offered(&["LOGIN", "PLAIN"])),
            Some(Mechanism::Plain)
        );
        assert_eq!(
            choose(MechanismChoice::Auto, pw, &offered(&["LOGIN", "XOAUTH2"])),
            Some(Mechanism::Login)
        );
        assert_eq!(
            choose(MechanismChoice::Auto, pw, &offered(&["XOAUTH2"])),
            None
        );
        let tok = SecretKind::BearerToken;
        assert_eq!(
            choose(MechanismChoice::Auto, tok, &offered(&["LOGIN", "XOAUTH2"])),
            Some(Mechanism::Xoauth2)
        );
        assert_eq!(
            choose(
                MechanismChoice::Auto,
                tok,
                &offered(&["OAUTHBEARER", "PLAIN"])
            ),
            Some(Mechanism::Oauthbearer)
        );
        assert_eq!(
            choose(MechanismChoice::Login, pw, &offered(&["PLAIN"])),
            None
        );
        assert_eq!(
            choose(MechanismChoice::Plain, pw, &offered(&["plain"])),
            Some(Mechanism::Plain)
        );
    }

    #[test]
    fn plain_initial_response() {
        let s = Secret::new("secret");
        let mut c = SaslClient::new(Mechanism::Plain, "probe", &s, "h", 587);
        let ir = c.initial_response().unwrap();
        assert_eq!(B64.decode(ir).unwrap(), b"\0probe\0secret");
    }

    #[test]
    fn login_answers_prompts() {
        let s = Secret::new("secret");
        let mut c = SaslClient::new(Mechanism::Login, "probe", &s, "h", 587);
        assert_eq!(c.initial_response(), None);
        assert_eq!(c.respond("VXNlcm5hbWU6"), B64.encode("probe"));
        assert_eq!(c.respond("UGFzc3dvcmQ6"), B64.encode("secret"));
    }

    #[test]
    fn oauth_payloads_and_error_challenge() {
        let s = Secret::new("tok");
        let mut x = SaslClient::new(Mechanism::Xoauth2, "u@example.com", &s, "h", 587);
        assert_eq!(
            B64.decode(x.initial_response().unwrap()).unwrap(),
            b"user=u@example.com\x01auth=Bearer tok\x01\x01"
        );
        let challenge = B64.encode(r#"{"status":"401","schemes":"bearer","scope":"mail"}"#);
        assert_eq!(x.respond(&challenge), "");
        assert_eq!(
            SaslClient::decode_challenge(&challenge).unwrap(),
            r#"{"status":"401","schemes":"bearer","scope":"mail"}"#
        );
        let mut o = SaslClient::new(Mechanism::Oauthbearer, "u,1=@x", &s, "smtp.example", 587);
        assert_eq!(
            String::from_utf8(B64.decode(o.initial_response().unwrap()).unwrap()).unwrap(),
            "n,a=u=2C1=3D@x,\x01host=smtp.example\x01port=587\x01auth=Bearer tok\x01\x01"
        );
        let invalid_token = B64.encode(r#"{"status":"invalid_token"}"#);
        assert_eq!(o.respond(&invalid_token), "AQ==");
    }
}
