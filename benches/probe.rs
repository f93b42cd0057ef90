//! Full probes against the embedded demo server on loopback (DESIGN §10 "Speed and scale").
//!
//! A STARTTLS probe is greeting, EHLO, STARTTLS (RFC 3207), TLS handshake with chain
//! verification, EHLO again, AUTH PLAIN (RFC 4954, RFC 4616) and QUIT; a plain-text probe is
//! greeting, EHLO, AUTH PLAIN and QUIT. Sections:
//!
//! 1. in one process (server and prober on one Tokio runtime): sequential latency, throughput
//!    with 1, 8 and 32 probes in flight, CPU per probe (both sides together);
//! 2. step-timing overhead: our `ehlo` step against a bare `NOOP` (and `EHLO`) round trip on a
//!    socket to the same server: server in this process on the 2-worker runtime, then server in
//!    a child process with the prober on one thread (the cleaner comparison);
//! 3. server in a child process (this benchmark started again in server mode): CPU per probe of
//!    the prober alone and of the server alone;
//! 4. the real binary's `/probe` endpoint over HTTP against that server: latency and the
//!    exporter's CPU per `/probe`.
//!
//! Prints figures; it checks only that every probe succeeds (a failed probe is not a fast one).

#[path = "common/mod.rs"]
mod common;

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{cpu_time, heading, micros, read_addr, result, show, start_role, Percentiles};
use smtp_prober::demo::{DemoPki, DemoServer, ServerConfig, TlsMode as ServerTls};
use smtp_prober::probe::module::{AuthSettings, Credential, MechanismChoice, Module, TlsMode};
use smtp_prober::probe::target::{parse_target, Target};
use smtp_prober::probe::{self, Budget, PreparedModule, ProbeOutcome};
use smtp_prober::report;
use smtp_prober::secret::Secret;
use smtp_prober::smtp::command::ClientName;
use smtp_prober::tls::TlsSettings;
use smtp_prober::vocab::StepName;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Set in the child this benchmark starts as its SMTP server: the directory to write the
/// server's root certificate to.
const SERVER_ROLE: &str = "SMTP_PROBER_BENCH_SERVER_DIR";

/// How much of everything: full under `cargo bench`, a token amount under `cargo test`.
struct Plan {
    sequential: usize,
    warmup: usize,
    per_level: Duration,
}

impl Plan {
    fn new(quick: bool) -> Plan {
        if quick {
            Plan {
                sequential: 5,
                warmup: 2,
                per_level: Duration::from_millis(100),
            }
        } else {
            Plan {
                sequential: 500,
                warmup: 30,
                per_level: Duration::from_millis(1500),
            }
        }
    }
}

/// The STARTTLS server and the plain-text one (AUTH offered before TLS), on loopback.
async fn start_servers(pki: Arc<DemoPki>) -> (DemoServer, DemoServer) {
    let starttls = DemoServer::start(ServerConfig {
        pki: pki.clone(),
        max_received: 0,
        ..ServerConfig::default()
    })
    .await
    .expect("starting the STARTTLS demo server");
    let plain = DemoServer::start(ServerConfig {
        pki,
        tls: ServerTls::None,
        advertise_starttls: false,
        auth_before_tls: true,
        max_received: 0,
        ..ServerConfig::default()
    })
    .await
    .expect("starting the plain-text demo server");
    (starttls, plain)
}

/// A module that authenticates with PLAIN, trusting only `root`.
fn module(name: &str, tls: TlsMode, root: &Path) -> Arc<PreparedModule> {
    let module = Module {
        tls,
        timeout: Duration::from_secs(10),
        ehlo: ClientName::new("bench.test").expect("a valid EHLO name"),
        tls_config: TlsSettings {
            trust: vec![],
            ca_files: vec![root.to_path_buf()],
            server_name: Some("localhost".into()),
            ..TlsSettings::default()
        },
        auth: Some(AuthSettings {
            mechanism: MechanismChoice::Plain,
            username: "probe".into(),
            credential: Credential::Password(Secret::new("secret")),
        }),
        ..Module::default()
    };
    PreparedModule::new(name, module).expect("building the module's TLS client")
}

/// One probe, which must succeed.
async fn probe_once(prepared: &PreparedModule, target: &Target) -> ProbeOutcome {
    let o = probe::run(prepared, target, Budget::new(prepared.module.timeout)).await;
    assert!(
        o.success(),
        "benchmark probe failed:\n{}",
        report::text::render(&o)
    );
    o
}

