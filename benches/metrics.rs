//! Scheduled mode at scale (DESIGN §10): `/metrics` render time and size, and memory per
//! target, for 100, 1,000 and 10,000 scheduled targets with real outcomes.
//!
//! Each size runs in its own process (this benchmark started again with the size in
//! [`TARGETS`]), so that its resident memory is not what an earlier size left in the allocator.
//! There, an [`Exporter`] with a configuration built in code schedules the targets against
//! embedded demo servers on loopback until every target has a result; its RSS growth divided by
//! the targets is the memory per target. The scheduler is then stopped (results stay) and
//! `Exporter::render_metrics` is timed into a `String` and into 256 KiB pieces, as the HTTP
//! handler streams it.
//!
//! The targets: 45% a submission module (STARTTLS, AUTH PLAIN, a token mail), 45% STARTTLS with
//! AUTH and no mail, 10% a server that sends only its leaf (failing `tls_handshake`), each with
//! one extra label.

#[path = "common/mod.rs"]
mod common;

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{heading, micros, result, rss_bytes, show, thread_cpu, Percentiles};
use smtp_prober::config::Config;
use smtp_prober::demo::{DemoPki, DemoServer, Sent, ServerConfig};
use smtp_prober::exporter::{ConfigSource, Exporter};
use smtp_prober::exposition::{merge, Chunk, Sink};

/// Set in the child process: how many targets to schedule.
const TARGETS: &str = "SMTP_PROBER_BENCH_TARGETS";

/// Size of the pieces the HTTP handler streams `/metrics` in (`http::METRICS_PIECE`).
const PIECE: usize = 256 * 1024;

/// A sink like the HTTP handler's: fills a 256 KiB piece, hands it on (here: empties it).
struct Pieces {
    piece: String,
    bytes: usize,
}

impl Pieces {
    /// Hands the piece on when `more` would not fit; the HTTP handler's buffers come back to be
    /// filled again, here the same one is.
    fn room_for(&mut self, more: usize) {
        if self.piece.len() + more > PIECE {
            self.bytes += self.piece.len();
            std::hint::black_box(&self.piece);
            self.piece.clear();
        }
    }
}

impl Sink for Pieces {
    fn put(&mut self, text: &str) {
        self.room_for(text.len());
        self.piece.push_str(text);
    }

    fn put_line(&mut self, name: &str, leading: &str, rest: &str) {
        self.room_for(name.len() + leading.len() + rest.len());
        self.piece.push_str(name);
        self.piece.push_str(leading);
        self.piece.push_str(rest);
    }
}

/// The configuration: three modules, `n` targets spread over them.
fn yaml(n: usize, dir: &Path, healthy: &str, leaf_only: &str) -> String {
    let root = dir.join("root.pem");
    let password = dir.join("password");
    let common = format!(
        "    timeout: 10s\n    tls: starttls\n    ehlo: bench.test\n    tls_config:\n      \
         server_name: localhost\n      trust: []\n      ca_files: [\"{}\"]\n",
        root.display()
    );
    let auth = format!(
        "    auth:\n      mechanism: plain\n      username: probe\n      password_file: \"{}\"\n",
        password.display()
    );
    // First results of every target within about one interval; at least a second.
    let interval = (n / 1000).max(1);
    let mut out = format!(
        "scheduler:\n  max_concurrency: 32\n  min_send_interval: 0s\nmodules:\n  \
         submission:\n{common}{auth}    message:\n      from: probe@bench.test\n      \
         to: [inbox@bench.test]\n      subject: \"bench {{token}}\"\n      \
         body: \"token {{token}}\"\n  starttls_auth:\n{common}{auth}  starttls:\n{common}\
         targets:\n"
    );
    for i in 0..n {
        let (module, target) = match i % 20 {
            0 | 10 => ("starttls", leaf_only),
            r if r % 2 == 0 => ("submission", healthy),
            _ => ("starttls_auth", healthy),
        };
        let _ = write!(
            out,
            "  - name: target-{i:05}\n    target: \"{target}\"\n    module: {module}\n    \
             interval: {interval}s\n    labels: {{site: dc{}}}\n",
            i % 3
        );
    }
    out
}

/// Bytes of the page by family (the name before `{`, `_bucket`/`_sum`/`_count` folded).
fn by_family(page: &str) -> Vec<(String, usize, usize)> {
    let mut families: Vec<(String, usize, usize)> = Vec::new();
    let mut current = String::new();
    for line in page.lines() {
        let name = if let Some(rest) = line
            .strip_prefix("# HELP ")
            .or(line.strip_prefix("# TYPE "))
        {
            rest.split(' ').next().unwrap_or_default()
        } else {
            let name = line.split(['{', ' ']).next().unwrap_or_default();
            ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .filter(|base| current == *base)
                .unwrap_or(name)
        };
        if name != current {
            current = name.to_string();
        }
        match families.iter_mut().find(|f| f.0 == current) {
            Some(f) => {
                f.1 += line.len() + 1;
                f.2 += 1;
            }
            None => families.push((current.clone(), line.len() + 1, 1)),
        }
    }
    families.sort_by_key(|f| std::cmp::Reverse(f.1));
    families
}

