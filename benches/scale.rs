//! What smtp-prober costs at scale, measured side by side in one run: the real binary (and,
//! optionally, an older build of it as a baseline) against blackbox_exporter on the same
//! targets, by the same method.
//!
//! Every figure comes from processes this benchmark starts and reads from the outside:
//!
//! - the SMTP server is the embedded demo server in a child process (this benchmark started
//!   again in its server role), and, when Postfix and Dovecot are installed and we are root, a
//!   real Postfix from the test suite's harness (`tests/support/mailstack.rs`);
//! - the exporters are `smtp-prober serve` (this build's binary, and `SMTP_PROBER_BASELINE` when
//!   set) and `prometheus-blackbox-exporter` (Debian's package; its `tcp` prober with a
//!   `query_response` STARTTLS module, as in its documentation) when installed;
//! - CPU is each process's user + system time from `/proc/PID/stat`, not wall time: two shared
//!   cores make wall times noisy, CPU per probe much less so. Every CPU figure is the median of
//!   several rounds, and within a round the contenders take turns, so that whatever else the
//!   machine does weighs on all of them alike.
//!
//! Sections:
//!
//! 1. `/probe`: a STARTTLS probe (greeting, EHLO, STARTTLS, TLS handshake with chain
//!    verification, EHLO, QUIT) through each exporter over keep-alive HTTP connections, at
//!    concurrency 1, 8 and 64: exporter CPU per probe, server CPU per probe, probes per second;
//!    and the same probe run in this process through the library (`probe::run`, no HTTP), the
//!    "bare probe".
//! 2. The same against the real Postfix (concurrency 1 and 8).
//! 3. Series per target for each `scheduler.histograms` setting (this build).
//! 4. Scheduled mode at scale, for each smtp-prober binary: 1,000 and 10,000 targets (a full
//!    send each: STARTTLS, AUTH, a token mail) on a 60 s interval: resident memory per target,
//!    series per target, `/metrics` time and size, exporter CPU per scheduled probe, probe starts
//!    per second; then, at 10,000, 1,000 more targets whose server never greets, so that 1,000
//!    probes are in flight; and at 1,000 targets on a 5 s interval, memory once every target
//!    keeps its full set of logs.
//!
//! The run ends with one table of every headline figure, baseline and this build side by side.
//! `scripts/bench-scale.sh` installs blackbox_exporter when it can, builds a baseline from a git
//! revision when asked, and runs this.
//!
//! Under `cargo test` (no `--bench`), everything runs with token counts and 20 targets, without
//! Postfix, in a few seconds.

#[path = "common/mod.rs"]
mod common;

// The test suite's real mail stack (it names its helper module `super::programs`).
#[allow(dead_code)]
#[path = "../tests/support/programs.rs"]
mod programs;

#[allow(dead_code)]
#[path = "../tests/support/mailstack.rs"]
mod mailstack;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::body::Bytes;
use common::{cpu_time, heading, read_addr, result, start_role};
use http_body_util::{BodyExt as _, Empty};
use smtp_prober::config::Config;
use smtp_prober::demo::{DemoPki, DemoServer, ServerConfig, Verb};
use smtp_prober::probe::target::{parse_target, Target};
use smtp_prober::probe::{self, Budget, PreparedModule};

/// Set in the child that serves SMTP: the directory to write the demo root certificate to.
const SERVER_ROLE: &str = "SMTP_PROBER_BENCH_SERVER_DIR";
/// An older smtp-prober binary to measure beside this build's.
const BASELINE: &str = "SMTP_PROBER_BASELINE";
/// Sections to run (comma-separated: probe, postfix, settings, scale); all by default.
const SECTIONS: &str = "SMTP_PROBER_BENCH_SECTIONS";
/// Sizes of the scale section (comma-separated), default `1000,10000`.
const SIZES: &str = "SMTP_PROBER_BENCH_SIZES";

/// How much of everything.
#[derive(Clone, Debug)]
struct Plan {
    quick: bool,
    /// Rounds per concurrency level; the figures are medians over them.
    rounds: usize,
    /// Length of one contender's turn in a round.
    turn: Duration,
    concurrency: Vec<usize>,
    postfix_concurrency: Vec<usize>,
    sizes: Vec<usize>,
    /// The scheduled targets' interval.
    interval: Duration,
    /// Targets in the memory-with-logs run and their (short) interval.
    logs_targets: usize,
    logs_interval: Duration,
    /// Targets whose server never greets, added to the largest size.
    stalled: usize,
    /// `/metrics` scrapes timed per size.
    scrapes: usize,
}

impl Plan {
    fn new(quick: bool) -> Plan {
        if quick {
            return Plan {
                quick,
                rounds: 1,
                turn: Duration::from_millis(150),
                concurrency: vec![1, 8],
                postfix_concurrency: vec![],
                sizes: vec![20],
                interval: Duration::from_secs(1),
                logs_targets: 10,
                logs_interval: Duration::from_secs(1),
                stalled: 5,
                scrapes: 2,
            };
        }
        let sizes = std::env::var(SIZES)
            .ok()
            .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
            .unwrap_or_else(|| vec![1000, 10_000]);
        Plan {
            quick,
            rounds: 5,
            turn: Duration::from_secs(2),
            concurrency: vec![1, 8, 64],
            postfix_concurrency: vec![1, 8],
            sizes,
            interval: Duration::from_secs(60),
            logs_targets: 1000,
            logs_interval: Duration::from_secs(5),
            stalled: 1000,
            scrapes: 9,
        }
    }