/// The two kinds of probe against their servers.
struct Kinds {
    starttls: (Arc<PreparedModule>, Target),
    plain: (Arc<PreparedModule>, Target),
}

impl Kinds {
    fn new(root: &Path, starttls: SocketAddr, plain: SocketAddr) -> Kinds {
        let target = |a: SocketAddr| parse_target(&a.to_string(), 25).expect("a target");
        Kinds {
            starttls: (
                module("starttls_auth", TlsMode::Starttls, root),
                target(starttls),
            ),
            plain: (module("plain_auth", TlsMode::None, root), target(plain)),
        }
    }

    fn each(&self) -> [(&'static str, &(Arc<PreparedModule>, Target)); 2] {
        [("starttls", &self.starttls), ("plain", &self.plain)]
    }
}

/// Probes one after the other; returns the wall time of each and the outcomes.
async fn sequential(
    prepared: &PreparedModule,
    target: &Target,
    n: usize,
    warmup: usize,
) -> (Vec<Duration>, Vec<ProbeOutcome>) {
    for _ in 0..warmup {
        probe_once(prepared, target).await;
    }
    let mut wall = Vec::with_capacity(n);
    let mut outcomes = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let o = probe_once(prepared, target).await;
        wall.push(t.elapsed());
        outcomes.push(o);
    }
    (wall, outcomes)
}

/// What a load run did.
struct Load {
    probes: u64,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Load {
    fn per_second(&self) -> f64 {
        self.probes as f64 / self.elapsed.as_secs_f64()
    }
}

/// `concurrency` tasks probing back to back for `length`.
async fn load(
    prepared: &Arc<PreparedModule>,
    target: &Target,
    concurrency: usize,
    length: Duration,
) -> Load {
    let started = Instant::now();
    let end = started + length;
    let mut tasks = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let prepared = prepared.clone();
        let target = target.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < end {
                let t = Instant::now();
                probe_once(&prepared, &target).await;
                latencies.push(t.elapsed());
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.expect("a load task"));
    }
    Load {
        probes: latencies.len() as u64,
        elapsed: started.elapsed(),
        latencies,
    }
}

/// Median duration of each step over `outcomes`, in the order of the first transcript.
fn step_medians(outcomes: &[ProbeOutcome]) -> Vec<(StepName, Percentiles)> {
    let Some(first) = outcomes.first() else {
        return Vec::new();
    };
    first
        .session
        .transcript
        .steps()
        .iter()
        .map(|s| {
            let mut d: Vec<Duration> = outcomes
                .iter()
                .filter_map(|o| o.session.transcript.step(s.name).map(|x| x.duration))
                .collect();
            (s.name, Percentiles::of(&mut d))
        })
        .collect()
}

/// Section 1: everything in this process.
async fn in_process(plan: &Plan, kinds: &Kinds) {
    heading("1. in-process probes (prober and demo server on one 2-worker Tokio runtime)");
    for (name, (prepared, target)) in kinds.each() {
        let (mut wall, outcomes) = sequential(prepared, target, plan.sequential, plan.warmup).await;
        let p = Percentiles::of(&mut wall);
        println!("{name:<9} sequential     {}", p.show());
        result(
            &format!("probe.{name}.sequential.median"),
            micros(p.median),
            "µs",
        );
        result(&format!("probe.{name}.sequential.p90"), micros(p.p90), "µs");
        result(&format!("probe.{name}.sequential.p99"), micros(p.p99), "µs");
        println!("          steps (median of each step's own timing):");
        for (step, sp) in step_medians(&outcomes) {
            println!("            {:<14} {}", step.as_str(), sp.show());
        }
    }
    for (name, (prepared, target)) in kinds.each() {
        for concurrency in [1usize, 8, 32] {
            let cpu0 = cpu_time(None);
            let l = load(prepared, target, concurrency, plan.per_level).await;
            let cpu1 = cpu_time(None);
            let mut lat = l.latencies.clone();
            let p = Percentiles::of(&mut lat);
            let cpu = cpu0
                .zip(cpu1)
                .map(|(a, b)| (b - a) / l.probes.max(1) as u32);
            println!(
                "{name:<9} concurrency {concurrency:>2}: {:>7.0} probes/s  ({} probes in {}), \
                 latency median {} p99 {}, CPU per probe (prober + server) {}",
                l.per_second(),
                l.probes,
                show(l.elapsed),
                show(p.median),
                show(p.p99),
                cpu.map(show).unwrap_or_else(|| "n/a".into()),
            );
            result(
                &format!("probe.{name}.c{concurrency}.per_second"),
                l.per_second(),
                "1/s",
            );
            if let Some(cpu) = cpu {
                result(
                    &format!("probe.{name}.c{concurrency}.cpu_per_probe_both"),
                    micros(cpu),
                    "µs",
                );
            }
        }
    }
}

