//! The exporter attacked as an adversary would, on loopback: slow and flooding HTTP clients, more
//! `/probe` requests than descriptors, secret and configuration paths that are FIFOs or devices,
//! SSRF spellings of 127.0.0.1, and a mail server whose certificate and replies carry terminal
//! escapes. Each case asserts the status or reason, the time it took, and (in process) a memory
//! ceiling; each failed before its fix (the figures in the comments are from before).
//!
//! Memory is measured as in `hostile_imap.rs`: the peak of heap bytes live on the thread that
//! runs the probe (allocation-counter), the probe alone on a current-thread runtime and the
//! server on a thread of its own.

mod support;

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use smtp_prober::probe::module::{AuthSettings, Credential, MechanismChoice, Module, TlsMode};
use smtp_prober::probe::target::parse_target;
use smtp_prober::probe::{self, Budget, PreparedModule, ProbeOutcome};
use smtp_prober::report;
use smtp_prober::vocab::{Reason, StepName};
use support::exporter::{Exporter, Files, BIN};
use support::measure::measured;

/// How long past its deadline an answer may take.
const GRACE: Duration = Duration::from_millis(100);

// ---------------------------------------------------------------------------------------------
// Helpers.

/// A TCP connection to `to` from the loopback address `from` (127.0.0.2 is another client to
/// the exporter than 127.0.0.1).
fn connect_from(from: [u8; 4], to: SocketAddr) -> TcpStream {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let stream = rt.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::from((from, 0))).unwrap();
        socket.connect(to).await.unwrap().into_std().unwrap()
    });
    stream.set_nonblocking(false).unwrap();
    stream
}

/// One HTTP/1.0 request from `from`: the status and body, or `None` when the connection
/// failed or no answer came within `within`.
fn request_from(
    from: [u8; 4],
    to: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    within: Duration,
) -> Option<(u16, String)> {
    let mut stream = connect_from(from, to);
    stream.set_read_timeout(Some(within)).unwrap();
    let mut request = format!("GET {path} HTTP/1.0\r\nHost: {to}\r\n");
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

/// A server that accepts connections and never says a word, holding them open.
fn silent_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    addr
}

/// The exporter under `ulimit -n fds`, with `args`.
fn exporter_with_fd_limit(fds: u32, args: &[&str]) -> Exporter {
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(format!("ulimit -n {fds} && exec \"$0\" \"$@\""))
        .arg(BIN)
        .args(args)
        .arg("--web.listen-address=127.0.0.1:0");
    Exporter::spawn(command)
}

/// A configuration with one module, `silent`, that probes plain SMTP with a 3 s deadline.
fn silent_module_config(files: &Files) {
    files.write("modules:\n  silent:\n    timeout: 3s\n    tls: none\n    ehlo: prober.test\n");
}

fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo").arg(path).status().expect("mkfifo");
    assert!(status.success());
}

// ---------------------------------------------------------------------------------------------
// HTTP server (findings 5, 6, 7).

