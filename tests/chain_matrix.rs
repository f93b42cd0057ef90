//! The certificate chain matrix: generated chains served by the embedded STARTTLS server and by
//! a real Postfix (one STARTTLS port per chain file, tests/support/mailstack.rs), each judged by
//! our chain report (`smtp-prober chain`) and by `openssl s_client -starttls smtp
//! -verify_return_error` (OpenSSL 3.0) run in the test as the reference, with the same trust
//! anchors on both sides. The chain metrics of DESIGN §6 are checked on four of them.
//!
//! How OpenSSL's verdicts map to ours, and where they legitimately differ:
//! - 0 (ok) is a valid chain for us too. OpenSSL has no opinion on how the chain was sent; we
//!   also flag a root sent needlessly, a wrong order, duplicates, unrelated certificates and an
//!   intermediate supplied from a local CA file (`probe_tls_chain_sent_complete 0`), none of which
//!   makes a chain invalid for either side.
//! - 20 (unable to get local issuer certificate) and 2 (unable to get issuer certificate) cover
//!   both `cert_incomplete_chain` (building stops at the leaf: the server did not send the
//!   intermediate) and `cert_unknown_issuer` (building stops at a CA certificate: no trust source
//!   holds the root). OpenSSL cannot tell them apart; we do, and both sides agree on the depth
//!   where building stopped.
//! - 19 (self-signed certificate in certificate chain: the server sent a root nobody trusts) is
//!   `cert_unknown_issuer` for us, ending at that root.
//! - 18 (self-signed certificate) is `cert_self_signed`; 10 `cert_expired`; 9
//!   `cert_not_yet_valid`; 62 `cert_hostname_mismatch`; 7 and 4 `cert_bad_signature`. For these
//!   the depth OpenSSL reports is the depth we name.
//! - With several faults at once the two may name different ones: OpenSSL checks signatures and
//!   dates from the anchor down and stops at the first fault, we report the first from the leaf
//!   up. Every scenario here has a single fault.
//! - OpenSSL also checks the validity dates of the trust anchor itself (`openssl verify` says
//!   "error 10 at 1 depth lookup: certificate has expired" for an expired root in its CA file);
//!   webpki (and so we) does not, as RFC 5280 §6.1 takes the anchor as given. No scenario here
//!   has an expired anchor: the embedded server's PKI always has a valid root.
//! - 7 (certificate signature failure) needs a signature that fails although names and key
//!   identifiers match (a corrupted certificate). An intermediate of the same name with another
//!   key is not a bad signature for either side: its key identifier rules it out, and both report
//!   the issuer as not found.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls_pki_types::CertificateDer;
use smtp_prober::cli::chain;
use smtp_prober::demo::{DemoPki, DemoServer, KeyKind, PkiOptions, Sent, ServerConfig};
use smtp_prober::probe::module::{Module, TlsMode};
use smtp_prober::probe::target::parse_target;
use smtp_prober::probe::PreparedModule;
use smtp_prober::report;
use smtp_prober::report::chain::ChainRun;
use smtp_prober::smtp::command::ClientName;
use smtp_prober::tls::{ChainFlags, ChainReport, TlsSettings};
use smtp_prober::vocab::Reason;
use support::mailstack::{MailStack, ServedChain};

const DAY: Duration = Duration::from_secs(86_400);
const OPENSSL: &str = "/usr/bin/openssl";

/// Which certificates the test client trusts (both ours and OpenSSL's `-CAfile`).
#[derive(Clone, Copy, Debug)]
enum Trust {
    /// The demo root.
    Root,
    /// The demo intermediate and root.
    IntermediateAndRoot,
    /// A root of another CA: nothing that issued this chain.
    Unrelated,
    /// A root with the demo root's name but another key (the CA re-keyed; the client holds the
    /// old root).
    Namesake,
}

/// Which certificates the server sends.
#[derive(Clone, Copy, Debug)]
enum Send {
    Full,
    LeafOnly,
    WithRoot,
    /// Leaf, root, intermediate.
    WrongOrder,
    /// Leaf, intermediate, intermediate.
    Duplicate,
    /// Leaf, then the intermediate with one byte of its signature changed.
    CorruptIntermediate,
}

/// OpenSSL's verdict: the verify error and the depth it names (`None` when it verified).
#[derive(Clone, Debug, PartialEq, Eq)]
struct OpensslVerdict {
    code: u32,
    text: String,
    depth: Option<usize>,
}