    fn runs(section: &str) -> bool {
        match std::env::var(SECTIONS) {
            Ok(list) => list.split(',').any(|s| s.trim() == section),
            Err(_) => true,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The SMTP server child.

/// The child's side: a healthy demo server and one that never greets; prints their addresses,
/// then once a second `tick UNIX_MS SESSIONS STALLED_OPEN`; stops when its stdin closes.
fn server_process(dir: PathBuf) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let pki = DemoPki::localhost();
        std::fs::write(dir.join("root.pem"), pki.root_pem()).expect("writing the root");
        let fast = Arc::new(
            DemoServer::start(ServerConfig {
                pki: pki.clone(),
                max_received: 0,
                ..ServerConfig::default()
            })
            .await
            .expect("starting the demo server"),
        );
        let stalled = Arc::new(
            DemoServer::start(
                ServerConfig {
                    pki,
                    max_received: 0,
                    idle_timeout: Duration::from_secs(3600),
                    ..ServerConfig::default()
                }
                .stall_at(Verb::Greeting),
            )
            .await
            .expect("starting the silent demo server"),
        );
        println!("fast {}", fast.addr());
        println!("stalled {}", stalled.addr());
        let _ = std::io::stdout().flush();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                println!(
                    "tick {} {} {}",
                    unix_ms(),
                    fast.sessions(),
                    stalled.active_sessions()
                );
                let _ = std::io::stdout().flush();
            }
        });
        let _ = tokio::task::spawn_blocking(|| {
            let mut rest = Vec::new();
            let _ = std::io::stdin().read_to_end(&mut rest);
        })
        .await;
    });
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// One `tick` line of the server child.
#[derive(Copy, Clone, Debug)]
struct Tick {
    at_ms: u64,
    sessions: u64,
    stalled_open: u64,
}

/// The server child, stopped when dropped.
struct ServerProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    fast: SocketAddr,
    stalled: SocketAddr,
    root: PathBuf,
    ticks: Arc<Mutex<Vec<Tick>>>,
}

