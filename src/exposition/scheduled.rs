//! The metrics only scheduled mode has: per target name, histograms of probe, step and delivery
//! durations (with the delivery's hop split and the late mails' delivery time), counters of
//! probes, sweeps and late and lost mails, accumulated over every probe since the start (and
//! across reloads that keep the name), and when its last probe finished with the interval it
//! runs on (what the alert on stale results compares).
//!
//! Every bucket is a series in Prometheus, for every target, so the histograms of the probe's
//! duration are on request (`scheduler.histograms`, see [`Layout`]): none by default, one per
//! target with `total`, one more per step with `steps` (the bulk of the series then). A target
//! that checks delivery always has those of the delivery time, of each hop and of late mails:
//! the delivery dashboards and alerts read them.
//!
//! A new per-target scheduled metric (a gauge such as the time of the last probe, a counter, a
//! histogram) is: a [`ScheduledFamily`] variant (in `ALL`, in page order), its name, help and
//! type in [`HEADERS`], the numbers it needs in [`Totals`] (updated in [`Series::observe`]),
//! and its lines in [`ScheduledFamily::write`] (with [`write_sample`] or [`write_histogram`]).
//!
//! Histograms and counters change with every result and would cost more memory as text than as
//! numbers, so they are kept as numbers and written on every scrape by [`write_totals`], which
//! does no more than a formatted copy per series.

use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, SystemTime};

use super::{escape_label_value, push_u64, write_histogram, write_sample, Family, Kind, Sink};
use crate::config::{Bounds, Histograms, SchedulerSettings};
use crate::probe::ProbeOutcome;
use crate::vocab::StepName;

/// A histogram's bucket bounds with their `le` label values, rendered once.
#[derive(Debug, PartialEq)]
pub(crate) struct Scale {
    bounds: Bounds,
    le: Box<[Box<str>]>,
}

impl Scale {
    fn new(bounds: &Bounds) -> Arc<Scale> {
        Arc::new(Scale {
            bounds: bounds.clone(),
            // The client libraries' spelling: Rust's shortest round-trip `Display` (1, 2.5).
            le: bounds
                .as_slice()
                .iter()
                .map(|b| b.to_string().into())
                .collect(),
        })
    }
}

/// Bounds of `smtp_prober_delivery_hop_duration_seconds`: Received dates have one-second
/// resolution, so a hop is 0 or a few seconds when all is well (and below 0 when clocks
/// disagree: those count in the first bucket), minutes in a queue.
static HOPS: LazyLock<Arc<Scale>> = LazyLock::new(|| {
    Scale::new(&Bounds::new(&[
        0.0, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
    ]))
});
/// Hops with a histogram of their own: the first ones of the trace. A trace is seldom longer,
/// and a bound keeps the series per target finite.
pub(crate) const HOP_HISTOGRAMS: usize = 8;
/// Bounds of `smtp_prober_delivery_late_duration_seconds`: a late mail took longer than the
/// delivery timeout (minutes) and turned up before `lost_after` (an hour by default, or days).
static LATE: LazyLock<Arc<Scale>> = LazyLock::new(|| {
    Scale::new(&Bounds::new(&[
        60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 21_600.0, 43_200.0, 86_400.0,
    ]))
});

/// What scheduled targets export: `scheduler.histograms` and the buckets of each histogram.
#[derive(Debug)]
pub(crate) struct Layout {
    histograms: Histograms,
    probe: Arc<Scale>,
    step: Arc<Scale>,
    delivery: Arc<Scale>,
}

impl Layout {
    /// The layout `settings` ask for.
    pub(crate) fn new(settings: &SchedulerSettings) -> Layout {
        Layout {
            histograms: settings.histograms,
            probe: Scale::new(&settings.buckets.probe),
            step: Scale::new(&settings.buckets.step),
            delivery: Scale::new(&settings.buckets.delivery),
        }
    }
}

impl Default for Layout {
    fn default() -> Self {
        Layout::new(&SchedulerSettings::default())
    }
}

/// A histogram as numbers: observations per bucket (not cumulative, the last slot for those
/// above every bound), their sum, and the scale they were counted on. About a hundred bytes,
/// where the client library's histogram with its labels and descriptors takes kilobytes: it
/// matters at 10,000 targets.
#[derive(Clone, Debug)]
pub(crate) struct Buckets {
    scale: Arc<Scale>,
    counts: Box<[u64]>,
    sum: f64,
}