struct Scenario {
    name: &'static str,
    pki: PkiOptions,
    send: Send,
    trust: Trust,
    server_name: &'static str,
    /// Our expected verdict: reason and depth (`ChainError::depth`; for a missing certificate,
    /// the depth where building stopped).
    ours: Option<(Reason, usize)>,
    /// OpenSSL's expected verify return code.
    openssl: u32,
}

fn scenario(name: &'static str) -> Scenario {
    Scenario {
        name,
        pki: PkiOptions::new(&[]),
        send: Send::Full,
        trust: Trust::Root,
        server_name: "localhost",
        ours: None,
        openssl: 0,
    }
}

/// What one scenario produced on both sides.
struct Judged {
    run: ChainRun,
    openssl: OpensslVerdict,
    pki: Arc<DemoPki>,
    _dir: tempfile::TempDir,
}

impl Judged {
    fn chain(&self) -> &ChainReport {
        &self.run.tls().expect("a TLS session").chain
    }

    fn metrics(&self) -> String {
        report::metrics::render(&self.run.outcome)
    }

    fn text(&self) -> String {
        report::chain::render(&self.run, SystemTime::now())
    }
}

/// OpenSSL verify codes and the reasons each may mean for us (see the module doc).
fn reasons_for_openssl(code: u32) -> Option<&'static [Reason]> {
    Some(match code {
        0 => &[],
        2 | 20 | 21 => &[Reason::CertIncompleteChain, Reason::CertUnknownIssuer],
        19 => &[Reason::CertUnknownIssuer],
        18 => &[Reason::CertSelfSigned],
        10 => &[Reason::CertExpired],
        9 => &[Reason::CertNotYetValid],
        62 => &[Reason::CertHostnameMismatch],
        4 | 7 => &[Reason::CertBadSignature],
        _ => return None,
    })
}

fn sent_of(pki: &DemoPki, send: Send) -> Sent {
    match send {
        Send::Full => Sent::Full,
        Send::LeafOnly => Sent::LeafOnly,
        Send::WithRoot => Sent::WithRoot,
        Send::WrongOrder => Sent::Custom(vec![
            pki.leaf.der.clone(),
            pki.root.der.clone(),
            pki.intermediate.der.clone(),
        ]),
        Send::Duplicate => Sent::Custom(vec![
            pki.leaf.der.clone(),
            pki.intermediate.der.clone(),
            pki.intermediate.der.clone(),
        ]),
        Send::CorruptIntermediate => Sent::Custom(vec![
            pki.leaf.der.clone(),
            corrupt_signature(&pki.intermediate.der),
        ]),
    }
}

/// The certificate with the last byte of its signature changed: still well-formed DER (the byte
/// is inside the signature's last integer, or Ed25519's raw bytes), no longer verifiable.
fn corrupt_signature(der: &[u8]) -> CertificateDer<'static> {
    let mut bytes = der.to_vec();
    if let Some(last) = bytes.last_mut() {
        *last ^= 0x01;
    }
    CertificateDer::from(bytes)
}

fn ca_file(dir: &Path, pki: &DemoPki, trust: Trust) -> PathBuf {
    let pem = match trust {
        Trust::Root => pki.root_pem().to_string(),
        Trust::IntermediateAndRoot => format!("{}{}", pki.intermediate_pem(), pki.root_pem()),
        Trust::Unrelated => unrelated_root_pem(),
        Trust::Namesake => DemoPki::generate(&[]).unwrap().root_pem().to_string(),
    };
    let path = dir.join("ca.pem");
    std::fs::write(&path, pem).unwrap();
    path
}

/// A self-signed CA certificate of another CA.
fn unrelated_root_pem() -> String {
    let mut params = rcgen::CertificateParams::default();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Unrelated Root CA");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
    let key = rcgen::KeyPair::generate().unwrap();
    params.self_signed(&key).unwrap().pem()
}

/// The module of a `chain` run that trusts only `ca`.
fn chain_module(ca: &Path, server_name: &str) -> Module {
    chain::chain_module(Module {
        tls: TlsMode::Starttls,
        timeout: Duration::from_secs(10),
        ehlo: ClientName::new("probe.test").unwrap(),
        tls_config: TlsSettings {
            trust: vec![],
            ca_files: vec![ca.to_path_buf()],
            server_name: Some(server_name.to_string()),
            ..TlsSettings::default()
        },
        ..Module::default()
    })
    .unwrap()
}

