//! Scheduled mode (DESIGN §2.2): every configured target probed on its own interval, the first
//! runs spread with random jitter over the interval, a global cap on concurrent probes, never two
//! probes of one target at once, and the latest outcome of each target kept with its metrics
//! already rendered.
//!
//! Scale (DESIGN §10, 10,000 targets): each target is one task with its own timer; nothing global
//! is locked while a probe runs. A result is rendered to text once, when it arrives (see
//! [`crate::exposition`]), so a `/metrics` scrape only copies bytes. Per-target state sits
//! behind small locks that are held for an `Arc` swap or clone, never across an `.await`.
//!
//! Reload keeps what did not change: a target whose settings and module are equal to the running
//! ones keeps its task, timer and results; a changed target restarts (its histograms, counters
//! and logs, keyed by name, carry over); a removed one stops.
//!
//! A target that checks delivery also sweeps its mailboxes for its own stale probe mail (left by
//! probes that timed out, were cancelled by a reload or shutdown, or ran before a crash): right
//! after the first probe of its task, then every `sweep_period`. The sweep runs inside the
//! same per-target lock as the probe, so it never races the probe's own search and cleanup, and
//! what it deletes follows the same rule ([`probe::delivery::sweep`]): only mail carrying a
//! probe-id header, sent from the module's own address, older than `sweep_older_than`.
//!
//! Late, lost and pending: a probe whose mail was accepted but not found in time leaves its id
//! in the target's pending list ([`PENDING_PER_TARGET`] at most). Every later probe's delivery
//! check looks for the pending ids too: one found counts as late (with its real delivery time,
//! from the end of DATA to its IMAP INTERNALDATE) and is cleaned up; one still missing after a
//! search more than `delivery.lost_after` after it was sent counts as lost. The sweep spares
//! pending mail. The list belongs to the target's name, like its counters: a reload keeps it
//! unless the target's delivery settings changed (then the old ids mean nothing).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};

use crate::cancel::{Cancel, Canceller};
use std::time::{Duration, SystemTime};

use prometheus::IntGauge;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use crate::clock::{rfc3339, unix_seconds};
use crate::config::{SchedulerSettings, Target};
use crate::exposition::scheduled::{self, Layout, Series, Sweep};
use crate::exposition::{Chunk, LeadingLabels, Sink};
use crate::probe::kept::KeptOutcome;
use crate::probe::{self, Budget, PreparedModule, ProbeOutcome};
use crate::report;

/// Transcripts kept per target for `/logs`, at most: the latest result's (rendered from it when
/// asked) and older ones.
pub const LOGS_PER_TARGET: usize = 5;

/// The bytes of older transcripts kept for all targets together: shared evenly, so that 1,000
/// targets keep their four each and 10,000 one or none beside their latest. A full send's
/// transcript takes about 2.5 KiB.
pub const LOG_BYTES: usize = 16 * 1024 * 1024;

/// A longer transcript (a server that sends hundreds of reply lines) is cut to this size.
pub const MAX_LOG_BYTES: usize = 32 * 1024;
/// Results kept per target for the status page's history strip.
pub const RESULTS_PER_TARGET: usize = 20;

/// One finished probe, as the status page's history strip shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResultMark {
    /// When the probe started.
    pub started_at: std::time::SystemTime,
    /// How long it took.
    pub duration: Duration,
    /// Where and why it failed; `None` for a success.
    pub failure: Option<(crate::vocab::StepName, crate::vocab::Reason)>,
}

/// A [`ResultMark`] as kept: 16 bytes where the mark takes 40 (20 of them per target).
#[derive(Clone, Copy, Debug)]
struct Mark {
    /// Start, milliseconds since the Unix epoch (0 for a clock before it).
    started_ms: u64,
    /// Duration in microseconds (saturating: about 71 minutes at most, far beyond any timeout).
    duration_us: u32,
    failure: Option<(crate::vocab::StepName, crate::vocab::Reason)>,
}

impl Mark {
    fn new(mark: &ResultMark) -> Mark {
        let since_epoch = mark
            .started_at
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Mark {
            started_ms: u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX),
            duration_us: u32::try_from(mark.duration.as_micros()).unwrap_or(u32::MAX),
            failure: mark.failure,
        }
    }

    fn result(&self) -> ResultMark {
        ResultMark {
            started_at: std::time::UNIX_EPOCH + Duration::from_millis(self.started_ms),
            duration: Duration::from_micros(u64::from(self.duration_us)),
            failure: self.failure,
        }
    }
}

/// The sweep of stale probe mail runs at least this far apart: a tiny `sweep_older_than` must
/// not turn into an IMAP login after every probe.
const SWEEP_EVERY_MIN: Duration = Duration::from_secs(10 * 60);
/// ... and at most this far apart, so that a long `sweep_older_than` (a day) still frees the
/// mailbox within the hour after mail became stale.
const SWEEP_EVERY_MAX: Duration = Duration::from_secs(60 * 60);

/// How often a target sweeps for stale probe mail: every `sweep_older_than`, so that a probe
/// mail left behind is gone before it is twice that old, within [10 min, 1 h]. Sweeps run after
/// a probe, so a target whose interval is longer sweeps once per probe.
pub(crate) fn sweep_period(sweep_older_than: Duration) -> Duration {
    sweep_older_than.clamp(SWEEP_EVERY_MIN, SWEEP_EVERY_MAX)
}

/// The most mails a target keeps looking for after their probe gave up: a target probed every
/// minute with the default hour of `lost_after` holds 60. Past it the oldest is given up as lost.
pub const PENDING_PER_TARGET: usize = 64;

/// A token mail that did not arrive while its probe waited.
#[derive(Clone, Debug)]
struct PendingMail {
    /// Its probe id.
    probe_id: String,
    /// When its server accepted it.
    accepted_at: SystemTime,
}

