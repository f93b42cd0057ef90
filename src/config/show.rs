//! A module as the configuration file would spell it, with its defaults filled in and every
//! secret replaced by `<redacted>`: what `/probe?debug=true` shows, as blackbox_exporter shows
//! its module. The keys are those of `modules.NAME` in the file, so the text can be copied back
//! into one.

use std::time::Duration;

use serde::Serialize;

use super::REDACTED;
use crate::probe::module::{
    Credential, DeliverySettings, ImapTls, IpProtocol, MailboxAccess, MechanismChoice, Module,
    OAuth2Settings, TlsMode,
};
use crate::tls::{MinVersion, TlsSettings, TrustKind};

/// The module as YAML, secrets redacted.
pub(crate) fn module_yaml(module: &Module) -> String {
    serde_saphyr::to_string(&ModuleYaml::new(module))
        .unwrap_or_else(|e| format!("# the module could not be shown: {e}\n"))
}

/// `15s`, `2m`, `1h`: a duration as the file writes it.
fn duration(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

#[derive(Serialize)]
struct ModuleYaml<'a> {
    timeout: String,
    port: u16,
    tls: TlsMode,
    ehlo: &'a str,
    ip_protocol: IpProtocol,
    tls_config: TlsConfigYaml<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    auth: Option<AuthYaml<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<MessageYaml<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    delivery: Option<DeliveryYaml<'a>>,
    expect: ExpectYaml,
}

#[derive(Serialize)]
struct TlsConfigYaml<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    server_name: Option<&'a str>,
    trust: &'a [TrustKind],
    ca_files: Vec<String>,
    min_version: &'static str,
    insecure_skip_verify: bool,
}

#[derive(Serialize)]
struct AuthYaml<'a> {
    mechanism: MechanismChoice,
    username: &'a str,
    #[serde(flatten)]
    credential: CredentialYaml<'a>,
}

/// A credential as its keys: the secret itself never, a token file's path yes.
#[derive(Serialize)]
#[serde(rename_all = "snake_case")]
enum CredentialYaml<'a> {
    Password(&'static str),
    TokenFile(String),
    Oauth2(OAuth2Yaml<'a>),
}

#[derive(Serialize)]
struct OAuth2Yaml<'a> {
    token_url: &'a str,
    client_id: &'a str,
    client_secret: &'static str,
    scope: &'a str,
}

#[derive(Serialize)]
struct MessageYaml<'a> {
    from: String,
    to: Vec<String>,
    subject: &'a str,
    body: &'a str,
}

#[derive(Serialize)]
struct DeliveryYaml<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    imap: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls: Option<ImapTls>,
    #[serde(skip_serializing_if = "Option::is_none")]
    username: Option<&'a str>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    credential: Option<CredentialYaml<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    graph: Option<GraphYaml<'a>>,
    tls_config: TlsConfigYaml<'a>,
    mailboxes: &'a [String],
    timeout: String,
    cleanup: bool,
    sweep_older_than: String,
    lost_after: String,
    junk_is_failure: bool,
}

#[derive(Serialize)]
struct GraphYaml<'a> {
    mailbox: &'a str,
    endpoint: &'a str,
    #[serde(flatten)]
    oauth2: OAuth2Yaml<'a>,
}

#[derive(Serialize)]
struct ExpectYaml {
    #[serde(skip_serializing_if = "Option::is_none")]
    cert_min_validity: Option<String>,
}

