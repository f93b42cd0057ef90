//! The configuration file as written: serde structs that mirror the YAML of DESIGN §4 one to one.
//!
//! Nothing here is validated beyond what the types force (enum spellings, numbers, durations);
//! `validate` turns these into a [`crate::config::Config`]. Every struct rejects unknown keys, and
//! the values that validation looks at are wrapped in [`At`] so that an error can name the line
//! they came from. Required keys are `Option` here on purpose: a missing key is reported by
//! validation together with every other problem, instead of ending decoding at the first one.
//!
//! The same structs serialise the redacted copy served on `/config`, so optional keys that were
//! not written are skipped rather than printed as `null`.

use crate::probe::module::{ImapTls, IpProtocol, MechanismChoice, TlsMode};
use crate::tls::TrustKind;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::time::Duration;

/// A value with the place in the file it came from.
pub(crate) type At<T> = serde_saphyr::Spanned<T>;

/// The whole file.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub modules: BTreeMap<String, At<RawModule>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<At<RawTarget>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduler: Option<At<RawScheduler>>,
}

/// `scheduler:`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawScheduler {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<At<u64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_send_interval: Option<At<HumanDuration>>,
}

/// `modules.NAME:`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawModule {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<At<HumanDuration>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<At<Port>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<At<TlsMode>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ehlo: Option<At<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip_protocol: Option<At<IpProtocol>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_config: Option<At<RawTlsConfig>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth: Option<At<RawAuth>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<At<RawMessage>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery: Option<At<RawDelivery>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expect: Option<At<RawExpect>>,
}

/// `tls_config:` (of a module and of `delivery`).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawTlsConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_name: Option<At<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trust: Option<At<Vec<TrustKind>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_files: Option<Vec<At<String>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_version: Option<RawMinVersion>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub insecure_skip_verify: Option<bool>,
}

/// `tls_config.min_version`: written as the strings `"1.2"` and `"1.3"` (unquoted works too).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub(crate) enum RawMinVersion {
    #[serde(rename = "1.2")]
    Tls12,
    #[serde(rename = "1.3")]
    Tls13,
}

/// `auth:`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawAuth {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mechanism: Option<At<MechanismChoice>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<At<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_file: Option<At<String>>,
    /// Only a `${ENV}` reference is accepted; redacted on output.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<At<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_file: Option<At<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oauth2: Option<At<RawOAuth2>>,
}

/// `auth.oauth2:`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawOAuth2 {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_url: Option<At<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<At<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<At<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret_file: Option<At<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<At<String>>,
}

/// `message:`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawMessage {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<At<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<At<Vec<At<String>>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<At<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<At<String>>,
}

/// `delivery:`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawDelivery {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub imap: Option<At<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<At<ImapTls>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_config: Option<At<RawTlsConfig>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<At<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_file: Option<At<String>>,
    /// Only a `${ENV}` reference is accepted; redacted on output.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<At<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mailboxes: Option<At<Vec<At<String>>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<At<HumanDuration>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cleanup: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sweep_older_than: Option<At<HumanDuration>>,
}

/// `expect:`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawExpect {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_min_validity: Option<At<HumanDuration>>,
}

/// `targets[]`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawTarget {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<At<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<At<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub module: Option<At<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<At<HumanDuration>>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, At<String>>,
}

/// A humantime duration such as `15s`, `2m` or `14d`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) struct HumanDuration(pub Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        humantime::parse_duration(text.trim())
            .map(HumanDuration)
            .map_err(|e| {
                serde::de::Error::custom(format!(
                    "invalid duration {:?}: {e} (write it like 15s, 2m or 14d)",
                    text
                ))
            })
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&humantime::format_duration(self.0))
    }
}

/// A TCP port, 1 to 65535.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub(crate) struct Port(pub u16);

impl<'de> Deserialize<'de> for Port {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let n = u64::deserialize(deserializer)?;
        match u16::try_from(n) {
            Ok(port) if port != 0 => Ok(Port(port)),
            _ => Err(serde::de::Error::custom(format!(
                "port {n} is out of range: must be 1 to 65535"
            ))),
        }
    }
}
