//! Raw configuration → validated [`Config`] parts: defaults, `${ENV}` expansion, secret files,
//! and every check of DESIGN §4. Problems are collected, not returned at the first one, so that
//! one `check-config` run shows everything that is wrong.

use super::expand::{self, Env};
use super::raw::{
    At, RawAuth, RawConfig, RawDelivery, RawGraph, RawMessage, RawMinVersion, RawModule, RawOAuth2,
    RawScheduler, RawTarget, RawTlsConfig,
};
use super::{Bounds, Checks, Problem, SchedulerSettings, Target, MAX_BUCKETS};
use crate::probe::module::{
    AuthSettings, Credential, DeliverySettings, Expect, GraphAccess, ImapAccess, ImapTls,
    MailboxAccess, MechanismChoice, MessageSettings, Module, OAuth2Settings, TlsMode,
};
use crate::probe::target::parse_target;
use crate::secret::Secret;
use crate::smtp::command::{reject_line_breaks, ClientName, Mailbox};
use crate::tls::{MinVersion, TlsSettings};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Default `timeout` of a module.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);
/// Default `interval` of a target.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
/// Shortest target interval.
const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// Default `delivery.timeout`.
const DEFAULT_DELIVERY_TIMEOUT: Duration = Duration::from_secs(120);
/// Default `delivery.sweep_older_than`.
const DEFAULT_SWEEP_OLDER_THAN: Duration = Duration::from_secs(3600);
/// The credential fields `auth:` and `delivery:` share: one of them must be given.
#[derive(Clone, Copy)]
struct CredentialFields<'a> {
    password_file: &'a Option<At<String>>,
    password: &'a Option<At<String>>,
    token_file: &'a Option<At<String>>,
    oauth2: &'a Option<At<RawOAuth2>>,
}

impl<'a> CredentialFields<'a> {
    fn of_auth(raw: &'a RawAuth) -> Self {
        CredentialFields {
            password_file: &raw.password_file,
            password: &raw.password,
            token_file: &raw.token_file,
            oauth2: &raw.oauth2,
        }
    }

    fn of_delivery(raw: &'a RawDelivery) -> Self {
        CredentialFields {
            password_file: &raw.password_file,
            password: &raw.password,
            token_file: &raw.token_file,
            oauth2: &raw.oauth2,
        }
    }
}

/// A mail that has not arrived an hour (or twice the delivery timeout) after it was sent counts
/// as lost.
const DEFAULT_LOST_AFTER: Duration = Duration::from_secs(3600);
/// Default `message.subject`.
const DEFAULT_SUBJECT: &str = "smtp-prober delivery probe {token}";
/// Default `message.body`.
const DEFAULT_BODY: &str = "This is an smtp-prober delivery probe. Token: {token}";
/// The token placeholder in subject and body.
const TOKEN_PLACEHOLDER: &str = "{token}";
/// The scope used with `oauth2.tenant` when none is given: Exchange Online SMTP and IMAP.
const MICROSOFT_SCOPE: &str = "https://outlook.office365.com/.default";
/// The scope of a Microsoft Graph application token.
const GRAPH_SCOPE: &str = "https://graph.microsoft.com/.default";
/// Microsoft Graph, v1.0.
const GRAPH_ENDPOINT: &str = "https://graph.microsoft.com/v1.0";

/// Label names a target may not use: the ones scheduled mode adds itself (`name`, `target`,
/// `module`) and the ones of the metric families they are added to, which would collide.
const RESERVED_LABELS: &[&str] = &[
    "name",
    "target",
    "module",
    "step",
    "reason",
    "code",
    "enhanced_code",
    "extension",
    "mechanism",
    "version",
    "cipher",
    "key_exchange_group",
    "signature_scheme",
    "response_status",
    "cert_status",
    "depth",
    "subject_cn",
    "issuer_cn",
    "serial",
    "fingerprint_sha256",
    "sent",
    "subject",
    "issuer",
    "subjectalternative",
    "serialnumber",
    "mailbox",
    "result",
    "le",
    "quantile",
];

/// The line of a located value, `None` when the parser could not tell.
fn line<T>(at: &At<T>) -> Option<u64> {
    let line = at.referenced.line();
    (line > 0).then_some(line)
}

/// Why a list of histogram bucket bounds is refused.
#[derive(Debug, PartialEq, thiserror::Error)]
enum BoundsError {
    #[error("needs at least one bound (to export no histogram, set scheduler.histograms)")]
    Empty,
    #[error("{0} bounds; at most {MAX_BUCKETS} (each is a series per target)")]
    TooMany(usize),
    #[error("{0} is not a positive number of seconds")]
    NotPositive(f64),
    #[error("bounds must increase: {0} is followed by {1}")]
    NotIncreasing(f64, f64),
}

