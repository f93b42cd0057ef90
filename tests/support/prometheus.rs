//! A real Prometheus (Debian package) on a free loopback port, with its data in a temporary
//! directory; killed when dropped. Queried through its HTTP API.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::exporter::http;

/// A free TCP port on 127.0.0.1 (free when asked; the caller binds it soon after).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running Prometheus.
pub struct Prometheus {
    child: Child,
    pub port: u16,
    _data: tempfile::TempDir,
}

impl Prometheus {
    /// Checks `config` with `promtool check config`, then starts Prometheus with it.
    pub fn start(config: &Path) -> Prometheus {
        let check = Command::new("promtool")
            .arg("check")
            .arg("config")
            .arg(config)
            .output()
            .expect("running promtool");
        assert!(
            check.status.success(),
            "promtool check config {}: {}{}",
            config.display(),
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        );
        let data = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", data.path().display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting prometheus");
        Prometheus {
            child,
            port,
            _data: data,
        }
    }

    /// GET `path` of the HTTP API (`/api/v1/…`): the `data` of a successful answer.
    pub fn api(&self, path: &str) -> Option<serde_json::Value> {
        std::net::TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        let addr = format!("127.0.0.1:{}", self.port).parse().unwrap();
        let response = http(addr, "GET", path, &[]);
        if response.status != 200 {
            return None;
        }
        let v: serde_json::Value = serde_json::from_str(&response.body).ok()?;
        Some(v["data"].clone())
    }

    /// An instant query; the `data.result` array.
    pub fn query(&self, expr: &str) -> Vec<serde_json::Value> {
        let encoded: String = serde_urlencoded::to_string([("query", expr)]).unwrap();
        self.api(&format!("/api/v1/query?{encoded}"))
            .and_then(|data| data["result"].as_array().cloned())
            .unwrap_or_default()
    }

    /// Polls until `expr` returns at least one series, or gives up.
    pub fn wait_for(&self, expr: &str, within: Duration) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + within;
        loop {
            let result = self.query(expr);
            if !result.is_empty() {
                return result;
            }
            assert!(
                Instant::now() < deadline,
                "Prometheus never returned a series for {expr}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of one series of an instant query.
pub fn value(series: &serde_json::Value) -> f64 {
    series["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}
