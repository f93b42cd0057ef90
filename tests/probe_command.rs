//! `smtp-prober probe` through the real binary against the embedded server: the transcript
//! printed line by line as the probe runs (a hang shows where it hangs while it hangs), and
//! a scheduled target of a configuration file run by name.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use smtp_prober::demo::{DemoServer, ServerConfig, Verb};

const BIN: &str = env!("CARGO_BIN_EXE_smtp-prober");

/// The server stops answering after STARTTLS's EHLO: the lines up to the EHLO sent over TLS
/// are on stdout while the probe still waits, seconds before its deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_transcript_streams_while_the_server_hangs() {
    let server = DemoServer::start(ServerConfig::default().stall_at(Verb::EhloTls))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root.pem");
    std::fs::write(&root, server.pki().root_pem()).unwrap();
    let mut child = Command::new(BIN)
        .args(["probe", &server.addr().to_string(), "--tls=starttls"])
        .args(["--server-name=localhost", "--trust=", "--timeout=8s"])
        .arg(format!("--ca-file={}", root.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send((started.elapsed(), line)).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let waiting = loop {
        let (at, line) = rx
            .recv_timeout(Duration::from_secs(5))
            .unwrap_or_else(|_| panic!("no EHLO over TLS within 5 s; so far: {seen:#?}"));
        let done = line.contains("ehlo_tls") && line.contains("-> EHLO");
        seen.push(line);
        if done {
            break at;
        }
    };
    assert!(
        waiting < Duration::from_secs(4),
        "the line came at {waiting:?}, not as it happened"
    );
    assert!(
        child.try_wait().unwrap().is_none(),
        "the probe is still waiting for the reply"
    );
    assert!(
        seen.iter().any(|l| l.contains("tls_handshake")),
        "{seen:#?}"
    );
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(1));
    let rest: Vec<String> = rx.try_iter().map(|(_, l)| l).collect();
    assert!(
        rest.iter()
            .any(|l| l.starts_with("verdict: FAILED in step ehlo_tls: timeout")),
        "{rest:#?}"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(7),
        "the deadline was kept"
    );
}

/// `probe --config.file=F --target-name=NAME` runs a scheduled target as configured: its
/// address and its module; an unknown name is a usage error that lists the targets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_target_runs_by_name() {
    let server = DemoServer::start(ServerConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root.pem");
    std::fs::write(&root, server.pki().root_pem()).unwrap();
    let config = dir.path().join("smtp-prober.yml");
    std::fs::write(
        &config,
        format!(
            "modules:\n  demo:\n    tls: starttls\n    ehlo: probe.example.test\n    \
             tls_config: {{server_name: localhost, trust: [], ca_files: [\"{}\"]}}\n\
             targets:\n  - name: demo-server\n    target: \"{}\"\n    module: demo\n",
            root.display(),
            server.addr()
        ),
    )
    .unwrap();
    let config_arg = format!("--config.file={}", config.display());
    let run = |args: &[&str]| {
        Command::new(BIN)
            .args(args)
            .output()
            .expect("smtp-prober runs")
    };
    let ok = run(&["probe", &config_arg, "--target-name=demo-server"]);
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert_eq!(ok.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.starts_with(&format!("probe {} (module demo,", server.addr())),
        "{stdout}"
    );
    assert!(stdout.contains("-> EHLO probe.example.test"), "{stdout}");

    let unknown = run(&["probe", &config_arg, "--target-name=nope"]);
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert_eq!(unknown.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("no target named \"nope\"") && stderr.contains("demo-server"),
        "{stderr}"
    );
}

/// Without --tls, a target on port 465 is probed with implicit TLS (SMTPS), as clients do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_465_means_implicit_tls_by_default() {
    let listen: std::net::SocketAddr = "127.0.0.47:465".parse().unwrap();
    let server = match DemoServer::start(ServerConfig {
        listen,
        tls: smtp_prober::demo::TlsMode::Implicit,
        ..ServerConfig::default()
    })
    .await
    {
        Ok(server) => server,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            eprintln!(
                "skipping port_465_means_implicit_tls_by_default: cannot bind {listen} ({e})"
            );
            return;
        }
        Err(e) => panic!("binding {listen}: {e}"),
    };
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root.pem");
    std::fs::write(&root, server.pki().root_pem()).unwrap();
    let out = tokio::process::Command::new(BIN)
        .args([
            "probe",
            &listen.to_string(),
            "--server-name=localhost",
            "--trust=",
        ])
        .arg(format!("--ca-file={}", root.display()))
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let handshake = stdout.find("tls_handshake").expect("a handshake");
    let greeting = stdout.find("greeting").expect("a greeting");
    assert!(handshake < greeting, "TLS first: {stdout}");
}

/// What the help texts and the example configuration point at ships with the program: no
/// "DESIGN §7" (a document users do not have), no `docs/` file that does not exist.
#[test]
fn help_and_example_configuration_point_at_what_ships() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for command in [
        &["--help"][..],
        &["probe", "--help"],
        &["chain", "--help"],
        &["check-config", "--help"],
        &["demo", "--help"],
    ] {
        let out = Command::new(BIN).args(command).output().unwrap();
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(!help.contains("DESIGN"), "{command:?}: {help}");
    }
    let example = std::fs::read_to_string(root.join("config/smtp-prober.yml")).unwrap();
    for word in example.split(|c: char| c.is_whitespace() || c == '(' || c == ')' || c == ',') {
        let word = word.trim_end_matches(['.', ':', ';']);
        if word.starts_with("docs/") || word.ends_with(".md") {
            assert!(
                root.join(word).exists(),
                "config/smtp-prober.yml names {word}, which does not ship"
            );
        }
    }
}