/// Reads one reply (lines until one whose fourth byte is a space) into `buf`.
async fn read_reply(stream: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) {
    buf.clear();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).await.expect("reading a reply");
        assert!(n > 0, "the server closed the connection");
        buf.extend_from_slice(&chunk[..n]);
        if buf.ends_with(b"\r\n") {
            let last = buf[..buf.len() - 2]
                .rsplit(|&b| b == b'\n')
                .next()
                .unwrap_or_default();
            if last.get(3) == Some(&b' ') || last.len() == 3 {
                return;
            }
        }
    }
}

/// A connection to the server past its greeting, for bare round trips.
struct Bare {
    stream: tokio::net::TcpStream,
    buf: Vec<u8>,
}

impl Bare {
    async fn open(addr: SocketAddr) -> Bare {
        let mut stream = tokio::net::TcpStream::connect(addr)
            .await
            .expect("connecting");
        stream.set_nodelay(true).expect("TCP_NODELAY");
        let mut buf = Vec::with_capacity(1024);
        read_reply(&mut stream, &mut buf).await;
        assert!(buf.starts_with(b"220"), "greeting");
        Bare { stream, buf }
    }

    /// Writes `command`, reads its reply (which must be a 250).
    async fn round_trip(&mut self, command: &[u8]) -> Duration {
        let t = Instant::now();
        self.stream.write_all(command).await.expect("writing");
        read_reply(&mut self.stream, &mut self.buf).await;
        let d = t.elapsed();
        assert!(
            self.buf.starts_with(b"250"),
            "{:?}",
            String::from_utf8_lossy(&self.buf)
        );
        d
    }
}

/// Section 2: what our step timing adds to the loopback round trip. The probes and the bare
/// round trips take turns (a probe, a `NOOP`, an `EHLO`, …), so that whatever state the machine
/// is in (which core, whether a worker thread had parked: on two shared cores that alone moves
/// a loopback round trip between ~20 and ~100 µs) weighs on all three alike.
async fn step_overhead(plan: &Plan, key: &str, kinds: &Kinds, addr: SocketAddr) {
    let (prepared, target) = &kinds.starttls;
    let mut bare = Bare::open(addr).await;
    let (mut step, mut noop, mut ehlo) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..plan.warmup + plan.sequential {
        let o = probe_once(prepared, target).await;
        let s = o
            .session
            .transcript
            .step(StepName::Ehlo)
            .expect("the STARTTLS probe has an ehlo step")
            .duration;
        let n = bare.round_trip(b"NOOP\r\n").await;
        let e = bare.round_trip(b"EHLO bench.test\r\n").await;
        if i >= plan.warmup {
            step.push(s);
            noop.push(n);
            ehlo.push(e);
        }
    }
    let _ = bare.stream.write_all(b"QUIT\r\n").await;
    let (step, noop, ehlo) = (
        Percentiles::of(&mut step),
        Percentiles::of(&mut noop),
        Percentiles::of(&mut ehlo),
    );
    println!("our ehlo step (in probes)   {}", step.show());
    println!("bare NOOP -> 250            {}", noop.show());
    println!("bare EHLO -> 250 (multi)    {}", ehlo.show());
    let diff = |a: Duration, b: Duration| micros(a) - micros(b);
    println!(
        "ehlo step minus bare NOOP: {:+.1} µs (median), minus bare EHLO: {:+.1} µs",
        diff(step.median, noop.median),
        diff(step.median, ehlo.median)
    );
    result(
        &format!("{key}.ehlo_step.median"),
        micros(step.median),
        "µs",
    );
    result(
        &format!("{key}.bare_noop.median"),
        micros(noop.median),
        "µs",
    );
    result(
        &format!("{key}.bare_ehlo.median"),
        micros(ehlo.median),
        "µs",
    );
    result(
        &format!("{key}.ehlo_step_minus_noop"),
        diff(step.median, noop.median),
        "µs",
    );
    result(
        &format!("{key}.ehlo_step_minus_bare_ehlo"),
        diff(step.median, ehlo.median),
        "µs",
    );
}

/// This benchmark running again as an SMTP server; it stops when its stdin closes.
struct ServerProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    starttls: SocketAddr,
    plain: SocketAddr,
    root: PathBuf,
}