impl Buckets {
    fn new(scale: &Arc<Scale>) -> Self {
        Buckets {
            scale: scale.clone(),
            counts: vec![0; scale.le.len() + 1].into_boxed_slice(),
            sum: 0.0,
        }
    }

    /// Counts `value` on `scale`; a histogram counted on other bounds (before a reload that
    /// changed them) starts again from zero, which Prometheus reads as a counter reset.
    fn observe(&mut self, scale: &Arc<Scale>, value: f64) {
        if !Arc::ptr_eq(&self.scale, scale) {
            if self.scale.bounds != scale.bounds {
                *self = Buckets::new(scale);
            }
            self.scale = scale.clone();
        }
        let bucket = self
            .scale
            .bounds
            .as_slice()
            .iter()
            .position(|&b| value <= b)
            .unwrap_or(self.counts.len() - 1);
        self.counts[bucket] += 1;
        self.sum += value;
    }

    /// How many observations.
    fn total(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// What a target's name has accumulated.
#[derive(Debug, Default)]
pub(crate) struct Totals {
    /// The whole probe's duration (`scheduler.histograms` `total` or `steps`).
    probe: Option<Buckets>,
    /// Per step, in the order steps first ran (`steps`).
    steps: Vec<(StepName, Buckets)>,
    /// The delivery time, from the first probe of a target that checks delivery on.
    delivery: Option<Buckets>,
    /// Per hop index (1 first), the time each hop of the delivered mails' traces took.
    hops: Vec<Buckets>,
    /// Mails that turned up after their probe gave up, lost ones, and those still awaited;
    /// `None` until the target checks delivery.
    late_lost: Option<LateLost>,
    success: u64,
    failure: u64,
    /// Stale probe mails deleted and sweeps failed; `None` until the target checks delivery,
    /// then exported from 0 on so that `rate()` and `increase()` see the first one.
    swept: Option<(u64, u64)>,
    /// When the last probe finished (Unix seconds) and the interval it ran on (seconds); `None`
    /// before the first probe.
    last_probe: Option<(f64, f64)>,
}

/// The numbers behind the late, lost and pending families.
#[derive(Debug)]
struct LateLost {
    /// Late mails' delivery times; its count is `smtp_prober_delivery_late_total`.
    late: Buckets,
    lost: u64,
    pending: usize,
}

impl LateLost {
    fn new() -> LateLost {
        LateLost {
            late: Buckets::new(&LATE),
            lost: 0,
            pending: 0,
        }
    }
}

/// One target name's scheduled series: its numbers, and its `name` label rendered once.
#[derive(Debug)]
pub(crate) struct Series {
    /// `name="…"`, escaped once.
    name_label: Box<str>,
    totals: Mutex<Totals>,
}

/// What one sweep for stale probe mail did.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Sweep {
    /// It deleted this many mails (0 when there were none).
    Deleted(usize),
    /// It failed (logged where it happened); the next sweep tries again.
    Failed,
}

impl Series {
    /// No observations yet for the target called `name`.
    pub(crate) fn new(name: &str) -> Series {
        Series {
            name_label: format!("name=\"{}\"", escape_label_value(name)).into(),
            totals: Mutex::default(),
        }
    }