/// Finding 6. Before: every connection sending one header byte a second was held forever, and
/// under a 1,024-descriptor limit 1,100 of them made `/-/healthy` time out. Now each is closed
/// once the header timeout passes, one address holds at most half of the connection slots, and
/// another client is served at once.
#[test]
fn slowloris_holds_a_slot_for_the_header_timeout_only() {
    let files = Files::new();
    silent_module_config(&files);
    let exporter =
        exporter_with_fd_limit(256, &[&files.config_arg(), "--web.read-header-timeout=2s"]);
    let addr = exporter.addr;
    // 300 slow clients from 127.0.0.1, more than the 256 descriptors the exporter has.
    let began = Instant::now();
    let slow: Vec<thread::JoinHandle<Option<Duration>>> = (0..300)
        .map(|_| {
            thread::spawn(move || {
                let mut stream = TcpStream::connect(addr).ok()?;
                stream
                    .set_read_timeout(Some(Duration::from_millis(200)))
                    .ok()?;
                let opened = Instant::now();
                let head =
                    b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
                let mut buf = [0u8; 512];
                for byte in head.iter().cycle().take(100) {
                    if stream.write_all(&[*byte]).is_err() {
                        return Some(opened.elapsed());
                    }
                    match stream.read(&mut buf) {
                        // Closed (or answered 408 and closed): the slot is free again.
                        Ok(_) => return Some(opened.elapsed()),
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(_) => return Some(opened.elapsed()),
                    }
                    thread::sleep(Duration::from_millis(800));
                }
                None
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(500));
    // Another client gets its answer while the slow ones hold their slots.
    let asked = Instant::now();
    let healthy = request_from(
        [127, 0, 0, 2],
        addr,
        "/-/healthy",
        &[],
        Duration::from_secs(5),
    );
    assert_eq!(
        healthy.map(|(status, _)| status),
        Some(200),
        "/-/healthy from another address during the flood"
    );
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "{:?}",
        asked.elapsed()
    );
    // The flooding address itself is told why, rather than reset.
    let own = request_from(
        [127, 0, 0, 1],
        addr,
        "/-/healthy",
        &[],
        Duration::from_secs(5),
    );
    let (status, body) = own.expect("an answer to the flooding address");
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("too many connections from your address"),
        "{body}"
    );
    let held: Vec<Duration> = slow.into_iter().filter_map(|h| h.join().unwrap()).collect();
    assert_eq!(
        held.len(),
        300,
        "every slow connection was closed by the exporter"
    );
    let longest = held.iter().max().unwrap();
    // The header timeout (2 s), plus a connection that waited in the backlog for a slot
    // freed by an earlier one (2 s more), plus the client's own read interval.
    assert!(*longest < Duration::from_secs(6), "held for {longest:?}");
    assert!(began.elapsed() < Duration::from_secs(15));
    // And the exporter still serves its own address.
    assert_eq!(exporter.get("/-/healthy").status, 200);
}

/// Finding 5. Before: 1,000 concurrent `/probe` requests against a silent server all ran (2,012
/// descriptors). Now `--probe.max-concurrency` of them run and the others get 503 at once.
#[test]
fn probe_requests_beyond_the_cap_get_503_at_once() {
    let files = Files::new();
    silent_module_config(&files);
    let silent = silent_server();
    let exporter = Exporter::start(&[&files.config_arg(), "--probe.max-concurrency=4"]);
    let addr = exporter.addr;
    let path = format!("/probe?module=silent&target={silent}");
    let answers: Vec<_> = (0..12)
        .map(|_| {
            let path = path.clone();
            thread::spawn(move || {
                let began = Instant::now();
                let answer =
                    request_from([127, 0, 0, 1], addr, &path, &[], Duration::from_secs(10));
                (answer, began.elapsed())
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect();
    let refused: Vec<_> = answers
        .iter()
        .filter(|(a, _)| a.as_ref().is_some_and(|(s, _)| *s == 503))
        .collect();
    let probed = answers
        .iter()
        .filter(|(a, _)| a.as_ref().is_some_and(|(s, _)| *s == 200))
        .count();
    assert_eq!((probed, refused.len()), (4, 8), "{answers:?}");
    for (answer, took) in refused {
        let body = &answer.as_ref().unwrap().1;
        assert!(body.contains("--probe.max-concurrency"), "{body}");
        assert!(*took < Duration::from_secs(1), "a 503 waited {took:?}");
    }
}

/// Finding 5. Before: under `ulimit -n 1024`, 494 probes reported `connect_refused (Too many
/// open files)`, blaming the target for the exporter's own limit. Now that is
/// `prober_overloaded`.
#[test]
fn running_out_of_descriptors_is_the_exporters_problem() {
    let files = Files::new();
    silent_module_config(&files);
    let silent = silent_server();
    // Caps above what 48 descriptors allow, so that probes do run out.
    let exporter = exporter_with_fd_limit(
        48,
        &[
            &files.config_arg(),
            "--probe.max-concurrency=64",
            "--web.max-connections=64",
        ],
    );
    let addr = exporter.addr;
    let path = format!("/probe?module=silent&target={silent}");
    let bodies: Vec<String> = (0..60)
        .map(|_| {
            let path = path.clone();
            thread::spawn(move || {
                request_from([127, 0, 0, 1], addr, &path, &[], Duration::from_secs(30))
                    .map(|(_, body)| body)
                    .unwrap_or_default()
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect();
    let overloaded = bodies
        .iter()
        .filter(|b| b.contains(r#"reason="prober_overloaded""#))
        .count();
    assert!(
        overloaded > 0,
        "no probe ran out of descriptors: {bodies:?}"
    );
    assert!(
        !bodies
            .iter()
            .any(|b| b.contains(r#"reason="connect_refused""#)),
        "a probe blamed the target: {bodies:?}"
    );
}

/// Finding 7. Before: `rate_limit` was one bucket for everyone, checked before authentication:
/// an unauthenticated flood made 19 of 20 authenticated scrapes get 429. Now an authenticated
/// user has a bucket of its own, and every address too.
#[test]
fn an_unauthenticated_flood_does_not_use_up_prometheus_requests() {
    let files = Files::new();
    silent_module_config(&files);
    let password = "correct horse battery staple";
    let hash = bcrypt::hash(password, 4).unwrap();
    let web = files.dir.path().join("web.yml");
    std::fs::write(
        &web,
        format!(
            "basic_auth_users:\n  prometheus: '{hash}'\nrate_limit: {{interval: 10s, burst: 25}}\n"
        ),
    )
    .unwrap();
    let exporter = Exporter::start(&[
        &files.config_arg(),
        &format!("--web.config.file={}", web.display()),
    ]);
    use base64::Engine as _;
    let credential = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("prometheus:{password}"))
    );
    let auth = [("Authorization", credential.as_str())];
    let get = |from: [u8; 4], headers: &[(&str, &str)]| {
        request_from(
            from,
            exporter.addr,
            "/-/healthy",
            headers,
            Duration::from_secs(5),
        )
        .map(|(s, _)| s)
    };
    // Prometheus has scraped before; then a flood without credentials, from its own address
    // and from another.
    assert_eq!(get([127, 0, 0, 1], &auth), Some(200));
    for from in [[127, 0, 0, 1], [127, 0, 0, 3]] {
        let statuses: Vec<_> = (0..40).map(|_| get(from, &[])).collect();
        assert!(
            statuses.contains(&Some(429)),
            "the flood was not limited: {statuses:?}"
        );
    }
    let scrapes: Vec<_> = (0..20).map(|_| get([127, 0, 0, 1], &auth)).collect();
    assert!(scrapes.iter().all(|s| *s == Some(200)), "{scrapes:?}");
    // A client that never flooded, with the same credentials, is not affected either.
    assert_eq!(get([127, 0, 0, 2], &auth), Some(200));
}

// ---------------------------------------------------------------------------------------------
// Files (finding 8).

/// Finding 8. Before: a FIFO as the configuration file hung `POST /-/reload` and queued later
/// reloads behind it. Now it is refused at once, every time, and the running configuration
/// stays.
#[test]
fn a_fifo_as_configuration_fails_the_reload_at_once() {
    let files = Files::new();
    silent_module_config(&files);
    let exporter = Exporter::start(&[&files.config_arg()]);
    std::fs::remove_file(files.config()).unwrap();
    mkfifo(&files.config());
    for _ in 0..2 {
        let began = Instant::now();
        let answer = exporter.post("/-/reload");
        assert!(
            began.elapsed() < Duration::from_secs(1),
            "{:?}",
            began.elapsed()
        );
        assert_eq!(answer.status, 500);
        assert!(
            answer
                .body
                .contains("is a FIFO (named pipe), not a regular file"),
            "{}",
            answer.body
        );
    }
    assert_eq!(exporter.get("/-/ready").status, 200);
}

/// Finding 8. Before: a FIFO as `token_file` hung `check-config` forever, and `/dev/zero` was
/// read until memory ran out (2.1 GB). Now both are refused, naming what the path is.
#[test]
fn check_config_refuses_fifos_and_devices_as_secret_files() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("token.fifo");
    mkfifo(&fifo);
    for (path, what) in [
        (
            fifo.display().to_string(),
            "is a FIFO (named pipe), not a regular file",
        ),
        (
            "/dev/zero".to_string(),
            "is a character device, not a regular file",
        ),
    ] {
        for field in ["token_file", "password_file"] {
            let config = dir.path().join("smtp-prober.yml");
            std::fs::write(
                &config,
                format!(
                    "modules:\n  m:\n    auth:\n      username: probe@example.com\n      \
                     {field}: {path}\n"
                ),
            )
            .unwrap();
            let began = Instant::now();
            let out = Command::new(BIN)
                .arg("check-config")
                .arg(format!("--config.file={}", config.display()))
                .output()
                .unwrap();
            assert!(
                began.elapsed() < Duration::from_secs(5),
                "{:?}",
                began.elapsed()
            );
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{field} {path}: {stderr}");
            assert!(stderr.contains(what), "{field} {path}: {stderr}");
            assert!(stderr.contains(&format!("auth.{field}")), "{stderr}");
        }
    }
}

/// Finding 12. bcrypt reads 72 bytes: `check-config` says so when users are configured.
#[test]
fn check_config_warns_about_bcrypts_72_bytes() {
    let files = Files::new();
    silent_module_config(&files);
    let web = files.dir.path().join("web.yml");
    let hash = bcrypt::hash("x", 4).unwrap();
    std::fs::write(&web, format!("basic_auth_users:\n  prometheus: '{hash}'\n")).unwrap();
    let out = Command::new(BIN)
        .arg("check-config")
        .arg(files.config_arg())
        .arg(format!("--web.config.file={}", web.display()))
        .output()
        .unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("warning: basic_auth_users: bcrypt reads only the first 72 bytes"),
        "{stderr}"
    );
}

/// Finding 12. Before: an 88-byte password was accepted with any password sharing its first 72
/// bytes. Now a password of 72 bytes or more is refused; shorter ones log in as before.
#[test]
fn passwords_beyond_72_bytes_are_refused() {
    let files = Files::new();
    silent_module_config(&files);
    let long = "p".repeat(88);
    // htpasswd and bcrypt libraries hash the first 72 bytes of such a password: it is the
    // same hash as for the 72 bytes alone.
    let hash = bcrypt::hash(&long[..72], 4).unwrap();
    let short = "p".repeat(71);
    let short_hash = bcrypt::hash(&short, 4).unwrap();
    let web = files.dir.path().join("web.yml");
    std::fs::write(
        &web,
        format!("basic_auth_users:\n  prometheus: '{hash}'\n  short: '{short_hash}'\n"),
    )
    .unwrap();
    let exporter = Exporter::start(&[
        &files.config_arg(),
        &format!("--web.config.file={}", web.display()),
    ]);
    use base64::Engine as _;
    let login = |user: &str, password: &str| {
        let credential = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        );
        exporter
            .get_with("/-/healthy", &[("Authorization", &credential)])
            .status
    };
    assert_eq!(login("short", &short), 200);
    let same_start = format!("{}{}", &long[..72], "q".repeat(16));
    assert_eq!(login("prometheus", &same_start), 401);
    assert_eq!(login("prometheus", &long), 401);
    assert_eq!(login("prometheus", &long[..72]), 401);
}

// ---------------------------------------------------------------------------------------------
// SSRF (finding 13).

/// Finding 13. Before: `--probe.allowed-targets` matched the string, and every spelling of
/// 127.0.0.1 below reached it. Now `--probe.denied-networks` is checked on the resolved
/// address.
#[test]
fn denied_networks_catch_every_spelling_of_loopback() {
    let files = Files::new();
    silent_module_config(&files);
    let silent = silent_server();
    let port = silent.port();
    let exporter = Exporter::start(&[
        &files.config_arg(),
        "--probe.denied-networks=127.0.0.0/8,::1/128",
    ]);
    for target in [
        format!("127.0.0.1:{port}"),
        format!("2130706433:{port}"),
        format!("0x7f.1:{port}"),
        format!("127.1:{port}"),
        format!("[::ffff:127.0.0.1]:{port}"),
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
    ] {
        let began = Instant::now();
        let answer = exporter.get(&format!("/probe?module=silent&target={target}"));
        assert_eq!(answer.status, 403, "{target}: {}", answer.body);
        assert!(
            answer.body.contains("--probe.denied-networks"),
            "{}",
            answer.body
        );
        assert!(began.elapsed() < Duration::from_secs(1), "{target}");
    }
}

// ---------------------------------------------------------------------------------------------
// Server text in every output (finding 11) and a token file that is not a file (finding 8),
// in process, with a memory ceiling.

/// A CN that tries to draw a fake verdict line on the reader's terminal.
const EVIL_CN: &str = "localhost\n\x1b[2J\x1b[31mFAKE: verdict: SUCCESS";

/// An implicit-TLS SMTP server whose certificate has [`EVIL_CN`] and 2,500 SANs, and whose
/// greeting and EHLO reply carry escapes and 60 KB of text.
fn evil_tls_server() -> SocketAddr {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut names: Vec<String> = (0..2500)
        .map(|i| format!("host-{i}.example.test"))
        .collect();
    names.push("evil\x1b[31m.example.test".into());
    let mut params = rcgen::CertificateParams::new(names).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, EVIL_CN);
    let cert = params.self_signed(&key).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.der().clone()],
        rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut tls = tokio::io::BufReader::new(tls);
                    let mut greeting = Vec::new();
                    for _ in 0..120 {
                        greeting.extend_from_slice(b"220-");
                        greeting.extend_from_slice(&[b'g'; 500]);
                        greeting.extend_from_slice(b"\r\n");
                    }
                    greeting.extend_from_slice(b"220 mx \x1b[2J\x1b[31mFAKE: verdict: SUCCESS\r\n");
                    let _ = tls.get_mut().write_all(&greeting).await;
                    let mut line = String::new();
                    while tls.read_line(&mut line).await.unwrap_or(0) > 0 {
                        let answer: &[u8] = if line.starts_with("EHLO") {
                            b"250-mx\r\n250-X-EVIL \x1b]0;pwned\x07\r\n250 8BITMIME\r\n"
                        } else {
                            b"221 2.0.0 bye \x1b[0m\r\n"
                        };
                        let _ = tls.get_mut().write_all(answer).await;
                        line.clear();
                    }
                });
            }
        });
    });
    addr
}

