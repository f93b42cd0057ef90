//! The running exporter, what `serve` is independent of HTTP: the loaded configuration with its
//! prepared modules, the scheduler, probes in flight, the self metrics, and reload (SIGHUP,
//! `POST /-/reload`). The HTTP layer only routes requests here.
//!
//! Reload follows blackbox_exporter and Prometheus: the file's checksum decides whether anything
//! changed (an unchanged file is a no-op, unless a secret file it names changed); a file that
//! does not load, or whose modules cannot be prepared, keeps the running configuration and sets
//! `smtp_prober_config_last_reload_successful` to 0.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use prometheus::{Gauge, IntGauge, Opts, Registry};

use crate::config::{Config, ConfigError};
use crate::exposition::{merge, Chunk, Sink};
use crate::probe::target::Target;
use crate::probe::{self, Budget, PreparedModule, ProbeOutcome};
use crate::scheduler::{ApplyReport, InFlight, ScheduleError, Scheduler};
use crate::shard::Shard;
use crate::tls::TlsSetupError;

/// Where the configuration comes from.
#[derive(Debug)]
pub enum ConfigSource {
    /// A file, re-read on reload.
    File(PathBuf),
    /// A configuration built in code (the `demo` command); reload has nothing to re-read.
    Fixed(Box<Config>),
}

/// Why a configuration could not be put into service.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file does not load or validate.
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// A module's TLS client could not be built.
    #[error("module {module:?}: {error}")]
    Module {
        /// The module's name.
        module: String,
        /// What failed.
        error: TlsSetupError,
    },
    /// The targets could not be scheduled.
    #[error("{0}")]
    Schedule(#[from] ScheduleError),
    /// The exporter's own metrics could not be registered (a bug).
    #[error("registering the exporter's metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// Reading the file on a blocking thread failed.
    #[error("loading the configuration was interrupted")]
    Interrupted,
    /// Reading the file and the files it names took longer than [`LOAD_TIMEOUT`] (a hung
    /// network mount): given up on, so that later reloads are not queued behind it.
    #[error("loading the configuration took longer than {}; given up", humantime::format_duration(*.0))]
    TimedOut(std::time::Duration),
}

/// How long loading a configuration (the file, its secret and CA files, the modules' TLS
/// set-up) may take before it is given up on. Local files take milliseconds.
pub const LOAD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// A configuration in service: the validated file and its modules, prepared once.
#[derive(Debug)]
pub(crate) struct Loaded {
    /// The configuration.
    pub(crate) config: Config,
    /// Every module with its TLS client built.
    pub(crate) modules: BTreeMap<String, Arc<PreparedModule>>,
    /// When it was put into service.
    pub(crate) loaded_at: SystemTime,
}

impl Loaded {
    /// Validates `config` beyond the file: builds every module's TLS client.
    pub(crate) fn prepare(config: Config) -> Result<Loaded, LoadError> {
        let mut modules = BTreeMap::new();
        for (name, module) in &config.modules {
            let prepared = PreparedModule::new(name.clone(), module.clone()).map_err(|error| {
                LoadError::Module {
                    module: name.clone(),
                    error,
                }
            })?;
            modules.insert(name.clone(), prepared);
        }
        Ok(Loaded {
            config,
            modules,
            loaded_at: SystemTime::now(),
        })
    }
}

/// A reload that failed: when, and why (the loader's message: file, line, field and what is
/// wrong; never a value of the file).
#[derive(Clone, Debug)]
pub struct ReloadFailure {
    /// When it was tried.
    pub at: SystemTime,
    /// Why it failed.
    pub error: String,
}

/// What a reload did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Reloaded {
    /// The file's checksum equals the running configuration's: nothing changed.
    Unchanged,
    /// The new configuration is in service.
    Applied(ApplyReport),
}

/// The exporter's own metrics.
struct SelfMetrics {
    registry: Registry,
    reload_successful: IntGauge,
    reload_timestamp: Gauge,
    in_flight: IntGauge,
}

