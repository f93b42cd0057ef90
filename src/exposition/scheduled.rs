//! The metrics only scheduled mode has: per target name, histograms of step and delivery
//! durations and counters of probes and sweeps, accumulated over every probe since the start
//! (and across reloads that keep the name), and when its last probe finished with the interval
//! it runs on (what the alert on stale results compares).
//!
//! A new per-target scheduled metric (a gauge such as the time of the last probe, a counter, a
//! histogram) is: a [`ScheduledFamily`] variant (in `ALL`, in page order), its name, help and
//! type in [`HEADERS`], the numbers it needs in [`Totals`] (updated in [`Series::observe`]),
//! and its lines in [`ScheduledFamily::write`] (with [`write_sample`] or [`write_histogram`]).
//!
//! Histograms and counters change with every result and would cost more memory as text than as
//! numbers, so they are kept as numbers and written on every scrape by [`write_totals`], which
//! does no more than a formatted copy per series.

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use super::{escape_label_value, write_histogram, write_sample, Family, Kind, Sink};
use crate::probe::ProbeOutcome;
use crate::vocab::StepName;

/// Bounds of `smtp_prober_step_duration_seconds`: loopback steps take well under a millisecond,
/// a slow submission server's DATA several seconds.
const STEP_BOUNDS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// [`STEP_BOUNDS`] as `le` label values.
const STEP_LE: [&str; 13] = [
    "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5",
    "10",
];
/// Bounds of `smtp_prober_delivery_duration_seconds`: seconds to minutes.
const DELIVERY_BOUNDS: [f64; 10] = [1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0];
/// [`DELIVERY_BOUNDS`] as `le` label values.
const DELIVERY_LE: [&str; 10] = ["1", "2", "5", "10", "20", "30", "60", "120", "300", "600"];

/// Bounds of `smtp_prober_delivery_hop_duration_seconds`: Received dates have one-second
/// resolution, so a hop is 0 or a few seconds when all is well (and below 0 when clocks
/// disagree: those count in the first bucket), minutes in a queue.
const HOP_BOUNDS: [f64; 9] = [0.0, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0];
/// [`HOP_BOUNDS`] as `le` label values.
const HOP_LE: [&str; 9] = ["0", "1", "2", "5", "10", "30", "60", "300", "900"];
/// Hops with a histogram of their own: the first ones of the trace. A trace is seldom longer,
/// and a bound keeps the series per target finite.
pub(crate) const HOP_HISTOGRAMS: usize = 8;
/// Bounds of `smtp_prober_delivery_late_duration_seconds`: a late mail took longer than the
/// delivery timeout (minutes) and turned up before `lost_after` (an hour by default, or days).
const LATE_BOUNDS: [f64; 10] = [
    60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 21_600.0, 43_200.0, 86_400.0,
];
/// [`LATE_BOUNDS`] as `le` label values.
const LATE_LE: [&str; 10] = [
    "60", "120", "300", "600", "1800", "3600", "7200", "21600", "43200", "86400",
];

/// A histogram as numbers: observations per bucket (not cumulative), the last slot for those
/// above every bound, and their sum. About a hundred bytes, where the client library's
/// histogram with its labels and descriptors takes kilobytes: it matters at 10,000 targets.
#[derive(Clone, Debug)]
pub(crate) struct Buckets<const N: usize> {
    counts: [u64; N],
    above: u64,
    sum: f64,
}

impl<const N: usize> Buckets<N> {
    fn new() -> Self {
        Buckets {
            counts: [0; N],
            above: 0,
            sum: 0.0,
        }
    }

    fn observe(&mut self, bounds: &[f64; N], value: f64) {
        match bounds.iter().position(|&b| value <= b) {
            Some(i) => self.counts[i] += 1,
            None => self.above += 1,
        }
        self.sum += value;
    }

    /// How many observations.
    fn total(&self) -> u64 {
        self.counts.iter().sum::<u64>() + self.above
    }

    fn write(&self, out: &mut String, name: &str, labels: &str, le: &[&str; N]) {
        write_histogram(out, name, labels, le, &self.counts, self.above, self.sum);
    }
}