    /// Counts one finished probe of a target probed every `interval`; `delivery_configured`
    /// starts the delivery histogram and the sweep counters at zero. `layout` says which
    /// histograms to keep; those it no longer asks for (after a reload) are dropped.
    pub(crate) fn observe(
        &self,
        outcome: &ProbeOutcome,
        delivery_configured: bool,
        interval: Duration,
        layout: &Layout,
    ) {
        let finished = (outcome.started_at + outcome.duration)
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let mut totals = lock(&self.totals);
        totals.last_probe = Some((finished, interval.as_secs_f64()));
        if outcome.success() {
            totals.success += 1;
        } else {
            totals.failure += 1;
        }
        if delivery_configured {
            totals.swept.get_or_insert((0, 0));
            totals.late_lost.get_or_insert_with(LateLost::new);
        }
        if layout.histograms.total() {
            totals
                .probe
                .get_or_insert_with(|| Buckets::new(&layout.probe))
                .observe(&layout.probe, outcome.duration.as_secs_f64());
        } else {
            totals.probe = None;
        }
        if delivery_configured {
            totals
                .delivery
                .get_or_insert_with(|| Buckets::new(&layout.delivery));
        }
        if let Some(d) = outcome.delivery.as_ref().and_then(|d| d.duration) {
            totals
                .delivery
                .get_or_insert_with(|| Buckets::new(&layout.delivery))
                .observe(&layout.delivery, d.as_secs_f64());
        }
        let hops = outcome
            .delivery
            .as_ref()
            .map(|d| d.hops.as_slice())
            .unwrap_or_default();
        for hop in hops.iter().take(HOP_HISTOGRAMS) {
            let Some(seconds) = hop.seconds else { continue };
            while totals.hops.len() < hop.index {
                totals.hops.push(Buckets::new(&HOPS));
            }
            totals.hops[hop.index - 1].observe(&HOPS, seconds);
        }
        if !layout.histograms.steps() {
            totals.steps = Vec::new();
            return;
        }
        // One observation per step and probe: a step that ran twice (one RCPT per recipient)
        // counts with its summed time, as in `probe_smtp_step_duration_seconds`.
        let mut per_step: Vec<(StepName, Duration)> = Vec::with_capacity(16);
        for step in outcome.session.transcript.steps() {
            match per_step.iter_mut().find(|(n, _)| *n == step.name) {
                Some(entry) => entry.1 += step.duration,
                None => per_step.push((step.name, step.duration)),
            }
        }
        for (name, duration) in per_step {
            let at = match totals.steps.iter().position(|(n, _)| *n == name) {
                Some(i) => i,
                None => {
                    totals.steps.push((name, Buckets::new(&layout.step)));
                    totals.steps.len() - 1
                }
            };
            totals.steps[at]
                .1
                .observe(&layout.step, duration.as_secs_f64());
        }
    }

    /// Counts the earlier probes' mails that turned up `late` (each with its delivery time) or
    /// were given up as `lost`, and sets how many are still `pending`.
    pub(crate) fn observe_late_lost(&self, late: &[Duration], lost: u64, pending: usize) {
        let mut totals = lock(&self.totals);
        let counts = totals.late_lost.get_or_insert_with(LateLost::new);
        for d in late {
            counts.late.observe(&LATE, d.as_secs_f64());
        }
        counts.lost += lost;
        counts.pending = pending;
    }

    /// Counts one sweep.
    pub(crate) fn observe_sweep(&self, sweep: Sweep) {
        let mut totals = lock(&self.totals);
        let (swept, errors) = totals.swept.get_or_insert((0, 0));
        match sweep {
            Sweep::Deleted(n) => *swept += n as u64,
            Sweep::Failed => *errors += 1,
        }
    }
}

/// The scheduled histograms and counters, in the order they are written.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum ScheduledFamily {
    Probe,
    Steps,
    Delivery,
    Hops,
    Late,
    LateDuration,
    Lost,
    Pending,
    Probes,
    Swept,
    SweepErrors,
    LastProbe,
    Interval,
}

/// The headers of [`ScheduledFamily`], in its order.
const HEADERS: [Family; 13] = [
    Family {
        name: "smtp_prober_probe_duration_seconds",
        help: "Duration of scheduled probes.",
        kind: Kind::Histogram,
    },
    Family {
        name: "smtp_prober_step_duration_seconds",
        help: "Duration of each step of scheduled probes (scheduler.histograms: steps).",
        kind: Kind::Histogram,
    },
    Family {
        name: "smtp_prober_delivery_duration_seconds",
        help: "From the end of DATA to the token mail being visible, of scheduled probes.",
        kind: Kind::Histogram,
    },
    Family {
        name: "smtp_prober_delivery_hop_duration_seconds",
        help: "Time from each hop of the delivered token mails' Received traces to the next, by hop index (the first 8 hops).",
        kind: Kind::Histogram,
    },
    Family {
        name: "smtp_prober_delivery_late_total",
        help: "Token mails that turned up after their probe gave up, found by a later probe.",
        kind: Kind::Counter,
    },
    Family {
        name: "smtp_prober_delivery_late_duration_seconds",
        help: "From the end of DATA to the arrival (IMAP INTERNALDATE) of token mails that turned up late.",
        kind: Kind::Histogram,
    },
    Family {
        name: "smtp_prober_delivery_lost_total",
        help: "Token mails not found within delivery.lost_after of being sent.",
        kind: Kind::Counter,
    },
    Family {
        name: "smtp_prober_delivery_pending",
        help: "Token mails that did not arrive in time and are still looked for.",
        kind: Kind::Gauge,
    },
    Family {
        name: "smtp_prober_probes_total",
        help: "Scheduled probes run, by result.",
        kind: Kind::Counter,
    },
    Family {
        name: "smtp_prober_delivery_swept_total",
        help: "Stale probe mails of this target deleted by the periodic sweep of its mailboxes.",
        kind: Kind::Counter,
    },
    Family {
        name: "smtp_prober_delivery_sweep_errors_total",
        help: "Sweeps of this target's mailboxes for stale probe mail that failed.",
        kind: Kind::Counter,
    },
    Family {
        name: "smtp_prober_last_probe_timestamp_seconds",
        help: "When the target's last scheduled probe finished, in Unix seconds.",
        kind: Kind::Gauge,
    },
    Family {
        name: "smtp_prober_probe_interval_seconds",
        help: "The interval the target is probed on.",
        kind: Kind::Gauge,
    },
];