/// What outlives a change of a target's settings: keyed by its name.
struct History {
    /// Its scheduled histograms and counters.
    series: Series,
    /// Mails still looked for, oldest first (see the module documentation).
    pending: Mutex<Vec<PendingMail>>,
    /// Newest last.
    logs: Mutex<VecDeque<Arc<str>>>,
    /// Newest last.
    results: Mutex<VecDeque<Mark>>,
    /// Held while probing, so that a restarted target's new task never overlaps the old one's
    /// last probe.
    probing: tokio::sync::Mutex<()>,
}

impl History {
    fn new(name: &str) -> History {
        History {
            series: Series::new(name),
            pending: Mutex::default(),
            logs: Mutex::default(),
            results: Mutex::default(),
            probing: tokio::sync::Mutex::new(()),
        }
    }

    /// Keeps `entry` as the newest of the older transcripts (the latest result's is rendered
    /// from it), as many of them as fit in `budget` bytes and [`LOGS_PER_TARGET`].
    fn push_log(&self, entry: Arc<str>, budget: usize) {
        let mut logs = lock(&self.logs);
        keep_last(&mut logs, entry, LOGS_PER_TARGET - 1);
        let mut older: usize = logs.iter().map(|l| l.len()).sum();
        while older > budget {
            let Some(oldest) = logs.pop_front() else {
                break;
            };
            older -= oldest.len();
        }
    }
}

/// Appends `item`, dropping the oldest beyond `max`.
fn keep_last<T>(queue: &mut VecDeque<T>, item: T, max: usize) {
    if queue.len() >= max {
        queue.pop_front();
    }
    queue.push_back(item);
}

/// The latest result of a target.
#[derive(Debug)]
pub struct Latest {
    /// What the probe found, in the compact form a target keeps.
    pub outcome: KeptOutcome,
    /// The per-probe families with the target's labels, rendered.
    pub metrics: Chunk,
}

/// A configured target with its results.
pub struct TargetState {
    /// The settings it runs with.
    pub spec: Arc<Target>,
    /// The labels of its metrics (`name`, `target`, `module` and its own), rendered once.
    leading: LeadingLabels,
    /// Whether its module checks delivery.
    delivery: bool,
    /// Its module, replaced by an equal one built by a reload.
    module: Mutex<Arc<PreparedModule>>,
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

    /// The module it runs.
    pub(crate) fn module(&self) -> Arc<PreparedModule> {
        lock(&self.module).clone()
    }

    /// The last few transcripts, newest first: the latest result's, rendered now, then the
    /// older ones kept.
    pub fn logs(&self) -> Vec<Arc<str>> {
        let mut logs: Vec<Arc<str>> = Vec::with_capacity(LOGS_PER_TARGET);
        if let Some(latest) = self.latest() {
            logs.push(self.log_of(&latest.outcome.outcome()).into());
        }
        logs.extend(lock(&self.history.logs).iter().rev().cloned());
        logs
    }

    /// The transcript of `outcome`, as `/logs` shows it.
    fn log_of(&self, outcome: &ProbeOutcome) -> String {
        let mut log = format!(
            "{} {}\n{}",
            rfc3339(unix_seconds(outcome.started_at)),
            self.spec.name,
            report::text::render(outcome)
        );
        cut_log(&mut log);
        log
    }

    /// The last [`RESULTS_PER_TARGET`] results, oldest first.
    pub fn results(&self) -> Vec<ResultMark> {
        lock(&self.history.results)
            .iter()
            .map(|m| m.result())
            .collect()
    }

    /// Keeps a finished probe's outcome with its metrics rendered, feeds the histograms and the
    /// results strip, and moves the previous outcome's transcript to the older logs (within
    /// `log_budget`, this target's share of [`LOG_BYTES`]).
    fn record(&self, outcome: ProbeOutcome, layout: &Layout, log_budget: usize) {
        let metrics = report::metrics::chunk(&outcome, self.leading.clone());
        self.history
            .series
            .observe(&outcome, self.delivery, self.spec.interval, layout);
        let mark = ResultMark {
            started_at: outcome.started_at,
            duration: outcome.duration,
            failure: outcome.failure.as_ref().map(|f| (f.step, f.reason)),
        };
        keep_last(
            &mut lock(&self.history.results),
            Mark::new(&mark),
            RESULTS_PER_TARGET,
        );
        let outcome = KeptOutcome::new(outcome);
        let previous = lock(&self.latest).replace(Arc::new(Latest { outcome, metrics }));
        if let Some(previous) = previous {
            self.keep_log(&previous.outcome, log_budget);
        }
    }

    /// Keeps the transcript of `outcome`, no longer the latest, among the older logs.
    fn keep_log(&self, outcome: &KeptOutcome, log_budget: usize) {
        self.history
            .push_log(self.log_of(&outcome.outcome()).into(), log_budget);
    }
}

/// A target's task.
struct Running {
    state: Arc<TargetState>,
    task: JoinHandle<()>,
    canceller: Canceller,
}

/// How long a cancelled probe gets to say QUIT and close before its task is aborted.
const CANCEL_GRACE: Duration = Duration::from_secs(1);

impl Running {
    /// Cancels the target's task: a probe in flight stops at its next wait and says QUIT; the
    /// task is aborted if it has not ended after [`CANCEL_GRACE`]. Returns the task to wait for.
    fn stop(self) -> JoinHandle<()> {
        self.canceller.cancel();
        let mut task = self.task;
        tokio::spawn(async move {
            if tokio::time::timeout(CANCEL_GRACE, &mut task).await.is_err() {
                task.abort();
            }
        })
    }
}

/// What a [`Scheduler::apply`] changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ApplyReport {
    /// Targets started for the first time.
    pub(crate) added: usize,
    /// Targets restarted with new settings.
    pub(crate) changed: usize,
    /// Targets stopped.
    pub(crate) removed: usize,
    /// Targets left running as they were.
    pub(crate) unchanged: usize,
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
}