fn tls_module() -> Module {
    let mut m = Module {
        tls: TlsMode::Implicit,
        timeout: Duration::from_secs(5),
        ehlo: smtp_prober::smtp::command::ClientName::new("probe.test").unwrap(),
        ..Module::default()
    };
    m.tls_config.trust = vec![smtp_prober::tls::TrustKind::Bundled];
    m.tls_config.server_name = Some("localhost".into());
    m.tls_config.insecure_skip_verify = true;
    m
}

async fn probe(module: Module, addr: SocketAddr) -> ProbeOutcome {
    let prepared: Arc<PreparedModule> = PreparedModule::new("hostile", module).unwrap();
    let target = parse_target(&addr.to_string(), 25).unwrap();
    probe::run(&prepared, &target, Budget::new(prepared.module.timeout)).await
}

/// Asserts that `out` (one rendering) has no control character but line breaks, no line that
/// a server wrote, and no line longer than a bounded server text and its context.
fn assert_printable(what: &str, out: &str) {
    assert!(
        !out.chars().any(|c| c.is_control() && c != '\n'),
        "{what} holds a raw control character:\n{out}"
    );
    for line in out.lines() {
        assert!(
            !line.trim_start().starts_with("FAKE"),
            "{what} drew a fake line: {line}"
        );
        assert!(line.len() < 1600, "{what}: a line of {} bytes", line.len());
    }
}