impl SelfMetrics {
    fn new(shard: Shard) -> Result<SelfMetrics, prometheus::Error> {
        let registry = Registry::new();
        let shard_info = IntGauge::with_opts(
            Opts::new(
                "smtp_prober_scheduler_shard_info",
                "The shard of the scheduled targets this instance runs (--scheduler.shard).",
            )
            .const_label("shard", shard.index().to_string())
            .const_label("shards", shard.count().to_string()),
        )?;
        shard_info.set(1);
        let build_info = IntGauge::with_opts(
            Opts::new(
                "smtp_prober_build_info",
                "A metric with a constant 1 labelled with the version of smtp-prober.",
            )
            .const_label("version", env!("CARGO_PKG_VERSION")),
        )?;
        build_info.set(1);
        let reload_successful = IntGauge::new(
            "smtp_prober_config_last_reload_successful",
            "Whether the last configuration reload succeeded.",
        )?;
        let reload_timestamp = Gauge::new(
            "smtp_prober_config_last_reload_success_timestamp_seconds",
            "When the running configuration was loaded, in Unix seconds.",
        )?;
        let in_flight = IntGauge::new(
            "smtp_prober_probes_in_flight",
            "Probes running now, scheduled and /probe.",
        )?;
        registry.register(Box::new(build_info))?;
        registry.register(Box::new(shard_info))?;
        registry.register(Box::new(reload_successful.clone()))?;
        registry.register(Box::new(reload_timestamp.clone()))?;
        registry.register(Box::new(in_flight.clone()))?;
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        Ok(SelfMetrics {
            registry,
            reload_successful,
            reload_timestamp,
            in_flight,
        })
    }

    fn loaded_now(&self, at: SystemTime) {
        self.reload_successful.set(1);
        self.reload_timestamp
            .set(crate::clock::unix_seconds_f64(at));
    }
}

/// The running exporter.
pub struct Exporter {
    source: ConfigSource,
    /// The scheduled targets this instance runs.
    shard: Shard,
    loaded: RwLock<Arc<Loaded>>,
    scheduler: Scheduler,
    metrics: SelfMetrics,
    /// Serialises reloads (SIGHUP and `POST /-/reload` may arrive together).
    reloading: tokio::sync::Mutex<()>,
    /// The last reload, when it failed (cleared by one that succeeds), for the status page.
    reload_failure: RwLock<Option<ReloadFailure>>,
    ready: AtomicBool,
}