/// Bucket bounds must be positive, finite, strictly increasing, and at most [`MAX_BUCKETS`].
fn check_bounds(bounds: &[f64]) -> Result<(), BoundsError> {
    if bounds.is_empty() {
        return Err(BoundsError::Empty);
    }
    if bounds.len() > MAX_BUCKETS {
        return Err(BoundsError::TooMany(bounds.len()));
    }
    if let Some(b) = bounds.iter().find(|b| !b.is_finite() || **b <= 0.0) {
        return Err(BoundsError::NotPositive(*b));
    }
    if let Some(w) = bounds.windows(2).find(|w| w[0] >= w[1]) {
        return Err(BoundsError::NotIncreasing(w[0], w[1]));
    }
    Ok(())
}

/// The validated parts of a configuration.
pub(crate) struct Validated {
    pub(crate) modules: BTreeMap<String, Module>,
    pub(crate) targets: Vec<Arc<Target>>,
    pub(crate) scheduler: SchedulerSettings,
}

/// Walks the raw configuration, applying defaults and collecting problems.
pub(crate) struct Validator<'a> {
    env: Env<'a>,
    base_dir: Option<&'a Path>,
    /// Whether what the file refers to outside itself is checked too (secret, CA and token
    /// files, `${ENV}` variables), or only the file ([`Checks::SyntaxOnly`]).
    checks: Checks,
    problems: Vec<Problem>,
}

impl<'a> Validator<'a> {
    pub(crate) fn new(env: Env<'a>, base_dir: Option<&'a Path>, checks: Checks) -> Self {
        Validator {
            env,
            base_dir,
            checks,
            problems: Vec::new(),
        }
    }

    /// Whether only the file itself is checked.
    fn syntax_only(&self) -> bool {
        self.checks == Checks::SyntaxOnly
    }

    /// Validates the whole file; the problems when anything is wrong.
    pub(crate) fn config(mut self, raw: &RawConfig) -> Result<Validated, Vec<Problem>> {
        let scheduler = self.scheduler(raw.scheduler.as_ref());
        let mut modules = BTreeMap::new();
        for (name, module) in &raw.modules {
            if let Some(module) = self.module(name, module) {
                modules.insert(name.clone(), module);
            }
        }
        let targets = self.targets(raw, &scheduler);
        if self.problems.is_empty() {
            Ok(Validated {
                modules,
                targets,
                scheduler,
            })
        } else {
            Err(self.problems)
        }
    }

