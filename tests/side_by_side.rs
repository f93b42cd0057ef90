//! `smtp-prober probe` side by side with `openssl s_client -starttls smtp` on the usual broken
//! servers: full chain, leaf only, expired leaf, expired intermediate, wrong host, self-signed,
//! and implicit TLS (SMTPS) on port 465. Both run against the same embedded server with the
//! same trust anchor (the demo root, nothing else); the OpenSSL verify code we print next to
//! our reason must be the one OpenSSL itself prints, and on 465 we must say what the server
//! speaks where OpenSSL waits for a greeting that never comes.
//!
//! `cargo test --test side_by_side -- --nocapture` prints the table.

mod support;

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use smtp_prober::demo::{DemoPki, DemoServer, PkiOptions, Sent, ServerConfig, TlsMode};

const BIN: &str = env!("CARGO_BIN_EXE_smtp-prober");
const DAY: Duration = Duration::from_secs(86_400);

/// One broken (or healthy) server.
struct Scenario {
    name: &'static str,
    config: ServerConfig,
    /// The name both clients check the certificate against.
    server_name: &'static str,
    /// OpenSSL's verify return code; `None` where it gets no TLS session at all.
    openssl: Option<u32>,
    /// Our reason; `None` for a success.
    reason: Option<&'static str>,
    /// How the server uses TLS (filled in from `config`).
    config_tls: TlsMode,
}

fn scenarios() -> Vec<Scenario> {
    let now = SystemTime::now();
    let pki = |change: &dyn Fn(&mut PkiOptions)| {
        let mut options = PkiOptions::new(&["localhost"]);
        change(&mut options);
        Arc::new(DemoPki::with_options(&options).expect("a PKI"))
    };
    let with = |pki: Arc<DemoPki>, sent: Sent| ServerConfig {
        pki,
        sent,
        ..ServerConfig::default()
    };
    vec![
        Scenario {
            name: "full chain",
            config: with(pki(&|_| {}), Sent::Full),
            server_name: "localhost",
            openssl: Some(0),
            reason: None,
            config_tls: TlsMode::Starttls,
        },
        Scenario {
            name: "leaf only",
            config: with(pki(&|_| {}), Sent::LeafOnly),
            server_name: "localhost",
            openssl: Some(20),
            reason: Some("cert_incomplete_chain"),
            config_tls: TlsMode::Starttls,
        },
        Scenario {
            name: "expired leaf",
            config: with(
                pki(&|o| {
                    o.leaf_not_before = now - 30 * DAY;
                    o.leaf_not_after = now - DAY;
                }),
                Sent::Full,
            ),
            server_name: "localhost",
            openssl: Some(10),
            reason: Some("cert_expired"),
            config_tls: TlsMode::Starttls,
        },
        Scenario {
            name: "expired intermediate",
            config: with(pki(&|o| o.intermediate_not_after = now - DAY), Sent::Full),
            server_name: "localhost",
            openssl: Some(10),
            reason: Some("cert_expired"),
            config_tls: TlsMode::Starttls,
        },
        Scenario {
            name: "wrong host",
            config: with(pki(&|_| {}), Sent::Full),
            server_name: "mail.other.test",
            openssl: Some(62),
            reason: Some("cert_hostname_mismatch"),
            config_tls: TlsMode::Starttls,
        },
        Scenario {
            name: "self-signed",
            config: with(pki(&|o| o.self_signed_leaf = true), Sent::LeafOnly),
            server_name: "localhost",
            openssl: Some(18),
            reason: Some("cert_self_signed"),
            config_tls: TlsMode::Starttls,
        },
        Scenario {
            name: "implicit TLS on 465",
            config: ServerConfig {
                listen: "127.0.0.49:465".parse().unwrap(),
                tls: TlsMode::Implicit,
                ..ServerConfig::default()
            },
            server_name: "localhost",
            openssl: None,
            reason: Some("tls_mode_mismatch"),
            config_tls: TlsMode::Starttls,
        },
    ]
}

/// What a command printed that matters here.
struct Said {
    lines: String,
    code: Option<u32>,
}