/// The child: one size.
fn run_size(n: usize, quick: bool) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let pki = DemoPki::localhost();
        std::fs::write(dir.path().join("root.pem"), pki.root_pem()).expect("root");
        std::fs::write(dir.path().join("password"), "secret\n").expect("password");
        let healthy = DemoServer::start(ServerConfig {
            pki: pki.clone(),
            max_received: 0,
            ..ServerConfig::default()
        })
        .await
        .expect("the healthy server");
        let leaf_only = DemoServer::start(ServerConfig {
            pki,
            sent: Sent::LeafOnly,
            max_received: 0,
            ..ServerConfig::default()
        })
        .await
        .expect("the leaf-only server");

        let rss_before = rss_bytes();
        let text = yaml(
            n,
            dir.path(),
            &healthy.addr().to_string(),
            &leaf_only.addr().to_string(),
        );
        let config = Config::from_str(&text, "bench").expect("the benchmark configuration");
        drop(text);
        let started = Instant::now();
        let exporter = Exporter::start(
            ConfigSource::Fixed(Box::new(config)),
            smtp_prober::shard::Shard::ALL,
        )
        .await
        .expect("starting the exporter");
        let deadline = started + Duration::from_secs(180);
        loop {
            let targets = exporter.scheduler().targets();
            let done = targets.iter().filter(|t| t.latest().is_some()).count();
            if done == n {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "only {done} of {n} targets have a result"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let first_round = started.elapsed();
        let rss_after = rss_bytes();
        // Steady state: every target has run often enough to keep its full set of logs. Only
        // for the smaller sizes: at 10,000 targets it takes five more rounds (about a minute).
        let mut rss_steady = None;
        if n <= 1000 && !quick {
            loop {
                let targets = exporter.scheduler().targets();
                let full = targets
                    .iter()
                    .all(|t| t.logs().len() >= smtp_prober::scheduler::LOGS_PER_TARGET);
                if full {
                    rss_steady = rss_bytes();
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "targets did not reach steady state"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        exporter.shutdown();
        // Let the cancelled probes end.
        tokio::time::sleep(Duration::from_millis(200)).await;

        let targets = exporter.scheduler().targets();
        let failing = targets
            .iter()
            .filter(|t| t.latest().is_some_and(|l| !l.outcome.success()))
            .count();

        let runs = match (quick, n) {
            (true, _) => 1,
            (_, n) if n <= 1000 => 20,
            _ => 7,
        };
        let runs = std::env::var("SMTP_PROBER_BENCH_RUNS")
            .ok()
            .and_then(|r| r.parse().ok())
            .unwrap_or(runs);
        let pieces = || Pieces {
            piece: String::with_capacity(PIECE),
            bytes: 0,
        };
        // As served: into 256 KiB pieces; wall time, and the CPU time of this thread (which a
        // shared machine does not inflate).
        let mut pieces_cpu: Vec<Duration> = Vec::with_capacity(runs);
        let mut to_pieces: Vec<Duration> = (0..runs)
            .map(|_| {
                let cpu = thread_cpu();
                let t = Instant::now();
                let mut out = pieces();
                exporter.render_metrics(&mut out);
                std::hint::black_box(out.bytes + out.piece.len());
                let wall = t.elapsed();
                if let (Some(a), Some(b)) = (cpu, thread_cpu()) {
                    pieces_cpu.push(b.saturating_sub(a));
                }
                wall
            })
            .collect();
        // The two halves of a render: the pre-rendered per-probe families, and the scheduled
        // histograms and counters written from numbers.
        let mut merge_only: Vec<Duration> = (0..runs)
            .map(|_| {
                let t = Instant::now();
                let latest: Vec<_> = targets.iter().filter_map(|t| t.latest()).collect();
                let chunks: Vec<&Chunk> = latest.iter().map(|l| &l.metrics).collect();
                let mut out = pieces();
                merge(&chunks, &mut out);
                std::hint::black_box(out.bytes);
                t.elapsed()
            })
            .collect();
        let mut totals_only: Vec<Duration> = (0..runs)
            .map(|_| {
                let t = Instant::now();
                let mut out = pieces();
                exporter.scheduler().write_totals(&targets, &mut out);
                std::hint::black_box(out.bytes);
                t.elapsed()
            })
            .collect();
        // Last, into one String: the whole page, kept for the size figures below.
        let mut page = String::new();
        let mut to_string: Vec<Duration> = (0..runs)
            .map(|_| {
                let t = Instant::now();
                let mut out = String::new();
                exporter.render_metrics(&mut out);
                let d = t.elapsed();
                page = out;
                d
            })
            .collect();
        let m = Percentiles::of(&mut merge_only);
        let w = Percentiles::of(&mut totals_only);
        // What a target keeps: its rendered per-probe families and its logs (one so far, or
        // `LOGS_PER_TARGET` at steady state).
        let chunk_bytes: usize = targets
            .iter()
            .filter_map(|t| t.latest())
            .map(|l| l.metrics.len())
            .sum();
        let logs: Vec<usize> = targets
            .iter()
            .flat_map(|t| t.logs())
            .map(|l| l.len())
            .collect();
        let log_bytes = logs.iter().sum::<usize>() as f64 / logs.len().max(1) as f64;
        let s = Percentiles::of(&mut to_string);
        let p = Percentiles::of(&mut to_pieces);
        let lines = page.lines().count();

        heading(&format!(
            "{n} scheduled targets ({failing} failing on purpose)"
        ));
        println!(
            "first result of every target after {} (interval {}s, max_concurrency 32)",
            show(first_round),
            (n / 1000).max(1)
        );
        println!(
            "page: {:.2} MB, {lines} lines, {:.1} KiB per target",
            page.len() as f64 / 1e6,
            page.len() as f64 / 1024.0 / n as f64
        );
        println!("render into a String       {}", s.show());
        println!("render into 256 KiB pieces {}", p.show());
        let c = Percentiles::of(&mut pieces_cpu);
        if c.n > 0 {
            println!("  CPU of the rendering thread {}", c.show());
            result(
                &format!("metrics.{n}.render_pieces_cpu"),
                micros(c.median) / 1e3,
                "ms",
            );
        }
        if let (Some(a), Some(b)) = (rss_before, rss_after) {
            let per = b.saturating_sub(a) as f64 / n as f64;
            println!(
                "RSS {:.1} MB -> {:.1} MB with every result in: {:.1} KiB per target",
                a as f64 / 1e6,
                b as f64 / 1e6,
                per / 1024.0
            );
            result(&format!("metrics.{n}.rss_per_target"), per / 1024.0, "KiB");
        }
        println!("  of which per-probe families (merge) {}", m.show());
        println!("  of which scheduled histograms       {}", w.show());
        println!(
            "kept per target: {:.1} KiB of rendered per-probe families, {:.1} KiB per log \
             (up to {} logs)",
            chunk_bytes as f64 / 1024.0 / n as f64,
            log_bytes / 1024.0,
            smtp_prober::scheduler::LOGS_PER_TARGET
        );
        if let (Some(a), Some(b)) = (rss_before, rss_steady) {
            let per = b.saturating_sub(a) as f64 / n as f64;
            println!(
                "RSS at steady state ({} logs per target): {:.1} KiB per target",
                smtp_prober::scheduler::LOGS_PER_TARGET,
                per / 1024.0
            );
            result(
                &format!("metrics.{n}.rss_per_target_steady"),
                per / 1024.0,
                "KiB",
            );
        }
        println!("largest families:");
        for (name, bytes, count) in by_family(&page).into_iter().take(8) {
            println!(
                "  {name:<48} {:>6.1}%  {:>9} bytes  {count:>7} lines",
                100.0 * bytes as f64 / page.len() as f64,
                bytes
            );
        }
        result(
            &format!("metrics.{n}.render_string"),
            micros(s.median) / 1e3,
            "ms",
        );
        result(
            &format!("metrics.{n}.render_pieces"),
            micros(p.median) / 1e3,
            "ms",
        );
        result(
            &format!("metrics.{n}.render_merge"),
            micros(m.median) / 1e3,
            "ms",
        );
        result(
            &format!("metrics.{n}.render_totals"),
            micros(w.median) / 1e3,
            "ms",
        );
        result(
            &format!("metrics.{n}.page_size"),
            page.len() as f64 / 1e6,
            "MB",
        );
        result(
            &format!("metrics.{n}.page_per_target"),
            page.len() as f64 / 1024.0 / n as f64,
            "KiB",
        );
        result(
            &format!("metrics.{n}.first_round"),
            first_round.as_secs_f64(),
            "s",
        );
        drop(exporter);
        healthy.shutdown().await;
        leaf_only.shutdown().await;
    });
}

fn main() {
    let quick = common::quick();
    if let Some(n) = std::env::var(TARGETS).ok().and_then(|n| n.parse().ok()) {
        run_size(n, quick);
        return;
    }
    let sizes: &[usize] = if quick { &[20] } else { &[100, 1000, 10_000] };
    let exe = std::env::current_exe().expect("this benchmark's path");
    for &n in sizes {
        let mut command = Command::new(&exe);
        command.env(TARGETS, n.to_string());
        if !quick {
            command.arg("--bench");
        }
        let status = command.status().expect("running one size");
        assert!(status.success(), "the run with {n} targets failed");
    }
}