/// Finding 11. Before: reply texts and certificate subjects were printed raw by `probe`,
/// `chain` and `/logs` (the CN above printed a fake verdict line), and a 60 KB greeting was
/// printed whole. Now every output shows them escaped and cut at 1 KiB.
#[test]
fn server_text_is_escaped_and_bounded_in_every_output() {
    let addr = evil_tls_server();
    let (outcome, took, peak) = measured(probe(tls_module(), addr));
    assert!(took < Duration::from_secs(5) + GRACE, "{took:?}");
    // The chain (2,500 SANs, 60 KB of certificate) and the replies, bounded.
    assert!(peak < 8 * 1024 * 1024, "heap peak {peak} bytes");
    let tls = outcome.session.tls.as_ref().expect("TLS session");
    let leaf = &tls.chain.sent[0];
    assert_eq!(
        leaf.subject_cn,
        "localhost\\n\\u{1b}[2J\\u{1b}[31mFAKE: verdict: SUCCESS"
    );
    let greeting = outcome
        .session
        .transcript
        .step(StepName::Greeting)
        .and_then(|s| s.reply.as_ref())
        .expect("greeting");
    assert!(greeting.text().len() > 60_000);

    let text = report::text::render(&outcome);
    eprintln!(
        "after {took:?}, peak heap {} KiB; greeting {} bytes, transcript {} bytes",
        peak / 1024,
        greeting.text().len(),
        text.len()
    );
    assert_printable("probe --format=text", &text);
    assert!(text.contains("\\u{1b}[2J"), "{text}");
    assert!(text.len() < 16 * 1024, "{} bytes", text.len());

    let json = report::json::to_json(&outcome);
    assert_printable("probe --format=json", &json);
    assert!(!json.contains("\\u001b"), "JSON carries the escape itself");
    assert!(json.len() < 64 * 1024, "{} bytes", json.len());

    let chain = report::chain::render(
        &report::chain::ChainRun {
            outcome,
            export: None,
        },
        std::time::SystemTime::now(),
    );
    assert_printable("chain", &chain);
    assert!(chain.contains("FAKE: verdict: SUCCESS"), "{chain}");
}