/// `openssl s_client -starttls smtp` with the demo root as its only anchor: its verify result
/// (or, when it never gets a TLS session, its last words) within a few seconds.
async fn openssl(addr: SocketAddr, ca: &std::path::Path, server_name: &str) -> Said {
    let mut command = tokio::process::Command::new("openssl");
    command
        .args([
            "s_client",
            "-starttls",
            "smtp",
            "-connect",
            &addr.to_string(),
        ])
        .args(["-servername", server_name, "-verify_hostname", server_name])
        .arg("-CAfile")
        .arg(ca)
        .args(["-no-CApath", "-no-CAstore", "-verify_return_error"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().expect("openssl runs");
    // OpenSSL waits for the greeting as long as the server keeps the connection: give it 5 s.
    if tokio::time::timeout(Duration::from_secs(5), child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
        let mut printed = String::new();
        if let Some(mut stdout) = child.stdout.take() {
            use tokio::io::AsyncReadExt as _;
            let _ = stdout.read_to_string(&mut printed).await;
        }
        let printed = match printed.trim() {
            "" => "nothing".to_string(),
            text => format!("{text}, then nothing"),
        };
        return Said {
            lines: format!("{printed}: still waiting for a greeting after 5 s (stopped there)"),
            code: None,
        };
    }
    let output = child.wait_with_output().await.expect("openssl output");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let verify = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("Verify return code: "));
    let error = stderr
        .lines()
        .find(|l| l.starts_with("verify error:num="))
        .map(str::to_string);
    let code = verify.and_then(|v| v.split(' ').next()?.parse().ok());
    let depth = stderr
        .lines()
        .take_while(|l| !l.starts_with("verify error:num="))
        .filter(|l| l.starts_with("depth="))
        .last()
        .and_then(|l| l.split_whitespace().next())
        .map(|d| format!("{d} "))
        .unwrap_or_default();
    let lines = match (error, verify) {
        (Some(e), Some(v)) => format!("{depth}{e} / Verify return code: {v}"),
        (None, Some(v)) => format!("Verify return code: {v}"),
        (_, None) => stderr.lines().last().unwrap_or_default().to_string(),
    };
    Said { lines, code }
}

/// `smtp-prober probe` with the same anchor and `tls` (`--tls=starttls` is what `openssl
/// s_client -starttls smtp` does): its verdict line, the OpenSSL line it prints next to it,
/// and the verify code of its JSON.
async fn ours(
    addr: SocketAddr,
    ca: &std::path::Path,
    server_name: &str,
    tls: &'static str,
) -> (Said, String) {
    let run = |format: &'static str| {
        let mut command = tokio::process::Command::new(BIN);
        command
            .args(["probe", &addr.to_string(), "--trust=", "--timeout=10s", tls])
            .arg(format!("--ca-file={}", ca.display()))
            .arg(format!("--server-name={server_name}"))
            .arg(format!("--format={format}"))
            .kill_on_drop(true);
        command.output()
    };
    let text = run("text").await.expect("smtp-prober runs");
    let text = String::from_utf8_lossy(&text.stdout).into_owned();
    let json = run("json").await.expect("smtp-prober runs");
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON");
    let reason = json["reason"].as_str().unwrap_or_default().to_string();
    let verdict = text
        .lines()
        .filter(|l| l.starts_with("verdict: ") || l.starts_with("openssl: "))
        .collect::<Vec<_>>()
        .join(" / ");
    let code = json["tls"]["openssl_verify_code"]
        .as_u64()
        .map(|c| c as u32);
    (
        Said {
            lines: verdict,
            code,
        },
        reason,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_verdicts_side_by_side_with_openssl() {
    if !support::programs::installed(
        "our_verdicts_side_by_side_with_openssl",
        &["openssl"],
        "openssl",
    ) {
        return;
    }
    let mut table = String::from(
        "| scenario | `openssl s_client -starttls smtp` prints | `smtp-prober probe` prints | \
         same verify code |\n|---|---|---|---|\n",
    );
    for s in scenarios() {
        let config_tls = s.config.tls;
        let s = Scenario { config_tls, ..s };
        let server = match DemoServer::start(s.config.clone()).await {
            Ok(server) => server,
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                eprintln!("{}: skipped, cannot bind port 465 ({e})", s.name);
                continue;
            }
            Err(e) => panic!("{}: {e}", s.name),
        };
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("root.pem");
        std::fs::write(&ca, server.pki().root_pem()).unwrap();
        let theirs = openssl(server.addr(), &ca, s.server_name).await;
        let (mut mine, reason) = ours(server.addr(), &ca, s.server_name, "--tls=starttls").await;
        if s.config_tls == TlsMode::Implicit {
            // Without --tls, port 465 means implicit TLS: what a mail client does there.
            let (auto, reason) = ours(server.addr(), &ca, s.server_name, "--tls=auto").await;
            assert_eq!(reason, "", "{}", auto.lines);
            mine.lines = format!(
                "{} — and without --tls (auto by port): {}",
                mine.lines, auto.lines
            );
        }
        let name = s.name;
        assert_eq!(
            theirs.code, s.openssl,
            "{name}: openssl said {}",
            theirs.lines
        );
        assert_eq!(
            (!reason.is_empty()).then_some(reason.as_str()),
            s.reason,
            "{name}: we said {}",
            mine.lines
        );
        if s.openssl.is_some() {
            assert_eq!(mine.code, theirs.code, "{name}: {}", mine.lines);
        }
        let same = match (theirs.code, mine.code) {
            (Some(a), Some(b)) if a == b => format!("yes ({a})"),
            (None, _) => "no code: openssl gets no TLS session".to_string(),
            (a, b) => format!("NO: {a:?} / {b:?}"),
        };
        table.push_str(&format!(
            "| {name} | {} | {} | {same} |\n",
            theirs.lines.replace('|', "\\|"),
            mine.lines.replace('|', "\\|")
        ));
        server.shutdown().await;
    }
    println!("{table}");
}
