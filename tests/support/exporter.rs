//! The exporter through the real binary: start `smtp-prober` on `127.0.0.1:0`, read the bound
//! address from its `listening` log line, talk HTTP/1.0 to it; demo SMTP servers on their own
//! small runtime; a temporary directory with the demo root, a password and the configuration.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use smtp_prober::demo::ocsp::OcspCertStatus;
use smtp_prober::demo::{DemoPki, DemoServer, Sent, ServerConfig};

pub const BIN: &str = env!("CARGO_BIN_EXE_smtp-prober");

/// A running `smtp-prober`; killed when dropped (if still running).
pub struct Exporter {
    pub child: Child,
    pub addr: SocketAddr,
    /// Log lines after the `listening` line.
    pub log: mpsc::Receiver<String>,
}

impl Exporter {
    /// Starts the binary with `args` plus `--web.listen-address=127.0.0.1:0`.
    pub fn start(args: &[&str]) -> Exporter {
        let mut command = Command::new(BIN);
        command.args(args).arg("--web.listen-address=127.0.0.1:0");
        Exporter::spawn(command)
    }

    /// Starts `command`, which runs the binary (maybe through a wrapper such as a sandbox) and
    /// makes it listen on `127.0.0.1:0`.
    pub fn spawn(mut command: Command) -> Exporter {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting smtp-prober");
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // Drain stdout so that a chatty command never blocks on a full pipe.
        let stdout = child.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut BufReader::new(stdout), &mut std::io::sink());
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut seen = Vec::new();
        let addr = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(addr) = listening_address(&line) {
                        break addr;
                    }
                    seen.push(line);
                }
                Err(_) => {
                    let _ = child.kill();
                    panic!(
                        "smtp-prober did not start listening; stderr:\n{}",
                        seen.join("\n")
                    );
                }
            }
        };
        Exporter {
            child,
            addr,
            log: rx,
        }
    }

    pub fn get(&self, path: &str) -> Response {
        http(self.addr, "GET", path, &[])
    }

    pub fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Response {
        http(self.addr, "GET", path, headers)
    }

    pub fn post(&self, path: &str) -> Response {
        http(self.addr, "POST", path, &[])
    }

    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits for the process to end.
    pub fn wait(mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "smtp-prober still running after {within:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Polls `/metrics` until `check` holds, returning that page.
    pub fn metrics_until(&self, what: &str, check: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let page = self.get("/metrics").body;
            if check(&page) {
                return page;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; /metrics:\n{page}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Log lines written so far.
    pub fn log_lines(&self) -> Vec<String> {
        self.log.try_iter().collect()
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The address of a `listening` log line, logfmt (`address=…`) or JSON (`"address":"…"`).
pub fn listening_address(line: &str) -> Option<SocketAddr> {
    if !line.contains("listening") {
        return None;
    }
    let rest = line
        .split_once("address=")
        .or_else(|| line.split_once("\"address\":\""))?
        .1;
    let end = rest.find([' ', '"']).unwrap_or(rest.len());
    rest[..end].parse().ok()
}

pub struct Response {
    pub status: u16,
    pub headers: String,
    pub body: String,
}

/// One HTTP/1.0 request: the server answers without chunking and closes the connection.
pub fn http(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> Response {
    let mut stream = TcpStream::connect(addr).expect("connecting to the exporter");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut request = format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\n");
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    if method == "POST" {
        request.push_str("Content-Length: 0\r\n");
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).expect("sending");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("reading the response");
    let text = String::from_utf8(raw).expect("UTF-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("a header block");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status code");
    Response {
        status,
        headers: head.to_ascii_lowercase(),
        body: body.to_string(),
    }
}

/// Demo SMTP servers on their own small runtime, so the test thread can block on HTTP.
pub struct Servers {
    pub runtime: tokio::runtime::Runtime,
    pub servers: Vec<DemoServer>,
}

impl Servers {
    pub fn new() -> Servers {
        Servers {
            runtime: tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("runtime"),
            servers: Vec::new(),
        }
    }

    /// Starts a server and returns its `host:port`.
    pub fn start(&mut self, config: ServerConfig) -> String {
        let server = self
            .runtime
            .block_on(DemoServer::start(config))
            .expect("starting a demo server");
        let addr = server.addr().to_string();
        self.servers.push(server);
        addr
    }

    /// A healthy server that also staples a good OCSP response.
    pub fn healthy(&mut self) -> String {
        self.start(ServerConfig {
            ocsp: Some(OcspCertStatus::Good),
            ..ServerConfig::default()
        })
    }

    pub fn leaf_only(&mut self) -> String {
        self.start(ServerConfig {
            sent: Sent::LeafOnly,
            ..ServerConfig::default()
        })
    }
}

/// A directory with the demo root, the AUTH password and the configuration file.
pub struct Files {
    pub dir: tempfile::TempDir,
}

impl Files {
    pub fn new() -> Files {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("root.pem"), DemoPki::localhost().root_pem()).expect("root");
        std::fs::write(dir.path().join("password"), "secret\n").expect("password");
        Files { dir }
    }

    pub fn config(&self) -> PathBuf {
        self.dir.path().join("smtp-prober.yml")
    }

    pub fn config_arg(&self) -> String {
        format!("--config.file={}", self.config().display())
    }

    pub fn write(&self, yaml: &str) {
        // Write then rename, as deployment tools do: a reload never reads half a file.
        let tmp = self.dir.path().join("next.yml");
        std::fs::write(&tmp, yaml).expect("writing the configuration");
        std::fs::rename(&tmp, self.config()).expect("renaming the configuration");
    }
}

/// The value of the one sample whose line starts with `series` (name and labels).
pub fn sample(page: &str, series: &str) -> Option<f64> {
    page.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
}
