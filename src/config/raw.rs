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
    pub(crate) modules: BTreeMap<String, At<RawModule>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) targets: Vec<At<RawTarget>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) scheduler: Option<At<RawScheduler>>,
}

/// `scheduler:`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawScheduler {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) max_concurrency: Option<At<u64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) min_send_interval: Option<At<HumanDuration>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) histograms: Option<At<crate::config::Histograms>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) buckets: Option<At<RawBuckets>>,
}

/// `scheduler.buckets`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawBuckets {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) probe: Option<At<Vec<f64>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) step: Option<At<Vec<f64>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) delivery: Option<At<Vec<f64>>>,
}

/// `modules.NAME:`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawModule {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) timeout: Option<At<HumanDuration>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) port: Option<At<Port>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) tls: Option<At<TlsMode>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) ehlo: Option<At<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) ip_protocol: Option<At<IpProtocol>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) tls_config: Option<At<RawTlsConfig>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) auth: Option<At<RawAuth>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) message: Option<At<RawMessage>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) delivery: Option<At<RawDelivery>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) expect: Option<At<RawExpect>>,
}

/// `tls_config:` (of a module and of `delivery`).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawTlsConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) server_name: Option<At<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) trust: Option<At<Vec<TrustKind>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) ca_files: Option<Vec<At<String>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) min_version: Option<RawMinVersion>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) insecure_skip_verify: Option<bool>,
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
    pub(crate) mechanism: Option<At<MechanismChoice>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) username: Option<At<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) password_file: Option<At<String>>,
    /// Only a `${ENV}` reference is accepted; redacted on output.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) password: Option<At<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) token_file: Option<At<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) oauth2: Option<At<RawOAuth2>>,
}

/// `auth.oauth2:`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawOAuth2 {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) token_url: Option<At<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) tenant: Option<At<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) client_id: Option<At<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) client_secret_file: Option<At<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) scope: Option<At<String>>,
}

/// `message:`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawMessage {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) from: Option<At<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) to: Option<At<Vec<At<String>>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) subject: Option<At<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) body: Option<At<String>>,
}

/// `delivery:`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawDelivery {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) imap: Option<At<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) tls: Option<At<ImapTls>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) tls_config: Option<At<RawTlsConfig>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) username: Option<At<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) password_file: Option<At<String>>,
    /// Only a `${ENV}` reference is accepted; redacted on output.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) password: Option<At<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) token_file: Option<At<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) oauth2: Option<At<RawOAuth2>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) mailboxes: Option<At<Vec<At<String>>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) timeout: Option<At<HumanDuration>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) cleanup: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) sweep_older_than: Option<At<HumanDuration>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) graph: Option<At<RawGraph>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) lost_after: Option<At<HumanDuration>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) junk_is_failure: Option<bool>,
}

/// `delivery.graph:`: the OAuth 2.0 fields of `auth.oauth2`, the mailbox and the endpoint.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawGraph {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) tenant: Option<At<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) token_url: Option<At<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) client_id: Option<At<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) client_secret_file: Option<At<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) scope: Option<At<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) mailbox: Option<At<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) endpoint: Option<At<String>>,
}

/// `expect:`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawExpect {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) cert_min_validity: Option<At<HumanDuration>>,
}

/// `targets[]`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawTarget {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) name: Option<At<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) target: Option<At<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) module: Option<At<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) interval: Option<At<HumanDuration>>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) labels: BTreeMap<String, At<String>>,
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