    fn report(&mut self, line: Option<u64>, field: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            line,
            column: None,
            field: field.to_string(),
            message: message.into(),
        });
    }

    /// Runs `check` and tells whether it reported nothing.
    fn clean<T>(&mut self, check: impl FnOnce(&mut Self) -> T) -> Option<T> {
        let before = self.problems.len();
        let value = check(self);
        (self.problems.len() == before).then_some(value)
    }

    /// A required key: reports it missing at the parent's line.
    fn required<'r, T>(
        &mut self,
        value: &'r Option<At<T>>,
        parent_line: Option<u64>,
        field: &str,
    ) -> Option<&'r At<T>> {
        if value.is_none() {
            self.report(parent_line, field, "required but missing");
        }
        value.as_ref()
    }

    /// A duration that must be positive, or the default.
    fn positive(
        &mut self,
        value: &Option<At<super::raw::HumanDuration>>,
        field: &str,
    ) -> Option<Duration> {
        let at = value.as_ref()?;
        if at.value.0.is_zero() {
            self.report(line(at), field, "must be greater than 0");
        }
        Some(at.value.0)
    }

    /// A string field with `${ENV}` references expanded.
    fn expanded(&mut self, at: &At<String>, field: &str) -> Option<String> {
        match expand::expand(&at.value, self.env) {
            Ok(text) => Some(text),
            // Where the variables are not set, the value cannot be checked: it is skipped.
            Err(expand::ExpandError::Unset(_)) if self.syntax_only() => None,
            Err(why) => {
                self.report(line(at), field, why.to_string());
                None
            }
        }
    }

    /// A non-empty single-line value (user names, client ids), `${ENV}` expanded.
    fn single_line(&mut self, at: &At<String>, field: &str, what: &'static str) -> Option<String> {
        let text = self.expanded(at, field)?;
        if text.is_empty() {
            self.report(line(at), field, format!("{what} is empty"));
            return None;
        }
        if let Err(e) = reject_line_breaks(what, &text) {
            self.report(line(at), field, e.to_string());
            return None;
        }
        Some(text)
    }

    /// A file path, `${ENV}` expanded and resolved against the configuration's directory.
    fn path(&mut self, at: &At<String>, field: &str) -> Option<PathBuf> {
        let text = self.expanded(at, field)?;
        if text.is_empty() {
            self.report(line(at), field, "path is empty");
            return None;
        }
        Some(expand::resolve_path(&text, self.base_dir))
    }

    /// A file that must be readable now (CA files, token files): a regular file of at most
    /// `max` bytes.
    fn readable_path(&mut self, at: &At<String>, field: &str, max: u64) -> Option<PathBuf> {
        let path = self.path(at, field)?;
        if self.syntax_only() {
            return Some(path);
        }
        if let Err(why) = expand::check_readable(&path, max) {
            self.report(line(at), field, why.to_string());
            return None;
        }
        Some(path)
    }

    /// A secret read from a `*_file` field.
    fn secret_file(&mut self, at: &At<String>, field: &str) -> Option<Secret> {
        let path = self.path(at, field)?;
        if self.syntax_only() {
            return Some(Secret::new(super::REDACTED));
        }
        match expand::read_secret_file(&path) {
            Ok(secret) => Some(secret),
            Err(why) => {
                self.report(line(at), field, why.to_string());
                None
            }
        }
    }

    /// A secret given as a `${ENV}` reference. A literal is refused without echoing it: it is
    /// a password written into a file that is meant to be shown (`/config`) and kept in git.
    fn secret_reference(&mut self, at: &At<String>, field: &str) -> Option<Secret> {
        let Some(name) = expand::sole_reference(&at.value) else {
            self.report(
                line(at),
                field,
                "must be a ${ENV} reference such as \"${SMTP_PASSWORD}\" (a literal password \
                 is not allowed; use password_file or an environment variable)",
            );
            return None;
        };
        match (self.env)(name) {
            Some(value) if !value.is_empty() => Some(Secret::new(value)),
            _ if self.syntax_only() => Some(Secret::new(super::REDACTED)),
            Some(_) => {
                self.report(
                    line(at),
                    field,
                    format!("environment variable {name} is empty"),
                );
                None
            }
            None => {
                self.report(
                    line(at),
                    field,
                    format!("environment variable {name} is not set"),
                );
                None
            }
        }
    }

    /// A password from exactly one of `password_file` and `password`.
    fn password(
        &mut self,
        file: &Option<At<String>>,
        reference: &Option<At<String>>,
        parent_line: Option<u64>,
        prefix: &str,
    ) -> Option<Secret> {
        match (file, reference) {
            (Some(file), None) => self.secret_file(file, &format!("{prefix}.password_file")),
            (None, Some(reference)) => {
                self.secret_reference(reference, &format!("{prefix}.password"))
            }
            (Some(_), Some(reference)) => {
                self.report(
                    line(reference),
                    &format!("{prefix}.password"),
                    "give password_file or password, not both",
                );
                None
            }
            (None, None) => {
                self.report(
                    parent_line,
                    &format!("{prefix}.password_file"),
                    "required but missing (or password as a ${ENV} reference)",
                );
                None
            }
        }
    }

    fn scheduler(&mut self, raw: Option<&At<RawScheduler>>) -> SchedulerSettings {
        let mut settings = SchedulerSettings::default();
        let Some(raw) = raw else { return settings };
        if let Some(at) = &raw.value.max_concurrency {
            match usize::try_from(at.value) {
                Ok(n) if n > 0 => settings.max_concurrency = n,
                _ => self.report(
                    line(at),
                    "scheduler.max_concurrency",
                    format!("must be at least 1, got {}", at.value),
                ),
            }
        }
        if let Some(at) = &raw.value.min_send_interval {
            settings.min_send_interval = at.value.0;
        }
        if let Some(at) = &raw.value.histograms {
            settings.histograms = at.value;
        }
        if let Some(buckets) = &raw.value.buckets {
            let b = &buckets.value;
            let mut bounds = |at: &Option<At<Vec<f64>>>, name: &str, into: &mut Bounds| {
                if let Some(at) = at {
                    let field = format!("scheduler.buckets.{name}");
                    match check_bounds(&at.value) {
                        Ok(()) => *into = Bounds::new(&at.value),
                        Err(why) => self.report(line(at), &field, why.to_string()),
                    }
                }
            };
            bounds(&b.probe, "probe", &mut settings.buckets.probe);
            bounds(&b.step, "step", &mut settings.buckets.step);
            bounds(&b.delivery, "delivery", &mut settings.buckets.delivery);
        }
        settings
    }

    fn module(&mut self, name: &str, raw: &At<RawModule>) -> Option<Module> {
        let prefix = format!("modules.{name}");
        let module_line = line(raw);
        self.clean(|v| {
            if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
                v.report(
                    module_line,
                    &prefix,
                    format!("module name {:?} must be non-empty, without spaces", name),
                );
            }
            let raw = &raw.value;
            let mut module = Module {
                ehlo: ClientName::from_hostname(),
                ..Module::default()
            };
            module.timeout = v
                .positive(&raw.timeout, &format!("{prefix}.timeout"))
                .unwrap_or(DEFAULT_TIMEOUT);
            module.tls = raw.tls.as_ref().map(|at| at.value).unwrap_or_default();
            module.port = raw
                .port
                .as_ref()
                .map(|at| at.value.0)
                .unwrap_or_else(|| default_smtp_port(module.tls));
            if let Some(at) = &raw.ehlo {
                match ClientName::new(&at.value) {
                    Ok(ehlo) => module.ehlo = ehlo,
                    Err(e) => v.report(line(at), &format!("{prefix}.ehlo"), e.to_string()),
                }
            }
            if let Some(at) = &raw.ip_protocol {
                module.ip_protocol = at.value;
            }
            module.tls_config =
                v.tls_config(raw.tls_config.as_ref(), &format!("{prefix}.tls_config"));
            module.auth = raw
                .auth
                .as_ref()
                .and_then(|at| v.auth(at, &format!("{prefix}.auth")));
            let delivery_wanted = raw.delivery.is_some();
            module.message = raw
                .message
                .as_ref()
                .and_then(|at| v.message(at, &format!("{prefix}.message"), delivery_wanted));
            if let Some(at) = &raw.delivery {
                if raw.message.is_none() {
                    v.report(
                        line(at),
                        &format!("{prefix}.delivery"),
                        "delivery needs a message: without a token mail there is nothing to \
                         look for",
                    );
                }
                module.delivery = v.delivery(at, &format!("{prefix}.delivery"));
            }
            if let Some(at) = &raw.expect {
                module.expect = Expect {
                    cert_min_validity: at.value.cert_min_validity.as_ref().map(|d| d.value.0),
                };
            }
            module
        })
    }

    fn tls_config(&mut self, raw: Option<&At<RawTlsConfig>>, prefix: &str) -> TlsSettings {
        let mut settings = TlsSettings::default();
        let Some(raw) = raw else { return settings };
        let tls_line = line(raw);
        let raw = &raw.value;
        if let Some(at) = &raw.server_name {
            let field = format!("{prefix}.server_name");
            if rustls_pki_types::ServerName::try_from(at.value.as_str()).is_err() {
                self.report(
                    line(at),
                    &field,
                    format!("{:?} is not a valid DNS name or IP address", at.value),
                );
            } else {
                settings.server_name = Some(at.value.clone());
            }
        }
        if let Some(at) = &raw.trust {
            settings.trust.clear();
            for kind in &at.value {
                if !settings.trust.contains(kind) {
                    settings.trust.push(*kind);
                }
            }
        }
        if let Some(files) = &raw.ca_files {
            for (i, at) in files.iter().enumerate() {
                if let Some(path) = self.readable_path(
                    at,
                    &format!("{prefix}.ca_files[{i}]"),
                    crate::tls::MAX_CA_FILE_BYTES,
                ) {
                    settings.ca_files.push(path);
                }
            }
        }
        if settings.trust.is_empty() && raw.ca_files.as_ref().is_none_or(Vec::is_empty) {
            let at_line = raw.trust.as_ref().and_then(line).or(tls_line);
            self.report(
                at_line,
                &format!("{prefix}.trust"),
                "no trust anchors: list system and/or bundled, or give ca_files",
            );
        }
        settings.min_version = match raw.min_version {
            Some(RawMinVersion::Tls13) => MinVersion::Tls13,
            Some(RawMinVersion::Tls12) | None => MinVersion::Tls12,
        };
        settings.insecure_skip_verify = raw.insecure_skip_verify.unwrap_or(false);
        settings
    }

    fn auth(&mut self, raw: &At<RawAuth>, prefix: &str) -> Option<AuthSettings> {
        let auth_line = line(raw);
        self.clean(|v| {
            let raw = &raw.value;
            let mechanism = raw
                .mechanism
                .as_ref()
                .map(|at| at.value)
                .unwrap_or_default();
            let username = v
                .required(&raw.username, auth_line, &format!("{prefix}.username"))
                .and_then(|at| v.single_line(at, &format!("{prefix}.username"), "username"));
            let credential = v.one_credential(CredentialFields::of_auth(raw), prefix, auth_line);
            if let (Some(credential), Some(at)) = (&credential, &raw.mechanism) {
                let password = matches!(credential, Credential::Password(_));
                let needs = match at.value {
                    MechanismChoice::Plain | MechanismChoice::Login if !password => {
                        Some("a password (password_file or password)")
                    }
                    MechanismChoice::Xoauth2 | MechanismChoice::Oauthbearer if password => {
                        Some("a bearer token (token_file or oauth2)")
                    }
                    _ => None,
                };
                if let Some(needs) = needs {
                    v.report(
                        line(at),
                        &format!("{prefix}.mechanism"),
                        format!("mechanism {} needs {needs}", mechanism_name(at.value)),
                    );
                }
            }
            match (username, credential) {
                (Some(username), Some(credential)) => Some(AuthSettings {
                    mechanism,
                    username,
                    credential,
                }),
                _ => None,
            }
        })
        .flatten()
    }

    /// Exactly one of `password_file`, `password`, `token_file` and `oauth2`, read.
    fn one_credential(
        &mut self,
        raw: CredentialFields<'_>,
        prefix: &str,
        parent_line: Option<u64>,
    ) -> Option<Credential> {
        let given: Vec<&str> = [
            ("password_file", raw.password_file.is_some()),
            ("password", raw.password.is_some()),
            ("token_file", raw.token_file.is_some()),
            ("oauth2", raw.oauth2.is_some()),
        ]
        .into_iter()
        .filter_map(|(key, present)| present.then_some(key))
        .collect();
        match given.as_slice() {
            [] => {
                self.report(
                    parent_line,
                    prefix,
                    "needs one of password_file, password (a ${ENV} reference), \
                     token_file or oauth2",
                );
                None
            }
            [_] => self.credential(raw, prefix, parent_line),
            several => {
                self.report(
                    parent_line,
                    prefix,
                    format!("give only one of password_file, password, token_file and oauth2 (found {})", several.join(", ")),
                );
                None
            }
        }
    }

    fn credential(
        &mut self,
        raw: CredentialFields<'_>,
        prefix: &str,
        auth_line: Option<u64>,
    ) -> Option<Credential> {
        if raw.password_file.is_some() || raw.password.is_some() {
            return self
                .password(raw.password_file, raw.password, auth_line, prefix)
                .map(Credential::Password);
        }
        if let Some(at) = &raw.token_file {
            return self
                .readable_path(
                    at,
                    &format!("{prefix}.token_file"),
                    crate::secret::MAX_SECRET_FILE_BYTES,
                )
                .map(Credential::BearerTokenFile);
        }
        let at = raw.oauth2.as_ref()?;
        self.oauth2(at, &format!("{prefix}.oauth2"))
            .map(Credential::OAuth2)
    }

    fn oauth2(&mut self, raw: &At<RawOAuth2>, prefix: &str) -> Option<OAuth2Settings> {
        self.oauth2_for(raw, prefix, MICROSOFT_SCOPE)
    }

    /// `oauth2:` fields; with `tenant` and no `scope`, the scope is `tenant_scope`.
    fn oauth2_for(
        &mut self,
        raw: &At<RawOAuth2>,
        prefix: &str,
        tenant_scope: &str,
    ) -> Option<OAuth2Settings> {
        let oauth_line = line(raw);
        self.clean(|v| {
            let raw = &raw.value;
            let token_url = match (&raw.token_url, &raw.tenant) {
                (Some(at), None) => v.token_url(at, &format!("{prefix}.token_url")),
                (None, Some(at)) => v.tenant_token_url(at, &format!("{prefix}.tenant")),
                (Some(_), Some(at)) => {
                    v.report(
                        line(at),
                        &format!("{prefix}.tenant"),
                        "give token_url or tenant, not both",
                    );
                    None
                }
                (None, None) => {
                    v.report(
                        oauth_line,
                        &format!("{prefix}.token_url"),
                        "required but missing (or tenant, for Microsoft)",
                    );
                    None
                }
            };
            let client_id = v
                .required(&raw.client_id, oauth_line, &format!("{prefix}.client_id"))
                .and_then(|at| v.single_line(at, &format!("{prefix}.client_id"), "client_id"));
            let client_secret = v
                .required(
                    &raw.client_secret_file,
                    oauth_line,
                    &format!("{prefix}.client_secret_file"),
                )
                .and_then(|at| v.secret_file(at, &format!("{prefix}.client_secret_file")));
            let scope = match (&raw.scope, &raw.tenant) {
                (Some(at), _) => v.single_line(at, &format!("{prefix}.scope"), "scope"),
                (None, Some(_)) => Some(tenant_scope.to_string()),
                (None, None) => {
                    v.report(
                        oauth_line,
                        &format!("{prefix}.scope"),
                        "required but missing",
                    );
                    None
                }
            };
            Some(OAuth2Settings {
                token_url: token_url?,
                client_id: client_id?,
                client_secret: client_secret?,
                scope: scope?,
            })
        })
        .flatten()
    }

    /// A token endpoint: HTTPS, or plain HTTP on loopback (a local test double).
    fn token_url(&mut self, at: &At<String>, field: &str) -> Option<String> {
        let url = at.value.trim();
        let rest = url.strip_prefix("https://").or_else(|| {
            url.strip_prefix("http://")
                .filter(|rest| is_loopback_authority(rest))
        });
        let valid = rest.is_some_and(|rest| {
            !rest.is_empty() && !url.chars().any(|c| c.is_whitespace() || c.is_control())
        });
        if !valid {
            self.report(
                line(at),
                field,
                format!(
                    "{:?} is not an https:// URL (plain http:// only on 127.0.0.1, [::1] or localhost)",
                    url
                ),
            );
            return None;
        }
        Some(url.to_string())
    }

    /// Microsoft's shorthand: the tenant (id or domain) names the token endpoint.
    fn tenant_token_url(&mut self, at: &At<String>, field: &str) -> Option<String> {
        let tenant = self.expanded(at, field)?;
        let valid = !tenant.is_empty()
            && tenant
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
        if !valid {
            self.report(
                line(at),
                field,
                format!(
                    "{:?} is not a tenant id or domain (letters, digits, '-' and '.')",
                    tenant
                ),
            );
            return None;
        }
        Some(format!(
            "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token"
        ))
    }

    fn mailbox(&mut self, at: &At<String>, field: &str) -> Option<Mailbox> {
        let text = self.expanded(at, field)?;
        match Mailbox::new(&text) {
            Ok(mailbox) => Some(mailbox),
            Err(e) => {
                self.report(line(at), field, e.to_string());
                None
            }
        }
    }

    fn message(
        &mut self,
        raw: &At<RawMessage>,
        prefix: &str,
        delivery_wanted: bool,
    ) -> Option<MessageSettings> {
        let message_line = line(raw);
        self.clean(|v| {
            let raw = &raw.value;
            let from = v
                .required(&raw.from, message_line, &format!("{prefix}.from"))
                .and_then(|at| v.mailbox(at, &format!("{prefix}.from")));
            let mut to = Vec::new();
            if let Some(list) = v.required(&raw.to, message_line, &format!("{prefix}.to")) {
                if list.value.is_empty() {
                    v.report(
                        line(list),
                        &format!("{prefix}.to"),
                        "needs at least one recipient",
                    );
                }
                for (i, at) in list.value.iter().enumerate() {
                    if let Some(mailbox) = v.mailbox(at, &format!("{prefix}.to[{i}]")) {
                        to.push(mailbox);
                    }
                }
            }
            let subject = match &raw.subject {
                Some(at) => {
                    // A line break in the subject would let the value add header fields.
                    if let Err(e) = reject_line_breaks("subject", &at.value) {
                        v.report(line(at), &format!("{prefix}.subject"), e.to_string());
                    }
                    at.value.clone()
                }
                None => DEFAULT_SUBJECT.to_string(),
            };
            let body = match &raw.body {
                Some(at) => {
                    if at.value.contains('\0') {
                        v.report(line(at), &format!("{prefix}.body"), "body contains NUL");
                    }
                    at.value.clone()
                }
                None => DEFAULT_BODY.to_string(),
            };
            if delivery_wanted
                && !subject.contains(TOKEN_PLACEHOLDER)
                && !body.contains(TOKEN_PLACEHOLDER)
            {
                let at_line = raw.subject.as_ref().and_then(line).or(message_line);
                v.report(
                    at_line,
                    &format!("{prefix}.subject"),
                    "subject or body must contain {token}: the delivery check searches for it",
                );
            }
            Some(MessageSettings {
                from: from?,
                to,
                subject,
                body,
            })
        })
        .flatten()
    }

    fn delivery(&mut self, raw: &At<RawDelivery>, prefix: &str) -> Option<DeliverySettings> {
        let delivery_line = line(raw);
        self.clean(|v| {
            let raw = &raw.value;
            let access = match &raw.graph {
                Some(graph) => v.graph(raw, graph, prefix),
                None => v.imap(raw, prefix, delivery_line),
            };
            let mut mailboxes = vec!["INBOX".to_string()];
            if let Some(list) = &raw.mailboxes {
                mailboxes.clear();
                if list.value.is_empty() {
                    v.report(
                        line(list),
                        &format!("{prefix}.mailboxes"),
                        "needs at least one mailbox",
                    );
                }
                for (i, at) in list.value.iter().enumerate() {
                    let field = format!("{prefix}.mailboxes[{i}]");
                    if at.value.is_empty() {
                        v.report(line(at), &field, "mailbox name is empty");
                    } else if let Err(e) = reject_line_breaks("mailbox", &at.value) {
                        // Mailbox names go into IMAP commands: a line break would inject one.
                        v.report(line(at), &field, e.to_string());
                    } else {
                        mailboxes.push(at.value.clone());
                    }
                }
            }
            let timeout = v
                .positive(&raw.timeout, &format!("{prefix}.timeout"))
                .unwrap_or(DEFAULT_DELIVERY_TIMEOUT);
            let sweep_older_than = v
                .positive(&raw.sweep_older_than, &format!("{prefix}.sweep_older_than"))
                .unwrap_or(DEFAULT_SWEEP_OLDER_THAN);
            let lost_after = v
                .positive(&raw.lost_after, &format!("{prefix}.lost_after"))
                .unwrap_or(DEFAULT_LOST_AFTER.max(timeout * 2));
            if let Some(at) = raw.lost_after.as_ref().filter(|_| lost_after <= timeout) {
                v.report(
                    line(at),
                    &format!("{prefix}.lost_after"),
                    format!(
                        "must be longer than the delivery timeout ({}): a mail is late, then lost",
                        humantime::format_duration(timeout)
                    ),
                );
            }
            Some(DeliverySettings {
                access: access?,
                mailboxes,
                timeout,
                cleanup: raw.cleanup.unwrap_or(true),
                sweep_older_than,
                lost_after,
                junk_is_failure: raw.junk_is_failure.unwrap_or(false),
            })
        })
        .flatten()
    }

    /// `delivery:` over IMAP: the server, the login and the credential.
    fn imap(
        &mut self,
        raw: &RawDelivery,
        prefix: &str,
        delivery_line: Option<u64>,
    ) -> Option<MailboxAccess> {
        let v = self;
        let tls = raw.tls.as_ref().map(|at| at.value).unwrap_or_default();
        let default_port = match tls {
            ImapTls::Implicit => 993,
            ImapTls::Starttls => 143,
        };
        let server = v
            .required(&raw.imap, delivery_line, &format!("{prefix}.imap"))
            .and_then(|at| match parse_target(&at.value, default_port) {
                Ok(server) => Some(server),
                Err(why) => {
                    v.report(line(at), &format!("{prefix}.imap"), why.to_string());
                    None
                }
            });
        let tls_config = v.tls_config(raw.tls_config.as_ref(), &format!("{prefix}.tls_config"));
        let username = v
            .required(&raw.username, delivery_line, &format!("{prefix}.username"))
            .and_then(|at| v.single_line(at, &format!("{prefix}.username"), "username"));
        let credential =
            v.one_credential(CredentialFields::of_delivery(raw), prefix, delivery_line);
        let server = server?;
        Some(MailboxAccess::Imap(ImapAccess {
            host: server.host,
            port: server.port,
            tls,
            tls_config,
            username: username?,
            credential: credential?,
        }))
    }

    /// `delivery.graph:`: Microsoft Graph instead of IMAP.
    fn graph(
        &mut self,
        raw: &RawDelivery,
        graph: &At<RawGraph>,
        prefix: &str,
    ) -> Option<MailboxAccess> {
        let field = format!("{prefix}.graph");
        let graph_line = line(graph);
        let imap_only = [
            ("imap", raw.imap.as_ref().map(line)),
            ("tls", raw.tls.as_ref().map(line)),
            ("username", raw.username.as_ref().map(line)),
            ("password_file", raw.password_file.as_ref().map(line)),
            ("password", raw.password.as_ref().map(line)),
            ("token_file", raw.token_file.as_ref().map(line)),
            ("oauth2", raw.oauth2.as_ref().map(line)),
        ];
        for (key, at) in imap_only {
            if let Some(at) = at {
                self.report(
                    at,
                    &format!("{prefix}.{key}"),
                    "an IMAP setting, but the mailbox is read through graph",
                );
            }
        }
        let g = &graph.value;
        let oauth2 = At::new(
            RawOAuth2 {
                token_url: g.token_url.clone(),
                tenant: g.tenant.clone(),
                client_id: g.client_id.clone(),
                client_secret_file: g.client_secret_file.clone(),
                scope: g.scope.clone(),
            },
            graph.referenced,
            graph.defined,
        );
        let oauth2 = self.oauth2_for(&oauth2, &field, GRAPH_SCOPE);
        let user = self
            .required(&g.mailbox, graph_line, &format!("{field}.mailbox"))
            .and_then(|at| self.single_line(at, &format!("{field}.mailbox"), "mailbox"));
        let endpoint = match &g.endpoint {
            Some(at) => self.token_url(at, &format!("{field}.endpoint")),
            None => Some(GRAPH_ENDPOINT.to_string()),
        };
        let tls_config = self.tls_config(raw.tls_config.as_ref(), &format!("{prefix}.tls_config"));
        Some(MailboxAccess::Graph(GraphAccess {
            oauth2: oauth2?,
            user: user?,
            endpoint: endpoint?.trim_end_matches('/').to_string(),
            tls_config,
        }))
    }

    fn targets(&mut self, raw: &RawConfig, scheduler: &SchedulerSettings) -> Vec<Arc<Target>> {
        let mut targets = Vec::new();
        let mut seen: HashMap<String, Option<u64>> = HashMap::new();
        for (i, at) in raw.targets.iter().enumerate() {
            let prefix = format!("targets[{i}]");
            if let Some(target) = self.target(at, &prefix, raw, scheduler, &mut seen) {
                targets.push(Arc::new(target));
            }
        }
        targets
    }

    fn target(
        &mut self,
        raw: &At<RawTarget>,
        prefix: &str,
        config: &RawConfig,
        scheduler: &SchedulerSettings,
        seen: &mut HashMap<String, Option<u64>>,
    ) -> Option<Target> {
        let target_line = line(raw);
        self.clean(|v| {
            let raw = &raw.value;
            let name = v
                .required(&raw.name, target_line, &format!("{prefix}.name"))
                .and_then(|at| v.target_name(at, &format!("{prefix}.name"), seen));
            let shown = name.as_deref().unwrap_or("?");
            let module = v
                .required(&raw.module, target_line, &format!("{prefix}.module"))
                .and_then(|at| v.target_module(at, &format!("{prefix}.module"), config));
            let default_port = module
                .map(|(_, m)| raw_module_port(m))
                .unwrap_or(default_smtp_port(TlsMode::default()));
            let address = v
                .required(&raw.target, target_line, &format!("{prefix}.target"))
                .and_then(|at| match parse_target(&at.value, default_port) {
                    Ok(address) => Some(address),
                    Err(why) => {
                        v.report(line(at), &format!("{prefix}.target"), why.to_string());
                        None
                    }
                });
            let interval = v.target_interval(raw, target_line, prefix, shown, module, scheduler);
            let mut labels = BTreeMap::new();
            for (label, value) in &raw.labels {
                let field = format!("{prefix}.labels.{label}");
                match check_label_name(label) {
                    Ok(()) => {
                        labels.insert(label.clone(), value.value.clone());
                    }
                    Err(why) => v.report(line(value), &field, why.to_string()),
                }
            }
            Some(Target {
                name: name?,
                address: address?,
                module: module?.0.to_string(),
                interval,
                labels: labels.into_iter().collect(),
            })
        })
        .flatten()
    }

    /// A target's name: not empty, printable, not taken by an earlier target.
    fn target_name(
        &mut self,
        at: &At<String>,
        field: &str,
        seen: &mut HashMap<String, Option<u64>>,
    ) -> Option<String> {
        let name = at.value.as_str();
        if name.trim().is_empty() {
            self.report(line(at), field, "target name is empty");
            return None;
        }
        if name.chars().any(char::is_control) {
            self.report(line(at), field, "target name contains a control character");
            return None;
        }
        if let Some(first) = seen.get(name) {
            let first = first
                .map(|l| format!(" (first at line {l})"))
                .unwrap_or_default();
            self.report(
                line(at),
                field,
                format!("duplicate target name {name:?}{first}"),
            );
            return None;
        }
        seen.insert(name.to_string(), line(at));
        Some(name.to_string())
    }

    /// The module a target names, which the file must define.
    fn target_module<'c>(
        &mut self,
        at: &At<String>,
        field: &str,
        config: &'c RawConfig,
    ) -> Option<(&'c str, &'c RawModule)> {
        if let Some((name, module)) = config.modules.get_key_value(&at.value) {
            return Some((name.as_str(), &module.value));
        }
        let known: Vec<&str> = config.modules.keys().map(String::as_str).collect();
        let known = if known.is_empty() {
            "no modules are defined".to_string()
        } else {
            format!("defined: {}", known.join(", "))
        };
        self.report(
            line(at),
            field,
            format!("no module named {:?} ({known})", at.value),
        );
        None
    }

    /// A target's interval: at least a second, and not below `scheduler.min_send_interval`
    /// when its module sends a mail.
    fn target_interval(
        &mut self,
        raw: &RawTarget,
        target_line: Option<u64>,
        prefix: &str,
        shown: &str,
        module: Option<(&str, &RawModule)>,
        scheduler: &SchedulerSettings,
    ) -> Duration {
        let sending = module.filter(|(_, m)| m.message.is_some());
        let floor = humantime::format_duration(scheduler.min_send_interval);
        let field = format!("{prefix}.interval");
        let Some(at) = &raw.interval else {
            if let Some((module_name, _)) = sending {
                if DEFAULT_INTERVAL < scheduler.min_send_interval {
                    self.report(
                        target_line,
                        &field,
                        format!(
                            "target {shown:?}: the default interval {} is shorter than \
                             scheduler.min_send_interval {floor}; module {module_name:?} \
                             sends a mail on every run: set an interval",
                            humantime::format_duration(DEFAULT_INTERVAL),
                        ),
                    );
                }
            }
            return DEFAULT_INTERVAL;
        };
        let interval = at.value.0;
        if interval < MIN_INTERVAL {
            self.report(line(at), &field, "interval must be at least 1s");
        } else if let Some((module_name, m)) = sending {
            if interval < scheduler.min_send_interval {
                let delivery = if m.delivery.is_some() {
                    " and checks its delivery"
                } else {
                    ""
                };
                self.report(
                    line(at),
                    &field,
                    format!(
                        "target {shown:?}: interval {} is shorter than \
                         scheduler.min_send_interval {floor}; module {module_name:?} \
                         sends a mail on every run{delivery}",
                        humantime::format_duration(interval),
                    ),
                );
            }
        }
        interval
    }
}