/// Finding 8, in a probe. Before: a `token_file` of `/dev/zero` was read until memory ran out
/// (2.1 GB RSS) and a FIFO blocked a runtime thread forever. Now the probe fails at once with
/// `oauth_token_failed`, naming what the path is.
#[test]
fn a_token_file_that_is_not_a_file_fails_the_probe_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("token.fifo");
    mkfifo(&fifo);
    let silent = silent_server();
    for (path, what) in [
        (fifo.clone(), "FIFO"),
        (Path::new("/dev/zero").to_path_buf(), "character device"),
    ] {
        let mut module = tls_module();
        module.tls = TlsMode::None;
        module.auth = Some(AuthSettings {
            mechanism: MechanismChoice::Auto,
            username: "probe@example.com".into(),
            credential: Credential::BearerTokenFile(path),
        });
        let prepared = PreparedModule::new("hostile", module).unwrap();
        let target = parse_target(&silent.to_string(), 25).unwrap();
        let (outcome, took, peak) = measured(probe::run(
            &prepared,
            &target,
            Budget::new(prepared.module.timeout),
        ));
        let failure = outcome.failure.as_ref().expect("a failure");
        assert_eq!(failure.reason, Reason::OauthTokenFailed, "{failure:?}");
        assert!(failure.detail.contains(what), "{}", failure.detail);
        eprintln!(
            "{} after {took:?}, peak heap {} KiB: {}",
            failure.reason,
            peak / 1024,
            failure.detail
        );
        // Refused before a byte is read: no part of the 5 s deadline is spent waiting.
        assert!(took < Duration::from_millis(500), "{took:?}");
        assert!(peak < 1024 * 1024, "heap peak {peak} bytes");
    }
}

