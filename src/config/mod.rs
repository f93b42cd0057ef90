//! The configuration file (DESIGN §4): YAML → validated [`Config`].
//!
//! Two stages, as in ripgrep and blackbox_exporter: `raw` structs decode the file as written
//! (unknown keys rejected, every value that is checked later keeps its line), then `validate`
//! applies defaults, expands `${ENV}` references, reads secret files and checks everything,
//! collecting every problem. Each problem names the file, the line and the field path, as in
//! `smtp-prober.yml:12: modules.submission.tls: unknown variant "startls", expected one of none,
//! starttls, implicit`.
//!
//! `${ENV}` references are expanded only where values differ per deployment and are usually
//! injected by the environment (Kubernetes secrets, systemd credentials): `auth.username`,
//! `auth.password`, `auth.password_file`, `auth.token_file`, `auth.oauth2.client_id`,
//! `auth.oauth2.tenant`, `auth.oauth2.client_secret_file`, `message.from`, `message.to[]`,
//! `delivery.username`, `delivery.password`, `delivery.password_file` and `tls_config.ca_files[]`
//! (of a module and of its delivery check). `password` fields accept nothing but one `${ENV}`
//! reference, so a literal password never sits in the file. Elsewhere `${` is plain text.
//!
//! Relative paths (`*_file`, `ca_files`) are taken from the configuration file's directory when
//! loaded with [`Config::load`], and from the working directory with [`Config::from_str`].
//!
//! Secrets are read at load time, so a reload notices a rotated password file; they live in
//! [`Secret`](crate::secret::Secret)s that never print themselves, and `Config::redacted_yaml`
//! (served on `/config`) never contains them.

mod expand;
pub(crate) mod raw;
mod show;
mod validate;
pub(crate) mod yaml;

use crate::probe::module::Module;
use raw::RawConfig;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

#[cfg(test)]
mod tests;

pub(crate) use show::module_yaml;

/// A configuration file larger than this is refused (10,000 targets take about 1.5 MiB).
const MAX_CONFIG_BYTES: u64 = 32 * 1024 * 1024;

/// The value shown instead of a secret in `Config::redacted_yaml`.
pub(crate) const REDACTED: &str = "<redacted>";

/// A validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// Modules by name.
    pub modules: BTreeMap<String, Module>,
    /// Scheduled targets, in file order; shared with the scheduler, which runs them.
    pub targets: Vec<Arc<Target>>,
    /// `scheduler:` settings.
    pub scheduler: SchedulerSettings,
    /// SHA-256 of the file's bytes: a reload with the same checksum changes nothing.
    pub checksum: [u8; 32],
    /// The file re-serialised with secrets replaced, computed once at load.
    redacted: String,
}

/// One scheduled target (`targets[]`), as the scheduler runs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Unique name (the `name` label).
    pub name: String,
    /// Where to probe: the port from the target, else the module's port. Shown as `host:port`
    /// in the `target` label.
    pub address: crate::probe::target::Target,
    /// Name of the module it runs (the `module` label); always a key of [`Config::modules`].
    pub module: String,
    /// Time between two probes.
    pub interval: Duration,
    /// Extra labels for every metric of this target.
    pub labels: Labels,
}

/// A target's own labels, sorted by name: a boxed slice, since a map with one label costs half
/// a kilobyte and 10,000 targets keep theirs for as long as they run.
pub type Labels = Box<[(String, String)]>;

/// `scheduler:`: limits of scheduled mode and what its targets export.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SchedulerSettings {
    /// At most this many probes run at the same time.
    pub max_concurrency: usize,
    /// Send floor: a target whose module sends a mail may not run more often than this, since
    /// providers rate-limit (and may block) senders of frequent token mails.
    pub min_send_interval: Duration,
    /// Which duration histograms each target exports (`scheduler.histograms`).
    pub histograms: Histograms,
    /// Their bucket bounds (`scheduler.buckets`).
    pub buckets: HistogramBuckets,
}

impl Default for SchedulerSettings {
    fn default() -> Self {
        SchedulerSettings {
            max_concurrency: 32,
            min_send_interval: Duration::from_secs(30),
            histograms: Histograms::default(),
            buckets: HistogramBuckets::default(),
        }
    }
}

