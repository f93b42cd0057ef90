//! A validated, ready-to-run module (DESIGN §4 `modules:`): what one kind of probe does.
//! The configuration layer builds these from YAML, the `probe` command from its flags; the
//! probe engine only reads them. Secrets are already loaded (from `*_file` or `${ENV}`).

use crate::secret::Secret;
use crate::smtp::command::{ClientName, Mailbox};
use crate::tls::TlsSettings;

pub use crate::smtp::auth::MechanismChoice;
pub use crate::smtp::session::{IpProtocol, TlsMode};
use std::path::PathBuf;
use std::time::Duration;

/// OAuth 2.0 client-credentials grant settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OAuth2Settings {
    /// The token endpoint.
    pub token_url: String,
    /// The application (client) id.
    pub client_id: String,
    /// The client secret.
    pub client_secret: Secret,
    /// The scope requested.
    pub scope: String,
}

/// What proves who we are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credential {
    /// A password (PLAIN, LOGIN).
    Password(Secret),
    /// A bearer token read from a file kept fresh by something else; re-read before each use.
    BearerTokenFile(PathBuf),
    /// A bearer token fetched with the client-credentials grant.
    OAuth2(OAuth2Settings),
}

/// `auth:`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthSettings {
    /// Which mechanism.
    pub mechanism: MechanismChoice,
    /// The user name (authentication identity).
    pub username: String,
    /// The password or token source.
    pub credential: Credential,
}

/// `message:`: the test token mail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageSettings {
    /// Envelope and header sender.
    pub from: Mailbox,
    /// Envelope and header recipients (at least one).
    pub to: Vec<Mailbox>,
    /// Subject template; `{token}` is replaced by the probe's token.
    pub subject: String,
    /// Body template; `{token}` is replaced by the probe's token.
    pub body: String,
}

/// How the IMAP connection uses TLS.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImapTls {
    /// TLS from the first byte (port 993).
    #[default]
    Implicit,
    /// STARTTLS on port 143.
    Starttls,
}

/// `delivery:` over IMAP: the server and the login.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImapAccess {
    /// IMAP server host.
    pub host: String,
    /// IMAP server port.
    pub port: u16,
    /// TLS mode.
    pub tls: ImapTls,
    /// TLS settings for the IMAP connection.
    pub tls_config: TlsSettings,
    /// IMAP login.
    pub username: String,
    /// A password (LOGIN), or a bearer token for `AUTHENTICATE XOAUTH2` (a token file, or the
    /// client-credentials grant: Microsoft's `IMAP.AccessAsApp`).
    pub credential: Credential,
}

/// `delivery.graph:`: the mailbox read through Microsoft Graph (`/users/{user}/messages`) with
/// an application token (application permission `Mail.ReadWrite`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GraphAccess {
    /// The client-credentials grant (scope `https://graph.microsoft.com/.default`).
    pub oauth2: OAuth2Settings,
    /// The mailbox: its user principal name or object id.
    pub user: String,
    /// The Graph endpoint, `https://graph.microsoft.com/v1.0` unless told otherwise.
    pub endpoint: String,
    /// TLS settings for the token and Graph endpoints.
    pub tls_config: TlsSettings,
}

/// How the delivery check reads the mailbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MailboxAccess {
    /// Over IMAP.
    Imap(ImapAccess),
    /// Through Microsoft Graph.
    Graph(GraphAccess),
}

impl MailboxAccess {
    /// The TLS settings of the connections it makes.
    pub fn tls_config(&self) -> &TlsSettings {
        match self {
            MailboxAccess::Imap(i) => &i.tls_config,
            MailboxAccess::Graph(g) => &g.tls_config,
        }
    }
}

/// `delivery:`: where and how long to look for the token mail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliverySettings {
    /// The mailbox's server and how to log in.
    pub access: MailboxAccess,
    /// Mailboxes searched, in order.
    pub mailboxes: Vec<String>,
    /// How long to wait for the mail after DATA ended.
    pub timeout: Duration,
    /// Delete our probe mail once found.
    pub cleanup: bool,
    /// Our own probe mails older than this (left by probes that gave up or crashed) are deleted
    /// when the mailbox is searched, so that the probe mailbox does not fill up.
    pub sweep_older_than: Duration,
    /// Scheduled mode: a mail that did not arrive within `timeout` is still looked for by later
    /// probes (and counted late when it turns up) until this long after it was sent; then it
    /// counts as lost.
    pub lost_after: Duration,
    /// Whether a token mail found in a Junk folder fails the probe (`delivered_to_junk`).
    pub junk_is_failure: bool,
}

/// `expect:`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Expect {
    /// Fail with `cert_expiring_soon` when a chain certificate expires sooner than this.
    pub cert_min_validity: Option<Duration>,
}

impl DeliverySettings {
    /// The IMAP server and login, when the mailbox is read over IMAP.
    pub fn imap(&self) -> Option<&ImapAccess> {
        match &self.access {
            MailboxAccess::Imap(i) => Some(i),
            MailboxAccess::Graph(_) => None,
        }
    }
}

/// One module, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Module {
    /// The whole probe's deadline (a `/probe` request may shorten it).
    pub timeout: Duration,
    /// Port used when the target names none.
    pub port: u16,
    /// TLS mode.
    pub tls: TlsMode,
    /// The EHLO name.
    pub ehlo: ClientName,
    /// Address family.
    pub ip_protocol: IpProtocol,
    /// TLS settings for the SMTP connection.
    pub tls_config: TlsSettings,
    /// Authentication, when configured.
    pub auth: Option<AuthSettings>,
    /// The token mail, when configured.
    pub message: Option<MessageSettings>,
    /// The delivery check, when configured (requires `message`).
    pub delivery: Option<DeliverySettings>,
    /// Expectations beyond success of every step.
    pub expect: Expect,
}

impl Default for Module {
    fn default() -> Self {
        Module {
            timeout: Duration::from_secs(15),
            port: 587,
            tls: TlsMode::Starttls,
            ehlo: ClientName::from_hostname(),
            ip_protocol: IpProtocol::Auto,
            tls_config: TlsSettings::default(),
            auth: None,
            message: None,
            delivery: None,
            expect: Expect::default(),
        }
    }
}