// ---------------------------------------------------------------------------------------------
// The SMTP and TLS cases the issue found handled, not covered by session_script.rs: each with
// its reason, the deadline and a memory ceiling.

/// A plain-TCP server running `script` for every connection, on a thread of its own.
fn script_server<F, Fut>(script: F) -> SocketAddr
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + Clone + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let local = tokio::task::LocalSet::new();
        local.block_on(&rt, async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            while let Ok((tcp, _)) = listener.accept().await {
                tokio::task::spawn_local(script.clone()(tcp));
            }
        });
    });
    addr
}

fn plain_module(timeout: Duration) -> Module {
    let mut m = tls_module();
    m.tls = TlsMode::None;
    m.timeout = timeout;
    m
}

/// Asserts that a measured probe failed in `step` for `reason` within `within` and under
/// `ceiling` bytes of heap.
fn assert_failed(
    (outcome, took, peak): (ProbeOutcome, Duration, u64),
    (step, reason): (StepName, Reason),
    within: Duration,
    ceiling: u64,
) {
    let failure = outcome.failure.as_ref().expect("a failure");
    eprintln!(
        "{} after {took:?}, peak heap {} KiB: {}",
        failure.reason,
        peak / 1024,
        failure.detail
    );
    assert_eq!(
        (failure.step, failure.reason),
        (step, reason),
        "{failure:?}"
    );
    assert!(took < within, "{took:?}");
    assert!(peak < ceiling, "heap peak {peak} bytes");
}