/// What a target's name has accumulated: `smtp_prober_step_duration_seconds`,
/// `smtp_prober_delivery_duration_seconds`, `smtp_prober_probes_total` and the sweep counters.
#[derive(Debug, Default)]
pub(crate) struct Totals {
    /// In the order steps first ran.
    steps: Vec<(StepName, Buckets<13>)>,
    delivery: Option<Buckets<10>>,
    success: u64,
    failure: u64,
    /// Stale probe mails deleted and sweeps failed; `None` until the target checks delivery,
    /// then exported from 0 on so that `rate()` and `increase()` see the first one.
    swept: Option<(u64, u64)>,
    /// When the last probe finished (Unix seconds) and the interval it ran on (seconds); `None`
    /// before the first probe.
    last_probe: Option<(f64, f64)>,
    /// Per hop index (1 first), the time each hop of the delivered mails' traces took.
    hops: Vec<Buckets<9>>,
    /// Mails that turned up after their probe gave up, lost ones, and those still awaited;
    /// `None` until the target checks delivery.
    late_lost: Option<LateLost>,
}

/// The numbers behind the late, lost and pending families.
#[derive(Debug)]
struct LateLost {
    late: Buckets<10>,
    lost: u64,
    pending: usize,
}

/// One target name's scheduled series: its numbers, and its `name` label rendered once.
#[derive(Debug)]
pub(crate) struct Series {
    /// `name="…"`, escaped once.
    name_label: String,
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
            name_label: format!("name=\"{}\"", escape_label_value(name)),
            totals: Mutex::default(),
        }
    }

    /// Counts one finished probe of a target probed every `interval`; `delivery_configured`
    /// starts the delivery histogram and the sweep counters at zero.
    pub(crate) fn observe(
        &self,
        outcome: &ProbeOutcome,
        delivery_configured: bool,
        interval: Duration,
    ) {
        let finished = (outcome.started_at + outcome.duration)
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let mut totals = lock(&self.totals);
        totals.last_probe = Some((finished, interval.as_secs_f64()));
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
                    totals.steps.push((name, Buckets::new()));
                    totals.steps.len() - 1
                }
            };
            totals.steps[at]
                .1
                .observe(&STEP_BOUNDS, duration.as_secs_f64());
        }
        if delivery_configured {
            totals.delivery.get_or_insert_with(Buckets::new);
            totals.swept.get_or_insert((0, 0));
            totals.late_lost.get_or_insert_with(LateLost::new);
        }
        let hops = outcome
            .delivery
            .as_ref()
            .map(|d| d.hops.as_slice())
            .unwrap_or_default();
        for hop in hops.iter().take(HOP_HISTOGRAMS) {
            let Some(seconds) = hop.seconds else { continue };
            while totals.hops.len() < hop.index {
                totals.hops.push(Buckets::new());
            }
            totals.hops[hop.index - 1].observe(&HOP_BOUNDS, seconds);
        }
        if let Some(d) = outcome.delivery.as_ref().and_then(|d| d.duration) {
            totals
                .delivery
                .get_or_insert_with(Buckets::new)
                .observe(&DELIVERY_BOUNDS, d.as_secs_f64());
        }
        if outcome.success() {
            totals.success += 1;
        } else {
            totals.failure += 1;
        }
    }

    /// Counts the earlier probes' mails that turned up `late` (each with its delivery time) or
    /// were given up as `lost`, and sets how many are still `pending`.
    pub(crate) fn observe_late_lost(&self, late: &[Duration], lost: u64, pending: usize) {
        let mut totals = lock(&self.totals);
        let counts = totals.late_lost.get_or_insert_with(LateLost::new);
        for d in late {
            counts.late.observe(&LATE_BOUNDS, d.as_secs_f64());
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

impl LateLost {
    fn new() -> LateLost {
        LateLost {
            late: Buckets::new(),
            lost: 0,
            pending: 0,
        }
    }
}

/// The scheduled histograms and counters, in the order they are written.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum ScheduledFamily {
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
const HEADERS: [Family; 12] = [
    Family {
        name: "smtp_prober_step_duration_seconds",
        help: "Duration of each step of scheduled probes.",
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
    const ALL: [ScheduledFamily; 12] = [
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

    /// Writes this family's series of one target.
    fn write(self, totals: &Totals, name_label: &str, buf: &mut String) {
        let name = self.header().name;
        match self {
            ScheduledFamily::Steps => {
                for (step, buckets) in &totals.steps {
                    let labels = format!("{name_label},step=\"{step}\"");
                    buckets.write(buf, name, &labels, &STEP_LE);
                }
            }
            ScheduledFamily::Delivery => {
                if let Some(d) = &totals.delivery {
                    d.write(buf, name, name_label, &DELIVERY_LE);
                }
            }
            ScheduledFamily::Hops => {
                for (i, buckets) in totals.hops.iter().enumerate() {
                    let labels = format!("{name_label},hop=\"{}\"", i + 1);
                    buckets.write(buf, name, &labels, &HOP_LE);
                }
            }
            ScheduledFamily::Late => {
                if let Some(l) = &totals.late_lost {
                    write_sample(buf, name, name_label, l.late.total());
                }
            }
            ScheduledFamily::LateDuration => {
                if let Some(l) = &totals.late_lost {
                    l.late.write(buf, name, name_label, &LATE_LE);
                }
            }
            ScheduledFamily::Lost => {
                if let Some(l) = &totals.late_lost {
                    write_sample(buf, name, name_label, l.lost);
                }
            }
            ScheduledFamily::Pending => {
                if let Some(l) = &totals.late_lost {
                    write_sample(buf, name, name_label, l.pending);
                }
            }
            ScheduledFamily::Probes => {
                for (result, n) in [("success", totals.success), ("failure", totals.failure)] {
                    let labels = format!("{name_label},result=\"{result}\"");
                    write_sample(buf, name, &labels, n);
                }
            }
            ScheduledFamily::Swept => {
                if let Some((swept, _)) = totals.swept {
                    write_sample(buf, name, name_label, swept);
                }
            }
            ScheduledFamily::SweepErrors => {
                if let Some((_, errors)) = totals.swept {
                    write_sample(buf, name, name_label, errors);
                }
            }
            ScheduledFamily::LastProbe => {
                if let Some((finished, _)) = totals.last_probe {
                    write_sample(buf, name, name_label, finished);
                }
            }
            ScheduledFamily::Interval => {
                if let Some((_, interval)) = totals.last_probe {
                    write_sample(buf, name, name_label, interval);
                }
            }
        }
    }
}

/// Writes the scheduled histograms and counters of every series: one family after the other,
/// each with every target's series. Each target's numbers are read under its own lock, briefly.
pub(crate) fn write_totals<'a>(
    series: impl Iterator<Item = &'a Series> + Clone,
    out: &mut impl Sink,
) {
    // Per target, its text is built in a small buffer, then handed on.
    let mut buf = String::with_capacity(8 * 1024);
    for family in ScheduledFamily::ALL {
        let header_lines = family.header();
        let mut header = false;
        for s in series.clone() {
            buf.clear();
            family.write(&lock(&s.totals), &s.name_label, &mut buf);
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

    #[test]
    fn totals_are_written_as_histograms_and_counters() {
        let series = Series::new("x\"y");
        let minute = Duration::from_secs(60);
        series.observe(&outcome(&[(StepName::Ehlo, 3)], true), true, minute);
        let last = outcome(&[(StepName::Ehlo, 700), (StepName::Quit, 20_000)], false);
        let finished = (last.started_at + last.duration)
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        series.observe(&last, true, minute);
        series.observe_sweep(Sweep::Deleted(2));
        series.observe_sweep(Sweep::Deleted(0));
        series.observe_sweep(Sweep::Failed);
        series.observe_late_lost(&[Duration::from_secs(200)], 0, 3);
        series.observe_late_lost(&[Duration::from_secs(4000)], 2, 1);
        let mut out = String::new();
        write_totals([&series].into_iter(), &mut out);
        let lines: Vec<&str> = out.lines().collect();
        let n = r#"name="x\"y""#;
        for want in [
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
        assert_eq!(out.matches("# TYPE ").count(), 12);
    }

    #[test]
    fn sweep_counters_only_for_targets_that_check_delivery() {
        let series = Series::new("plain");
        let minute = Duration::from_secs(60);
        series.observe(&outcome(&[(StepName::Ehlo, 3)], true), false, minute);
        assert!(lock(&series.totals).swept.is_none());
        assert!(lock(&series.totals).late_lost.is_none());
        let checking = Series::new("checking");
        checking.observe(&outcome(&[(StepName::Ehlo, 3)], true), true, minute);
        assert_eq!(lock(&checking.totals).swept, Some((0, 0)));
    }
}