/// The port a module uses when the target names none: `port`, else the TLS mode's usual port.
fn raw_module_port(module: &RawModule) -> u16 {
    match &module.port {
        Some(at) => at.value.0,
        None => default_smtp_port(module.tls.as_ref().map(|at| at.value).unwrap_or_default()),
    }
}

/// 587 for STARTTLS submission (RFC 6409), 465 for implicit TLS (RFC 8314), 25 for plain relay.
pub(crate) fn default_smtp_port(tls: TlsMode) -> u16 {
    match tls {
        TlsMode::Starttls => 587,
        TlsMode::Implicit => 465,
        TlsMode::None => 25,
    }
}

fn mechanism_name(mechanism: MechanismChoice) -> &'static str {
    match mechanism {
        MechanismChoice::Auto => "auto",
        MechanismChoice::Plain => "plain",
        MechanismChoice::Login => "login",
        MechanismChoice::Xoauth2 => "xoauth2",
        MechanismChoice::Oauthbearer => "oauthbearer",
    }
}

/// `127.0.0.1`, `[::1]` or `localhost`, with an optional port and path after it.
fn is_loopback_authority(rest: &str) -> bool {
    let authority = rest.split('/').next().unwrap_or_default();
    let host = match authority.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            host
        }
        _ => authority,
    };
    matches!(host, "127.0.0.1" | "[::1]" | "localhost")
}

/// A Prometheus label name that a target may use.
/// Why a target's label name cannot be used.
#[derive(Debug, thiserror::Error)]
enum LabelNameError {
    #[error("invalid label name {0:?}: must match [a-zA-Z_][a-zA-Z0-9_]*")]
    Invalid(String),
    #[error("label name {0:?} is reserved: names starting with __ are Prometheus-internal")]
    Internal(String),
    #[error("label name {0:?} is reserved: smtp-prober sets it on its own metrics")]
    Ours(String),
}

fn check_label_name(label: &str) -> Result<(), LabelNameError> {
    let mut chars = label.chars();
    let valid = matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(LabelNameError::Invalid(label.to_string()));
    }
    if label.starts_with("__") {
        return Err(LabelNameError::Internal(label.to_string()));
    }
    if RESERVED_LABELS.contains(&label) {
        return Err(LabelNameError::Ours(label.to_string()));
    }
    Ok(())
}
