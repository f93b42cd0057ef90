//! A real Prometheus and Alertmanager for integration tests (Debian packages `prometheus` and
//! `prometheus-alertmanager`), each with its data in a temporary directory, on a free loopback
//! port, ready (its `/-/ready` answers) when started.
//!
//! Each daemon runs under a small `sh` watchdog whose stdin is a pipe only this process holds:
//! when the handle is dropped, or the test process ends in any way (panic, abort, SIGKILL), the
//! pipe closes and the watchdog kills the daemon (SIGKILL: its data is disposable) and waits for
//! it. No daemon outlives the test. Its output goes to `daemon.log` in its directory; start
//! failures show the log's tail.
//!
//! [`available`] tells a test whether to run: with the programs missing it prints one line and
//! the test returns, unless `CI` is set, in which case a missing program fails the test.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::exporter::http;
use super::programs::{find_program, run_checked};

/// How long a daemon gets to answer its readiness endpoint.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Start attempts (a free port may be taken between our pick and the daemon's bind).
const START_ATTEMPTS: usize = 3;

/// The Alertmanager binary: Debian names it `prometheus-alertmanager`, upstream `alertmanager`.
fn alertmanager_program() -> Option<PathBuf> {
    find_program("prometheus-alertmanager").or_else(|| find_program("alertmanager"))
}

/// Whether Prometheus, promtool and (with `alertmanager`) Alertmanager and amtool are installed.
/// When they are not: prints one line naming what is missing and returns false, or panics when
/// the `CI` environment variable is set (CI installs them; a missing one is a failure there).
pub fn available(test: &str, alertmanager: bool) -> bool {
    let mut missing = Vec::new();
    for program in ["prometheus", "promtool"] {
        if find_program(program).is_none() {
            missing.push(program);
        }
    }
    if alertmanager {
        if alertmanager_program().is_none() {
            missing.push("prometheus-alertmanager");
        }
        if find_program("amtool").is_none() {
            missing.push("amtool");
        }
    }
    if missing.is_empty() {
        return true;
    }
    let why = format!(
        "{} not installed (bash scripts/test.sh installs the packages prometheus and \
         prometheus-alertmanager)",
        missing.join(", ")
    );
    super::programs::skip(test, &why);
    false
}

/// A free loopback port (free when asked: a daemon may lose it to a neighbour before binding).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding 127.0.0.1:0")
}

/// A daemon under its watchdog; see the module documentation.
struct Daemon {
    watchdog: Child,
    /// Held open until drop; never written to.
    stdin: Option<ChildStdin>,
    log: PathBuf,
}

impl Daemon {
    fn spawn(program: &Path, args: &[String], log: &Path) -> Daemon {
        // The daemon is started before the trap, so it keeps the default signal dispositions;
        // the watchdog itself ignores the Ctrl-C that may end the test run, so it still cleans up.
        let script = r#"log=$1; shift
"$@" >>"$log" 2>&1 </dev/null &
daemon=$!
trap '' INT TERM HUP QUIT
read -r _ignored
kill -9 "$daemon" 2>/dev/null
wait "$daemon""#;
        let mut watchdog = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg("sh")
            .arg(log)
            .arg(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting a daemon watchdog (sh)");
        let stdin = watchdog.stdin.take();
        Daemon {
            watchdog,
            stdin,
            log: log.to_path_buf(),
        }
    }

    /// Whether the watchdog still runs (it ends only after its daemon).
    fn running(&mut self) -> bool {
        matches!(self.watchdog.try_wait(), Ok(None))
    }

    /// The last lines of the daemon's output.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.watchdog.wait();
    }
}