impl ServerProcess {
    fn start(dir: &Path) -> ServerProcess {
        let (child, stdin, mut lines) = start_role(SERVER_ROLE, dir);
        let starttls = read_addr(&mut lines, "starttls ");
        let plain = read_addr(&mut lines, "plain ");
        ServerProcess {
            child,
            stdin: Some(stdin),
            starttls,
            plain,
            root: dir.join("server-root.pem"),
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // Closing stdin asks it to stop.
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

/// The child's side of [`ServerProcess`].
fn server_process(dir: PathBuf) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let pki = DemoPki::localhost();
        std::fs::write(dir.join("server-root.pem"), pki.root_pem()).expect("writing the root");
        let (starttls, plain) = start_servers(pki).await;
        println!("starttls {}", starttls.addr());
        println!("plain {}", plain.addr());
        let _ = std::io::stdout().flush();
        let _ = tokio::task::spawn_blocking(|| {
            let mut rest = Vec::new();
            let _ = std::io::stdin().read_to_end(&mut rest);
        })
        .await;
    });
}

/// Section 3: prober and server in separate processes, each one's CPU per probe.
async fn split(plan: &Plan, server: &ServerProcess) {
    heading("3. server in a child process: CPU per probe of each side");
    let kinds = Kinds::new(&server.root, server.starttls, server.plain);
    for (name, (prepared, target)) in kinds.each() {
        for _ in 0..plan.warmup {
            probe_once(prepared, target).await;
        }
        for concurrency in [1usize, 8] {
            let before = (cpu_time(None), cpu_time(Some(server.pid())));
            let l = load(prepared, target, concurrency, plan.per_level).await;
            let after = (cpu_time(None), cpu_time(Some(server.pid())));
            let per = |a: Option<Duration>, b: Option<Duration>| {
                a.zip(b).map(|(a, b)| (b - a) / l.probes.max(1) as u32)
            };
            let prober = per(before.0, after.0);
            let server_cpu = per(before.1, after.1);
            let na = || "n/a".to_string();
            println!(
                "{name:<9} concurrency {concurrency:>2}: {:>7.0} probes/s, CPU per probe: \
                 prober {}, server {}",
                l.per_second(),
                prober.map(show).unwrap_or_else(na),
                server_cpu.map(show).unwrap_or_else(na),
            );
            result(
                &format!("split.{name}.c{concurrency}.per_second"),
                l.per_second(),
                "1/s",
            );
            if let (Some(p), Some(s)) = (prober, server_cpu) {
                result(
                    &format!("split.{name}.c{concurrency}.cpu_per_probe_prober"),
                    micros(p),
                    "µs",
                );
                result(
                    &format!("split.{name}.c{concurrency}.cpu_per_probe_server"),
                    micros(s),
                    "µs",
                );
            }
        }
    }
}

/// The real `smtp-prober serve`, on `127.0.0.1:0`, killed when dropped.
struct ExporterProcess {
    child: Child,
    addr: SocketAddr,
}

impl ExporterProcess {
    fn start(config: &Path) -> ExporterProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_smtp-prober"))
            .arg("serve")
            .arg(format!("--config.file={}", config.display()))
            .arg("--web.listen-address=127.0.0.1:0")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting smtp-prober serve");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if !sent && line.contains("listening") {
                    let addr = line
                        .split_once("address=")
                        .map(|(_, rest)| rest.split([' ', '"']).next().unwrap_or_default())
                        .and_then(|a| a.parse::<SocketAddr>().ok());
                    if let Some(addr) = addr {
                        let _ = tx.send(addr);
                        sent = true;
                    }
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("smtp-prober serve did not log its listening address");
        ExporterProcess { child, addr }
    }
}

impl Drop for ExporterProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.0 GET; returns the status and body.
fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(addr).expect("connecting to the exporter");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("a read timeout");
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").expect("sending");
    let mut raw = String::new();
    stream.read_to_string(&mut raw).expect("reading");
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, body.to_string())
}

