//! What the benchmarks share: order statistics over samples, process CPU time and resident
//! memory read from `/proc` (Linux), and the `result:` lines `scripts/bench.sh` collects.
//!
//! Benchmarks print figures; they assert nothing about time. Timing is plain `std::time`.
#![allow(dead_code)]

use std::io::{BufRead as _, BufReader, Lines};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;

/// Clock ticks per second of the `utime`/`stime` fields of `/proc/<pid>/stat`. Linux reports
/// them in USER_HZ, which is 100 on every architecture we run on (it is part of the ABI, unlike
/// the kernel's internal HZ); reading `sysconf(_SC_CLK_TCK)` would need `libc` and `unsafe`.
const USER_HZ: u64 = 100;

/// Median, 90th and 99th percentile of some durations.
#[derive(Copy, Clone, Debug)]
pub struct Percentiles {
    /// How many samples.
    pub n: usize,
    /// 50th percentile.
    pub median: Duration,
    /// 90th percentile.
    pub p90: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Smallest sample.
    pub min: Duration,
}

impl Percentiles {
    /// Order statistics of `samples` (nearest rank). Sorts them.
    pub fn of(samples: &mut [Duration]) -> Percentiles {
        samples.sort_unstable();
        let at = |q: f64| -> Duration {
            if samples.is_empty() {
                return Duration::ZERO;
            }
            let rank = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
            samples[rank - 1]
        };
        Percentiles {
            n: samples.len(),
            median: at(0.5),
            p90: at(0.9),
            p99: at(0.99),
            min: samples.first().copied().unwrap_or_default(),
        }
    }

    /// `median 1.23 ms  p90 …  p99 …  (n=500)`.
    pub fn show(&self) -> String {
        format!(
            "median {:>9}  p90 {:>9}  p99 {:>9}  min {:>9}  (n={})",
            show(self.median),
            show(self.p90),
            show(self.p99),
            show(self.min),
            self.n
        )
    }
}

/// A duration in the unit that keeps three significant digits readable.
pub fn show(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns < 10_000 {
        format!("{ns} ns")
    } else if ns < 10_000_000 {
        format!("{:.1} µs", ns as f64 / 1e3)
    } else if ns < 10_000_000_000 {
        format!("{:.2} ms", ns as f64 / 1e6)
    } else {
        format!("{:.2} s", ns as f64 / 1e9)
    }
}

/// Microseconds as a float, for `result:` lines.
pub fn micros(d: Duration) -> f64 {
    d.as_nanos() as f64 / 1e3
}

/// CPU time (user + system) a process has used so far: `pid` or, with `None`, this process.
/// `None` when `/proc` cannot be read (not Linux, or the process is gone).
pub fn cpu_time(pid: Option<u32>) -> Option<Duration> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".to_string(),
    };
    let stat = std::fs::read_to_string(path).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces: fields are counted
    // after its closing parenthesis. There, field 3 (state) is index 0, so field 14 (utime) is
    // index 11 and field 15 (stime) index 12.
    let after = &stat[stat.rfind(')')? + 1..];
    let mut fields = after.split_whitespace();
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    let ticks = utime + stime;
    Some(Duration::from_nanos(ticks * (1_000_000_000 / USER_HZ)))
}

/// CPU time the calling thread has run so far, in nanoseconds (`/proc/thread-self/schedstat`,
/// Linux): unlike wall time, it does not count the time other processes had the core.
pub fn thread_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = stat.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

/// Resident set size of this process (`VmRSS` of `/proc/self/status`), in bytes.
pub fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Prints a `result:` line: `scripts/bench.sh` turns these into its summary table.
pub fn result(name: &str, value: f64, unit: &str) {
    let shown = if value.abs() >= 100.0 || value == value.trunc() {
        format!("{value:.0}")
    } else if value.abs() >= 1.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.4}")
    };
    println!("result: {name} = {shown} {unit}");
}

/// A section heading.
pub fn heading(text: &str) {
    println!("\n== {text}");
}

/// Whether the bench was started by `cargo test` (`--bench` absent): then it only checks that
/// it runs, with tiny counts, as `cargo test --benches` does for harness-less benches.
pub fn quick() -> bool {
    !std::env::args().any(|a| a == "--bench")
}

/// This benchmark started again in another role: `role` set to `dir` in its environment, its
/// stdin piped (closing it asks the child to stop) and its stdout read line by line.
pub fn start_role(role: &str, dir: &Path) -> (Child, ChildStdin, Lines<BufReader<ChildStdout>>) {
    let exe = std::env::current_exe().expect("this benchmark's path");
    let mut child = Command::new(exe)
        .env(role, dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("starting the child process");
    let stdin = child.stdin.take().expect("stdin");
    let lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    (child, stdin, lines)
}

/// The next line the child printed, which must be `what ADDRESS`.
pub fn read_addr(
    lines: &mut impl Iterator<Item = std::io::Result<String>>,
    what: &str,
) -> SocketAddr {
    let line = lines
        .next()
        .and_then(Result::ok)
        .expect("the child process's addresses");
    line.strip_prefix(what)
        .and_then(|a| a.trim().parse().ok())
        .unwrap_or_else(|| panic!("expected {what}ADDR, got {line:?}"))
}