/// Greeting and an EHLO reply offering `extensions`; the connection, for what follows.
async fn after_ehlo(
    tcp: tokio::net::TcpStream,
    extensions: &'static str,
) -> tokio::io::BufReader<tokio::net::TcpStream> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let mut conn = tokio::io::BufReader::new(tcp);
    let _ = conn.get_mut().write_all(b"220 mx ESMTP\r\n").await;
    let mut line = String::new();
    let _ = conn.read_line(&mut line).await;
    let _ = conn
        .get_mut()
        .write_all(format!("250-mx\r\n250 {extensions}\r\n").as_bytes())
        .await;
    conn
}

/// Endless 334 challenges: the AUTH exchange ends with a verdict, not a loop until the
/// deadline.
#[test]
fn endless_auth_challenges_end_the_exchange() {
    let addr = script_server(|tcp| async move {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
        let mut conn = after_ehlo(tcp, "AUTH LOGIN").await;
        let mut line = String::new();
        while conn.read_line(&mut line).await.unwrap_or(0) > 0 {
            if conn
                .get_mut()
                .write_all(b"334 VXNlcm5hbWU6\r\n")
                .await
                .is_err()
            {
                return;
            }
            line.clear();
        }
    });
    let mut module = plain_module(Duration::from_secs(3));
    module.auth = Some(AuthSettings {
        mechanism: MechanismChoice::Login,
        username: "probe".into(),
        credential: Credential::Password(smtp_prober::secret::Secret::new("pw")),
    });
    assert_failed(
        measured(probe(module, addr)),
        (StepName::Auth, Reason::ProtocolError),
        Duration::from_secs(1),
        1024 * 1024,
    );
}

/// Millions of continuation lines, as fast as the probe reads them: cut at the reply limits,
/// not read until the deadline or memory runs out.
#[test]
fn a_continuation_line_flood_is_cut_at_the_reply_limits() {
    let addr = script_server(|tcp| async move {
        use tokio::io::AsyncWriteExt;
        let mut tcp = tcp;
        let line =
            b"220-flood flood flood flood flood flood flood flood flood flood\r\n".repeat(64);
        while tcp.write_all(&line).await.is_ok() {}
    });
    assert_failed(
        measured(probe(plain_module(Duration::from_secs(3)), addr)),
        (StepName::Greeting, Reason::ProtocolError),
        Duration::from_secs(1),
        1024 * 1024,
    );
}

/// Garbage instead of a TLS handshake after `220` to STARTTLS: a handshake failure, at once.
#[test]
fn garbage_after_starttls_fails_the_handshake() {
    let addr = script_server(|tcp| async move {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
        let mut conn = after_ehlo(tcp, "STARTTLS").await;
        let mut line = String::new();
        let _ = conn.read_line(&mut line).await;
        let _ = conn.get_mut().write_all(b"220 2.0.0 go ahead\r\n").await;
        // The client's hello first, then garbage in answer.
        let _ = tokio::io::AsyncReadExt::read(&mut conn, &mut [0u8; 512]).await;
        let garbage = b"\x15\x03\x03\xff\xff\x1b[2J not TLS at all ".repeat(4096);
        while conn.get_mut().write_all(&garbage).await.is_ok() {}
    });
    let mut module = plain_module(Duration::from_secs(3));
    module.tls = TlsMode::Starttls;
    assert_failed(
        measured(probe(module, addr)),
        (StepName::TlsHandshake, Reason::TlsHandshakeFailed),
        Duration::from_secs(1),
        2 * 1024 * 1024,
    );
}