/// `scheduler.histograms`: the histograms of scheduled probes' durations. Each costs a series
/// per bucket plus three (`+Inf`, `_sum`, `_count`) per target, and per step with `steps`; the
/// gauges of the last probe (`probe_duration_seconds`, `probe_smtp_step_duration_seconds`) are
/// there whatever this says, and so are the delivery histograms of targets that check
/// delivery.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Histograms {
    /// None: the last probe's gauges only.
    #[default]
    None,
    /// One histogram of the whole probe's duration per target.
    Total,
    /// `total`, and one of every step's duration per target.
    Steps,
}

impl Histograms {
    /// Whether the histogram of the whole probe's duration is kept.
    pub fn total(self) -> bool {
        self != Histograms::None
    }

    /// Whether the per-step histograms are kept.
    pub fn steps(self) -> bool {
        self == Histograms::Steps
    }
}

/// The upper bounds of a histogram's buckets, in seconds: finite, positive, increasing.
#[derive(Clone, Debug, PartialEq)]
pub struct Bounds(Arc<[f64]>);

// Validation admits finite numbers only, so equality is total.
impl Eq for Bounds {}

impl Bounds {
    /// `bounds`, which the caller has checked.
    pub(crate) fn new(bounds: &[f64]) -> Bounds {
        Bounds(bounds.into())
    }

    /// The bounds.
    pub fn as_slice(&self) -> &[f64] {
        &self.0
    }
}

/// `scheduler.buckets`: bucket bounds of the histograms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistogramBuckets {
    /// `smtp_prober_probe_duration_seconds`.
    pub probe: Bounds,
    /// `smtp_prober_step_duration_seconds`.
    pub step: Bounds,
    /// `smtp_prober_delivery_duration_seconds`.
    pub delivery: Bounds,
}

/// Default bounds of `smtp_prober_probe_duration_seconds`: a probe takes tens of milliseconds
/// on a LAN and up to seconds across the internet; its deadline is 15 s by default.
pub const PROBE_BUCKETS: [f64; 8] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
/// Default bounds of `smtp_prober_step_duration_seconds`: loopback steps take well under a
/// millisecond, a slow submission server's DATA several seconds.
pub const STEP_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Default bounds of `smtp_prober_delivery_duration_seconds`: seconds to minutes.
pub const DELIVERY_BUCKETS: [f64; 10] =
    [1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0];
/// At most this many bounds per histogram: each is a series per target (and per step).
pub const MAX_BUCKETS: usize = 30;

impl Default for HistogramBuckets {
    fn default() -> Self {
        HistogramBuckets {
            probe: Bounds::new(&PROBE_BUCKETS),
            step: Bounds::new(&STEP_BUCKETS),
            delivery: Bounds::new(&DELIVERY_BUCKETS),
        }
    }
}

/// What loading a configuration checks.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
pub enum Checks {
    /// The file and everything it refers to: secret, CA and token files must be readable and
    /// `${ENV}` variables set, as `serve` needs them.
    #[default]
    All,
    /// The file alone: its syntax and every value, but not the files and variables it names
    /// (`check-config --syntax-only`, for a machine without the secrets, such as CI).
    SyntaxOnly,
}

/// One problem in a configuration file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line, when known.
    pub line: Option<u64>,
    /// 1-based column, when the problem is a character of that line (a tab, a bracket).
    pub column: Option<u64>,
    /// Field path such as `modules.submission.auth.password_file` or `targets[2].interval`;
    /// empty when the problem is the file itself.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// Why a configuration could not be loaded: every problem found, one per line of `Display`,
/// each as `file:line: field: message`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The file name as given.
    pub file: String,
    /// Every problem found (at least one).
    pub problems: Vec<Problem>,
}

