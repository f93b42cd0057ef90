//! `smtp-prober chain` through the real binary against the embedded server: its exit codes, and
//! that the files `--export-dir` writes, given to `probe` as `--ca-file`, turn a failing probe
//! into a passing one.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use smtp_prober::demo::ocsp::OcspCertStatus;
use smtp_prober::demo::{DemoPki, DemoServer, PkiOptions, Sent, ServerConfig};

const BIN: &str = env!("CARGO_BIN_EXE_smtp-prober");

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Runs the binary with `args` (the server keeps running on the test's runtime meanwhile).
async fn smtp_prober(args: &[&str]) -> Run {
    let mut command = tokio::process::Command::new(BIN);
    command.args(args).kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(30), command.output())
        .await
        .expect("smtp-prober finished within 30 s")
        .expect("smtp-prober runs");
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn write(dir: &Path, name: &str, pem: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, pem).unwrap();
    path.display().to_string()
}

fn pem_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn arg(prefix: &str, path: impl Into<PathBuf>) -> String {
    format!("{prefix}{}", path.into().display())
}

/// The server sends leaf and intermediate; the client trusts only the bundled Mozilla roots and
/// so lacks the private root: the probe fails with cert_unknown_issuer. `chain`, given a CA
/// bundle that holds the root, exports it, and the probe with that file passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exported_root_makes_an_unknown_issuer_probe_pass() {
    let server = DemoServer::start(ServerConfig::default()).await.unwrap();
    let target = server.addr().to_string();
    let dir = tempfile::tempdir().unwrap();
    let bundle = write(dir.path(), "bundle.pem", server.pki().root_pem());
    let export = dir.path().join("export");
    let base = [
        target.as_str(),
        "--tls=starttls",
        "--ehlo=probe.test",
        "--trust=bundled",
    ];

    let before = smtp_prober(&[&["probe"][..], &base].concat()).await;
    assert_eq!(before.code, Some(1), "{before:?}");
    assert!(before.stdout.contains("cert_unknown_issuer"), "{before:?}");

    let chain = smtp_prober(
        &[
            &["chain"][..],
            &base,
            &[&arg("--ca-file=", &bundle), &arg("--export-dir=", &export)],
        ]
        .concat(),
    )
    .await;
    assert_eq!(chain.code, Some(0), "{chain:?}");
    assert_eq!(pem_files(&export), ["2-smtp-prober-demo-root-ca.pem"]);
    let root = export.join("2-smtp-prober-demo-root-ca.pem");
    assert_eq!(
        std::fs::read_to_string(&root).unwrap(),
        server.pki().root_pem(),
        "the exported file is the root, PEM as the CA wrote it"
    );
    assert!(
        chain.stdout.contains(&root.display().to_string()),
        "{chain:?}"
    );

    let after = smtp_prober(&[&["probe"][..], &base, &[&arg("--ca-file=", &root)]].concat()).await;
    assert_eq!(after.code, Some(0), "{after:?}");
    assert!(after.stdout.contains("verdict: SUCCESS"), "{after:?}");
}