/// State shared by every target task.
struct Shared {
    /// The concurrency cap; replaced when `max_concurrency` changes on reload.
    permits: RwLock<Arc<Semaphore>>,
    max_concurrency: Mutex<usize>,
    in_flight: IntGauge,
    /// Which scheduled histograms the targets keep; replaced on reload.
    layout: RwLock<Arc<Layout>>,
    /// Each target's share of [`LOG_BYTES`]; set on reload.
    log_budget: std::sync::atomic::AtomicUsize,
}

/// Runs the scheduled targets.
pub struct Scheduler {
    shared: Arc<Shared>,
    /// Tasks of stopped targets, still saying QUIT; [`Scheduler::stopped`] waits for them.
    stopping: Mutex<Vec<JoinHandle<()>>>,
    /// Only reload and shutdown take this; probes never do.
    running: Mutex<HashMap<String, Running>>,
    /// The targets in configuration order, for `/metrics` and the status page.
    view: RwLock<Arc<Vec<Arc<TargetState>>>>,
    stopped: std::sync::atomic::AtomicBool,
}

impl Scheduler {
    /// A scheduler with no targets. `in_flight` counts running probes.
    pub(crate) fn new(max_concurrency: usize, in_flight: IntGauge) -> Scheduler {
        let max = max_concurrency.max(1);
        Scheduler {
            shared: Arc::new(Shared {
                permits: RwLock::new(Arc::new(Semaphore::new(max))),
                max_concurrency: Mutex::new(max),
                in_flight,
                layout: RwLock::default(),
                log_budget: std::sync::atomic::AtomicUsize::new(LOG_BYTES),
            }),
            running: Mutex::default(),
            view: RwLock::default(),
            stopped: std::sync::atomic::AtomicBool::new(false),
            stopping: Mutex::default(),
        }
    }

    /// Makes the running set of targets `targets`: starts new and changed ones, stops removed
    /// ones, leaves unchanged ones alone; takes the cap and the series layout of `settings`.
    /// Must be called within a Tokio runtime.
    pub(crate) fn apply(
        &self,
        targets: &[Arc<Target>],
        modules: &BTreeMap<String, Arc<PreparedModule>>,
        settings: &SchedulerSettings,
    ) -> Result<ApplyReport, ScheduleError> {
        // Check everything before changing anything: a failed apply leaves the old set running.
        let resolved = resolve(targets, modules)?;
        let mut running = lock(&self.running);
        let mut fresh: HashMap<String, Arc<History>> = resolved
            .iter()
            .filter(|(spec, _)| !running.contains_key(&spec.name))
            .map(|(spec, _)| (spec.name.clone(), Arc::new(History::new(&spec.name))))
            .collect();

        self.set_max_concurrency(settings.max_concurrency);
        *write(&self.shared.layout) = Arc::new(Layout::new(settings));
        let log_budget = LOG_BYTES / targets.len().max(1);
        self.shared
            .log_budget
            .store(log_budget, std::sync::atomic::Ordering::Relaxed);
        let mut report = ApplyReport::default();
        let mut next: HashMap<String, Running> = HashMap::with_capacity(resolved.len());
        let mut view = Vec::with_capacity(resolved.len());
        for (spec, module) in resolved {
            let old = running.remove(&spec.name);
            let history = match old {
                Some(old)
                    if old.state.spec == *spec && old.state.module().module == module.module =>
                {
                    // Same settings; the freshly built module brings re-read CA files.
                    *lock(&old.state.module) = module.clone();
                    report.unchanged += 1;
                    view.push(old.state.clone());
                    next.insert(spec.name.clone(), old);
                    continue;
                }
                Some(old) => {
                    report.changed += 1;
                    self.restart(old, module, log_budget)
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
                leading: leading_labels(spec),
                delivery: module.module.delivery.is_some(),
                module: Mutex::new(module.clone()),
                latest: Mutex::default(),
                history,
            });
            let (canceller, cancel) = Canceller::new();
            let task = self.start(state.clone(), cancel);
            view.push(state.clone());
            next.insert(
                spec.name.clone(),
                Running {
                    state,
                    task,
                    canceller,
                },
            );
        }
        for (_, old) in running.drain() {
            report.removed += 1;
            self.retire(old);
        }
        *running = next;
        *write(&self.view) = Arc::new(view);
        Ok(report)
    }