/// Starts `program` with the arguments `args(port)` on a fresh free port until `ready_path`
/// answers 200, retrying with another port when the daemon exits early.
fn start_daemon(
    what: &str,
    program: &Path,
    dir: &Path,
    ready_path: &str,
    args: impl Fn(u16) -> Vec<String>,
) -> (Daemon, SocketAddr) {
    let mut last_log = String::new();
    for _ in 0..START_ATTEMPTS {
        let port = free_port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let mut daemon = Daemon::spawn(program, &args(port), &dir.join("daemon.log"));
        let deadline = Instant::now() + READY_TIMEOUT;
        while daemon.running() && Instant::now() < deadline {
            if std::net::TcpStream::connect(addr).is_ok()
                && http(addr, "GET", ready_path, &[]).status == 200
            {
                return (daemon, addr);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        last_log = daemon.log_tail();
        assert!(
            !daemon.running(),
            "{what} not ready within {READY_TIMEOUT:?}:\n{last_log}"
        );
    }
    panic!("{what} did not start in {START_ATTEMPTS} attempts:\n{last_log}");
}

/// Scrape jobs for an exporter at `exporter`, both ways: `smtp` probes `probe_targets` through
/// `/probe?module=…` (the target relabelled into `?target=` and `instance`, as the README shows),
/// `smtp-prober` scrapes its `/metrics` (scheduled targets and the exporter's own metrics).
pub fn scrape_configs(exporter: SocketAddr, module: &str, probe_targets: &[&str]) -> String {
    let list = probe_targets
        .iter()
        .map(|t| format!("'{t}'"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        r#"scrape_configs:
  - job_name: smtp
    metrics_path: /probe
    params:
      module: [{module}]
    static_configs:
      - targets: [{list}]
    relabel_configs:
      - source_labels: [__address__]
        target_label: __param_target
      - source_labels: [__param_target]
        target_label: instance
      - target_label: __address__
        replacement: '{exporter}'
  - job_name: smtp-prober
    static_configs:
      - targets: ['{exporter}']
"#
    )
}

/// A Prometheus server, killed on drop.
pub struct Prometheus {
    pub addr: SocketAddr,
    daemon: Daemon,
    dir: tempfile::TempDir,
}

impl Prometheus {
    /// Checks the configuration file `config` with `promtool check config`, then starts
    /// Prometheus with it (its data and log in a temporary directory).
    pub fn start(config: &Path) -> Prometheus {
        Prometheus::launch(config, tempfile::tempdir().expect("temp dir"))
    }

    fn launch(config: &Path, dir: tempfile::TempDir) -> Prometheus {
        run_checked("promtool", &["check", "config", &config.to_string_lossy()]);
        let program = find_program("prometheus").expect("prometheus installed");
        let data = dir.path().join("data");
        let (daemon, addr) = start_daemon("prometheus", &program, dir.path(), "/-/ready", |port| {
            vec![
                format!("--config.file={}", config.display()),
                format!("--storage.tsdb.path={}", data.display()),
                format!("--web.listen-address=127.0.0.1:{port}"),
            ]
        });
        Prometheus { addr, daemon, dir }
    }

    /// Starts Prometheus scraping and evaluating every second with `scrape_configs` (YAML from
    /// `scrape_configs:` on), the rule files `rules` and, when given, alerts sent to
    /// `alertmanager`; the configuration file is written to its directory.
    pub fn start_with(
        scrape_configs: &str,
        rules: &[PathBuf],
        alertmanager: Option<SocketAddr>,
    ) -> Prometheus {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = String::from(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n",
        );
        if !rules.is_empty() {
            config.push_str("rule_files:\n");
            for r in rules {
                config.push_str(&format!("  - '{}'\n", r.display()));
            }
        }
        if let Some(am) = alertmanager {
            config.push_str(&format!(
                "alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['{am}']\n"
            ));
        }
        config.push_str(scrape_configs);
        let path = dir.path().join("prometheus.yml");
        std::fs::write(&path, &config).expect("writing prometheus.yml");
        Prometheus::launch(&path, dir)
    }

    /// The directory Prometheus runs in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A GET of the HTTP API (`/api/v1/…`, with its query string); the `data` member, or the
    /// API's error.
    pub fn api(&self, path: &str) -> Result<Value, String> {
        let response = http(self.addr, "GET", path, &[]);
        let body: Value = serde_json::from_str(&response.body)
            .map_err(|e| format!("HTTP {}: {e}: {}", response.status, response.body))?;
        if body["status"] != "success" {
            return Err(format!(
                "HTTP {}: {}: {}",
                response.status, body["errorType"], body["error"]
            ));
        }
        Ok(body["data"].clone())
    }

    /// [`Prometheus::api`] with `params` as the query string.
    pub fn api_with(&self, path: &str, params: &[(&str, &str)]) -> Result<Value, String> {
        let query = serde_urlencoded::to_string(params).expect("encoding parameters");
        self.api(&format!("{path}?{query}"))
    }

    /// An instant query; the `data.result` array (empty on an API error).
    pub fn query(&self, expr: &str) -> Vec<Value> {
        self.api_with("/api/v1/query", &[("query", expr)])
            .map(|d| d["result"].as_array().cloned().unwrap_or_default())
            .unwrap_or_default()
    }

    /// Polls until `expr` returns at least one series, or panics after `within`.
    pub fn wait_for(&self, expr: &str, within: Duration) -> Vec<Value> {
        let deadline = Instant::now() + within;
        loop {
            let result = self.query(expr);
            if !result.is_empty() {
                return result;
            }
            assert!(
                Instant::now() < deadline,
                "Prometheus never returned a series for {expr}; its log:\n{}",
                self.daemon.log_tail()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// The last lines Prometheus logged.
    pub fn log_tail(&self) -> String {
        self.daemon.log_tail()
    }
}

/// The value of one series of an instant query result.
pub fn value(series: &Value) -> f64 {
    series["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

/// An Alertmanager that sends every alert, one notification per alert, to `webhook_url` within
/// a second (group_wait and group_interval 1 s), resolved ones included; killed on drop.
pub struct Alertmanager {
    pub addr: SocketAddr,
    daemon: Daemon,
    _dir: tempfile::TempDir,
}

impl Alertmanager {
    pub fn start(webhook_url: &str) -> Alertmanager {
        let dir = tempfile::tempdir().expect("temp dir");
        // group_by '...': every alert its own group, so each is notified on its own.
        let config = format!(
            r#"route:
  receiver: test
  group_by: ['...']
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: test
    webhook_configs:
      - url: '{webhook_url}'
        send_resolved: true
"#
        );
        let path = dir.path().join("alertmanager.yml");
        std::fs::write(&path, config).expect("writing alertmanager.yml");
        Alertmanager::launch(&path, dir)
    }

    /// Checks the configuration file `config` with `amtool check-config`, then starts
    /// Alertmanager with it (its data and log in a temporary directory).
    pub fn start_config(config: &Path) -> Alertmanager {
        Alertmanager::launch(config, tempfile::tempdir().expect("temp dir"))
    }

    fn launch(config: &Path, dir: tempfile::TempDir) -> Alertmanager {
        run_checked("amtool", &["check-config", &config.to_string_lossy()]);
        let program = alertmanager_program().expect("alertmanager installed");
        let data = dir.path().join("data");
        let (daemon, addr) =
            start_daemon("alertmanager", &program, dir.path(), "/-/ready", |port| {
                vec![
                    format!("--config.file={}", config.display()),
                    format!("--storage.path={}", data.display()),
                    format!("--web.listen-address=127.0.0.1:{port}"),
                    // No cluster: it would listen on all interfaces.
                    "--cluster.listen-address=".to_string(),
                ]
            });
        Alertmanager {
            addr,
            daemon,
            _dir: dir,
        }
    }

    /// The last lines Alertmanager logged.
    pub fn log_tail(&self) -> String {
        self.daemon.log_tail()
    }
}