impl<'a> ModuleYaml<'a> {
    fn new(m: &'a Module) -> ModuleYaml<'a> {
        ModuleYaml {
            timeout: duration(m.timeout),
            port: m.port,
            tls: m.tls,
            ehlo: m.ehlo.as_str(),
            ip_protocol: m.ip_protocol,
            tls_config: TlsConfigYaml::new(&m.tls_config),
            auth: m.auth.as_ref().map(|a| AuthYaml {
                mechanism: a.mechanism,
                username: &a.username,
                credential: CredentialYaml::new(&a.credential),
            }),
            message: m.message.as_ref().map(|msg| MessageYaml {
                from: msg.from.to_string(),
                to: msg.to.iter().map(ToString::to_string).collect(),
                subject: &msg.subject,
                body: &msg.body,
            }),
            delivery: m.delivery.as_ref().map(DeliveryYaml::new),
            expect: ExpectYaml {
                cert_min_validity: m.expect.cert_min_validity.map(duration),
            },
        }
    }
}

impl<'a> TlsConfigYaml<'a> {
    fn new(t: &'a TlsSettings) -> TlsConfigYaml<'a> {
        TlsConfigYaml {
            server_name: t.server_name.as_deref(),
            trust: &t.trust,
            ca_files: t.ca_files.iter().map(|p| p.display().to_string()).collect(),
            min_version: match t.min_version {
                MinVersion::Tls12 => "1.2",
                MinVersion::Tls13 => "1.3",
            },
            insecure_skip_verify: t.insecure_skip_verify,
        }
    }
}

impl<'a> CredentialYaml<'a> {
    fn new(c: &'a Credential) -> CredentialYaml<'a> {
        match c {
            Credential::Password(_) => CredentialYaml::Password(REDACTED),
            Credential::BearerTokenFile(path) => {
                CredentialYaml::TokenFile(path.display().to_string())
            }
            Credential::OAuth2(o) => CredentialYaml::Oauth2(OAuth2Yaml::new(o)),
        }
    }
}

impl<'a> OAuth2Yaml<'a> {
    fn new(o: &'a OAuth2Settings) -> OAuth2Yaml<'a> {
        OAuth2Yaml {
            token_url: &o.token_url,
            client_id: &o.client_id,
            client_secret: REDACTED,
            scope: &o.scope,
        }
    }
}

impl<'a> DeliveryYaml<'a> {
    fn new(d: &'a DeliverySettings) -> DeliveryYaml<'a> {
        let (imap, tls, username, credential, graph, tls_config) = match &d.access {
            MailboxAccess::Imap(i) => (
                Some(
                    crate::probe::target::Target {
                        host: i.host.clone(),
                        port: i.port,
                    }
                    .to_string(),
                ),
                Some(i.tls),
                Some(i.username.as_str()),
                Some(CredentialYaml::new(&i.credential)),
                None,
                &i.tls_config,
            ),
            MailboxAccess::Graph(g) => (
                None,
                None,
                None,
                None,
                Some(GraphYaml {
                    mailbox: &g.user,
                    endpoint: &g.endpoint,
                    oauth2: OAuth2Yaml::new(&g.oauth2),
                }),
                &g.tls_config,
            ),
        };
        DeliveryYaml {
            imap,
            tls,
            username,
            credential,
            graph,
            tls_config: TlsConfigYaml::new(tls_config),
            mailboxes: &d.mailboxes,
            timeout: duration(d.timeout),
            cleanup: d.cleanup,
            sweep_older_than: duration(d.sweep_older_than),
            lost_after: duration(d.lost_after),
            junk_is_failure: d.junk_is_failure,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn a_module_shows_as_yaml_with_its_defaults_and_no_secret() {
        let dir = tempfile::tempdir().unwrap();
        let password = dir.path().join("password");
        std::fs::write(&password, "hunter2-the-password\n").unwrap();
        let yaml = format!(
            "modules:\n  submission:\n    tls_config: {{server_name: smtp.example.com}}\n    \
             auth: {{username: probe@example.com, password_file: \"{}\"}}\n    \
             expect: {{cert_min_validity: 14d}}\n",
            password.display()
        );
        let config = Config::from_str(&yaml, "test.yml").unwrap();
        let shown = module_yaml(config.module("submission").unwrap());
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("Secret"), "no Rust Debug output: {shown}");
        for line in [
            "timeout: 15s",
            "port: 587",
            "tls: starttls",
            "server_name: smtp.example.com",
            "username: probe@example.com",
            "password: <redacted>",
            "cert_min_validity: 14days",
        ] {
            assert!(shown.contains(line), "missing {line:?} in\n{shown}");
        }
        // It reads back as YAML.
        let value: serde_json::Value = serde_saphyr::from_str(&shown).unwrap();
        assert_eq!(value["auth"]["mechanism"], "auto");
    }
}
