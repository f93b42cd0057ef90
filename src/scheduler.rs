//! Scheduled mode (DESIGN §2.2): every configured target probed on its own interval, the first
//! runs spread with random jitter over the interval, a global cap on concurrent probes, never two
//! probes of one target at once, and the latest outcome of each target kept with its metrics
//! already rendered.
//!
//! Scale (DESIGN §10, 10,000 targets): each target is one task with its own timer; nothing global
//! is locked while a probe runs. A result is rendered to text once, when it arrives (see
//! [`crate::http::exposition`]), so a `/metrics` scrape only copies bytes. Per-target state sits
//! behind small locks that are held for an `Arc` swap or clone, never across an `.await`.
//!
//! Reload keeps what did not change: a target whose settings and module are equal to the running
//! ones keeps its task, timer and results; a changed target restarts (its histograms, counters
//! and logs, keyed by name, carry over); a removed one stops.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use prometheus::core::Collector as _;
use prometheus::{Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use crate::http::exposition::Chunk;
use crate::probe::metrics::outcome_families;
use crate::probe::target::Target;
use crate::probe::{self, PreparedModule, ProbeOutcome};

/// Transcripts kept per target for `/logs`.
pub const LOGS_PER_TARGET: usize = 5;

/// Buckets of `smtp_prober_step_duration_seconds`: loopback steps take well under a
/// millisecond, a slow submission server's DATA several seconds.
const STEP_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Buckets of `smtp_prober_delivery_duration_seconds`: seconds to minutes.
const DELIVERY_BUCKETS: &[f64] = &[1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0];

/// One scheduled target, as the scheduler runs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetSpec {
    /// Unique name (`name` label).
    pub name: String,
    /// Where to probe.
    pub target: Target,
    /// The module's name in the configuration.
    pub module: String,
    /// Time between the starts of two probes.
    pub interval: Duration,
    /// Extra labels on every per-probe metric of this target.
    pub labels: BTreeMap<String, String>,
}

/// The latest result of a target.
#[derive(Debug)]
pub struct Latest {
    /// What the probe found (certificate DER dropped: nothing here reads it).
    pub outcome: ProbeOutcome,
    /// The per-probe families with the target's labels, rendered.
    pub metrics: Chunk,
}

/// What outlives a change of a target's settings: keyed by its name.
struct History {
    step_duration: HistogramVec,
    delivery_duration: Histogram,
    probes: IntCounterVec,
    /// The three families above, rendered after each result.
    metrics: Mutex<Arc<Chunk>>,
    /// Newest last.
    logs: Mutex<VecDeque<Arc<str>>>,
    /// Held while probing, so that a restarted target's new task never overlaps the old one's
    /// last probe.
    probing: tokio::sync::Mutex<()>,
}

impl History {
    fn new(name: &str) -> Result<History, prometheus::Error> {
        let step_duration = HistogramVec::new(
            HistogramOpts::new(
                "smtp_prober_step_duration_seconds",
                "Duration of each step of scheduled probes.",
            )
            .const_label("name", name)
            .buckets(STEP_BUCKETS.to_vec()),
            &["step"],
        )?;
        let delivery_duration = Histogram::with_opts(
            HistogramOpts::new(
                "smtp_prober_delivery_duration_seconds",
                "From the end of DATA to the token mail being visible, of scheduled probes.",
            )
            .const_label("name", name)
            .buckets(DELIVERY_BUCKETS.to_vec()),
        )?;
        let probes = IntCounterVec::new(
            Opts::new(
                "smtp_prober_probes_total",
                "Scheduled probes run, by result.",
            )
            .const_label("name", name),
            &["result"],
        )?;
        // Both results exist from the start, so that rate() sees the first failure.
        for result in ["success", "failure"] {
            probes.with_label_values(&[result]);
        }
        let history = History {
            step_duration,
            delivery_duration,
            probes,
            metrics: Mutex::default(),
            logs: Mutex::new(VecDeque::with_capacity(LOGS_PER_TARGET)),
            probing: tokio::sync::Mutex::new(()),
        };
        history.render(false);
        Ok(history)
    }