/// Section 4: `/probe` of the real binary, over HTTP, against the child's server.
fn exporter_http(plan: &Plan, server: &ServerProcess, dir: &Path) {
    heading("4. smtp-prober serve: GET /probe over HTTP/1.0 (server in the child process)");
    let password = dir.join("password");
    std::fs::write(&password, "secret\n").expect("writing the password");
    let config = dir.join("smtp-prober.yml");
    let module = |tls: &str| {
        format!(
            "    timeout: 10s\n    tls: {tls}\n    ehlo: bench.test\n    tls_config:\n      \
             server_name: localhost\n      trust: []\n      ca_files: [\"{}\"]\n    auth:\n      \
             mechanism: plain\n      username: probe\n      password_file: \"{}\"\n",
            server.root.display(),
            password.display()
        )
    };
    let yaml = format!(
        "modules:\n  starttls_auth:\n{}  plain_auth:\n{}",
        module("starttls"),
        module("none")
    );
    std::fs::write(&config, yaml).expect("writing the configuration");
    let exporter = ExporterProcess::start(&config);
    for (name, module, target) in [
        ("starttls", "starttls_auth", server.starttls),
        ("plain", "plain_auth", server.plain),
    ] {
        let path = format!("/probe?module={module}&target={target}");
        for _ in 0..plan.warmup {
            let (status, body) = http_get(exporter.addr, &path);
            assert!(
                status == 200 && body.contains("\nprobe_success 1\n"),
                "/probe failed: {status}\n{body}"
            );
        }
        for concurrency in [1usize, 8] {
            let cpu0 = cpu_time(Some(exporter.child.id()));
            let started = Instant::now();
            let end = started + plan.per_level;
            let threads: Vec<_> = (0..concurrency)
                .map(|_| {
                    let path = path.clone();
                    let addr = exporter.addr;
                    std::thread::spawn(move || {
                        let mut latencies = Vec::new();
                        while Instant::now() < end {
                            let t = Instant::now();
                            let (status, body) = http_get(addr, &path);
                            latencies.push(t.elapsed());
                            assert!(
                                status == 200 && body.contains("\nprobe_success 1\n"),
                                "/probe failed: {status}\n{body}"
                            );
                        }
                        latencies
                    })
                })
                .collect();
            let mut latencies: Vec<Duration> = threads
                .into_iter()
                .flat_map(|t| t.join().expect("a client thread"))
                .collect();
            let elapsed = started.elapsed();
            let cpu1 = cpu_time(Some(exporter.child.id()));
            let n = latencies.len();
            let p = Percentiles::of(&mut latencies);
            let cpu = cpu0.zip(cpu1).map(|(a, b)| (b - a) / n.max(1) as u32);
            println!(
                "{name:<9} concurrency {concurrency:>2}: {:>7.0} /probe per s, latency median {} \
                 p99 {}, exporter CPU per /probe {}",
                n as f64 / elapsed.as_secs_f64(),
                show(p.median),
                show(p.p99),
                cpu.map(show).unwrap_or_else(|| "n/a".into())
            );
            result(
                &format!("http.{name}.c{concurrency}.per_second"),
                n as f64 / elapsed.as_secs_f64(),
                "1/s",
            );
            result(
                &format!("http.{name}.c{concurrency}.latency_median"),
                micros(p.median),
                "µs",
            );
            if let Some(cpu) = cpu {
                result(
                    &format!("http.{name}.c{concurrency}.exporter_cpu_per_probe"),
                    micros(cpu),
                    "µs",
                );
            }
        }
    }
}

fn main() {
    if let Some(dir) = std::env::var_os(SERVER_ROLE) {
        server_process(PathBuf::from(dir));
        return;
    }
    let plan = Plan::new(common::quick());
    let dir = tempfile::tempdir().expect("a temporary directory");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    println!(
        "cores: {}",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    runtime.block_on(async {
        let pki = DemoPki::localhost();
        let root = dir.path().join("root.pem");
        std::fs::write(&root, pki.root_pem()).expect("writing the root");
        let (starttls, plain) = start_servers(pki).await;
        let kinds = Kinds::new(&root, starttls.addr(), plain.addr());
        in_process(&plan, &kinds).await;
        heading(
            "2a. step timing vs the bare loopback round trip, server in this process, \
             2 workers",
        );
        step_overhead(&plan, "overhead.in_process", &kinds, starttls.addr()).await;
        starttls.shutdown().await;
        plain.shutdown().await;
    });
    let server = ServerProcess::start(dir.path());
    // On one thread, a reply wakes the task that waits for it on the thread that read it: the
    // comparison then shows what the step's own code costs, not whether a wake-up had to cross
    // to the other worker (that alone moves a loopback round trip between ~20 and ~100 µs).
    let single = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    single.block_on(async {
        heading(
            "2b. step timing vs the bare loopback round trip, server in a child process, \
             prober on a current-thread runtime",
        );
        let kinds = Kinds::new(&server.root, server.starttls, server.plain);
        step_overhead(&plan, "overhead.split", &kinds, server.starttls).await;
    });
    runtime.block_on(split(&plan, &server));
    exporter_http(&plan, &server, dir.path());
}