/// Runs `openssl s_client -starttls smtp -verify_return_error` against `port` with `ca` as its
/// only trust source, and reads its verdict.
async fn openssl_verdict(port: u16, ca: &Path, server_name: &str) -> OpensslVerdict {
    let connect = format!("127.0.0.1:{port}");
    let mut command = tokio::process::Command::new(OPENSSL);
    command
        .args(["s_client", "-starttls", "smtp", "-connect", &connect])
        .args(["-servername", server_name, "-verify_hostname", server_name])
        .arg("-CAfile")
        .arg(ca)
        // Only the CA file: neither the system's CA directory nor its store.
        .args(["-no-CApath", "-no-CAstore", "-verify_return_error"])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(20), command.output())
        .await
        .expect("openssl s_client finished within 20 s")
        .expect("openssl runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    parse_openssl(&stdout, &stderr)
        .unwrap_or_else(|| panic!("no verdict from openssl:\n{stdout}\n{stderr}"))
}

/// Reads `Verify return code: N (text)` from stdout and, for an error, the `depth=D` line just
/// before `verify error:num=N` on stderr.
fn parse_openssl(stdout: &str, stderr: &str) -> Option<OpensslVerdict> {
    let line = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("Verify return code: "))?;
    let (code, rest) = line.split_once(' ')?;
    let code: u32 = code.parse().ok()?;
    let text = rest
        .trim_start_matches('(')
        .trim_end_matches(')')
        .to_string();
    let mut depth = None;
    let mut last_depth = None;
    for l in stderr.lines() {
        if let Some(rest) = l.strip_prefix("depth=") {
            last_depth = rest.split_whitespace().next().and_then(|d| d.parse().ok());
        } else if l.starts_with(&format!("verify error:num={code}:")) && depth.is_none() {
            depth = last_depth;
        }
    }
    Some(OpensslVerdict { code, text, depth })
}