    fn observe(&self, outcome: &ProbeOutcome, delivery_configured: bool) {
        // One observation per step and probe: a step that ran twice (one RCPT per recipient)
        // counts with its summed time, as in `probe_smtp_step_duration_seconds`.
        let mut per_step: Vec<(crate::vocab::StepName, Duration)> = Vec::with_capacity(16);
        for step in outcome.session.transcript.steps() {
            match per_step.iter_mut().find(|(n, _)| *n == step.name) {
                Some(entry) => entry.1 += step.duration,
                None => per_step.push((step.name, step.duration)),
            }
        }
        for (name, duration) in per_step {
            self.step_duration
                .with_label_values(&[name.as_str()])
                .observe(duration.as_secs_f64());
        }
        if let Some(d) = outcome.delivery.as_ref().and_then(|d| d.duration) {
            self.delivery_duration.observe(d.as_secs_f64());
        }
        let result = if outcome.success() {
            "success"
        } else {
            "failure"
        };
        self.probes.with_label_values(&[result]).inc();
        self.render(delivery_configured);
    }

    fn render(&self, delivery_configured: bool) {
        let mut families = self.step_duration.collect();
        if delivery_configured || self.delivery_duration.get_sample_count() > 0 {
            families.extend(self.delivery_duration.collect());
        }
        families.extend(self.probes.collect());
        // A family without samples (no step observed yet) is invalid in the text format. The
        // client library keeps children in a hash map: order them (steps in probe order) for a
        // stable, readable page.
        families.retain(|f| !f.get_metric().is_empty());
        for f in &mut families {
            f.mut_metric().sort_by_cached_key(|m| {
                m.get_label()
                    .iter()
                    .map(|l| {
                        let rank = crate::vocab::StepName::ALL
                            .iter()
                            .position(|s| s.as_str() == l.value())
                            .unwrap_or(usize::MAX);
                        (rank, l.value().to_string())
                    })
                    .collect::<Vec<_>>()
            });
        }
        let chunk = Arc::new(Chunk::from_families(&families));
        *lock(&self.metrics) = chunk;
    }

    fn push_log(&self, entry: Arc<str>) {
        let mut logs = lock(&self.logs);
        if logs.len() >= LOGS_PER_TARGET {
            logs.pop_front();
        }
        logs.push_back(entry);
    }
}

/// A configured target with its results.
pub struct TargetState {
    /// The settings it runs with.
    pub spec: TargetSpec,
    /// `target` label value: the target as `host:port`.
    target_label: String,
    /// Whether its module sends a token mail (`probe_smtp_message_accepted` is exported).
    sends: bool,
    /// Whether its module checks delivery.
    delivery: bool,
    latest: Mutex<Option<Arc<Latest>>>,
    history: Arc<History>,
}

impl std::fmt::Debug for TargetState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TargetState")
            .field("spec", &self.spec)
            .finish_non_exhaustive()
    }
}

impl TargetState {
    /// The latest result, `None` before the first probe ended.
    pub fn latest(&self) -> Option<Arc<Latest>> {
        lock(&self.latest).clone()
    }

    /// The last few transcripts, newest first.
    pub fn logs(&self) -> Vec<Arc<str>> {
        lock(&self.history.logs).iter().rev().cloned().collect()
    }

    /// Histograms and counters of this target's name, rendered.
    pub fn history_metrics(&self) -> Arc<Chunk> {
        lock(&self.history.metrics).clone()
    }

    /// Keeps a finished probe's outcome: renders its metrics, feeds the histograms and the log.
    fn record(&self, mut outcome: ProbeOutcome) {
        let mut common: Vec<(&str, &str)> = Vec::with_capacity(3 + self.spec.labels.len());
        common.push(("name", &self.spec.name));
        common.push(("target", &self.target_label));
        common.push(("module", &self.spec.module));
        common.extend(
            self.spec
                .labels
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        );
        let metrics = Chunk::from_families(&outcome_families(&outcome, &common, self.sends));
        self.history.observe(&outcome, self.delivery);
        let started = outcome
            .started_at
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let log = format!(
            "{} {}\n{}",
            probe::json::rfc3339(started),
            self.spec.name,
            probe::text::render(&outcome)
        );
        self.history.push_log(log.into());
        // The DER of every certificate is the bulk of an outcome and nothing downstream of the
        // scheduler reads it; dropping it keeps 10,000 targets at a few KiB each.
        if let Some(tls) = outcome.session.tls.as_mut() {
            for cert in tls.chain.sent.iter_mut().chain(tls.chain.built.iter_mut()) {
                cert.der = rustls_pki_types::CertificateDer::from(Vec::new());
            }
        }
        *lock(&self.latest) = Some(Arc::new(Latest { outcome, metrics }));
    }
}