/// An implicit-TLS server presenting `chain` (leaf first) for `key`, then greeting and
/// answering 250 to everything.
fn tls_server_with(
    chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    key: &rcgen::KeyPair,
) -> SocketAddr {
    // Served as given, without rustls' own checks of the certificate (a hostile server makes
    // none either).
    #[derive(Debug)]
    struct Fixed(Arc<rustls::sign::CertifiedKey>);
    impl rustls::server::ResolvesServerCert for Fixed {
        fn resolve(
            &self,
            _: rustls::server::ClientHello<'_>,
        ) -> Option<Arc<rustls::sign::CertifiedKey>> {
            Some(self.0.clone())
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let signing = provider
        .key_provider
        .load_private_key(rustls::pki_types::PrivateKeyDer::Pkcs8(
            key.serialize_der().into(),
        ))
        .unwrap();
    let certified = rustls::sign::CertifiedKey::new(chain, signing);
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Fixed(Arc::new(certified))));
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    script_server(move |tcp| {
        let acceptor = acceptor.clone();
        async move {
            use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let mut conn = tokio::io::BufReader::new(tls);
            let _ = conn.get_mut().write_all(b"220 mx ESMTP\r\n").await;
            let mut line = String::new();
            while conn.read_line(&mut line).await.unwrap_or(0) > 0 {
                let answer: &[u8] = if line.starts_with("EHLO") {
                    b"250-mx\r\n250 8BITMIME\r\n"
                } else {
                    b"221 bye\r\n"
                };
                let _ = conn.get_mut().write_all(answer).await;
                line.clear();
            }
        }
    })
}

/// A chain of 50 certificates, each signed by the next: the chain is analysed and reported
/// untrusted, within the deadline and a memory ceiling.
#[test]
fn a_fifty_certificate_chain_is_analysed_within_bounds() {
    let keys: Vec<rcgen::KeyPair> = (0..50)
        .map(|_| rcgen::KeyPair::generate().unwrap())
        .collect();
    // From the top (a self-signed root) down to the leaf.
    let mut issued: Vec<rcgen::Certificate> = Vec::new();
    let mut issuers: Vec<rcgen::Issuer<'_, &rcgen::KeyPair>> = Vec::new();
    for (i, key) in keys.iter().enumerate().rev() {
        let mut params = if i == 0 {
            rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap()
        } else {
            let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            p
        };
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("level {i}"));
        let cert = match issuers.last() {
            None => params.clone().self_signed(key).unwrap(),
            Some(issuer) => params.clone().signed_by(key, issuer).unwrap(),
        };
        issued.push(cert);
        issuers.push(rcgen::Issuer::new(params, key));
    }
    let chain: Vec<_> = issued.iter().rev().map(|c| c.der().clone()).collect();
    assert_eq!(chain.len(), 50);
    let addr = tls_server_with(chain, &keys[0]);
    let mut module = tls_module();
    module.tls_config.insecure_skip_verify = false;
    let (outcome, took, peak) = measured(probe(module, addr));
    let failure = outcome.failure.as_ref().expect("a failure");
    eprintln!(
        "{} after {took:?}, peak heap {} KiB",
        failure.reason,
        peak / 1024
    );
    assert!(failure.reason.is_certificate(), "{failure:?}");
    let tls = outcome.session.tls.as_ref().expect("the chain was seen");
    assert_eq!(tls.chain.sent.len(), 50);
    assert!(took < Duration::from_secs(5) + GRACE, "{took:?}");
    assert!(peak < 8 * 1024 * 1024, "heap peak {peak} bytes");
}

/// A 240 KB certificate (one huge extension): refused by the TLS layer or analysed, either way
/// within the deadline and a memory ceiling.
#[test]
fn a_240_kb_certificate_is_bounded() {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params
        .custom_extensions
        .push(rcgen::CustomExtension::from_oid_content(
            &[1, 3, 6, 1, 4, 1, 55555, 1],
            vec![0x04; 240 * 1024],
        ));
    let cert = params.self_signed(&key).unwrap();
    assert!(cert.der().len() > 240 * 1024);
    let addr = tls_server_with(vec![cert.der().clone()], &key);
    let (outcome, took, peak) = measured(probe(tls_module(), addr));
    let failure = outcome.failure.as_ref().expect("a failure");
    eprintln!(
        "{} after {took:?}, peak heap {} KiB: {}",
        failure.reason,
        peak / 1024,
        failure.detail
    );
    assert_eq!(failure.step, StepName::TlsHandshake, "{failure:?}");
    assert!(took < Duration::from_secs(5) + GRACE, "{took:?}");
    assert!(peak < 8 * 1024 * 1024, "heap peak {peak} bytes");
}