impl ScheduledFamily {
    const ALL: [ScheduledFamily; 13] = [
        ScheduledFamily::Probe,
        ScheduledFamily::Steps,
        ScheduledFamily::Delivery,
        ScheduledFamily::Hops,
        ScheduledFamily::Late,
        ScheduledFamily::LateDuration,
        ScheduledFamily::Lost,
        ScheduledFamily::Pending,
        ScheduledFamily::Probes,
        ScheduledFamily::Swept,
        ScheduledFamily::SweepErrors,
        ScheduledFamily::LastProbe,
        ScheduledFamily::Interval,
    ];

    /// Name, help text and type.
    fn header(self) -> Family {
        HEADERS[self as usize]
    }

    /// Whether `layout` exports this family.
    fn exported(self, layout: &Layout) -> bool {
        match self {
            ScheduledFamily::Probe => layout.histograms.total(),
            ScheduledFamily::Steps => layout.histograms.steps(),
            _ => true,
        }
    }

    /// Writes this family's series of one target.
    fn write(self, row: &Row, copy: &Snapshot, buf: &mut String) {
        let name = self.header().name;
        let labels = copy.name_label(row);
        match self {
            ScheduledFamily::Probe => {
                if let Some(h) = &row.probe {
                    copy.write_histogram(h, buf, name, labels);
                }
            }
            ScheduledFamily::Steps => {
                let mut step_labels = String::with_capacity(labels.len() + 32);
                for (step, h) in &copy.steps[row.steps.0 as usize..row.steps.1 as usize] {
                    step_labels.clear();
                    step_labels.push_str(labels);
                    step_labels.push_str(",step=\"");
                    step_labels.push_str(step.as_str());
                    step_labels.push('"');
                    copy.write_histogram(h, buf, name, &step_labels);
                }
            }
            ScheduledFamily::Delivery => {
                if let Some(h) = &row.delivery {
                    copy.write_histogram(h, buf, name, labels);
                }
            }
            ScheduledFamily::Hops => {
                let mut hop_labels = String::with_capacity(labels.len() + 16);
                for (i, h) in copy.hops[row.hops.0 as usize..row.hops.1 as usize]
                    .iter()
                    .enumerate()
                {
                    hop_labels.clear();
                    hop_labels.push_str(labels);
                    hop_labels.push_str(",hop=\"");
                    push_u64(&mut hop_labels, i as u64 + 1);
                    hop_labels.push('"');
                    copy.write_histogram(h, buf, name, &hop_labels);
                }
            }
            ScheduledFamily::Late => {
                if let Some((late, ..)) = &row.late_lost {
                    write_sample(buf, name, labels, late.total);
                }
            }
            ScheduledFamily::LateDuration => {
                if let Some((late, ..)) = &row.late_lost {
                    copy.write_histogram(late, buf, name, labels);
                }
            }
            ScheduledFamily::Lost => {
                if let Some((_, lost, _)) = row.late_lost {
                    write_sample(buf, name, labels, lost);
                }
            }
            ScheduledFamily::Pending => {
                if let Some((_, _, pending)) = row.late_lost {
                    write_sample(buf, name, labels, pending);
                }
            }
            ScheduledFamily::Probes => {
                for (result, n) in [("success", row.success), ("failure", row.failure)] {
                    buf.push_str(name);
                    buf.push('{');
                    buf.push_str(labels);
                    buf.push_str(",result=\"");
                    buf.push_str(result);
                    buf.push_str("\"} ");
                    push_u64(buf, n);
                    buf.push('\n');
                }
            }
            ScheduledFamily::Swept => {
                if let Some((swept, _)) = row.swept {
                    write_sample(buf, name, labels, swept);
                }
            }
            ScheduledFamily::SweepErrors => {
                if let Some((_, errors)) = row.swept {
                    write_sample(buf, name, labels, errors);
                }
            }
            ScheduledFamily::LastProbe => {
                if let Some((finished, _)) = row.last_probe {
                    write_sample(buf, name, labels, finished);
                }
            }
            ScheduledFamily::Interval => {
                if let Some((_, interval)) = row.last_probe {
                    write_sample(buf, name, labels, interval);
                }
            }
        }
    }
}