impl ConfigError {
    fn file_problem(file: &str, message: String) -> ConfigError {
        ConfigError {
            file: file.to_string(),
            problems: vec![Problem {
                line: None,
                column: None,
                field: String::new(),
                message,
            }],
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            f.write_str(&self.file)?;
            if let Some(line) = problem.line {
                write!(f, ":{line}")?;
                if let Some(column) = problem.column {
                    write!(f, ":{column}")?;
                }
            }
            if !problem.field.is_empty() {
                write!(f, ": {}", problem.field)?;
            }
            write!(f, ": {}", problem.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Reads, decodes and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::load_checking(path, Checks::All)
    }

    /// Reads, decodes and validates a configuration file, checking what `checks` says.
    pub fn load_checking(path: &Path, checks: Checks) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let bytes = crate::local_file::read(path, MAX_CONFIG_BYTES)
            .map_err(|why| ConfigError::file_problem(&file, format!("cannot read: {why}")))?;
        Config::parse_checking(&bytes, &file, path.parent(), &expand::process_env, checks)
    }

    /// Decodes and validates configuration text; `name` is the file name used in errors.
    pub fn from_str(text: &str, name: &str) -> Result<Config, ConfigError> {
        Config::parse(text.as_bytes(), name, None, &expand::process_env)
    }

    /// The whole pipeline, with the environment and the base directory of relative paths
    /// passed in (tests use their own environment table).
    pub(crate) fn parse(
        bytes: &[u8],
        file: &str,
        base_dir: Option<&Path>,
        env: expand::Env<'_>,
    ) -> Result<Config, ConfigError> {
        Config::parse_checking(bytes, file, base_dir, env, Checks::All)
    }

    /// [`Config::parse`], checking what `checks` says. Problems come sorted by line (those of
    /// the file as a whole first), however the checks walked the file.
    pub(crate) fn parse_checking(
        bytes: &[u8],
        file: &str,
        base_dir: Option<&Path>,
        env: expand::Env<'_>,
        checks: Checks,
    ) -> Result<Config, ConfigError> {
        let checksum: [u8; 32] = Sha256::digest(bytes).into();
        let text = std::str::from_utf8(bytes).map_err(|e| {
            ConfigError::file_problem(
                file,
                format!("not UTF-8 text (at byte {})", e.valid_up_to()),
            )
        })?;
        let raw = decode(text).map_err(|problem| ConfigError {
            file: file.to_string(),
            problems: vec![problem],
        })?;
        let base_dir = base_dir.filter(|dir| !dir.as_os_str().is_empty());
        let valid = validate::Validator::new(env, base_dir, checks)
            .config(&raw)
            .map_err(|mut problems| {
                problems.sort_by_key(|p| (p.line, p.column));
                ConfigError {
                    file: file.to_string(),
                    problems,
                }
            })?;
        Ok(Config {
            modules: valid.modules,
            targets: valid.targets,
            scheduler: valid.scheduler,
            checksum,
            redacted: redact(raw),
        })
    }

    /// The module called `name`.
    pub(crate) fn module(&self, name: &str) -> Option<&Module> {
        self.modules.get(name)
    }

    /// The configuration as YAML with every secret replaced by `<redacted>` (for `/config` and
    /// debug output). `*_file` paths and `${ENV}` references other than passwords are shown.
    pub(crate) fn redacted_yaml(&self) -> &str {
        &self.redacted
    }

    /// The checksum as lower-case hex.
    pub(crate) fn checksum_hex(&self) -> String {
        hex::encode(self.checksum)
    }
}

/// Decodes the YAML into the raw structs; on failure, the problem with its line and field path.
fn decode(text: &str) -> Result<RawConfig, Problem> {
    yaml::decode(text, field_path)
}

/// A field path like `modules.submission.tls` from the tracked serde path.
///
/// `Spanned` values add a `value` key of their own after every located field; those are
/// dropped. A user-chosen key (a module name, a label name) follows `modules` or `labels` and
/// is kept even when it is spelled `value`.
fn field_path(path: &serde_path_to_error::Path) -> String {
    render_segments(path.iter())
}

/// See [`field_path`]: `modules` and `labels` are followed by user-chosen keys.
fn render_segments<'a>(
    segments: impl IntoIterator<Item = &'a serde_path_to_error::Segment>,
) -> String {
    yaml::render_path(segments, |so_far, key| {
        (so_far.is_empty() && key == "modules") || key == "labels"
    })
}

/// Serialises the raw configuration with every secret-bearing value replaced.
///
/// Only `password` fields can hold one (as a `${ENV}` reference: literal passwords are refused);
/// `*_file` fields hold paths, which are shown. The replacement happens on the raw structs, so
/// secrets read from files or the environment are never anywhere near this text.
fn redact(mut raw: RawConfig) -> String {
    fn hide(value: &mut Option<raw::At<String>>) {
        if let Some(at) = value {
            at.value = REDACTED.to_string();
        }
    }
    for module in raw.modules.values_mut() {
        if let Some(auth) = &mut module.value.auth {
            hide(&mut auth.value.password);
        }
        if let Some(delivery) = &mut module.value.delivery {
            hide(&mut delivery.value.password);
        }
    }
    serde_saphyr::to_string(&raw)
        .unwrap_or_else(|e| format!("# the configuration could not be shown: {e}\n"))
}