/// A target's task and what it was started with.
struct Running {
    state: Arc<TargetState>,
    module: Arc<PreparedModule>,
    task: JoinHandle<()>,
}

/// What a [`Scheduler::apply`] changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// Targets started for the first time.
    pub added: usize,
    /// Targets restarted with new settings.
    pub changed: usize,
    /// Targets stopped.
    pub removed: usize,
    /// Targets left running as they were.
    pub unchanged: usize,
}

/// Why targets could not be scheduled.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    /// A target names a module that is not loaded.
    #[error("target {target:?}: unknown module {module:?}")]
    UnknownModule {
        /// The target's name.
        target: String,
        /// The module it names.
        module: String,
    },
    /// A metric could not be created (a label value the client library refuses).
    #[error("target {target:?}: {error}")]
    Metrics {
        /// The target's name.
        target: String,
        /// What the metrics library said.
        error: prometheus::Error,
    },
}

/// State shared by every target task.
struct Shared {
    /// The concurrency cap; replaced when `max_concurrency` changes on reload.
    permits: RwLock<Arc<Semaphore>>,
    max_concurrency: Mutex<usize>,
    in_flight: IntGauge,
}

/// Runs the scheduled targets.
pub struct Scheduler {
    shared: Arc<Shared>,
    /// Only reload and shutdown take this; probes never do.
    running: Mutex<HashMap<String, Running>>,
    /// The targets in configuration order, for `/metrics` and the status page.
    view: RwLock<Arc<Vec<Arc<TargetState>>>>,
    stopped: std::sync::atomic::AtomicBool,
}