/// A histogram in a [`Snapshot`]: where its counts are, their sum and total, its scale.
struct HistogramRef {
    counts: (u32, u32),
    sum: f64,
    total: u64,
    scale: Arc<Scale>,
}

/// One target's numbers in a [`Snapshot`].
struct Row {
    name: (u32, u32),
    probe: Option<HistogramRef>,
    steps: (u32, u32),
    delivery: Option<HistogramRef>,
    hops: (u32, u32),
    /// Late mails, lost ones, pending ones.
    late_lost: Option<(HistogramRef, u64, usize)>,
    success: u64,
    failure: u64,
    swept: Option<(u64, u64)>,
    last_probe: Option<(f64, f64)>,
}

/// Every target's numbers, copied under its lock in one pass, in target order: a few hundred
/// bytes per target, where reading each target's own memory once per family would miss the
/// caches at every step (10,000 targets, 8 families).
#[derive(Default)]
struct Snapshot {
    rows: Vec<Row>,
    names: String,
    counts: Vec<u64>,
    steps: Vec<(StepName, HistogramRef)>,
    hops: Vec<HistogramRef>,
}

impl Snapshot {
    fn of<'a>(series: impl Iterator<Item = &'a Series>, layout: &Layout) -> Snapshot {
        let mut copy = Snapshot::default();
        for s in series {
            let t = lock(&s.totals);
            let name = copy.names.len() as u32;
            copy.names.push_str(&s.name_label);
            let probe = t.probe.as_ref().map(|h| copy.histogram(h));
            let delivery = t.delivery.as_ref().map(|h| copy.histogram(h));
            let first_step = copy.steps.len() as u32;
            if layout.histograms.steps() {
                for (step, h) in &t.steps {
                    let h = copy.histogram(h);
                    copy.steps.push((*step, h));
                }
            }
            let first_hop = copy.hops.len() as u32;
            for h in &t.hops {
                let h = copy.histogram(h);
                copy.hops.push(h);
            }
            let late_lost = t
                .late_lost
                .as_ref()
                .map(|l| (copy.histogram(&l.late), l.lost, l.pending));
            copy.rows.push(Row {
                name: (name, copy.names.len() as u32),
                probe,
                steps: (first_step, copy.steps.len() as u32),
                delivery,
                hops: (first_hop, copy.hops.len() as u32),
                late_lost,
                success: t.success,
                failure: t.failure,
                swept: t.swept,
                last_probe: t.last_probe,
            });
        }
        copy
    }

    fn histogram(&mut self, h: &Buckets) -> HistogramRef {
        let at = self.counts.len() as u32;
        self.counts.extend_from_slice(&h.counts);
        HistogramRef {
            counts: (at, self.counts.len() as u32),
            sum: h.sum,
            total: h.total(),
            scale: h.scale.clone(),
        }
    }

    fn name_label(&self, row: &Row) -> &str {
        &self.names[row.name.0 as usize..row.name.1 as usize]
    }

    fn write_histogram(&self, h: &HistogramRef, buf: &mut String, name: &str, labels: &str) {
        let counts = &self.counts[h.counts.0 as usize..h.counts.1 as usize];
        let (counts, above) = counts.split_at(counts.len().saturating_sub(1));
        let above = above.first().copied().unwrap_or(0);
        write_histogram(buf, name, labels, &h.scale.le, counts, above, h.sum);
    }
}