/// The server sends its leaf only. `chain`, given a bundle with intermediate and root, verifies
/// (exit 0: the chain is valid for this client) and exports both, saying the intermediate is
/// not a trust anchor (before: "Import these into the client's trust store as trusted CA
/// certificates" for both); the probe that failed with cert_incomplete_chain passes with the
/// two files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exported_intermediate_and_root_make_an_incomplete_chain_probe_pass() {
    let server = DemoServer::start(ServerConfig {
        sent: Sent::LeafOnly,
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let target = server.addr().to_string();
    let dir = tempfile::tempdir().unwrap();
    let pki = server.pki();
    let bundle = write(
        dir.path(),
        "bundle.pem",
        &format!("{}{}", pki.intermediate_pem(), pki.root_pem()),
    );
    let export = dir.path().join("export");
    let base = [
        target.as_str(),
        "--tls=starttls",
        "--ehlo=probe.test",
        "--trust=bundled",
    ];

    let before = smtp_prober(&[&["probe"][..], &base].concat()).await;
    assert_eq!(before.code, Some(1), "{before:?}");
    assert!(
        before.stdout.contains("cert_incomplete_chain"),
        "{before:?}"
    );

    // Without a source for the intermediate, chain says what to look for and exits 1.
    let lost = smtp_prober(&[&["chain"][..], &base].concat()).await;
    assert_eq!(lost.code, Some(1), "{lost:?}");
    assert!(
        lost.stdout.contains(
            "Look for the certificate of \"CN=smtp-prober demo intermediate CA,O=smtp-prober demo\""
        ),
        "{lost:?}"
    );

    let chain = smtp_prober(
        &[
            &["chain"][..],
            &base,
            &[&arg("--ca-file=", &bundle), &arg("--export-dir=", &export)],
        ]
        .concat(),
    )
    .await;
    assert_eq!(chain.code, Some(0), "{chain:?}");
    assert!(
        chain
            .stdout
            .contains("intermediate supplied locally: depth 1"),
        "{chain:?}"
    );
    assert_eq!(
        pem_files(&export),
        [
            "1-smtp-prober-demo-intermediate-ca.pem",
            "2-smtp-prober-demo-root-ca.pem"
        ]
    );
    // The intermediate is never called a trust anchor: its line says where it goes.
    let intermediate = chain
        .stdout
        .lines()
        .skip_while(|l| !l.contains("1-smtp-prober-demo-intermediate-ca.pem"))
        .take(2)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(intermediate.contains("NOT a trust anchor"), "{chain:?}");
    assert!(intermediate.contains("server's chain file"), "{chain:?}");
    assert!(!intermediate.contains("as a trusted CA"), "{chain:?}");
    assert!(!chain.stdout.contains("Import these"), "{chain:?}");

    let after = smtp_prober(
        &[
            &["probe"][..],
            &base,
            &[
                &arg(
                    "--ca-file=",
                    export.join("1-smtp-prober-demo-intermediate-ca.pem"),
                ),
                &arg("--ca-file=", export.join("2-smtp-prober-demo-root-ca.pem")),
            ],
        ]
        .concat(),
    )
    .await;
    assert_eq!(after.code, Some(0), "{after:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes() {
    // Usage: chain needs TLS; an unknown trust source.
    let usage = smtp_prober(&["chain", "127.0.0.1:2525", "--tls=none"]).await;
    assert_eq!(usage.code, Some(2), "{usage:?}");
    assert!(usage.stderr.contains("needs TLS"), "{usage:?}");
    let usage = smtp_prober(&["chain", "127.0.0.1:2525", "--trust=nonsense"]).await;
    assert_eq!(usage.code, Some(2), "{usage:?}");

    // No TLS session at all: nothing listens there.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = listener.local_addr().unwrap().to_string();
    drop(listener);
    let refused = smtp_prober(&["chain", &closed, "--tls=starttls", "--trust=bundled"]).await;
    assert_eq!(refused.code, Some(1), "{refused:?}");
    assert!(refused.stdout.contains("connect_refused"), "{refused:?}");

    // An export directory that cannot be created: the report is printed, the exit is 2.
    let server = DemoServer::start(ServerConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, "not a directory").unwrap();
    let root = write(dir.path(), "root.pem", server.pki().root_pem());
    let blocked = smtp_prober(&[
        "chain",
        &server.addr().to_string(),
        "--tls=starttls",
        "--trust=",
        &arg("--ca-file=", &root),
        &arg("--export-dir=", blocker.join("sub")),
    ])
    .await;
    assert_eq!(blocked.code, Some(2), "{blocked:?}");
    assert!(blocked.stdout.contains("Verdict: VALID"), "{blocked:?}");
    assert!(blocked.stderr.contains("--export-dir"), "{blocked:?}");
}

/// Advice and export agree: for a self-signed server, chain advises trusting its certificate
/// after checking the fingerprint and `--export-dir` writes exactly that certificate (before: it
/// advised adding a certificate and then wrote "nothing written"); for a server that sends a
/// root nobody trusts, the same with that root.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_chain_advises_to_trust_is_what_it_exports() {
    let mut options = PkiOptions::new(&["localhost"]);
    options.self_signed_leaf = true;
    let pki = Arc::new(DemoPki::with_options(&options).unwrap());
    let self_signed = DemoServer::start(ServerConfig {
        pki: pki.clone(),
        sent: Sent::LeafOnly,
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let with_root = DemoServer::start(ServerConfig {
        sent: Sent::WithRoot,
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    for (server, expected_file, expected_pem, role) in [
        (
            &self_signed,
            "0-localhost.pem",
            pki.leaf.pem.clone(),
            "self signed server",
        ),
        (
            &with_root,
            "2-smtp-prober-demo-root-ca.pem",
            with_root.pki().root_pem().to_string(),
            "untrusted root",
        ),
    ] {
        let export = dir.path().join(expected_file);
        let chain = smtp_prober(&[
            "chain",
            &server.addr().to_string(),
            "--trust=bundled",
            "--server-name=localhost",
            &arg("--export-dir=", &export),
        ])
        .await;
        assert_eq!(chain.code, Some(1), "{chain:?}");
        assert!(chain.stdout.contains("--export-dir writes"), "{chain:?}");
        assert!(!chain.stdout.contains("nothing written"), "{chain:?}");
        assert_eq!(pem_files(&export), [expected_file], "{chain:?}");
        assert_eq!(
            std::fs::read_to_string(export.join(expected_file)).unwrap(),
            expected_pem
        );
        assert!(chain.stdout.contains(role), "{chain:?}");
        assert!(
            chain.stdout.contains("only after"),
            "trusting it waits for the fingerprint: {chain:?}"
        );
    }
}

/// `chain --format=json --show-sent`: the report as JSON, with the PEM of each certificate the
/// server sent (what `openssl s_client -showcerts` prints), and OpenSSL's verify code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chain_as_json_with_the_sent_certificates() {
    let server = DemoServer::start(ServerConfig {
        ocsp: Some(OcspCertStatus::Good),
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let run = smtp_prober(&[
        "chain",
        &server.addr().to_string(),
        "--trust=bundled",
        "--server-name=localhost",
        "--format=json",
        "--show-sent",
    ])
    .await;
    assert_eq!(run.code, Some(1), "{run:?}");
    let doc: serde_json::Value = serde_json::from_str(&run.stdout).expect("JSON");
    let tls = &doc["tls"];
    assert_eq!(tls["reason"], "cert_unknown_issuer");
    assert_eq!(tls["openssl_verify_code"], 20);
    assert_eq!(
        tls["openssl_verify_text"],
        "unable to get local issuer certificate"
    );
    assert_eq!(tls["cipher"], "TLS_AES_128_GCM_SHA256");
    assert_eq!(tls["ocsp"]["cert_status"], "good");
    let sent = tls["sent"].as_array().unwrap();
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0]["pem"], server.pki().leaf.pem.as_str());
    assert_eq!(sent[1]["pem"], server.pki().intermediate_pem());
    assert_eq!(sent[0]["notes"][0], "leaf");
    assert!(tls["advice"].as_array().unwrap().len() >= 2, "{doc:#}");
    assert!(doc["session_failure"].is_null());

    // The same with text: the PEM blocks follow each sent certificate.
    let text = smtp_prober(&[
        "chain",
        &server.addr().to_string(),
        "--trust=bundled",
        "--server-name=localhost",
        "--show-sent",
    ])
    .await;
    assert!(
        text.stdout.contains(server.pki().intermediate_pem()),
        "{text:?}"
    );
    assert!(
        text.stdout
            .contains("openssl: Verify return code: 20 (unable to get local issuer certificate)"),
        "{text:?}"
    );
}