impl Scheduler {
    /// A scheduler with no targets. `in_flight` counts running probes.
    pub fn new(max_concurrency: usize, in_flight: IntGauge) -> Scheduler {
        let max = max_concurrency.max(1);
        Scheduler {
            shared: Arc::new(Shared {
                permits: RwLock::new(Arc::new(Semaphore::new(max))),
                max_concurrency: Mutex::new(max),
                in_flight,
            }),
            running: Mutex::default(),
            view: RwLock::default(),
            stopped: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Makes the running set of targets `targets`: starts new and changed ones, stops removed
    /// ones, leaves unchanged ones alone. Must be called within a Tokio runtime.
    pub fn apply(
        &self,
        targets: &[TargetSpec],
        modules: &BTreeMap<String, Arc<PreparedModule>>,
        max_concurrency: usize,
    ) -> Result<ApplyReport, ScheduleError> {
        // Check everything before changing anything: a failed apply leaves the old set running.
        let mut resolved = Vec::with_capacity(targets.len());
        for spec in targets {
            let module = modules
                .get(&spec.module)
                .ok_or_else(|| ScheduleError::UnknownModule {
                    target: spec.name.clone(),
                    module: spec.module.clone(),
                })?;
            resolved.push((spec, module));
        }
        let mut running = lock(&self.running);
        let mut fresh: Vec<(String, Arc<History>)> = Vec::new();
        for (spec, _) in &resolved {
            if !running.contains_key(&spec.name) {
                let history = History::new(&spec.name).map_err(|error| ScheduleError::Metrics {
                    target: spec.name.clone(),
                    error,
                })?;
                fresh.push((spec.name.clone(), Arc::new(history)));
            }
        }
        let mut fresh: HashMap<String, Arc<History>> = fresh.into_iter().collect();

        self.set_max_concurrency(max_concurrency);
        let mut report = ApplyReport::default();
        let mut next: HashMap<String, Running> = HashMap::with_capacity(resolved.len());
        let mut view = Vec::with_capacity(resolved.len());
        for (spec, module) in resolved {
            let old = running.remove(&spec.name);
            let history = match old {
                Some(old) if old.state.spec == *spec && old.module.module == module.module => {
                    report.unchanged += 1;
                    view.push(old.state.clone());
                    next.insert(spec.name.clone(), old);
                    continue;
                }
                Some(old) => {
                    report.changed += 1;
                    old.task.abort();
                    old.state.history.clone()
                }
                None => {
                    report.added += 1;
                    match fresh.remove(&spec.name) {
                        Some(h) => h,
                        // Two targets of one name: the configuration rejects that; the
                        // second one shares the first one's history rather than panicking.
                        None => match next.get(&spec.name) {
                            Some(r) => r.state.history.clone(),
                            None => continue,
                        },
                    }
                }
            };
            let state = Arc::new(TargetState {
                spec: spec.clone(),
                target_label: spec.target.to_string(),
                sends: module.module.message.is_some(),
                delivery: module.module.delivery.is_some(),
                latest: Mutex::default(),
                history,
            });
            let task = self.start(state.clone(), module.clone());
            view.push(state.clone());
            next.insert(
                spec.name.clone(),
                Running {
                    state,
                    module: module.clone(),
                    task,
                },
            );
        }
        for (_, old) in running.drain() {
            report.removed += 1;
            old.task.abort();
        }
        *running = next;
        *write(&self.view) = Arc::new(view);
        Ok(report)
    }

    fn set_max_concurrency(&self, max: usize) {
        let max = max.max(1);
        let mut current = lock(&self.shared.max_concurrency);
        if *current != max {
            // Probes holding permits of the old semaphore finish under the old cap.
            *write(&self.shared.permits) = Arc::new(Semaphore::new(max));
            *current = max;
        }
    }

    fn start(&self, state: Arc<TargetState>, module: Arc<PreparedModule>) -> JoinHandle<()> {
        if self.stopped.load(std::sync::atomic::Ordering::SeqCst) {
            return tokio::spawn(async {});
        }
        tokio::spawn(run_target(state, module, self.shared.clone()))
    }

    /// The targets, in configuration order.
    pub fn targets(&self) -> Arc<Vec<Arc<TargetState>>> {
        read(&self.view).clone()
    }

    /// One target by name.
    pub fn target(&self, name: &str) -> Option<Arc<TargetState>> {
        lock(&self.running).get(name).map(|r| r.state.clone())
    }

    /// Stops every target; probes in flight are cancelled (their connections closed).
    pub fn shutdown(&self) {
        self.stopped
            .store(true, std::sync::atomic::Ordering::SeqCst);
        for (_, r) in lock(&self.running).iter() {
            r.task.abort();
        }
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Counts a probe in `smtp_prober_probes_in_flight` for as long as it lives, including when its
/// task is cancelled mid-probe.
pub struct InFlight(IntGauge);

impl InFlight {
    /// Counts one more probe in flight.
    pub fn enter(gauge: &IntGauge) -> InFlight {
        gauge.inc();
        InFlight(gauge.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// A random delay in `[0, interval)`: first runs spread over the interval instead of all
/// targets probing at once after a start or reload.
fn jitter(interval: Duration) -> Duration {
    let ms = u64::try_from(interval.as_millis()).unwrap_or(u64::MAX);
    if ms == 0 {
        return Duration::ZERO;
    }
    Duration::from_millis(rand::random_range(0..ms))
}

async fn run_target(state: Arc<TargetState>, module: Arc<PreparedModule>, shared: Arc<Shared>) {
    let interval = state.spec.interval.max(Duration::from_millis(1));
    let mut ticker = tokio::time::interval_at(Instant::now() + jitter(interval), interval);
    // A probe longer than the interval delays the next one instead of causing a burst.
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        ticker.tick().await;
        let permits = read(&shared.permits).clone();
        let Ok(_permit) = permits.acquire_owned().await else {
            return;
        };
        let _probing = state.history.probing.lock().await;
        let outcome = {
            let _flight = InFlight::enter(&shared.in_flight);
            probe::run(&module, &state.spec.target, module.module.timeout).await
        };
        tracing::debug!(
            target_name = %state.spec.name,
            success = outcome.success(),
            duration_seconds = outcome.duration.as_secs_f64(),
            "scheduled probe done"
        );
        if let Some(f) = &outcome.failure {
            tracing::info!(
                target_name = %state.spec.name,
                step = f.step.as_str(),
                reason = f.reason.as_str(),
                "scheduled probe failed"
            );
        }
        state.record(outcome);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these small locks leaves consistent data (each is a single
    // assignment or push); keep serving rather than poisoning every later scrape.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn read<T>(m: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(m: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::module::{Module, TlsMode};

    fn spec(name: &str, port: u16, interval_ms: u64) -> TargetSpec {
        TargetSpec {
            name: name.into(),
            target: Target {
                host: "127.0.0.1".into(),
                port,
            },
            module: "plain".into(),
            interval: Duration::from_millis(interval_ms),
            labels: BTreeMap::from([("site".to_string(), "hq".to_string())]),
        }
    }

    fn modules() -> BTreeMap<String, Arc<PreparedModule>> {
        let module = Module {
            tls: TlsMode::None,
            timeout: Duration::from_secs(2),
            ..Module::default()
        };
        BTreeMap::from([(
            "plain".to_string(),
            PreparedModule::new("plain", module).expect("module"),
        )])
    }

    /// A port nobody listens on: bound, then closed.
    fn closed_port() -> u16 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    }

    async fn wait_for_result(state: &TargetState) -> Arc<Latest> {
        for _ in 0..200 {
            if let Some(l) = state.latest() {
                return l;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("no result for {}", state.spec.name);
    }

    #[tokio::test]
    async fn probes_and_renders_with_target_labels() {
        let gauge = IntGauge::new("t_in_flight", "t").expect("gauge");
        let s = Scheduler::new(4, gauge);
        let port = closed_port();
        let report = s
            .apply(&[spec("a", port, 200)], &modules(), 4)
            .expect("apply");
        assert_eq!(report.added, 1);
        let state = s.target("a").expect("target");
        let latest = wait_for_result(&state).await;
        assert!(!latest.outcome.success());
        let mut text = String::new();
        crate::http::exposition::merge([&latest.metrics], &mut text);
        let want = format!(
            "probe_success{{name=\"a\",target=\"127.0.0.1:{port}\",module=\"plain\",site=\"hq\"}} 0"
        );
        assert!(text.contains(&want), "{text}");
        let mut hist = String::new();
        crate::http::exposition::merge([&*state.history_metrics()], &mut hist);
        assert!(
            hist.contains("smtp_prober_probes_total{name=\"a\",result=\"failure\"} 1")
                || hist.contains("smtp_prober_probes_total{name=\"a\",result=\"failure\"} 2"),
            "{hist}"
        );
        assert!(
            hist.contains("smtp_prober_step_duration_seconds_count{name=\"a\",step=\"connect\"}"),
            "{hist}"
        );
        assert!(
            state.logs()[0].contains("connect_refused"),
            "{:?}",
            state.logs()
        );
    }

    #[tokio::test]
    async fn reload_keeps_unchanged_and_restarts_changed() {
        let gauge = IntGauge::new("t_in_flight2", "t").expect("gauge");
        let s = Scheduler::new(2, gauge);
        let port = closed_port();
        let m = modules();
        s.apply(&[spec("a", port, 100), spec("b", port, 100)], &m, 2)
            .expect("apply");
        let a = s.target("a").expect("a");
        let b = s.target("b").expect("b");
        wait_for_result(&a).await;
        let report = s
            .apply(&[spec("a", port, 100), spec("c", port, 100)], &m, 3)
            .expect("apply");
        assert_eq!(
            report,
            ApplyReport {
                added: 1,
                changed: 0,
                removed: 1,
                unchanged: 1
            }
        );
        assert!(Arc::ptr_eq(&a, &s.target("a").expect("a")));
        assert!(s.target("b").is_none());
        drop(b);
        let names: Vec<String> = s.targets().iter().map(|t| t.spec.name.clone()).collect();
        assert_eq!(names, ["a", "c"]);

        let report = s
            .apply(&[spec("a", port, 150), spec("c", port, 100)], &m, 3)
            .expect("apply");
        assert_eq!((report.changed, report.unchanged), (1, 1));
        let a2 = s.target("a").expect("a");
        assert!(!Arc::ptr_eq(&a, &a2));
        // The history (counters, logs) carried over.
        assert!(Arc::ptr_eq(&a.history, &a2.history));
        assert!(!a2.logs().is_empty());
    }

    #[tokio::test]
    async fn unknown_module_changes_nothing() {
        let gauge = IntGauge::new("t_in_flight3", "t").expect("gauge");
        let s = Scheduler::new(1, gauge);
        let mut bad = spec("x", 1, 1000);
        bad.module = "nope".into();
        let err = s.apply(&[bad], &modules(), 1).expect_err("unknown module");
        assert_eq!(err.to_string(), "target \"x\": unknown module \"nope\"");
        assert!(s.targets().is_empty());
    }

    #[test]
    fn jitter_stays_within_the_interval() {
        for _ in 0..100 {
            assert!(jitter(Duration::from_secs(10)) < Duration::from_secs(10));
        }
        assert_eq!(jitter(Duration::ZERO), Duration::ZERO);
    }
}