/// Serves the scenario's chain from the embedded server, runs `chain` and OpenSSL against it,
/// and checks both verdicts and the relation between them.
async fn judge(s: Scenario) -> Judged {
    let pki = Arc::new(DemoPki::with_options(&s.pki).unwrap());
    let server = DemoServer::start(ServerConfig {
        pki: pki.clone(),
        sent: sent_of(&pki, s.send),
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let judged = judge_at(&s, server.addr(), pki).await;
    server.shutdown().await;
    judged
}

/// Runs `chain` and OpenSSL against the server at `addr`, which serves `pki` as `s` says, and
/// checks both verdicts and the relation between them.
async fn judge_at(s: &Scenario, addr: SocketAddr, pki: Arc<DemoPki>) -> Judged {
    let dir = tempfile::tempdir().unwrap();
    let ca = ca_file(dir.path(), &pki, s.trust);

    let prepared = PreparedModule::new("chain", chain_module(&ca, s.server_name)).unwrap();
    let target = parse_target(&addr.to_string(), 25).unwrap();
    let run = chain::run(&prepared, &target, Duration::from_secs(10), None).await;
    let openssl = openssl_verdict(addr.port(), &ca, s.server_name).await;

    let judged = Judged {
        run,
        openssl,
        pki,
        _dir: dir,
    };
    let text = judged.text();
    let chain = judged.chain();
    let ours = chain.error.as_ref().map(|e| {
        let depth = match e.reason {
            Reason::CertIncompleteChain | Reason::CertUnknownIssuer => chain.built.len() - 1,
            _ => e.depth.expect("a depth for a certificate at fault"),
        };
        (e.reason, depth)
    });
    let o = &judged.openssl;
    let name = s.name;
    assert_eq!(ours, s.ours, "{name}: our verdict\n{text}");
    assert_eq!(o.code, s.openssl, "{name}: openssl verdict {o:?}\n{text}");
    // The OpenSSL code we quote next to our reason is the one OpenSSL itself reports.
    let our_code = chain.error.as_ref().map_or(Some(0), |e| e.openssl_code);
    assert_eq!(our_code, Some(o.code), "{name}: our OpenSSL verify code");
    let allowed = reasons_for_openssl(o.code)
        .unwrap_or_else(|| panic!("{name}: unmapped openssl code {o:?}"));
    match ours {
        None => assert!(allowed.is_empty(), "{name}: openssl {o:?}, we say valid"),
        Some((reason, depth)) => {
            assert!(
                allowed.contains(&reason),
                "{name}: openssl {o:?} does not allow {reason}"
            );
            assert_eq!(o.depth, Some(depth), "{name}: depth of the fault, {o:?}");
        }
    }
    assert_eq!(
        judged.run.chain_valid(),
        s.ours.is_none(),
        "{name}: exit code"
    );
    judged
}

/// How many `probe_tls_cert_not_after_timestamp_seconds` samples contain `needle`.
fn not_after_lines(metrics: &str, needle: &str) -> usize {
    metrics
        .lines()
        .filter(|l| {
            l.starts_with("probe_tls_cert_not_after_timestamp_seconds{") && l.contains(needle)
        })
        .count()
}

fn flags(j: &Judged) -> ChainFlags {
    j.chain().flags()
}

fn has(haystack: &str, needle: &str) {
    assert!(
        haystack.contains(needle),
        "missing {needle:?} in\n{haystack}"
    );
}

/// The scenarios, one constructor each, shared by the embedded server and Postfix.
mod scenarios {
    use super::*;

    pub fn complete() -> Scenario {
        scenario("complete chain")
    }

    pub fn leaf_only() -> Scenario {
        Scenario {
            send: Send::LeafOnly,
            ours: Some((Reason::CertIncompleteChain, 0)),
            openssl: 20,
            ..scenario("leaf only")
        }
    }

    pub fn leaf_only_intermediate_local() -> Scenario {
        Scenario {
            send: Send::LeafOnly,
            trust: Trust::IntermediateAndRoot,
            ..scenario("leaf only, intermediate in the CA file")
        }
    }

    pub fn root_sent() -> Scenario {
        Scenario {
            send: Send::WithRoot,
            ..scenario("root sent")
        }
    }

    pub fn expired_leaf() -> Scenario {
        let now = SystemTime::now();
        let mut pki = PkiOptions::new(&[]);
        pki.leaf_not_before = now - 30 * DAY;
        pki.leaf_not_after = now - DAY;
        Scenario {
            pki,
            ours: Some((Reason::CertExpired, 0)),
            openssl: 10,
            ..scenario("expired leaf")
        }
    }

    pub fn expired_intermediate() -> Scenario {
        let mut pki = PkiOptions::new(&[]);
        pki.intermediate_not_after = SystemTime::now() - DAY;
        Scenario {
            pki,
            ours: Some((Reason::CertExpired, 1)),
            openssl: 10,
            ..scenario("expired intermediate")
        }
    }

    pub fn not_yet_valid() -> Scenario {
        let mut pki = PkiOptions::new(&[]);
        pki.leaf_not_before = SystemTime::now() + DAY;
        Scenario {
            pki,
            ours: Some((Reason::CertNotYetValid, 0)),
            openssl: 9,
            ..scenario("not yet valid")
        }
    }

    pub fn hostname_mismatch() -> Scenario {
        Scenario {
            server_name: "mail.other.test",
            ours: Some((Reason::CertHostnameMismatch, 0)),
            openssl: 62,
            ..scenario("hostname mismatch")
        }
    }

    pub fn self_signed() -> Scenario {
        let mut pki = PkiOptions::new(&[]);
        pki.self_signed_leaf = true;
        Scenario {
            pki,
            send: Send::LeafOnly,
            ours: Some((Reason::CertSelfSigned, 0)),
            openssl: 18,
            ..scenario("self-signed")
        }
    }

    pub fn unknown_root() -> Scenario {
        Scenario {
            trust: Trust::Unrelated,
            ours: Some((Reason::CertUnknownIssuer, 1)),
            openssl: 20,
            ..scenario("unknown root")
        }
    }

    /// The client holds a root of the same name with another key: by key identifier it is not
    /// the issuer (OpenSSL agrees), so the root is unknown rather than a signature bad.
    pub fn unknown_root_same_name() -> Scenario {
        Scenario {
            trust: Trust::Namesake,
            ours: Some((Reason::CertUnknownIssuer, 1)),
            openssl: 20,
            ..scenario("unknown root, same name")
        }
    }

    pub fn unknown_root_sent() -> Scenario {
        Scenario {
            send: Send::WithRoot,
            trust: Trust::Unrelated,
            ours: Some((Reason::CertUnknownIssuer, 2)),
            openssl: 19,
            ..scenario("unknown root, sent")
        }
    }

    pub fn ecdsa_p384() -> Scenario {
        let mut pki = PkiOptions::new(&[]);
        pki.key = KeyKind::EcdsaP384;
        Scenario {
            pki,
            ..scenario("ECDSA P-384")
        }
    }

    /// OpenSSL (and webpki) build the path whatever the order: both accept it; we flag it.
    pub fn wrong_order() -> Scenario {
        Scenario {
            send: Send::WrongOrder,
            ..scenario("wrong order")
        }
    }

    /// A signature that does not verify although issuer name and key identifier match.
    pub fn bad_signature() -> Scenario {
        Scenario {
            send: Send::CorruptIntermediate,
            ours: Some((Reason::CertBadSignature, 1)),
            openssl: 7,
            ..scenario("bad signature")
        }
    }

    pub fn duplicate() -> Scenario {
        Scenario {
            send: Send::Duplicate,
            ..scenario("duplicate")
        }
    }

    /// Every scenario.
    pub fn all() -> Vec<Scenario> {
        vec![
            complete(),
            leaf_only(),
            leaf_only_intermediate_local(),
            root_sent(),
            expired_leaf(),
            expired_intermediate(),
            not_yet_valid(),
            hostname_mismatch(),
            self_signed(),
            unknown_root(),
            unknown_root_same_name(),
            unknown_root_sent(),
            ecdsa_p384(),
            wrong_order(),
            duplicate(),
            bad_signature(),
        ]
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn complete_chain() {
    if !support::programs::installed("complete_chain", &["openssl"], "openssl") {
        return;
    }
    let j = judge(scenarios::complete()).await;
    assert!(flags(&j).is_empty(), "{:?}", flags(&j));
    let chain = j.chain();
    assert_eq!(chain.built.len(), 3);
    assert_eq!(chain.built[2].fingerprint_sha256, fp(&j.pki.root.der));
    let m = j.metrics();
    for line in [
        "probe_tls_chain_valid 1",
        "probe_tls_certs_sent 2",
        "probe_tls_chain_sent_complete 1",
    ] {
        has(&m, line);
    }
    assert_eq!(
        m.matches("probe_tls_cert_not_after_timestamp_seconds{")
            .count(),
        3
    );
    assert_eq!(
        not_after_lines(&m, r#"sent="0"}"#),
        1,
        "only the root is local"
    );
    let t = j.text();
    has(
        &t,
        "Verdict: VALID. The chain reaches the trust anchor \"smtp-prober demo root CA\"",
    );
    has(&t, "Nothing: the server sends a clean chain.");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaf_only() {
    if !support::programs::installed("leaf_only", &["openssl"], "openssl") {
        return;
    }
    let j = judge(scenarios::leaf_only()).await;
    let t = j.text();
    has(&t, "Building stopped at depth 0");
    has(
        &t,
        "Look for the certificate of \"CN=smtp-prober demo intermediate CA,O=smtp-prober demo\"",
    );
    has(&t, "its subject key identifier is ");
    let m = j.metrics();
    has(&m, "probe_tls_chain_valid 0");
    has(
        &m,
        r#"probe_tls_chain_error_info{reason="cert_incomplete_chain"} 1"#,
    );
    has(&m, "probe_tls_chain_sent_complete 0");
    has(&m, "probe_tls_certs_sent 1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaf_only_with_the_intermediate_held_locally() {
    if !support::programs::installed(
        "leaf_only_with_the_intermediate_held_locally",
        &["openssl"],
        "openssl",
    ) {
        return;
    }
    let j = judge(scenarios::leaf_only_intermediate_local()).await;
    let chain = j.chain();
    assert!(!chain.sent_complete);
    assert_eq!(flags(&j).local_intermediates, [1]);
    let m = j.metrics();
    has(&m, "probe_tls_chain_valid 1");
    has(&m, "probe_tls_chain_sent_complete 0");
    has(&m, "probe_tls_certs_sent 1");
    // The intermediate and the root, both from the CA file.
    assert_eq!(not_after_lines(&m, r#"sent="0"}"#), 2, "{m}");
    has(
        &m,
        &format!(
            r#"probe_tls_cert_not_after_timestamp_seconds{{depth="1",subject_cn="smtp-prober demo intermediate CA",issuer_cn="smtp-prober demo root CA",serial="{}",fingerprint_sha256="{}",sent="0"}}"#,
            chain.built[1].serial,
            fp(&j.pki.intermediate.der)
        ),
    );
    let t = j.text();
    has(&t, "intermediate supplied locally: depth 1");
    has(&t, "not sent by the server (supplied locally)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_sent() {
    if !support::programs::installed("root_sent", &["openssl"], "openssl") {
        return;
    }
    let j = judge(scenarios::root_sent()).await;
    let f = flags(&j);
    assert_eq!(f.root_sent, Some(2));
    assert!(!f.wrong_order);
    let m = j.metrics();
    has(&m, "probe_tls_certs_sent 3");
    has(&m, "probe_tls_chain_sent_complete 1");
    assert_eq!(not_after_lines(&m, r#"sent="1"}"#), 3, "{m}");
    let t = j.text();
    has(&t, "root sent needlessly: #2");
    has(&t, "the server (#2), and a trust anchor in CA file");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_leaf() {
    if !support::programs::installed("expired_leaf", &["openssl"], "openssl") {
        return;
    }
    let j = judge(scenarios::expired_leaf()).await;
    let m = j.metrics();
    has(&m, "probe_tls_chain_valid 0");
    has(&m, r#"probe_tls_chain_error_info{reason="cert_expired"} 1"#);
    // Dates are exported for the whole chain even though it is invalid.
    assert_eq!(
        m.matches("probe_tls_cert_not_after_timestamp_seconds{")
            .count(),
        3
    );
    has(&m, "probe_ssl_earliest_cert_expiry ");
    // Leaf and intermediate were sent: complete, whatever the leaf's dates.
    has(&m, "probe_tls_chain_sent_complete 1");
    let t = j.text();
    has(&t, "EXPIRED 1.0 days ago");
    has(&t, "Renew the server certificate");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_intermediate() {
    if !support::programs::installed("expired_intermediate", &["openssl"], "openssl") {
        return;
    }
    let j = judge(scenarios::expired_intermediate()).await;
    has(&j.text(), "The server sends an outdated intermediate");
    has(&j.metrics(), "probe_tls_chain_sent_complete 1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_yet_valid() {
    if !support::programs::installed("not_yet_valid", &["openssl"], "openssl") {
        return;
    }
    let j = judge(scenarios::not_yet_valid()).await;
    has(&j.text(), "NOT YET VALID, starts in 1.0 days");
    has(&j.metrics(), "probe_tls_chain_sent_complete 1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostname_mismatch() {
    if !support::programs::installed("hostname_mismatch", &["openssl"], "openssl") {
        return;
    }
    let j = judge(scenarios::hostname_mismatch()).await;
    has(
        &j.text(),
        "The certificate names [localhost, 127.0.0.1, ::1], not \"mail.other.test\"",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_signed() {
    if !support::programs::installed("self_signed", &["openssl"], "openssl") {
        return;
    }
    let j = judge(scenarios::self_signed()).await;
    has(&j.text(), &format!("(sha256 {})", fp(&j.pki.leaf.der)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_root() {
    if !support::programs::installed("unknown_root", &["openssl"], "openssl") {
        return;
    }
    let j = judge(scenarios::unknown_root()).await;
    let m = j.metrics();
    has(
        &m,
        r#"probe_tls_chain_error_info{reason="cert_unknown_issuer"} 1"#,
    );
    has(&m, "probe_tls_chain_sent_complete 0");
    has(
        &j.text(),
        "Look for the certificate of \"CN=smtp-prober demo root CA,O=smtp-prober demo\"",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_root_of_the_same_name() {
    if !support::programs::installed("unknown_root_of_the_same_name", &["openssl"], "openssl") {
        return;
    }
    let j = judge(scenarios::unknown_root_same_name()).await;
    has(&j.text(), "its key identifier differs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_root_sent_by_the_server() {
    if !support::programs::installed("unknown_root_sent_by_the_server", &["openssl"], "openssl") {
        return;
    }
    let j = judge(scenarios::unknown_root_sent()).await;
    has(&j.text(), "never trust it just because the server sent it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ecdsa_p384_chain() {
    if !support::programs::installed("ecdsa_p384_chain", &["openssl"], "openssl") {
        return;
    }
    let j = judge(scenarios::ecdsa_p384()).await;
    for c in &j.chain().built {
        assert_eq!(c.key, "ECDSA P-384");
        assert_eq!(c.signature_algorithm, "ecdsa-with-SHA384");
    }
    has(
        &j.text(),
        "key       ECDSA P-384, signed with ecdsa-with-SHA384",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_order() {
    if !support::programs::installed("wrong_order", &["openssl"], "openssl") {
        return;
    }
    let j = judge(scenarios::wrong_order()).await;
    let f = flags(&j);
    assert!(f.wrong_order);
    assert_eq!(f.root_sent, Some(1));
    let t = j.text();
    has(&t, "wrong order: the sent certificates are not leaf first");
    has(&t, "The order is wrong");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_intermediate() {
    if !support::programs::installed("duplicate_intermediate", &["openssl"], "openssl") {
        return;
    }
    let j = judge(scenarios::duplicate()).await;
    assert_eq!(flags(&j).duplicates, [2]);
    has(
        &j.text(),
        "#2  CN=smtp-prober demo intermediate CA,O=smtp-prober demo  (repeats #1)",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_signature() {
    if !support::programs::installed("bad_signature", &["openssl"], "openssl") {
        return;
    }
    let j = judge(scenarios::bad_signature()).await;
    has(
        &j.text(),
        "Reinstall the leaf with the intermediate its CA issued",
    );
}

/// The same scenarios against a real Postfix (the private stack of tests/support/mailstack.rs),
/// each chain on its own STARTTLS port of one Postfix instance: the chain file is the only
/// thing a scenario changes on the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postfix_matrix() {
    if !(MailStack::available("postfix_matrix")
        && support::programs::installed("postfix_matrix", &["openssl"], "openssl"))
    {
        return;
    }
    let served: Vec<(Scenario, Arc<DemoPki>)> = scenarios::all()
        .into_iter()
        .map(|s| {
            let pki = Arc::new(DemoPki::with_options(&s.pki).unwrap());
            (s, pki)
        })
        .collect();
    let chains: Vec<ServedChain> = served
        .iter()
        .map(|(s, pki)| ServedChain {
            name: s.name.to_string(),
            key_and_chain_pem: postfix_chain_file(pki, s.send),
        })
        .collect();
    let stack = tokio::task::spawn_blocking(move || MailStack::start_with_chains(&chains))
        .await
        .unwrap()
        .expect("the mail stack starts");
    for (s, pki) in &served {
        let addr = stack.chain_addr(s.name).expect("a port per scenario");
        let j = judge_at(s, addr, pki.clone()).await;
        // Postfix sends exactly the chain file, in its order.
        let sent: Vec<String> = j
            .chain()
            .sent
            .iter()
            .map(|c| c.fingerprint_sha256.clone())
            .collect();
        let expected: Vec<String> = pki
            .chain(&sent_of(pki, s.send))
            .iter()
            .map(|der| fp(der))
            .collect();
        assert_eq!(sent, expected, "{}: what Postfix sent", s.name);
        assert!(
            j.run.outcome.session.transcript.steps()[2]
                .reply
                .as_ref()
                .is_some_and(|r| r.text().contains(stack.id())),
            "{}: answered by our Postfix",
            s.name
        );
    }
    tokio::task::spawn_blocking(move || drop(stack))
        .await
        .unwrap();
}

/// One file as Postfix's `smtpd_tls_chain_files` reads it: key, leaf, then the rest.
fn postfix_chain_file(pki: &DemoPki, send: Send) -> String {
    let mut file = pki.leaf_key_pem().to_string();
    for der in pki.chain(&sent_of(pki, send)) {
        file.push_str(&smtp_prober::tls::export::pem(&der));
    }
    file
}

#[test]
fn openssl_output_is_read() {
    let stderr = "depth=2 O = x, CN = root\nverify return:1\ndepth=1 O = x, CN = int\n\
                  verify error:num=10:certificate has expired\nnotAfter=...\n";
    let stdout = "---\nVerify return code: 10 (certificate has expired)\n---\n";
    assert_eq!(
        parse_openssl(stdout, stderr),
        Some(OpensslVerdict {
            code: 10,
            text: "certificate has expired".into(),
            depth: Some(1)
        })
    );
    assert_eq!(
        parse_openssl(
            "Verify return code: 0 (ok)\n",
            "depth=0 CN = a\nverify return:1\n"
        ),
        Some(OpensslVerdict {
            code: 0,
            text: "ok".into(),
            depth: None
        })
    );
    assert_eq!(parse_openssl("no verdict", ""), None);
}

fn fp(der: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(der))
}