impl ServerProcess {
    fn start(dir: &Path) -> ServerProcess {
        let (child, stdin, mut lines) = start_role(SERVER_ROLE, dir);
        let fast = read_addr(&mut lines, "fast ");
        let stalled = read_addr(&mut lines, "stalled ");
        let ticks = Arc::new(Mutex::new(Vec::new()));
        let sink = ticks.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let mut f = line.split(' ').skip(1).map(|v| v.parse::<u64>().ok());
                if let (Some(Some(at_ms)), Some(Some(sessions)), Some(Some(stalled_open))) =
                    (f.next(), f.next(), f.next())
                {
                    sink.lock().unwrap().push(Tick {
                        at_ms,
                        sessions,
                        stalled_open,
                    });
                }
            }
        });
        ServerProcess {
            child,
            stdin: Some(stdin),
            fast,
            stalled,
            root: dir.join("root.pem"),
            ticks,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn last_tick(&self) -> Option<Tick> {
        self.ticks.lock().unwrap().last().copied()
    }

    /// The ticks from `since_ms` on.
    fn ticks_since(&self, since_ms: u64) -> Vec<Tick> {
        let ticks = self.ticks.lock().unwrap();
        ticks
            .iter()
            .filter(|t| t.at_ms >= since_ms)
            .copied()
            .collect()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// Exporter processes.

/// An exporter process, killed when dropped.
struct Exporter {
    /// What the tables call it.
    label: String,
    child: Child,
    addr: SocketAddr,
}

impl Exporter {
    /// `smtp-prober serve` with `config`; waits for its "listening" log line.
    fn smtp_prober(label: &str, binary: &Path, config: &Path) -> Exporter {
        let mut child = Command::new(binary)
            .arg("serve")
            .arg(format!("--config.file={}", config.display()))
            .arg("--web.listen-address=127.0.0.1:0")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            let mut head = Vec::new();
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if sent {
                    continue;
                }
                if line.contains("listening") {
                    let addr = line
                        .split_once("address=")
                        .map(|(_, rest)| rest.split([' ', '"']).next().unwrap_or_default())
                        .and_then(|a| a.parse::<SocketAddr>().ok());
                    if let Some(addr) = addr {
                        let _ = tx.send(Ok(addr));
                        sent = true;
                    }
                } else if head.len() < 20 {
                    head.push(line);
                }
            }
            if !sent {
                let _ = tx.send(Err(head.join("\n")));
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(Ok(addr)) => addr,
            Ok(Err(log)) => panic!("{label} exited before listening:\n{log}"),
            Err(_) => panic!("{label} did not log its listening address"),
        };
        Exporter {
            label: label.to_string(),
            child,
            addr,
        }
    }

    /// blackbox_exporter with `config`, or `None` when it is not installed.
    fn blackbox(config: &Path) -> Option<Exporter> {
        let program = ["prometheus-blackbox-exporter", "blackbox_exporter"]
            .iter()
            .find_map(|p| programs::find_program(p))?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let child = Command::new(&program)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", program.display()));
        let until = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < until, "blackbox_exporter did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        let version = Command::new(&program)
            .arg("--version")
            .output()
            .ok()
            .and_then(|o| {
                let text = String::from_utf8_lossy(&o.stdout).to_string()
                    + &String::from_utf8_lossy(&o.stderr);
                text.split_whitespace()
                    .skip_while(|w| *w != "version")
                    .nth(1)
                    .map(str::to_string)
            })
            .unwrap_or_default();
        Some(Exporter {
            label: format!("blackbox_exporter {version}").trim().to_string(),
            child,
            addr,
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Resident memory of process `pid`, in bytes.
fn rss_of(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kib| kib.parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

// ---------------------------------------------------------------------------------------------
// HTTP.

/// One keep-alive HTTP/1.1 connection.
struct Http {
    sender: hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    host: String,
}

impl Http {
    async fn connect(addr: SocketAddr) -> Http {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .expect("connecting to an exporter");
        stream.set_nodelay(true).expect("TCP_NODELAY");
        let (sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .expect("an HTTP/1.1 connection");
        tokio::spawn(connection);
        Http {
            sender,
            host: addr.to_string(),
        }
    }

    /// GET `path` (with a 10 s scrape timeout header, as Prometheus sends); the status and body.
    async fn get(&mut self, path: &str) -> (u16, Bytes) {
        let request = hyper::Request::get(path)
            .header("host", &self.host)
            .header("x-prometheus-scrape-timeout-seconds", "10")
            .body(Empty::new())
            .expect("a request");
        self.sender.ready().await.expect("the connection is ready");
        let response = self
            .sender
            .send_request(request)
            .await
            .expect("an HTTP response");
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("a body")
            .to_bytes();
        (status, body)
    }
}

/// GET `path` once on a fresh connection.
async fn get_once(addr: SocketAddr, path: &str) -> (u16, String) {
    let (status, body) = Http::connect(addr).await.get(path).await;
    (status, String::from_utf8_lossy(&body).into_owned())
}

// ---------------------------------------------------------------------------------------------
// Section 1 and 2: /probe against the same server.

/// Who runs the probes of a comparison.
enum Runner {
    /// An exporter's `/probe`.
    Http { exporter: Exporter, path: String },
    /// `probe::run` in this process.
    Bare {
        prepared: Arc<PreparedModule>,
        target: Target,
    },
}

/// A contender in a comparison.
struct Contender {
    label: String,
    runner: Runner,
}

/// One contender's turn: how many probes, in how long, and the CPU each process spent.
#[derive(Clone, Copy, Debug, Default)]
struct Turn {
    probes: u64,
    seconds: f64,
    /// CPU of the prober (the exporter, or this process for the bare probe) per probe, in µs.
    prober_us: f64,
    /// CPU of the SMTP server per probe, in µs (when it is a process of ours).
    server_us: Option<f64>,
}

impl Turn {
    fn per_second(&self) -> f64 {
        self.probes as f64 / self.seconds.max(1e-9)
    }
}

/// Runs `concurrency` probe loops for `length`, every probe checked for success.
async fn run_turn(
    contender: &Contender,
    concurrency: usize,
    length: Duration,
    server_pid: Option<u32>,
) -> Turn {
    let prober_pid = match &contender.runner {
        Runner::Http { exporter, .. } => Some(exporter.pid()),
        Runner::Bare { .. } => None,
    };
    let cpu0 = (
        cpu_time(prober_pid),
        server_pid.and_then(|p| cpu_time(Some(p))),
    );
    let started = Instant::now();
    let end = started + length;
    let mut tasks = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        tasks.push(match &contender.runner {
            Runner::Http { exporter, path } => {
                let addr = exporter.addr;
                let path = path.clone();
                let label = contender.label.clone();
                tokio::spawn(async move {
                    let mut http = Http::connect(addr).await;
                    let mut n = 0u64;
                    while Instant::now() < end {
                        let (status, body) = http.get(&path).await;
                        assert!(
                            status == 200 && contains(&body, b"\nprobe_success 1\n"),
                            "{label}: /probe failed: {status}\n{}",
                            String::from_utf8_lossy(&body)
                        );
                        n += 1;
                    }
                    n
                })
            }
            Runner::Bare { prepared, target } => {
                let prepared = prepared.clone();
                let target = target.clone();
                tokio::spawn(async move {
                    let mut n = 0u64;
                    while Instant::now() < end {
                        let o =
                            probe::run(&prepared, &target, Budget::new(prepared.module.timeout))
                                .await;
                        assert!(o.success(), "{}", smtp_prober::report::text::render(&o));
                        n += 1;
                    }
                    n
                })
            }
        });
    }
    let mut probes = 0;
    for t in tasks {
        probes += t.await.expect("a load task");
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu1 = (
        cpu_time(prober_pid),
        server_pid.and_then(|p| cpu_time(Some(p))),
    );
    let per = |a: Option<Duration>, b: Option<Duration>| {
        a.zip(b)
            .map(|(a, b)| b.saturating_sub(a).as_secs_f64() * 1e6 / probes.max(1) as f64)
    };
    Turn {
        probes,
        seconds,
        prober_us: per(cpu0.0, cpu1.0).unwrap_or(f64::NAN),
        server_us: per(cpu0.1, cpu1.1),
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// The medians of one contender at one concurrency.
#[derive(Clone, Copy, Debug)]
struct Medians {
    prober_us: f64,
    server_us: Option<f64>,
    per_second: f64,
}

/// Every contender at every concurrency, rounds interleaved; medians by (concurrency,
/// contender index).
async fn compare(
    plan: &Plan,
    contenders: &[Contender],
    levels: &[usize],
    server_pid: Option<u32>,
) -> BTreeMap<(usize, usize), Medians> {
    let mut out = BTreeMap::new();
    for &concurrency in levels {
        // Warm-up: connections, caches, the exporters' first requests.
        for c in contenders {
            run_turn(c, concurrency, plan.turn / 4, server_pid).await;
        }
        let mut turns: Vec<Vec<Turn>> = vec![Vec::new(); contenders.len()];
        for _ in 0..plan.rounds {
            for (i, c) in contenders.iter().enumerate() {
                turns[i].push(run_turn(c, concurrency, plan.turn, server_pid).await);
            }
        }
        for (i, c) in contenders.iter().enumerate() {
            let t = &turns[i];
            let m = Medians {
                prober_us: median(&mut t.iter().map(|t| t.prober_us).collect::<Vec<_>>()),
                server_us: t[0]
                    .server_us
                    .map(|_| median(&mut t.iter().filter_map(|t| t.server_us).collect::<Vec<_>>())),
                per_second: median(&mut t.iter().map(Turn::per_second).collect::<Vec<_>>()),
            };
            let probes: u64 = t.iter().map(|t| t.probes).sum();
            println!(
                "  c={concurrency:<3} {:<34} {:>8.0} µs CPU/probe{}  {:>7.0} probes/s  \
                 ({probes} probes in {} rounds)",
                c.label,
                m.prober_us,
                m.server_us
                    .map(|s| format!(" (server {s:>5.0} µs)"))
                    .unwrap_or_default(),
                m.per_second,
                plan.rounds
            );
            out.insert((concurrency, i), m);
        }
    }
    out
}

/// The STARTTLS module of the comparison, for smtp-prober: EHLO, STARTTLS, EHLO, QUIT, trusting
/// `root` only.
fn starttls_module_yaml(root: &Path) -> String {
    format!(
        "modules:\n  starttls:\n    timeout: 10s\n    tls: starttls\n    ehlo: bench.test\n    \
         tls_config:\n      server_name: localhost\n      trust: []\n      ca_files: [\"{}\"]\n",
        root.display()
    )
}

/// The same probe for blackbox_exporter: its documented STARTTLS `query_response` module.
fn blackbox_yaml(root: &Path) -> String {
    format!(
        "modules:\n  smtp_starttls:\n    prober: tcp\n    timeout: 10s\n    tcp:\n      \
         query_response:\n        - expect: \"^220\"\n        - send: \"EHLO bench.test\\r\"\n        \
         - expect: \"^250[ -]STARTTLS\"\n        - send: \"STARTTLS\\r\"\n        \
         - expect: \"^220\"\n        - starttls: true\n        - send: \"EHLO bench.test\\r\"\n        \
         - expect: \"^250 \"\n        - send: \"QUIT\\r\"\n      tls_config:\n        \
         ca_file: \"{}\"\n        server_name: localhost\n",
        root.display()
    )
}

/// The contenders against `server`: each smtp-prober binary, blackbox_exporter, the bare probe.
fn contenders(
    binaries: &[(String, PathBuf)],
    root: &Path,
    server: SocketAddr,
    dir: &Path,
) -> Vec<Contender> {
    let yaml = starttls_module_yaml(root);
    let config = dir.join(format!("probe-{}.yml", server.port()));
    std::fs::write(&config, &yaml).expect("writing a configuration");
    let mut out = Vec::new();
    for (label, binary) in binaries {
        out.push(Contender {
            label: format!("{label} /probe"),
            runner: Runner::Http {
                exporter: Exporter::smtp_prober(label, binary, &config),
                path: format!("/probe?module=starttls&target={server}"),
            },
        });
    }
    let blackbox_config = dir.join(format!("blackbox-{}.yml", server.port()));
    std::fs::write(&blackbox_config, blackbox_yaml(root)).expect("writing blackbox.yml");
    match Exporter::blackbox(&blackbox_config) {
        Some(exporter) => out.push(Contender {
            label: format!("{} /probe", exporter.label),
            runner: Runner::Http {
                path: format!("/probe?module=smtp_starttls&target={server}"),
                exporter,
            },
        }),
        None => println!(
            "blackbox_exporter: skipped: not installed (scripts/bench-scale.sh installs Debian's \
             prometheus-blackbox-exporter)"
        ),
    }
    let parsed = Config::from_str(&yaml, "bench").expect("the module");
    let module = parsed.modules.get("starttls").expect("the module").clone();
    out.push(Contender {
        label: "bare probe (this build, in-process)".into(),
        runner: Runner::Bare {
            prepared: PreparedModule::new("starttls", module).expect("the module's TLS client"),
            target: parse_target(&server.to_string(), 25).expect("a target"),
        },
    });
    out
}

/// Figures the final table collects, by key.
type Figures = BTreeMap<String, f64>;

async fn probe_section(
    plan: &Plan,
    binaries: &[(String, PathBuf)],
    server: &ServerProcess,
    dir: &Path,
    figures: &mut Figures,
) {
    heading("1. STARTTLS probe through /probe, demo server in a child process");
    let contenders = contenders(binaries, &server.root, server.fast, dir);
    let medians = compare(plan, &contenders, &plan.concurrency, Some(server.pid())).await;
    record(&contenders, &medians, "demo", figures);
}

async fn postfix_section(
    plan: &Plan,
    binaries: &[(String, PathBuf)],
    dir: &Path,
    figures: &mut Figures,
) {
    heading("2. STARTTLS probe through /probe, real Postfix (submission port)");
    let installed = ["postfix", "dovecot"]
        .iter()
        .all(|p| programs::find_program(p).is_some());
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if !installed || !is_root {
        println!(
            "postfix: skipped: needs Postfix and Dovecot (bash scripts/test.sh installs them) and \
             root"
        );
        return;
    }
    let stack = match mailstack::MailStack::start() {
        Ok(stack) => stack,
        Err(e) => {
            println!("postfix: skipped: the mail stack did not start: {e:#}");
            return;
        }
    };
    let contenders = contenders(
        binaries,
        stack.root_ca_pem_path(),
        stack.submission_addr(),
        dir,
    );
    // Postfix answers more slowly: longer turns for as many CPU clock ticks.
    let plan = Plan {
        turn: plan.turn * 3,
        ..plan.clone()
    };
    let medians = compare(&plan, &contenders, &plan.postfix_concurrency, None).await;
    record(&contenders, &medians, "postfix", figures);
    drop(contenders);
    drop(stack);
}

/// Keeps the medians as `probe.<server>.c<N>.<contender>.<what>` figures and result lines, with
/// each smtp-prober's ratio to blackbox_exporter and to the bare probe.
fn record(
    contenders: &[Contender],
    medians: &BTreeMap<(usize, usize), Medians>,
    server: &str,
    figures: &mut Figures,
) {
    let key = |c: &Contender| -> String {
        c.label
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string()
    };
    let blackbox = contenders
        .iter()
        .position(|c| c.label.starts_with("blackbox"));
    let bare = contenders
        .iter()
        .position(|c| matches!(c.runner, Runner::Bare { .. }));
    for (&(concurrency, i), m) in medians {
        let name = key(&contenders[i]);
        let base = format!("probe.{server}.c{concurrency}.{name}");
        result(&format!("{base}.cpu_per_probe"), m.prober_us, "µs");
        result(&format!("{base}.per_second"), m.per_second, "1/s");
        figures.insert(format!("{base}.cpu_per_probe"), m.prober_us);
        figures.insert(format!("{base}.per_second"), m.per_second);
        if let Some(s) = m.server_us {
            result(&format!("{base}.server_cpu_per_probe"), s, "µs");
            figures.insert(format!("{base}.server_cpu_per_probe"), s);
        }
        if !matches!(contenders[i].runner, Runner::Http { .. }) || Some(i) == blackbox {
            continue;
        }
        if let Some(b) = blackbox.and_then(|b| medians.get(&(concurrency, b))) {
            let ratio = m.prober_us / b.prober_us;
            result(&format!("{base}.ratio_to_blackbox"), ratio, "");
            figures.insert(format!("{base}.ratio_to_blackbox"), ratio);
        }
        // The bare probe runs this build's library: a ratio for this build's binary only.
        let this_build = contenders[i].label.starts_with("this build");
        if let Some(b) = bare
            .and_then(|b| medians.get(&(concurrency, b)))
            .filter(|_| this_build)
        {
            let ratio = m.prober_us / b.prober_us;
            result(&format!("{base}.ratio_to_bare"), ratio, "");
            figures.insert(format!("{base}.ratio_to_bare"), ratio);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Sections 3 and 4: scheduled mode.

/// A scheduled configuration: `n` full-send targets against `server`, plus `stalled` targets
/// against the server that never greets; `extra` goes under `scheduler:`.
fn scheduled_yaml(
    n: usize,
    stalled: usize,
    interval: Duration,
    server: &ServerProcess,
    dir: &Path,
    extra: &str,
) -> String {
    let password = dir.join("password");
    std::fs::write(&password, "secret\n").expect("writing the password");
    let tls = format!(
        "    tls: starttls\n    ehlo: bench.test\n    tls_config:\n      server_name: localhost\n      \
         trust: []\n      ca_files: [\"{}\"]\n",
        server.root.display()
    );
    let seconds = interval.as_secs().max(1);
    let mut out = format!(
        "scheduler:\n  max_concurrency: {}\n  min_send_interval: 0s\n{extra}modules:\n  \
         submission:\n    timeout: 10s\n{tls}    auth:\n      mechanism: plain\n      \
         username: probe\n      password_file: \"{}\"\n    message:\n      \
         from: probe@bench.test\n      to: [inbox@bench.test]\n  silent:\n    \
         timeout: {seconds}s\n{tls}targets:{}\n",
        32 + stalled + stalled / 10,
        password.display(),
        if n + stalled == 0 { " []" } else { "" }
    );
    for i in 0..n + stalled {
        let (module, target) = if i < n {
            ("submission", server.fast)
        } else {
            ("silent", server.stalled)
        };
        let _ = write!(
            out,
            "  - name: target-{i:05}\n    target: \"{target}\"\n    module: {module}\n    \
             interval: {seconds}s\n    labels: {{site: dc{}}}\n",
            i % 3
        );
    }
    out
}

/// What a `/metrics` page holds.
#[derive(Debug, Default)]
struct Page {
    bytes: usize,
    /// Sample lines.
    samples: usize,
    /// Sample lines with a `name` label (scheduled targets' series).
    target_samples: usize,
    /// Sample lines of `target-00000`.
    first_target: usize,
    /// Targets with a `probe_success` sample.
    with_result: usize,
    /// Sum of `smtp_prober_probes_total`.
    probes_total: f64,
    in_flight: f64,
}

impl Page {
    fn read(text: &str) -> Page {
        let mut page = Page {
            bytes: text.len(),
            ..Page::default()
        };
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            page.samples += 1;
            if line.contains("name=\"") {
                page.target_samples += 1;
            }
            if line.contains("name=\"target-00000\"") {
                page.first_target += 1;
            }
            if line.starts_with("probe_success{") {
                page.with_result += 1;
            }
            let value = || {
                line.rsplit(' ')
                    .next()
                    .and_then(|v| v.parse::<f64>().ok())
                    .unwrap_or(0.0)
            };
            if line.starts_with("smtp_prober_probes_total{") {
                page.probes_total += value();
            }
            if line.starts_with("smtp_prober_probes_in_flight ") {
                page.in_flight = value();
            }
        }
        page
    }
}

/// Scrapes `/metrics` once: the time to its last byte, its size, and (`keep`) the page read.
async fn scrape_page(addr: SocketAddr, keep: bool) -> (Option<Page>, usize, Duration) {
    let mut http = Http::connect(addr).await;
    let started = Instant::now();
    let request = hyper::Request::get("/metrics")
        .header("host", &http.host)
        .body(Empty::new())
        .expect("a request");
    http.sender.ready().await.expect("the connection is ready");
    let response = http.sender.send_request(request).await.expect("a response");
    assert_eq!(
        response.status(),
        200,
        "/metrics answered {}",
        response.status()
    );
    let mut body = response.into_body();
    let mut bytes = 0;
    let mut kept = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.expect("a body").into_data() {
            bytes += data.len();
            if keep {
                kept.extend_from_slice(&data);
            }
        }
    }
    let elapsed = started.elapsed();
    let page = keep.then(|| Page::read(&String::from_utf8_lossy(&kept)));
    (page, bytes, elapsed)
}

/// Scrapes `/metrics` once and reads the page.
async fn scrape(addr: SocketAddr) -> (Page, Duration) {
    let (page, _, elapsed) = scrape_page(addr, true).await;
    (page.unwrap_or_default(), elapsed)
}

/// Waits until `n` targets have a result (checked with a scrape every few seconds after
/// `first_wait`); returns the last page.
async fn wait_for_results(exporter: &Exporter, n: usize, first_wait: Duration) -> Page {
    tokio::time::sleep(first_wait).await;
    let until = Instant::now() + first_wait + Duration::from_secs(60);
    loop {
        let (page, _) = scrape(exporter.addr).await;
        if page.with_result >= n {
            return page;
        }
        assert!(
            Instant::now() < until,
            "{}: only {} of {n} targets have a result",
            exporter.label,
            page.with_result
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

async fn settings_section(plan: &Plan, server: &ServerProcess, dir: &Path, figures: &mut Figures) {
    heading("3. series per full-send target, by scheduler.histograms (this build)");
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_smtp-prober"));
    for setting in ["none", "total", "steps"] {
        let yaml = scheduled_yaml(
            3,
            0,
            Duration::from_secs(1),
            server,
            dir,
            &format!("  histograms: {setting}\n"),
        );
        let config = dir.join(format!("settings-{setting}.yml"));
        std::fs::write(&config, yaml).expect("writing a configuration");
        let exporter = Exporter::smtp_prober("this build", &binary, &config);
        wait_for_results(
            &exporter,
            3,
            Duration::from_millis(if plan.quick { 1200 } else { 2500 }),
        )
        .await;
        let (page, _) = scrape(exporter.addr).await;
        println!(
            "  histograms: {setting:<6} {:>4} series per target",
            page.first_target
        );
        result(
            &format!("settings.{setting}.series_per_target"),
            page.first_target as f64,
            "",
        );
        figures.insert(
            format!("settings.{setting}.series_per_target"),
            page.first_target as f64,
        );
    }
}

/// Probe starts per second over `ticks`: (min, median, max, mean).
fn starts_per_second(ticks: &[Tick]) -> Option<(f64, f64, f64, f64)> {
    let mut rates: Vec<f64> = ticks
        .windows(2)
        .map(|w| {
            let seconds = (w[1].at_ms.saturating_sub(w[0].at_ms)) as f64 / 1000.0;
            w[1].sessions.saturating_sub(w[0].sessions) as f64 / seconds.max(1e-3)
        })
        .collect();
    if rates.is_empty() {
        return None;
    }
    let mean = rates.iter().sum::<f64>() / rates.len() as f64;
    let med = median(&mut rates);
    Some((rates[0], med, rates[rates.len() - 1], mean))
}

/// A text histogram of starts per second.
fn start_histogram(ticks: &[Tick]) -> String {
    let rates: Vec<u64> = ticks
        .windows(2)
        .map(|w| w[1].sessions.saturating_sub(w[0].sessions))
        .collect();
    let Some(&max) = rates.iter().max() else {
        return String::new();
    };
    let width = (max / 10).max(1);
    let mut buckets: BTreeMap<u64, usize> = BTreeMap::new();
    for r in &rates {
        *buckets.entry(r / width).or_default() += 1;
    }
    let mut out = String::new();
    for (b, count) in buckets {
        let _ = writeln!(
            out,
            "    {:>5}-{:<5} starts/s {:>4} s {}",
            b * width,
            (b + 1) * width - 1,
            count,
            "#".repeat(count.min(60))
        );
    }
    out
}

/// The scale runs of one smtp-prober binary.
async fn scale_section(
    plan: &Plan,
    label: &str,
    key: &str,
    binary: &Path,
    server: &ServerProcess,
    dir: &Path,
    figures: &mut Figures,
) {
    heading(&format!("4. scheduled mode at scale: {label}"));
    // The exporter with no targets: what every size's growth is measured from.
    let empty = dir.join(format!("scale-{key}-0.yml"));
    std::fs::write(&empty, scheduled_yaml(0, 0, plan.interval, server, dir, "")).expect("config");
    let idle = Exporter::smtp_prober(label, binary, &empty);
    scrape(idle.addr).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss0 = rss_of(idle.pid());
    drop(idle);
    println!("  no targets: RSS {:.1} MiB", rss0 as f64 / 1048576.0);
    let largest = plan.sizes.iter().copied().max().unwrap_or(0);
    for &n in &plan.sizes {
        let config = dir.join(format!("scale-{key}-{n}.yml"));
        std::fs::write(
            &config,
            scheduled_yaml(n, 0, plan.interval, server, dir, ""),
        )
        .expect("config");
        let since = unix_ms();
        let exporter = Exporter::smtp_prober(label, binary, &config);
        wait_for_results(&exporter, n, plan.interval + Duration::from_secs(1)).await;
        // Steady probing: every target once per interval. CPU per scheduled probe over a
        // window without scrapes.
        let window = if plan.quick {
            Duration::from_secs(1)
        } else {
            Duration::from_secs(20)
        };
        let before = (cpu_time(Some(exporter.pid())), server.last_tick());
        tokio::time::sleep(window).await;
        let after = (cpu_time(Some(exporter.pid())), server.last_tick());
        let probes = after
            .1
            .zip(before.1)
            .map_or(0, |(a, b)| a.sessions.saturating_sub(b.sessions));
        let cpu = before.0.zip(after.0).map(|(a, b)| b.saturating_sub(a));
        // What the targets hold, before any scrape: a scrape's own buffers (its pieces, a
        // family group's gathered samples) are measured after the scrapes, apart.
        let rss_idle = rss_of(exporter.pid());
        let cpu_per_probe = cpu.map_or(f64::NAN, |c| c.as_secs_f64() * 1e6 / probes.max(1) as f64);
        let background = cpu.map_or(0.0, |c| c.as_secs_f64() / window.as_secs_f64());
        // Starts per second once every target has started (its first start at a random point
        // of the first interval, then every interval).
        let ticks = server.ticks_since(since + plan.interval.as_millis() as u64);
        let starts = starts_per_second(&ticks);
        // /metrics, as Prometheus reads it.
        // Timed scrapes only count the bytes; one more reads the page.
        let mut walls = Vec::new();
        let cpu0 = cpu_time(Some(exporter.pid()));
        let t0 = Instant::now();
        for _ in 0..plan.scrapes {
            let (_, _, wall) = scrape_page(exporter.addr, false).await;
            walls.push(wall.as_secs_f64() * 1e3);
        }
        let scraping = t0.elapsed().as_secs_f64();
        let cpu1 = cpu_time(Some(exporter.pid()));
        let (last, _) = scrape(exporter.addr).await;
        let scrape_cpu_ms = cpu0.zip(cpu1).map_or(f64::NAN, |(a, b)| {
            ((b.saturating_sub(a)).as_secs_f64() - background * scraping).max(0.0) * 1e3
                / plan.scrapes as f64
        });
        let metrics_ms = median(&mut walls);
        let rss = rss_of(exporter.pid());
        let kib_per_target = rss_idle.saturating_sub(rss0) as f64 / 1024.0 / n as f64;
        let series_per_target = last.target_samples as f64 / n as f64;
        println!(
            "  {n} targets: RSS {:.1} MiB, {kib_per_target:.1} KiB per target ({:.1} MiB after the \
             scrapes); series per target {series_per_target:.1} (target-00000: {}); /metrics {:.1} MB, median {metrics_ms:.1} ms \
             (exporter CPU {scrape_cpu_ms:.1} ms per scrape); {:.0} µs exporter CPU per \
             scheduled probe ({probes} probes in {}s)",
            rss_idle as f64 / 1048576.0,
            rss as f64 / 1048576.0,
            last.first_target,
            last.bytes as f64 / 1e6,
            cpu_per_probe,
            window.as_secs()
        );
        if let Some((min, med, max, mean)) = starts {
            println!(
                "  probe starts per second after the first interval: min {min:.0}, median \
                 {med:.0}, max {max:.0}, mean {mean:.1} (expected {:.1})",
                n as f64 / plan.interval.as_secs_f64()
            );
            print!("{}", start_histogram(&ticks));
            figures.insert(format!("scale.{key}.{n}.starts_max_over_mean"), max / mean);
            result(
                &format!("scale.{key}.{n}.starts_per_second_max"),
                max,
                "1/s",
            );
            result(
                &format!("scale.{key}.{n}.starts_per_second_mean"),
                mean,
                "1/s",
            );
        }
        for (what, value, unit) in [
            ("kib_per_target", kib_per_target, "KiB"),
            ("series_per_target", series_per_target, ""),
            ("first_target_series", last.first_target as f64, ""),
            ("metrics_ms", metrics_ms, "ms"),
            ("metrics_cpu_ms", scrape_cpu_ms, "ms"),
            ("metrics_mb", last.bytes as f64 / 1e6, "MB"),
            ("cpu_per_scheduled_probe", cpu_per_probe, "µs"),
            ("rss_mib", rss_idle as f64 / 1048576.0, "MiB"),
            ("rss_after_scrapes_mib", rss as f64 / 1048576.0, "MiB"),
        ] {
            result(&format!("scale.{key}.{n}.{what}"), value, unit);
            figures.insert(format!("scale.{key}.{n}.{what}"), value);
        }
        if n == largest && plan.stalled > 0 {
            in_flight(
                plan, n, label, key, &exporter, &config, server, dir, rss0, figures,
            )
            .await;
        }
        drop(exporter);
    }
    logs_run(plan, label, key, binary, server, dir, rss0, figures).await;
}

/// Adds `plan.stalled` targets whose server never greets to a running exporter (a reload) and
/// reads its memory once that many probes are in flight.
#[allow(clippy::too_many_arguments)]
async fn in_flight(
    plan: &Plan,
    n: usize,
    label: &str,
    key: &str,
    exporter: &Exporter,
    config: &Path,
    server: &ServerProcess,
    dir: &Path,
    rss0: u64,
    figures: &mut Figures,
) {
    std::fs::write(
        config,
        scheduled_yaml(n, plan.stalled, plan.interval, server, dir, ""),
    )
    .expect("config");
    let mut http = Http::connect(exporter.addr).await;
    let request = hyper::Request::post("/-/reload")
        .header("host", exporter.addr.to_string())
        .body(Empty::new())
        .expect("a request");
    http.sender.ready().await.expect("ready");
    let status = http
        .sender
        .send_request(request)
        .await
        .expect("reload")
        .status();
    assert_eq!(status, 200, "{label}: reload failed");
    let until = Instant::now() + plan.interval + Duration::from_secs(30);
    let mut most = 0;
    let mut rss_most = 0;
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let open = server.last_tick().map_or(0, |t| t.stalled_open);
        if open >= most {
            most = open;
            rss_most = rss_of(exporter.pid());
        }
        if open as usize >= plan.stalled {
            break;
        }
    }
    println!(
        "  {n} targets + {} whose server never greets: {most} probes in flight, RSS {:.1} MiB \
         ({:.1} KiB per target over the exporter without targets)",
        plan.stalled,
        rss_most as f64 / 1048576.0,
        rss_most.saturating_sub(rss0) as f64 / 1024.0 / (n + plan.stalled) as f64
    );
    result(&format!("scale.{key}.in_flight"), most as f64, "");
    result(
        &format!("scale.{key}.in_flight_rss_mib"),
        rss_most as f64 / 1048576.0,
        "MiB",
    );
    figures.insert(format!("scale.{key}.in_flight"), most as f64);
    figures.insert(
        format!("scale.{key}.in_flight_rss_mib"),
        rss_most as f64 / 1048576.0,
    );
}

/// `plan.logs_targets` targets on a short interval until every one keeps its full set of logs.
#[allow(clippy::too_many_arguments)]
async fn logs_run(
    plan: &Plan,
    label: &str,
    key: &str,
    binary: &Path,
    server: &ServerProcess,
    dir: &Path,
    rss0: u64,
    figures: &mut Figures,
) {
    let n = plan.logs_targets;
    let config = dir.join(format!("logs-{key}.yml"));
    std::fs::write(
        &config,
        scheduled_yaml(n, 0, plan.logs_interval, server, dir, ""),
    )
    .expect("config");
    let exporter = Exporter::smtp_prober(label, binary, &config);
    // Five probes of every target and one more interval for the stragglers.
    tokio::time::sleep(plan.logs_interval * 7).await;
    scrape(exporter.addr).await;
    let rss = rss_of(exporter.pid());
    let (_, logs) = get_once(exporter.addr, "/logs?target=target-00000").await;
    let kept = logs
        .matches("\n----------------------------------------\n")
        .count()
        + 1;
    let per = rss.saturating_sub(rss0) as f64 / 1024.0 / n as f64;
    println!(
        "  {n} targets on a {}s interval after {}s ({kept} logs kept by target-00000, {:.1} KiB \
         of log text): RSS {:.1} MiB, {per:.1} KiB per target",
        plan.logs_interval.as_secs(),
        (plan.logs_interval * 7).as_secs(),
        logs.len() as f64 / 1024.0,
        rss as f64 / 1048576.0
    );
    result(&format!("scale.{key}.logs.kib_per_target"), per, "KiB");
    result(&format!("scale.{key}.logs.kept"), kept as f64, "");
    figures.insert(format!("scale.{key}.logs.kib_per_target"), per);
}

// ---------------------------------------------------------------------------------------------
// The summary.

fn table(figures: &Figures, binaries: &[(String, PathBuf)], plan: &Plan) {
    heading("Summary (medians of this run)");
    let keys: Vec<String> = binaries.iter().map(|(label, _)| key_of(label)).collect();
    let mut out = String::new();
    let _ = write!(out, "| figure |");
    for (label, _) in binaries {
        let _ = write!(out, " {label} |");
    }
    let _ = writeln!(out);
    let _ = write!(out, "|---|");
    for _ in binaries {
        let _ = write!(out, "---:|");
    }
    let _ = writeln!(out);
    let mut row = |name: String, key: &dyn Fn(&str) -> String, digits: usize| {
        let values: Vec<Option<f64>> = keys.iter().map(|k| figures.get(&key(k)).copied()).collect();
        if values.iter().all(Option::is_none) {
            return;
        }
        let _ = write!(out, "| {name} |");
        for v in values {
            match v {
                Some(v) if v.is_finite() => {
                    let _ = write!(out, " {v:.digits$} |");
                }
                _ => {
                    let _ = write!(out, " – |");
                }
            }
        }
        let _ = writeln!(out);
    };
    let largest = plan.sizes.iter().copied().max().unwrap_or(0);
    for &n in &plan.sizes {
        row(
            format!("series per target ({n} full-send targets, defaults)"),
            &|k| format!("scale.{k}.{n}.series_per_target"),
            1,
        );
    }
    for &n in &plan.sizes {
        row(
            format!("KiB per target, first result in ({n} targets)"),
            &|k| format!("scale.{k}.{n}.kib_per_target"),
            1,
        );
        row(
            format!("RSS MiB after {} scrapes ({n} targets)", plan.scrapes),
            &|k| format!("scale.{k}.{n}.rss_after_scrapes_mib"),
            1,
        );
    }
    row(
        format!(
            "KiB per target, every log kept ({} targets, {}s interval)",
            plan.logs_targets,
            plan.logs_interval.as_secs()
        ),
        &|k| format!("scale.{k}.logs.kib_per_target"),
        1,
    );
    row(
        format!(
            "RSS MiB, {largest} targets + {} probes in flight",
            plan.stalled
        ),
        &|k| format!("scale.{k}.in_flight_rss_mib"),
        1,
    );
    for &n in &plan.sizes {
        row(
            format!(
                "/metrics ms at {n} targets (wall, median of {})",
                plan.scrapes
            ),
            &|k| format!("scale.{k}.{n}.metrics_ms"),
            1,
        );
        row(
            format!("/metrics MB at {n} targets"),
            &|k| format!("scale.{k}.{n}.metrics_mb"),
            1,
        );
    }
    row(
        format!("exporter CPU µs per scheduled probe ({largest} targets)"),
        &|k| format!("scale.{k}.{largest}.cpu_per_scheduled_probe"),
        0,
    );
    row(
        format!("probe starts per second, max ÷ mean ({largest} targets)"),
        &|k| format!("scale.{k}.{largest}.starts_max_over_mean"),
        2,
    );
    for server in ["demo", "postfix"] {
        for &c in &plan.concurrency {
            row(
                format!("exporter CPU µs per /probe, {server}, c={c}"),
                &|k| format!("probe.{server}.c{c}.{k}.cpu_per_probe"),
                0,
            );
            row(
                format!("  ratio to blackbox_exporter, {server}, c={c}"),
                &|k| format!("probe.{server}.c{c}.{k}.ratio_to_blackbox"),
                2,
            );
            row(
                format!("  ratio to the bare probe, {server}, c={c}"),
                &|k| format!("probe.{server}.c{c}.{k}.ratio_to_bare"),
                2,
            );
            row(
                format!("/probe per second, {server}, c={c}"),
                &|k| format!("probe.{server}.c{c}.{k}.per_second"),
                0,
            );
        }
    }
    print!("{out}");
    let mut others = String::new();
    for (who, k) in [
        ("blackbox_exporter", "blackbox_exporter"),
        ("bare probe", "bare"),
    ] {
        for server in ["demo", "postfix"] {
            for &c in &plan.concurrency {
                if let Some(v) = figures.get(&format!("probe.{server}.c{c}.{k}.cpu_per_probe")) {
                    let _ = write!(others, "{who} {server} c={c}: {v:.0} µs; ");
                }
            }
        }
    }
    if !others.is_empty() {
        println!("for reference, CPU per probe of {others}");
    }
}

/// The figure key of a binary's label: its first word.
fn key_of(label: &str) -> String {
    label
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

fn main() {
    if let Some(dir) = std::env::var_os(SERVER_ROLE) {
        server_process(PathBuf::from(dir));
        return;
    }
    let plan = Plan::new(common::quick());
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut binaries: Vec<(String, PathBuf)> = Vec::new();
    if let Some(baseline) = std::env::var_os(BASELINE).filter(|b| !b.is_empty()) {
        binaries.push(("baseline".into(), PathBuf::from(baseline)));
    }
    binaries.push((
        "this build".into(),
        PathBuf::from(env!("CARGO_BIN_EXE_smtp-prober")),
    ));
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "cores: {}; load average at start: {}; binaries: {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
        binaries
            .iter()
            .map(|(l, p)| format!("{l} = {}", p.display()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let server = ServerProcess::start(dir.path());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let mut figures = Figures::new();
    runtime.block_on(async {
        if Plan::runs("probe") {
            probe_section(&plan, &binaries, &server, dir.path(), &mut figures).await;
        }
        if Plan::runs("postfix") && !plan.quick {
            postfix_section(&plan, &binaries, dir.path(), &mut figures).await;
        }
        if Plan::runs("settings") {
            settings_section(&plan, &server, dir.path(), &mut figures).await;
        }
        if Plan::runs("scale") {
            for (label, binary) in &binaries {
                scale_section(
                    &plan,
                    label,
                    &key_of(label),
                    binary,
                    &server,
                    dir.path(),
                    &mut figures,
                )
                .await;
            }
        }
    });
    table(&figures, &binaries, &plan);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "load average at the end: {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
}