/// Writes the scheduled histograms and counters of every series that `layout` exports: one
/// family after the other, each with every target's series. Each target's numbers are read
/// under its own lock, briefly, once.
pub(crate) fn write_totals<'a>(
    series: impl Iterator<Item = &'a Series>,
    layout: &Layout,
    out: &mut impl Sink,
) {
    let copy = Snapshot::of(series, layout);
    // Per target, its text is built in a small buffer, then handed on.
    let mut buf = String::with_capacity(8 * 1024);
    for family in ScheduledFamily::ALL {
        if !family.exported(layout) {
            continue;
        }
        let header_lines = family.header();
        let mut header = false;
        for row in &copy.rows {
            buf.clear();
            family.write(row, &copy, &mut buf);
            if buf.is_empty() {
                continue;
            }
            if !header {
                header_lines.write_header(out);
                header = true;
            }
            out.put(&buf);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Each lock guards plain numbers updated in one go: a panic elsewhere leaves them
    // consistent, so keep serving rather than poisoning every later scrape.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(steps: &[(StepName, u64)], success: bool) -> ProbeOutcome {
        use crate::smtp::session::SessionReport;
        use crate::smtp::transcript::Failure;
        let now = std::time::Instant::now();
        let mut session = SessionReport::empty(now);
        for (name, ms) in steps {
            let began = now - Duration::from_millis(*ms);
            session.transcript.record(*name, began).ok();
        }
        ProbeOutcome {
            cancelled: false,
            target: "127.0.0.1:25".into(),
            module: "plain".into(),
            started_at: std::time::SystemTime::now(),
            duration: Duration::from_millis(10),
            timeout: Duration::from_secs(5),
            session,
            failure: (!success)
                .then(|| Failure::new(StepName::Ehlo, crate::vocab::Reason::Timeout, "slow")),
            probe_id: None,
            message_configured: false,
            delivery: Some(crate::probe::DeliveryReport {
                success: true,
                duration: Some(Duration::from_secs(7)),
                mailbox: Some("INBOX".into()),
                hops: vec![
                    Hop {
                        index: 1,
                        received: Received::default(),
                        seconds: Some(-0.5),
                        clock_skew: false,
                    },
                    Hop {
                        index: 2,
                        received: Received::default(),
                        seconds: Some(3.0),
                        clock_skew: false,
                    },
                ],
                polls: 1,
                cleaned_up: true,
                ..crate::probe::DeliveryReport::default()
            }),
        }
    }

    use crate::headers::received::{Hop, Received};

    fn layout(histograms: Histograms) -> Layout {
        Layout::new(&SchedulerSettings {
            histograms,
            ..SchedulerSettings::default()
        })
    }

    fn written(series: &Series, layout: &Layout) -> String {
        let mut out = String::new();
        write_totals([series].into_iter(), layout, &mut out);
        out
    }

    #[test]
    fn totals_are_written_as_histograms_and_counters() {
        let series = Series::new("x\"y");
        let minute = Duration::from_secs(60);
        let steps = layout(Histograms::Steps);
        series.observe(&outcome(&[(StepName::Ehlo, 3)], true), true, minute, &steps);
        let last = outcome(&[(StepName::Ehlo, 700), (StepName::Quit, 20_000)], false);
        let finished = (last.started_at + last.duration)
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        series.observe(&last, true, minute, &steps);
        series.observe_sweep(Sweep::Deleted(2));
        series.observe_sweep(Sweep::Deleted(0));
        series.observe_sweep(Sweep::Failed);
        series.observe_late_lost(&[Duration::from_secs(200)], 0, 3);
        series.observe_late_lost(&[Duration::from_secs(4000)], 2, 1);
        let out = written(&series, &steps);
        let lines: Vec<&str> = out.lines().collect();
        let n = r#"name="x\"y""#;
        for want in [
            "# TYPE smtp_prober_probe_duration_seconds histogram".to_string(),
            format!(r#"smtp_prober_probe_duration_seconds_bucket{{{n},le="0.05"}} 2"#),
            format!(r#"smtp_prober_probe_duration_seconds_bucket{{{n},le="+Inf"}} 2"#),
            format!(r#"smtp_prober_probe_duration_seconds_sum{{{n}}} 0.02"#),
            "# TYPE smtp_prober_step_duration_seconds histogram".to_string(),
            format!(r#"smtp_prober_step_duration_seconds_bucket{{{n},step="ehlo",le="0.0025"}} 0"#),
            format!(r#"smtp_prober_step_duration_seconds_bucket{{{n},step="ehlo",le="0.005"}} 1"#),
            format!(r#"smtp_prober_step_duration_seconds_bucket{{{n},step="ehlo",le="0.5"}} 1"#),
            format!(r#"smtp_prober_step_duration_seconds_bucket{{{n},step="ehlo",le="1"}} 2"#),
            format!(r#"smtp_prober_step_duration_seconds_bucket{{{n},step="ehlo",le="+Inf"}} 2"#),
            format!(r#"smtp_prober_step_duration_seconds_count{{{n},step="ehlo"}} 2"#),
            format!(r#"smtp_prober_step_duration_seconds_bucket{{{n},step="quit",le="10"}} 0"#),
            format!(r#"smtp_prober_step_duration_seconds_bucket{{{n},step="quit",le="+Inf"}} 1"#),
            "# TYPE smtp_prober_delivery_duration_seconds histogram".to_string(),
            format!(r#"smtp_prober_delivery_duration_seconds_bucket{{{n},le="5"}} 0"#),
            format!(r#"smtp_prober_delivery_duration_seconds_bucket{{{n},le="10"}} 2"#),
            format!(r#"smtp_prober_delivery_duration_seconds_sum{{{n}}} 14"#),
            "# TYPE smtp_prober_delivery_hop_duration_seconds histogram".to_string(),
            format!(r#"smtp_prober_delivery_hop_duration_seconds_bucket{{{n},hop="1",le="0"}} 2"#),
            format!(r#"smtp_prober_delivery_hop_duration_seconds_bucket{{{n},hop="2",le="2"}} 0"#),
            format!(r#"smtp_prober_delivery_hop_duration_seconds_bucket{{{n},hop="2",le="5"}} 2"#),
            format!(r#"smtp_prober_delivery_hop_duration_seconds_sum{{{n},hop="1"}} -1"#),
            "# TYPE smtp_prober_delivery_late_total counter".to_string(),
            format!(r#"smtp_prober_delivery_late_total{{{n}}} 2"#),
            "# TYPE smtp_prober_delivery_late_duration_seconds histogram".to_string(),
            format!(r#"smtp_prober_delivery_late_duration_seconds_bucket{{{n},le="300"}} 1"#),
            format!(r#"smtp_prober_delivery_late_duration_seconds_bucket{{{n},le="7200"}} 2"#),
            format!(r#"smtp_prober_delivery_late_duration_seconds_sum{{{n}}} 4200"#),
            "# TYPE smtp_prober_delivery_lost_total counter".to_string(),
            format!(r#"smtp_prober_delivery_lost_total{{{n}}} 2"#),
            "# TYPE smtp_prober_delivery_pending gauge".to_string(),
            format!(r#"smtp_prober_delivery_pending{{{n}}} 1"#),
            "# TYPE smtp_prober_probes_total counter".to_string(),
            format!(r#"smtp_prober_probes_total{{{n},result="success"}} 1"#),
            format!(r#"smtp_prober_probes_total{{{n},result="failure"}} 1"#),
            "# TYPE smtp_prober_delivery_swept_total counter".to_string(),
            format!(r#"smtp_prober_delivery_swept_total{{{n}}} 2"#),
            "# TYPE smtp_prober_delivery_sweep_errors_total counter".to_string(),
            format!(r#"smtp_prober_delivery_sweep_errors_total{{{n}}} 1"#),
            "# TYPE smtp_prober_last_probe_timestamp_seconds gauge".to_string(),
            format!(r#"smtp_prober_last_probe_timestamp_seconds{{{n}}} {finished}"#),
            "# TYPE smtp_prober_probe_interval_seconds gauge".to_string(),
            format!(r#"smtp_prober_probe_interval_seconds{{{n}}} 60"#),
        ] {
            assert!(lines.contains(&want.as_str()), "no {want:?} in\n{out}");
        }
        // Each family's header once, the families in a fixed order.
        assert_eq!(out.matches("# TYPE ").count(), 13);
    }

    /// The series a full-send target exports besides its last probe's gauges, per setting.
    #[test]
    fn histograms_follow_the_setting() {
        let minute = Duration::from_secs(60);
        let steps = [
            (StepName::Ehlo, 3),
            (StepName::Mail, 4),
            (StepName::Quit, 1),
        ];
        let series_of = |histograms: Histograms, delivery: bool| {
            let series = Series::new("t");
            let layout = layout(histograms);
            let mut o = outcome(&steps, true);
            if !delivery {
                o.delivery = None;
            }
            series.observe(&o, delivery, minute, &layout);
            let out = written(&series, &layout);
            let samples = out.lines().filter(|l| !l.starts_with('#')).count();
            (samples, out)
        };
        // Counters and gauges: probes by result (2), last probe, interval.
        let (none, out) = series_of(Histograms::None, false);
        assert_eq!(none, 4, "{out}");
        assert!(!out.contains("_bucket"), "{out}");
        // The probe histogram: a series per bound, +Inf, sum, count.
        let probe = crate::config::PROBE_BUCKETS.len() + 3;
        let (total, out) = series_of(Histograms::Total, false);
        assert_eq!(total, 4 + probe, "{out}");
        assert!(!out.contains("smtp_prober_step_duration_seconds"), "{out}");
        // A target that checks delivery, whatever the setting: the histograms of its delivery
        // time, of each hop (two here) and of late mails; the late, lost, pending and two sweep
        // counters.
        let delivery = crate::config::DELIVERY_BUCKETS.len() + 3;
        let hops = 2 * (9 + 3);
        let late = 10 + 3;
        assert_eq!(
            series_of(Histograms::None, true).0,
            4 + delivery + hops + late + 3 + 2
        );
        assert_eq!(
            series_of(Histograms::Total, true).0,
            4 + probe + delivery + hops + late + 3 + 2
        );
        // Steps: one more histogram per step.
        let step = crate::config::STEP_BUCKETS.len() + 3;
        let (with_steps, out) = series_of(Histograms::Steps, false);
        assert_eq!(with_steps, 4 + probe + 3 * step, "{out}");
    }

    #[test]
    fn a_reload_that_changes_the_layout_changes_what_is_written() {
        let minute = Duration::from_secs(60);
        let series = Series::new("t");
        let steps = layout(Histograms::Steps);
        series.observe(
            &outcome(&[(StepName::Ehlo, 3)], true),
            false,
            minute,
            &steps,
        );
        series.observe(
            &outcome(&[(StepName::Ehlo, 3)], true),
            false,
            minute,
            &steps,
        );
        // Off: not written from the next scrape on, and dropped at the next probe.
        let none = layout(Histograms::None);
        let out = written(&series, &none);
        assert!(!out.contains("smtp_prober_probe_duration_seconds"), "{out}");
        assert!(!out.contains("smtp_prober_step_duration_seconds"), "{out}");
        series.observe(&outcome(&[(StepName::Ehlo, 3)], true), false, minute, &none);
        assert!(lock(&series.totals).steps.is_empty());
        assert!(lock(&series.totals).probe.is_none());
        // New bounds: the histogram starts again on them (a counter reset); equal bounds from
        // a reload keep counting.
        let total = layout(Histograms::Total);
        series.observe(&outcome(&[], true), false, minute, &total);
        series.observe(
            &outcome(&[], true),
            false,
            minute,
            &layout(Histograms::Total),
        );
        assert!(written(&series, &total)
            .contains("smtp_prober_probe_duration_seconds_count{name=\"t\"} 2"));
        let mut settings = SchedulerSettings {
            histograms: Histograms::Total,
            ..SchedulerSettings::default()
        };
        settings.buckets.probe = Bounds::new(&[0.5, 30.0]);
        let wider = Layout::new(&settings);
        series.observe(&outcome(&[], true), false, minute, &wider);
        let out = written(&series, &wider);
        assert!(
            out.contains("smtp_prober_probe_duration_seconds_bucket{name=\"t\",le=\"30\"} 1"),
            "{out}"
        );
        assert!(
            out.contains("smtp_prober_probe_duration_seconds_count{name=\"t\"} 1"),
            "{out}"
        );
        assert!(!out.contains("le=\"0.05\""), "{out}");
    }

    #[test]
    fn sweep_counters_only_for_targets_that_check_delivery() {
        let series = Series::new("plain");
        let minute = Duration::from_secs(60);
        let total = layout(Histograms::Total);
        series.observe(
            &outcome(&[(StepName::Ehlo, 3)], true),
            false,
            minute,
            &total,
        );
        assert!(lock(&series.totals).swept.is_none());
        let checking = Series::new("checking");
        checking.observe(&outcome(&[(StepName::Ehlo, 3)], true), true, minute, &total);
        assert_eq!(lock(&checking.totals).swept, Some((0, 0)));
    }
}