    /// Stops `old`, a target whose settings changed to `module`, and hands over its history
    /// for the restarted one.
    fn restart(&self, old: Running, module: &PreparedModule, log_budget: usize) -> Arc<History> {
        let history = old.state.history.clone();
        // The restarted target starts without a latest result: its transcript joins the older
        // ones.
        if let Some(latest) = old.state.latest() {
            old.state.keep_log(&latest.outcome, log_budget);
        }
        if old.state.module().module.delivery != module.module.delivery {
            // Other mailboxes, or another way to them: the ids are not awaited there. Mail that
            // arrives anyway is swept.
            lock(&history.pending).clear();
        }
        self.retire(old);
        history
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

    fn start(&self, state: Arc<TargetState>, cancel: Cancel) -> JoinHandle<()> {
        if self.stopped.load(std::sync::atomic::Ordering::SeqCst) {
            return tokio::spawn(async {});
        }
        tokio::spawn(run_target(state, self.shared.clone(), cancel))
    }

    /// Stops a target's task (see [`Running::stop`]) and remembers it for [`Scheduler::stopped`].
    fn retire(&self, old: Running) {
        let mut stopping = lock(&self.stopping);
        stopping.retain(|t| !t.is_finished());
        stopping.push(old.stop());
    }

    /// Waits until every stopped target's task has ended (each is aborted after its grace).
    pub(crate) async fn stopped(&self) {
        let tasks: Vec<JoinHandle<()>> = std::mem::take(&mut *lock(&self.stopping));
        for task in tasks {
            let _ = task.await;
        }
    }

    /// The targets, in configuration order.
    pub fn targets(&self) -> Arc<Vec<Arc<TargetState>>> {
        read(&self.view).clone()
    }

    /// Writes the scheduled histograms and counters of `targets` (see
    /// `crate::exposition::scheduled`), as the running configuration asks for them.
    pub fn write_totals(&self, targets: &[Arc<TargetState>], out: &mut impl Sink) {
        let layout = read(&self.shared.layout).clone();
        scheduled::write_totals(targets.iter().map(|t| &t.history.series), &layout, out);
    }

    /// One target by name.
    pub(crate) fn target(&self, name: &str) -> Option<Arc<TargetState>> {
        lock(&self.running).get(name).map(|r| r.state.clone())
    }

    /// Stops every target: probes in flight say QUIT and close (await [`Scheduler::stopped`]
    /// to let them), or are aborted after a short grace.
    pub(crate) fn shutdown(&self) {
        self.stopped
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let running: Vec<Running> = lock(&self.running).drain().map(|(_, r)| r).collect();
        for r in running {
            self.retire(r);
        }
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        // No runtime may be left to say QUIT on: abort what still runs.
        for (_, r) in lock(&self.running).drain() {
            r.task.abort();
        }
        for t in lock(&self.stopping).drain(..) {
            t.abort();
        }
    }
}

/// Counts a probe in `smtp_prober_probes_in_flight` for as long as it lives, including when its
/// task is cancelled mid-probe.
pub(crate) struct InFlight(IntGauge);

impl InFlight {
    /// Counts one more probe in flight.
    pub(crate) fn enter(gauge: &IntGauge) -> InFlight {
        gauge.inc();
        InFlight(gauge.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Cuts a transcript longer than [`MAX_LOG_BYTES`], saying so at its end.
fn cut_log(log: &mut String) {
    if log.len() <= MAX_LOG_BYTES {
        return;
    }
    let mut end = MAX_LOG_BYTES;
    while !log.is_char_boundary(end) {
        end -= 1;
    }
    log.truncate(end);
    log.push_str("\n[transcript cut at 32 KiB]\n");
}

/// The labels every per-probe metric of `spec` carries: `name`, `target` (as `host:port`),
/// `module`, then its own.
fn leading_labels(spec: &Target) -> LeadingLabels {
    let target = spec.address.to_string();
    let mut labels: Vec<(&str, &str)> = Vec::with_capacity(3 + spec.labels.len());
    labels.push(("name", &spec.name));
    labels.push(("target", &target));
    labels.push(("module", &spec.module));
    labels.extend(spec.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    LeadingLabels::new(&labels)
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

async fn run_target(state: Arc<TargetState>, shared: Arc<Shared>, cancel: Cancel) {
    let interval = state.spec.interval.max(Duration::from_millis(1));
    let mut ticker = tokio::time::interval_at(Instant::now() + jitter(interval), interval);
    // A probe longer than the interval delays the next one instead of causing a burst.
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    // The first sweep comes right after the first probe: a start (or a restart by a reload)
    // is when mail left by a crash or a cancelled probe is found.
    let mut next_sweep = Instant::now();
    loop {
        let permits = read(&shared.permits).clone();
        let waited = tokio::select! {
            biased;
            _ = cancel.cancelled() => None,
            permit = async {
                ticker.tick().await;
                let permit = permits.acquire_owned().await.ok()?;
                let probing = state.history.probing.lock().await;
                Some((permit, probing))
            } => permit,
        };
        let Some((_permit, _probing)) = waited else {
            return;
        };
        // Boxed: what a probe and its aftermath hold (the outcome, the sweep) is allocated while
        // they run, instead of living in every idle target's task (10,000 of them).
        if !Box::pin(probe_once(&state, &shared, &cancel, &mut next_sweep)).await {
            return;
        }
    }
}

/// One scheduled probe of `state` with its permit and probe lock held: runs it, records the
/// result, accounts pending mail, and sweeps when `next_sweep` has come. `false` when the probe
/// was cancelled (the task ends).
async fn probe_once(
    state: &Arc<TargetState>,
    shared: &Shared,
    cancel: &Cancel,
    next_sweep: &mut Instant,
) -> bool {
    let module = state.module();
    let pending: Vec<String> = lock(&state.history.pending)
        .iter()
        .map(|p| p.probe_id.clone())
        .collect();
    let outcome = {
        let _flight = InFlight::enter(&shared.in_flight);
        probe::run_awaiting(
            &module,
            &state.spec.address,
            Budget::new(module.module.timeout).cancelled_by(cancel.clone()),
            &pending,
        )
        .await
    };
    if outcome.cancelled {
        // Stopped by a shutdown or a reload: the verdict of a half-run probe means nothing.
        return false;
    }
    tracing::debug!(
        target_name = %state.spec.name,
        success = outcome.success(),
        duration_seconds = outcome.duration.as_secs_f64(),
        "scheduled probe done"
    );
    // At info level only changes are logged (failing, failing differently, recovered):
    // 10,000 targets failing every minute would otherwise drown the log.
    let verdict = |f: Option<&crate::smtp::transcript::Failure>| f.map(|f| (f.step, f.reason));
    let before = state.latest().map(|l| verdict(l.outcome.failure.as_ref()));
    let now = verdict(outcome.failure.as_ref());
    if before != Some(now) {
        match &outcome.failure {
            Some(f) => tracing::info!(
                target_name = %state.spec.name,
                step = f.step.as_str(),
                reason = f.reason.as_str(),
                detail = %f.detail,
                "scheduled probe failed"
            ),
            None if before.is_some() => {
                tracing::info!(target_name = %state.spec.name, "scheduled probe succeeded again")
            }
            None => {}
        }
    }
    let layout = read(&shared.layout).clone();
    let log_budget = shared.log_budget.load(std::sync::atomic::Ordering::Relaxed);
    let accepted_at = accepted_at(&outcome);
    state.record(outcome, &layout, log_budget);
    // The pending list and its counters change after the result is in: a scrape that sees
    // the change sees the result that made it.
    if let (Some(settings), Some(latest)) = (&module.module.delivery, state.latest()) {
        account_pending(state, &latest.outcome, accepted_at, settings.lost_after);
    }
    // Still holding the permit and the probe lock: a sweep is IMAP work like a probe's, and
    // it must not overlap this target's next probe (which searches the same mailboxes).
    if Instant::now() >= *next_sweep {
        if let Some(period) = sweep(state, &module).await {
            *next_sweep = Instant::now() + period;
        } else {
            // Nothing to sweep with this module; a reload that adds delivery restarts the
            // task.
            *next_sweep = Instant::now() + SWEEP_EVERY_MAX;
        }
    }
    true
}

/// When the token mail of `outcome` was accepted, if it was.
fn accepted_at(outcome: &ProbeOutcome) -> Option<SystemTime> {
    let at = outcome.session.message_accepted_at?;
    Some(outcome.started_at + at.saturating_duration_since(outcome.session.transcript.started()))
}

/// Updates the target's pending list after a probe: the earlier mails it found count as late,
/// those it searched for in vain past `lost_after` as lost, and its own mail, if accepted but not
/// found, joins the list.
fn account_pending(
    state: &TargetState,
    outcome: &KeptOutcome,
    accepted_at: Option<SystemTime>,
    lost_after: Duration,
) {
    let now = SystemTime::now();
    let delivery = outcome.delivery.as_ref();
    let mut pending = lock(&state.history.pending);
    let mut late = Vec::new();
    for found in delivery.map(|d| d.late.as_slice()).unwrap_or_default() {
        let Some(at) = pending.iter().position(|p| p.probe_id == found.probe_id) else {
            continue;
        };
        let mail = pending.remove(at);
        // Its arrival as the mailbox dated it, within [sent, now] whatever the clocks say.
        let waited = now.duration_since(mail.accepted_at).unwrap_or_default();
        let arrived = found
            .arrived_at
            .and_then(|t| u64::try_from(t).ok())
            .map(|t| SystemTime::UNIX_EPOCH + Duration::from_secs(t))
            .and_then(|t| t.duration_since(mail.accepted_at).ok())
            .unwrap_or(waited)
            .min(waited);
        tracing::info!(
            target_name = %state.spec.name,
            probe_id = %mail.probe_id,
            delivery_seconds = arrived.as_secs_f64(),
            "a token mail arrived late"
        );
        late.push(arrived);
    }
    let mut lost = 0u64;
    if let Some(searched) = delivery.and_then(|d| d.pending_searched_at) {
        pending.retain(|p| {
            let given_up = p.accepted_at + lost_after <= searched;
            if given_up {
                tracing::warn!(
                    target_name = %state.spec.name,
                    probe_id = %p.probe_id,
                    lost_after = %humantime::format_duration(lost_after),
                    "a token mail is lost"
                );
                lost += 1;
            }
            !given_up
        });
    }
    if let (Some(d), Some(id), Some(accepted_at)) = (delivery, &outcome.probe_id, accepted_at) {
        if !d.success {
            if pending.len() >= PENDING_PER_TARGET {
                let dropped = pending.remove(0);
                tracing::warn!(
                    target_name = %state.spec.name,
                    probe_id = %dropped.probe_id,
                    "too many token mails pending: the oldest counts as lost"
                );
                lost += 1;
            }
            pending.push(PendingMail {
                probe_id: id.to_string(),
                accepted_at,
            });
        }
    }
    state
        .history
        .series
        .observe_late_lost(&late, lost, pending.len());
}

/// Sweeps the target's mailboxes for its own stale probe mail, when its module checks delivery
/// and cleans up after itself (`cleanup: false` means the operator keeps the mail: the sweep
/// leaves it too). Counts and logs what happened; a failure is never fatal, the next sweep
/// tries again. Returns the time to the next sweep, or `None` when the module has nothing to
/// sweep. Runs with the target's probe lock held.
async fn sweep(state: &TargetState, module: &PreparedModule) -> Option<Duration> {
    let m = &module.module;
    let (Some(settings), Some(client), Some(message)) = (&m.delivery, &module.mailbox, &m.message)
    else {
        return None;
    };
    if !settings.cleanup {
        return None;
    }
    // The delivery timeout is the IMAP budget the operator chose; a sweep gets the same.
    let deadline = std::time::Instant::now() + settings.timeout;
    let began = std::time::Instant::now();
    let spare: Vec<String> = lock(&state.history.pending)
        .iter()
        .map(|p| p.probe_id.clone())
        .collect();
    let result = Box::pin(probe::delivery::sweep(
        settings,
        client,
        &message.from,
        settings.sweep_older_than,
        &spare,
        deadline,
    ))
    .await;
    match &result {
        Ok(0) => tracing::debug!(
            target_name = %state.spec.name,
            duration_seconds = began.elapsed().as_secs_f64(),
            "sweep found no stale probe mail"
        ),
        Ok(n) => tracing::info!(
            target_name = %state.spec.name,
            swept = n,
            older_than = %humantime::format_duration(settings.sweep_older_than),
            mailboxes = %settings.mailboxes.join(","),
            "deleted stale probe mail"
        ),
        Err(f) => tracing::warn!(
            target_name = %state.spec.name,
            reason = f.reason.as_str(),
            detail = %f.detail,
            "sweep for stale probe mail failed"
        ),
    }
    state.history.series.observe_sweep(match result {
        Ok(n) => Sweep::Deleted(n),
        Err(_) => Sweep::Failed,
    });
    Some(sweep_period(settings.sweep_older_than))
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

/// A target with the module it runs.
type Resolved<'a> = (&'a Arc<Target>, &'a Arc<PreparedModule>);

/// Each target with its module; an unknown module is an error.
fn resolve<'a>(
    targets: &'a [Arc<Target>],
    modules: &'a BTreeMap<String, Arc<PreparedModule>>,
) -> Result<Vec<Resolved<'a>>, ScheduleError> {
    targets
        .iter()
        .map(|spec| {
            let module = modules
                .get(&spec.module)
                .ok_or_else(|| ScheduleError::UnknownModule {
                    target: spec.name.clone(),
                    module: spec.module.clone(),
                })?;
            Ok((spec, module))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::module::{Module, TlsMode};

    fn spec(name: &str, port: u16, interval_ms: u64) -> Arc<Target> {
        Arc::new(Target {
            name: name.into(),
            address: crate::probe::target::Target {
                host: "127.0.0.1".into(),
                port,
            },
            module: "plain".into(),
            interval: Duration::from_millis(interval_ms),
            labels: [("site".to_string(), "hq".to_string())].into(),
        })
    }

    fn settings(max_concurrency: usize) -> SchedulerSettings {
        SchedulerSettings {
            max_concurrency,
            histograms: crate::config::Histograms::Steps,
            ..SchedulerSettings::default()
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

    /// A target's state as `apply` builds it, without a task.
    fn state(spec: Arc<Target>, delivery: bool) -> TargetState {
        TargetState {
            leading: leading_labels(&spec),
            history: Arc::new(History::new(&spec.name)),
            spec,
            delivery,
            module: Mutex::new(modules()["plain"].clone()),
            latest: Mutex::default(),
        }
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
            .apply(&[spec("a", port, 200)], &modules(), &settings(4))
            .expect("apply");
        assert_eq!(report.added, 1);
        let state = s.target("a").expect("target");
        let latest = wait_for_result(&state).await;
        assert!(!latest.outcome.success());
        let mut text = String::new();
        crate::exposition::merge(&[&latest.metrics], &mut text);
        let want = format!(
            "probe_success{{name=\"a\",target=\"127.0.0.1:{port}\",module=\"plain\",site=\"hq\"}} 0"
        );
        assert!(text.contains(&want), "{text}");
        let mut hist = String::new();
        s.write_totals(&s.targets(), &mut hist);
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
        s.apply(
            &[spec("a", port, 100), spec("b", port, 100)],
            &m,
            &settings(2),
        )
        .expect("apply");
        let a = s.target("a").expect("a");
        let b = s.target("b").expect("b");
        wait_for_result(&a).await;
        let report = s
            .apply(
                &[spec("a", port, 100), spec("c", port, 100)],
                &m,
                &settings(3),
            )
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
            .apply(
                &[spec("a", port, 150), spec("c", port, 100)],
                &m,
                &settings(3),
            )
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
        Arc::make_mut(&mut bad).module = "nope".into();
        let err = s
            .apply(&[bad], &modules(), &settings(1))
            .expect_err("unknown module");
        assert_eq!(err.to_string(), "target \"x\": unknown module \"nope\"");
        assert!(s.targets().is_empty());
    }

    #[test]
    fn sweep_period_follows_the_age_within_bounds() {
        let min = Duration::from_secs(60);
        assert_eq!(sweep_period(min), Duration::from_secs(600));
        assert_eq!(
            sweep_period(Duration::from_secs(1800)),
            Duration::from_secs(1800)
        );
        assert_eq!(
            sweep_period(Duration::from_secs(86_400)),
            Duration::from_secs(3600)
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrency_cap_holds() {
        use crate::demo::{DemoServer, ServerConfig, Verb};
        let server = DemoServer::start(
            ServerConfig::default().delay(Verb::Greeting, Duration::from_millis(150)),
        )
        .await
        .expect("demo server");
        let gauge = IntGauge::new("t_in_flight4", "t").expect("gauge");
        let s = Scheduler::new(2, gauge.clone());
        let port = server.addr().port();
        // Intervals far shorter than a probe: without the cap and the per-target lock, probes
        // would pile up.
        let targets: Vec<Arc<Target>> = (0..4).map(|i| spec(&format!("t{i}"), port, 20)).collect();
        s.apply(&targets, &modules(), &settings(2)).expect("apply");
        // A running target holds the configuration's own settings, not a copy of them.
        for (running, configured) in s.targets().iter().zip(&targets) {
            assert!(
                Arc::ptr_eq(&running.spec, configured),
                "{}",
                configured.name
            );
        }
        let mut most = 0;
        let mut most_sessions = 0;
        let until = std::time::Instant::now() + Duration::from_millis(900);
        while std::time::Instant::now() < until {
            most = most.max(gauge.get());
            most_sessions = most_sessions.max(server.active_sessions());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        s.shutdown();
        assert_eq!(most, 2, "probes in flight peaked at {most}");
        // The server's view: a session the prober has finished (QUIT answered, socket closed)
        // may still be closing on the server's side when the next probe connects, so one more
        // than the cap can show there; without the cap all four would.
        assert!(most_sessions <= 3, "{most_sessions} sessions at once");
        assert!(
            server.sessions() >= 4,
            "only {} probes ran",
            server.sessions()
        );
    }

    /// A full send (STARTTLS, AUTH, a token mail) every second against `server`, one target per
    /// name, with its files in `dir`.
    fn full_send(
        server: &crate::demo::DemoServer,
        dir: &std::path::Path,
        names: &[&str],
    ) -> (crate::config::Config, BTreeMap<String, Arc<PreparedModule>>) {
        let root = dir.join("root.pem");
        let password = dir.join("password");
        std::fs::write(&root, server.pki().root_pem()).expect("root");
        std::fs::write(&password, "secret\n").expect("password");
        let mut yaml = format!(
            "scheduler: {{min_send_interval: 0s}}\nmodules:\n  send:\n    tls: starttls\n    \
             ehlo: prober.test\n    tls_config: {{server_name: localhost, trust: [], ca_files: \
             [\"{}\"]}}\n    auth: {{mechanism: plain, username: probe, password_file: \"{}\"}}\n    \
             message: {{from: probe@prober.test, to: [inbox@prober.test]}}\ntargets:\n",
            root.display(),
            password.display(),
        );
        for name in names {
            yaml.push_str(&format!(
                "  - {{name: {name}, target: \"{}\", module: send, interval: 1s, labels: {{site: hq}}}}\n",
                server.addr()
            ));
        }
        let config = crate::config::Config::from_str(&yaml, "full send").expect("configuration");
        let modules = config
            .modules
            .iter()
            .map(|(n, m)| {
                (
                    n.clone(),
                    PreparedModule::new(n, m.clone()).expect("module"),
                )
            })
            .collect();
        (config, modules)
    }

    async fn demo_server() -> crate::demo::DemoServer {
        crate::demo::DemoServer::start(crate::demo::ServerConfig {
            max_received: 0,
            ..crate::demo::ServerConfig::default()
        })
        .await
        .expect("demo server")
    }

    /// Kept results hold their certificates' facts without DER, once: the chain built from the
    /// server's certificates shares them with the sent list, and two targets of one server
    /// share them with each other.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn kept_results_share_certificate_facts() {
        let server = demo_server().await;
        let dir = tempfile::tempdir().expect("a directory");
        let (config, modules) = full_send(&server, dir.path(), &["a", "b"]);
        let s = Scheduler::new(4, IntGauge::new("t_in_flight6", "t").expect("gauge"));
        s.apply(&config.targets, &modules, &config.scheduler)
            .expect("apply");
        let chain = |name: &str| {
            let state = s.target(name).expect("target");
            async move {
                let latest = wait_for_result(&state).await;
                let tls = latest.outcome.tls.as_deref().expect("a TLS session");
                tls.chain.clone()
            }
        };
        let (a, b) = (chain("a").await, chain("b").await);
        assert_eq!((a.sent.len(), a.built.len()), (2, 3), "{a:?}");
        for cert in a.sent.iter().chain(&a.built) {
            assert!(cert.der.is_empty(), "DER kept: {}", cert.subject);
        }
        // Leaf and intermediate: one copy for `sent` and `built`; the root comes from the trust
        // store.
        assert!(Arc::ptr_eq(&a.sent[0], &a.built[0]));
        assert!(Arc::ptr_eq(&a.sent[1], &a.built[1]));
        for (x, y) in a.built.iter().zip(&b.built) {
            assert!(Arc::ptr_eq(x, y), "{} kept twice", x.subject);
        }
        s.shutdown();
    }

    #[test]
    fn result_marks_are_kept_small_and_read_back() {
        use crate::vocab::{Reason, StepName};
        assert_eq!(std::mem::size_of::<Mark>(), 16);
        let mark = ResultMark {
            started_at: std::time::UNIX_EPOCH + Duration::from_millis(1_764_000_000_123),
            duration: Duration::from_micros(1_234_567),
            failure: Some((StepName::TlsHandshake, Reason::CertExpired)),
        };
        assert_eq!(Mark::new(&mark).result(), mark);
    }

    /// An idle target's task holds no probe: what a probe needs is allocated while it runs.
    #[test]
    fn an_idle_target_task_is_small() {
        let (_canceller, cancel) = crate::cancel::Canceller::new();
        let s = Scheduler::new(1, IntGauge::new("t_in_flight7", "t").expect("gauge"));
        let state = Arc::new(state(spec("a", 1, 1000), false));
        let task = run_target(state, s.shared.clone(), cancel);
        let size = std::mem::size_of_val(&task);
        assert!(size <= 512, "an idle target's task takes {size} bytes");
    }

    /// The series budget (README "What a target costs"): with the default settings, a
    /// scheduled full send (STARTTLS, AUTH, a token mail; no delivery check) exports at most 60
    /// series; `total` and `steps` cost what the README says.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_send_stays_within_the_series_budget() {
        use crate::config::{Histograms, PROBE_BUCKETS, STEP_BUCKETS};
        let server = demo_server().await;
        let dir = tempfile::tempdir().expect("a directory");
        let (config, modules) = full_send(&server, dir.path(), &["t"]);
        let s = Scheduler::new(4, IntGauge::new("t_in_flight5", "t").expect("gauge"));
        s.apply(&config.targets, &modules, &config.scheduler)
            .expect("apply");
        let state = s.target("t").expect("target");
        let latest = wait_for_result(&state).await;
        assert!(latest.outcome.success(), "{}", state.logs()[0]);
        let page = || {
            let mut page = String::new();
            let latest = state.latest().expect("a result");
            crate::exposition::merge(&[&latest.metrics], &mut page);
            s.write_totals(&s.targets(), &mut page);
            page
        };
        let probes = |page: &str| {
            page.lines()
                .find_map(|l| {
                    l.strip_prefix("smtp_prober_probes_total{name=\"t\",result=\"success\"} ")
                })
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        // Each setting, applied by a reload, from the target's next probe on.
        let mut series = BTreeMap::new();
        let mut steps = 0;
        for histograms in [Histograms::Total, Histograms::None, Histograms::Steps] {
            let settings = SchedulerSettings {
                histograms,
                ..config.scheduler.clone()
            };
            s.apply(&config.targets, &modules, &settings)
                .expect("apply");
            let before = probes(&page());
            let mut text = page();
            for _ in 0..300 {
                if probes(&text) > before {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
                text = page();
            }
            assert!(probes(&text) > before, "no probe after the reload");
            steps = text.matches("probe_smtp_step_duration_seconds{").count();
            let samples = text.lines().filter(|l| !l.starts_with('#')).count();
            series.insert(format!("{histograms:?}"), (samples, text));
        }
        // The default is `none`.
        let (default, page) = &series["None"];
        assert!(*default <= 60, "{default} series by default:\n{page}");
        let total = series["Total"].0;
        assert_eq!(total - default, PROBE_BUCKETS.len() + 3);
        assert_eq!(series["Steps"].0 - total, steps * (STEP_BUCKETS.len() + 3));
        s.shutdown();
    }

    #[test]
    fn logs_are_bounded_in_count_and_bytes() {
        let history = History::new("t");
        let entry = |n: usize| -> Arc<str> { "x".repeat(n).into() };
        for _ in 0..8 {
            history.push_log(entry(100), 10_000);
        }
        // Beside the latest result's transcript, four older ones.
        assert_eq!(lock(&history.logs).len(), LOGS_PER_TARGET - 1);
        // 250 bytes for older transcripts: two of them.
        history.push_log(entry(100), 250);
        assert_eq!(lock(&history.logs).len(), 2);
        // No room: none (the latest result's is still shown).
        history.push_log(entry(5000), 0);
        assert!(lock(&history.logs).is_empty());
    }

    #[test]
    fn long_transcripts_are_cut_on_a_character() {
        let mut log = "é".repeat(MAX_LOG_BYTES);
        cut_log(&mut log);
        assert!(
            log.ends_with("\n[transcript cut at 32 KiB]\n"),
            "{}",
            &log[log.len() - 40..]
        );
        assert!(log.len() < MAX_LOG_BYTES + 40);
        let mut short = "short".to_string();
        cut_log(&mut short);
        assert_eq!(short, "short");
    }

    /// A delivery-checking probe's outcome: its mail `id` accepted a second after the start,
    /// found or not, with the earlier mails it found late and when it searched for them.
    fn delivery_outcome(
        id: &str,
        found: bool,
        late: Vec<crate::probe::delivery::LateMail>,
        searched: Option<std::time::SystemTime>,
    ) -> ProbeOutcome {
        let started = std::time::Instant::now();
        let mut session = crate::smtp::session::SessionReport::empty(started);
        session.message_accepted_at = Some(started + Duration::from_secs(1));
        ProbeOutcome {
            target: "127.0.0.1:25".into(),
            module: "token".into(),
            started_at: SystemTime::now(),
            duration: Duration::from_secs(2),
            timeout: Duration::from_secs(5),
            session,
            failure: None,
            probe_id: Some(id.into()),
            delivery: Some(crate::probe::DeliveryReport {
                success: found,
                late,
                pending_searched_at: searched,
                ..crate::probe::DeliveryReport::default()
            }),
            cancelled: false,
            message_configured: true,
        }
    }

    /// Accounts for `outcome` as the scheduler does after keeping it.
    fn account(state: &TargetState, outcome: ProbeOutcome, lost_after: Duration) {
        let at = accepted_at(&outcome);
        account_pending(state, &KeptOutcome::new(outcome), at, lost_after);
    }

    fn pending_ids(state: &TargetState) -> Vec<String> {
        lock(&state.history.pending)
            .iter()
            .map(|p| p.probe_id.clone())
            .collect()
    }

    fn totals_text(state: &TargetState) -> String {
        let mut out = String::new();
        let layout = scheduled::Layout::default();
        scheduled::write_totals([&state.history.series].into_iter(), &layout, &mut out);
        out
    }

    #[test]
    fn pending_mail_counts_late_lost_and_stays_bounded() {
        let state = state(spec("t", 25, 60_000), true);
        let hour = Duration::from_secs(3600);
        let id = |n: usize| format!("{n:032x}");
        // A found mail leaves nothing pending; a missing one is pending.
        account(&state, delivery_outcome(&id(0), true, vec![], None), hour);
        assert!(pending_ids(&state).is_empty());
        for n in 1..=PENDING_PER_TARGET + 1 {
            account(&state, delivery_outcome(&id(n), false, vec![], None), hour);
        }
        // Bounded: the oldest was given up as lost to make room.
        let pending = pending_ids(&state);
        assert_eq!(pending.len(), PENDING_PER_TARGET);
        assert_eq!(pending[0], id(2));
        let text = totals_text(&state);
        assert!(
            text.contains("smtp_prober_delivery_lost_total{name=\"t\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("smtp_prober_delivery_pending{name=\"t\"} 64"),
            "{text}"
        );

        // The next probe finds one of them: late, with the time from its acceptance to its
        // arrival; a search before lost_after gives up on none.
        let accepted = lock(&state.history.pending)[0].accepted_at;
        let arrived = crate::clock::unix_seconds(accepted) + 120;
        let late = crate::probe::delivery::LateMail {
            probe_id: id(2),
            mailbox: "INBOX".into(),
            arrived_at: Some(arrived),
            cleaned_up: true,
        };
        let now = SystemTime::now();
        account(
            &state,
            delivery_outcome(&id(99), true, vec![late], Some(now)),
            hour,
        );
        let text = totals_text(&state);
        assert!(
            text.contains("smtp_prober_delivery_late_total{name=\"t\"} 1"),
            "{text}"
        );
        assert!(
            text.contains(
                "smtp_prober_delivery_late_duration_seconds_bucket{name=\"t\",le=\"300\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("smtp_prober_delivery_lost_total{name=\"t\"} 1"),
            "{text}"
        );
        assert_eq!(pending_ids(&state).len(), PENDING_PER_TARGET - 1);

        // A search past lost_after of every pending mail: all of them lost, none left.
        account(
            &state,
            delivery_outcome(&id(100), true, vec![], Some(now + hour + hour)),
            hour,
        );
        assert!(pending_ids(&state).is_empty());
        let text = totals_text(&state);
        assert!(
            text.contains("smtp_prober_delivery_lost_total{name=\"t\"} 64"),
            "{text}"
        );
        assert!(
            text.contains("smtp_prober_delivery_pending{name=\"t\"} 0"),
            "{text}"
        );
    }

    #[test]
    fn jitter_stays_within_the_interval() {
        for _ in 0..100 {
            assert!(jitter(Duration::from_secs(10)) < Duration::from_secs(10));
        }
        assert_eq!(jitter(Duration::ZERO), Duration::ZERO);
    }
}