impl std::fmt::Debug for Exporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exporter")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl Exporter {
    /// Loads the configuration and starts the targets of `shard`. Must be called within a Tokio
    /// runtime.
    pub async fn start(source: ConfigSource, shard: Shard) -> Result<Arc<Exporter>, LoadError> {
        let loaded = load(&source).await?;
        let metrics = SelfMetrics::new(shard)?;
        let scheduler = Scheduler::new(
            loaded.config.scheduler.max_concurrency,
            metrics.in_flight.clone(),
        );
        let targets = shard_targets(shard, &loaded.config);
        scheduler.apply(&targets, &loaded.modules, &loaded.config.scheduler)?;
        metrics.loaded_now(loaded.loaded_at);
        tracing::info!(
            modules = loaded.modules.len(),
            targets = targets.len(),
            configured_targets = loaded.config.targets.len(),
            shard = %shard,
            checksum = %loaded.config.checksum_hex(),
            "configuration loaded"
        );
        Ok(Arc::new(Exporter {
            source,
            shard,
            loaded: RwLock::new(Arc::new(loaded)),
            scheduler,
            metrics,
            reloading: tokio::sync::Mutex::new(()),
            reload_failure: RwLock::new(None),
            ready: AtomicBool::new(true),
        }))
    }

    /// The configuration in service.
    pub(crate) fn loaded(&self) -> Arc<Loaded> {
        self.loaded
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The shard of the scheduled targets this instance runs.
    pub fn shard(&self) -> Shard {
        self.shard
    }

    /// The scheduler.
    pub fn scheduler(&self) -> &Scheduler {
        &self.scheduler
    }

    /// The last reload, when it failed.
    pub(crate) fn reload_failure(&self) -> Option<ReloadFailure> {
        self.reload_failure
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Whether a configuration is in service (`/-/ready`).
    pub(crate) fn ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    /// Runs one probe outside the schedule (a `/probe` request), counted in
    /// `smtp_prober_probes_in_flight` while it runs.
    pub(crate) async fn probe(
        &self,
        prepared: &PreparedModule,
        target: &Target,
        budget: Budget,
    ) -> ProbeOutcome {
        let _flight = InFlight::enter(&self.metrics.in_flight);
        probe::run(prepared, target, budget).await
    }

    /// Re-reads the configuration file. A file that fails keeps the running configuration.
    pub(crate) async fn reload(&self) -> Result<Reloaded, LoadError> {
        let _one_at_a_time = self.reloading.lock().await;
        let result = self.reload_locked().await;
        *self
            .reload_failure
            .write()
            .unwrap_or_else(|p| p.into_inner()) = result.as_ref().err().map(|e| ReloadFailure {
            at: SystemTime::now(),
            error: e.to_string(),
        });
        match &result {
            Ok(Reloaded::Unchanged) => {
                self.metrics.reload_successful.set(1);
                tracing::info!("configuration unchanged");
            }
            Ok(Reloaded::Applied(report)) => {
                tracing::info!(
                    added = report.added,
                    changed = report.changed,
                    removed = report.removed,
                    unchanged = report.unchanged,
                    "configuration reloaded"
                );
            }
            Err(e) => {
                self.metrics.reload_successful.set(0);
                tracing::error!(error = %e, "configuration reload failed; keeping the running one");
            }
        }
        result
    }

    async fn reload_locked(&self) -> Result<Reloaded, LoadError> {
        if matches!(self.source, ConfigSource::Fixed(_)) {
            return Ok(Reloaded::Unchanged);
        }
        let running = self.loaded();
        let loaded = load(&self.source).await?;
        // The file decides, and so do the secrets it names: a rotated password file is read
        // into the modules and makes them differ.
        if loaded.config.checksum == running.config.checksum
            && loaded.config.modules == running.config.modules
        {
            return Ok(Reloaded::Unchanged);
        }
        let report = self.scheduler.apply(
            &shard_targets(self.shard, &loaded.config),
            &loaded.modules,
            &loaded.config.scheduler,
        )?;
        self.metrics.loaded_now(loaded.loaded_at);
        *self.loaded.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(loaded);
        Ok(Reloaded::Applied(report))
    }

    /// The `/metrics` page: the latest results of every target, the scheduled histograms and
    /// counters, and the exporter's own and process metrics.
    pub fn render_metrics(&self, out: &mut impl Sink) {
        let targets = self.scheduler.targets();
        let latest: Vec<_> = targets.iter().filter_map(|t| t.latest()).collect();
        let chunks: Vec<&Chunk> = latest.iter().map(|l| &l.metrics).collect();
        merge(&chunks, out);
        self.scheduler.write_totals(&targets, out);
        out.put(&render_registry(&self.metrics.registry));
    }

    /// Stops scheduling and cancels scheduled probes in flight (they say QUIT and close).
    pub fn shutdown(&self) {
        self.ready.store(false, Ordering::SeqCst);
        self.scheduler.shutdown();
    }

    /// Waits until cancelled probes have closed their connections (a second at most each).
    pub(crate) async fn stopped(&self) {
        self.scheduler.stopped().await;
    }
}

/// The exporter's own and the process metrics, encoded by the client library that collects
/// them.
fn render_registry(registry: &Registry) -> String {
    use prometheus::Encoder as _;
    let mut out = Vec::with_capacity(4096);
    // Encoding into a Vec cannot fail for I/O reasons; a malformed family would be our bug.
    if let Err(e) = prometheus::TextEncoder::new().encode(&registry.gather(), &mut out) {
        tracing::error!(error = %e, "encoding metrics");
    }
    String::from_utf8(out).unwrap_or_default()
}

/// The configured targets `shard` runs, in configuration order.
fn shard_targets(shard: Shard, config: &Config) -> Vec<Arc<crate::config::Target>> {
    config
        .targets
        .iter()
        .filter(|t| shard.owns(&t.name))
        .cloned()
        .collect()
}

/// Loads and prepares the configuration off the async threads (file I/O, YAML decoding and
/// trust-store loading block).
async fn load(source: &ConfigSource) -> Result<Loaded, LoadError> {
    match source {
        ConfigSource::Fixed(config) => Loaded::prepare((**config).clone()),
        ConfigSource::File(path) => {
            let path = path.clone();
            // Off the async runtime, and given up on after a while: the blocking thread may stay
            // stuck on a hung mount, but the reload lock and the caller are released.
            let reading =
                tokio::task::spawn_blocking(move || Loaded::prepare(Config::load(&path)?));
            match tokio::time::timeout(LOAD_TIMEOUT, reading).await {
                Ok(joined) => joined.map_err(|_| LoadError::Interrupted)?,
                Err(_) => Err(LoadError::TimedOut(LOAD_TIMEOUT)),
            }
        }
    }
}
