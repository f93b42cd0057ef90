//! Real handshakes against an in-process tokio-rustls server, over a tokio duplex pipe or a
//! loopback socket, with PKIs generated per test (rcgen). RSA keys come from
//! `testdata/` because ring cannot generate RSA keys; they are test-only keys.

use super::*;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use std::time::Duration;
use tokio::io::AsyncReadExt;

/// The probe's clock in these tests: 2025-06-01T00:00:00Z.
const NOW_SECS: u64 = 1_748_736_000;
const NAME: &str = "mail.example.test";

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(NOW_SECS)
}

fn unix(y: i32, m: u8, d: u8) -> i64 {
    rcgen::date_time_ymd(y, m, d).unix_timestamp()
}

#[derive(Clone, Copy, PartialEq)]
enum Alg {
    Rsa,
    Ecdsa,
}

/// Validity period as (year, month, day) pairs.
type Period = ((i32, u8, u8), (i32, u8, u8));
const VALID: Period = ((2020, 1, 1), (2040, 1, 1));

fn key(alg: Alg, role: &str) -> KeyPair {
    match alg {
        Alg::Ecdsa => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap(),
        Alg::Rsa => KeyPair::from_pem(match role {
            "root" => include_str!("testdata/rsa-root.key.pem"),
            "intermediate" => include_str!("testdata/rsa-intermediate.key.pem"),
            _ => include_str!("testdata/rsa-leaf.key.pem"),
        })
        .unwrap(),
    }
}

fn dn(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "smtp-prober tests");
    dn.push(DnType::CommonName, cn);
    dn
}

fn set_period(params: &mut CertificateParams, period: Period) {
    let ((y1, m1, d1), (y2, m2, d2)) = period;
    params.not_before = rcgen::date_time_ymd(y1, m1, d1);
    params.not_after = rcgen::date_time_ymd(y2, m2, d2);
}

/// A certificate authority: its parameters and key sign children.
struct Ca {
    params: CertificateParams,
    key: KeyPair,
    der: CertificateDer<'static>,
}

impl Ca {
    fn issuer(&self) -> Issuer<'_, &KeyPair> {
        Issuer::from_params(&self.params, &self.key)
    }

    fn pem(&self) -> String {
        export::pem(&self.der)
    }
}

fn ca_params(cn: &str, period: Period) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = dn(cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    set_period(&mut params, period);
    params
}

fn root(cn: &str, alg: Alg) -> Ca {
    let params = ca_params(cn, VALID);
    let key = key(alg, "root");
    let der = params.self_signed(&key).unwrap().der().clone();
    Ca { params, key, der }
}

fn intermediate(cn: &str, alg: Alg, issuer: &Ca, period: Period) -> Ca {
    let mut params = ca_params(cn, period);
    params.use_authority_key_identifier_extension = true;
    let key = key(alg, "intermediate");
    let der = params
        .signed_by(&key, &issuer.issuer())
        .unwrap()
        .der()
        .clone();
    Ca { params, key, der }
}

fn leaf_params(names: &[&str], period: Period) -> CertificateParams {
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name = dn(names[0]);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    set_period(&mut params, period);
    params
}

/// A server certificate and its key.
struct Leaf {
    der: CertificateDer<'static>,
    key: KeyPair,
}

fn leaf(names: &[&str], alg: Alg, issuer: &Ca, period: Period) -> Leaf {
    let key = key(alg, "leaf");
    let der = leaf_params(names, period)
        .signed_by(&key, &issuer.issuer())
        .unwrap()
        .der()
        .clone();
    Leaf { der, key }
}

fn self_signed_leaf(name: &str) -> Leaf {
    let key = key(Alg::Ecdsa, "leaf");
    let der = leaf_params(&[name], VALID)
        .self_signed(&key)
        .unwrap()
        .der()
        .clone();
    Leaf { der, key }
}

/// The standard PKI of a test: root -> intermediate -> leaf for `NAME`.
struct Pki {
    root: Ca,
    int: Ca,
    leaf: Leaf,
}

fn pki(alg: Alg) -> Pki {
    let root = root("Test Root CA", alg);
    let int = intermediate("Test Intermediate CA", alg, &root, VALID);
    let leaf = leaf(&[NAME, "127.0.0.1"], alg, &int, VALID);
    Pki { root, int, leaf }
}

/// CA files written for one test; removed when dropped.
struct CaFiles {
    _dir: tempfile::TempDir,
    paths: Vec<PathBuf>,
}

fn ca_files(contents: &[String]) -> CaFiles {
    let dir = tempfile::tempdir().unwrap();
    let paths = contents
        .iter()
        .enumerate()
        .map(|(i, pem)| {
            let path = dir.path().join(format!("ca-{i}.pem"));
            std::fs::write(&path, pem).unwrap();
            path
        })
        .collect();
    CaFiles { _dir: dir, paths }
}

fn client(files: &CaFiles, min_version: MinVersion) -> TlsClient {
    TlsClient::new(&TlsSettings {
        server_name: None,
        trust: vec![],
        ca_files: files.paths.clone(),
        min_version,
        insecure_skip_verify: false,
    })
    .unwrap()
}

fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: &KeyPair,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<rustls::ServerConfig> {
    stapling_server_config(chain, key, versions, Vec::new())
}

/// A server that staples `ocsp` (none when empty).
fn stapling_server_config(
    chain: Vec<CertificateDer<'static>>,
    key: &KeyPair,
    versions: &[&'static rustls::SupportedProtocolVersion],
    ocsp: Vec<u8>,
) -> Arc<rustls::ServerConfig> {
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(versions)
    .unwrap()
    .with_no_client_auth()
    .with_single_cert_with_ocsp(chain, key, ocsp)
    .unwrap();
    Arc::new(config)
}

/// Serves one TLS connection on `io`, then reads until the client goes away.
fn spawn_server<IO>(io: IO, config: Arc<rustls::ServerConfig>)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        if let Ok(mut tls) = tokio_rustls::TlsAcceptor::from(config).accept(io).await {
            let mut buf = [0u8; 64];
            let _ = tls.read(&mut buf).await;
        }
    });
}

/// A handshake over a duplex pipe against a server sending `chain`.
async fn handshake_with(
    client: &TlsClient,
    chain: Vec<CertificateDer<'static>>,
    key: &KeyPair,
    versions: &[&'static rustls::SupportedProtocolVersion],
    server_name: &str,
) -> Result<TlsReport, HandshakeFailure> {
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    spawn_server(server_io, server_config(chain, key, versions));
    let result = tokio::time::timeout(
        Duration::from_secs(10),
        client.handshake(client_io, server_name, now()),
    )
    .await
    .expect("handshake hung");
    result.map(|(_stream, report)| report)
}

/// The chain report of a TLS 1.3 handshake with the server sending `chain`, trusting `cas`.
async fn chain_of(
    chain: Vec<CertificateDer<'static>>,
    key: &KeyPair,
    cas: &[String],
) -> (ChainReport, CaFiles) {
    let files = ca_files(cas);
    let client = client(&files, MinVersion::Tls12);
    let report = handshake_with(&client, chain, key, rustls::ALL_VERSIONS, NAME)
        .await
        .expect("handshake failed");
    (report.chain, files)
}

fn openssl_code(report: &ChainReport) -> Option<u32> {
    report.error.as_ref().and_then(|e| e.openssl_code)
}

fn reason(report: &ChainReport) -> Option<(Reason, Option<usize>)> {
    report.error.as_ref().map(|e| (e.reason, e.depth))
}

fn fingerprints(certs: &[Arc<CertFacts>]) -> Vec<String> {
    certs.iter().map(|c| c.fingerprint_sha256.clone()).collect()
}

fn fp(der: &CertificateDer<'_>) -> String {
    cert::fingerprint_sha256(der)
}

#[tokio::test]
async fn complete_rsa_chain_is_valid_and_sent_complete() {
    let p = pki(Alg::Rsa);
    let files = ca_files(&[p.root.pem()]);
    let client = client(&files, MinVersion::Tls12);
    let report = handshake_with(
        &client,
        vec![p.leaf.der.clone(), p.int.der.clone()],
        &p.leaf.key,
        rustls::ALL_VERSIONS,
        NAME,
    )
    .await
    .unwrap();
    assert_eq!(report.version, "TLSv1.3");
    assert!(report.cipher.starts_with("TLS13_"), "{}", report.cipher);
    let chain = report.chain;
    assert_eq!(chain.error, None);
    assert!(chain.valid());
    assert!(chain.sent_complete);
    assert_eq!(chain.server_name, NAME);
    assert_eq!(chain.sent.len(), 2);
    assert_eq!(
        fingerprints(&chain.built),
        vec![fp(&p.leaf.der), fp(&p.int.der), fp(&p.root.der)]
    );
    assert_eq!(
        chain.built.iter().map(|c| c.depth).collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    assert_eq!(
        chain.built.iter().map(|c| c.sent).collect::<Vec<_>>(),
        vec![true, true, false]
    );
    assert_eq!(
        chain.built[2].source,
        CertSource::File(files.paths[0].clone())
    );
    assert_eq!(chain.built[0].key, "RSA 2048");
    assert_eq!(
        chain.built[0].signature_algorithm,
        "sha256WithRSAEncryption"
    );
    assert_eq!(
        chain.built[0].subject,
        "CN=mail.example.test,O=smtp-prober tests"
    );
    assert_eq!(chain.built[0].issuer_cn, "Test Intermediate CA");
    assert!(chain.built[2].self_signed && chain.built[2].is_ca);
    assert!(!chain.built[0].is_ca);
}

#[tokio::test]
async fn leaf_only_is_an_incomplete_chain() {
    let p = pki(Alg::Ecdsa);
    let (chain, _files) = chain_of(vec![p.leaf.der.clone()], &p.leaf.key, &[p.root.pem()]).await;
    assert_eq!(reason(&chain), Some((Reason::CertIncompleteChain, None)));
    assert!(!chain.sent_complete);
    assert_eq!(openssl_code(&chain), Some(20));
    assert_eq!(fingerprints(&chain.built), vec![fp(&p.leaf.der)]);

    let missing = missing_issuer(&chain).unwrap();
    assert_eq!(missing.depth, 0);
    assert_eq!(
        missing.issuer,
        "CN=Test Intermediate CA,O=smtp-prober tests"
    );
    let int_ski = hex::encode(p.int.params.key_identifier(&p.int.key));
    assert_eq!(missing.authority_key_id, Some(int_ski));
}

#[tokio::test]
async fn leaf_only_with_intermediate_in_a_ca_file_is_valid_but_not_sent_complete() {
    let p = pki(Alg::Ecdsa);
    // One file with the root and the intermediate, as CA bundles often are.
    let bundle = format!("{}{}", p.root.pem(), p.int.pem());
    let (chain, files) = chain_of(vec![p.leaf.der.clone()], &p.leaf.key, &[bundle]).await;
    assert_eq!(chain.error, None);
    assert!(!chain.sent_complete);
    assert_eq!(
        fingerprints(&chain.built),
        vec![fp(&p.leaf.der), fp(&p.int.der), fp(&p.root.der)]
    );
    assert!(!chain.built[1].sent);
    assert_eq!(
        chain.built[1].source,
        CertSource::File(files.paths[0].clone())
    );
    assert_eq!(
        chain.built[2].source,
        CertSource::File(files.paths[0].clone())
    );

    // Export: the intermediate and the root, which the server did not send.
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("export");
    let written = export_missing(&chain, &dir).unwrap();
    assert_eq!(
        written,
        vec![
            dir.join("1-test-intermediate-ca.pem"),
            dir.join("2-test-root-ca.pem")
        ]
    );
    for (path, expected) in written.iter().zip([&p.int.der, &p.root.der]) {
        let text = std::fs::read(path).unwrap();
        let certs: Vec<_> = rustls_pemfile::certs(&mut text.as_slice())
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(certs.len(), 1);
        assert_eq!(certs[0].as_ref(), expected.as_ref());
    }
    assert_eq!(missing_issuer(&chain), None);
}

#[tokio::test]
async fn root_sent_too_is_valid_and_nothing_to_export() {
    let p = pki(Alg::Ecdsa);
    let sent = vec![p.leaf.der.clone(), p.int.der.clone(), p.root.der.clone()];
    let (chain, files) = chain_of(sent, &p.leaf.key, &[p.root.pem()]).await;
    assert_eq!(chain.error, None);
    assert!(chain.sent_complete);
    assert_eq!(chain.built.len(), 3);
    assert!(chain.built[2].sent);
    assert_eq!(
        chain.built[2].source,
        CertSource::File(files.paths[0].clone())
    );
    let out = tempfile::tempdir().unwrap();
    assert_eq!(
        export_missing(&chain, out.path()).unwrap(),
        Vec::<PathBuf>::new()
    );
}

#[tokio::test]
async fn expired_leaf_names_depth_0() {
    let p = pki(Alg::Ecdsa);
    let expired = leaf(&[NAME], Alg::Ecdsa, &p.int, ((2023, 1, 1), (2024, 1, 1)));
    let (chain, _files) = chain_of(
        vec![expired.der.clone(), p.int.der.clone()],
        &expired.key,
        &[p.root.pem()],
    )
    .await;
    assert_eq!(reason(&chain), Some((Reason::CertExpired, Some(0))));
    assert_eq!(chain.built.len(), 3);
    assert_eq!(chain.built[0].not_after, unix(2024, 1, 1));
    // The server sent leaf and intermediate: complete, however old the leaf.
    assert!(chain.sent_complete);
    assert_eq!(openssl_code(&chain), Some(10));
}

#[tokio::test]
async fn expired_intermediate_names_depth_1() {
    let root = root("Test Root CA", Alg::Ecdsa);
    let int = intermediate(
        "Test Intermediate CA",
        Alg::Ecdsa,
        &root,
        ((2020, 1, 1), (2024, 6, 1)),
    );
    let leaf = leaf(&[NAME], Alg::Ecdsa, &int, VALID);
    let (chain, _files) = chain_of(
        vec![leaf.der.clone(), int.der.clone()],
        &leaf.key,
        &[root.pem()],
    )
    .await;
    assert_eq!(reason(&chain), Some((Reason::CertExpired, Some(1))));
    assert_eq!(chain.built[1].not_after, unix(2024, 6, 1));
    assert!(chain.sent_complete);
}

#[tokio::test]
async fn outdated_intermediate_sent_with_a_renewed_copy_held_locally() {
    // The server sends an expired intermediate; a CA file holds the renewed one (same name and
    // key, new dates). This client verifies with the local copy; the server's own chain is
    // still complete by name and signature: its fault is a date, not a missing certificate.
    let root = root("Test Root CA", Alg::Ecdsa);
    let old = intermediate(
        "Test Intermediate CA",
        Alg::Ecdsa,
        &root,
        ((2020, 1, 1), (2024, 6, 1)),
    );
    let renewed = ca_params("Test Intermediate CA", VALID)
        .signed_by(&old.key, &root.issuer())
        .unwrap()
        .der()
        .clone();
    let leaf = leaf(&[NAME], Alg::Ecdsa, &old, VALID);
    let bundle = format!("{}{}", root.pem(), export::pem(&renewed));
    let (chain, _files) = chain_of(
        vec![leaf.der.clone(), old.der.clone()],
        &leaf.key,
        &[bundle],
    )
    .await;
    assert_eq!(chain.error, None);
    assert!(!chain.built[1].sent);
    assert!(chain.sent_complete);

    // Without the renewed copy, the same chain is expired at depth 1 and still complete.
    let (chain, _files) = chain_of(
        vec![leaf.der.clone(), old.der.clone()],
        &leaf.key,
        &[root.pem()],
    )
    .await;
    assert_eq!(reason(&chain), Some((Reason::CertExpired, Some(1))));
    assert!(chain.sent_complete);
    assert_eq!(openssl_code(&chain), Some(10));
}

#[tokio::test]
async fn not_yet_valid_leaf() {
    let p = pki(Alg::Ecdsa);
    let early = leaf(&[NAME], Alg::Ecdsa, &p.int, ((2030, 1, 1), (2031, 1, 1)));
    let (chain, _files) = chain_of(
        vec![early.der.clone(), p.int.der.clone()],
        &early.key,
        &[p.root.pem()],
    )
    .await;
    assert_eq!(reason(&chain), Some((Reason::CertNotYetValid, Some(0))));
    assert_eq!(chain.built[0].not_before, unix(2030, 1, 1));
    assert!(chain.sent_complete);
    assert_eq!(openssl_code(&chain), Some(9));
}

#[tokio::test]
async fn hostname_mismatch() {
    let p = pki(Alg::Ecdsa);
    let other = leaf(&["other.example.test"], Alg::Ecdsa, &p.int, VALID);
    let (chain, _files) = chain_of(
        vec![other.der.clone(), p.int.der.clone()],
        &other.key,
        &[p.root.pem()],
    )
    .await;
    assert_eq!(
        reason(&chain),
        Some((Reason::CertHostnameMismatch, Some(0)))
    );
    assert_eq!(chain.built.len(), 3);
    assert_eq!(chain.built[0].sans, vec!["other.example.test"]);
    // The chain itself reached the anchor with what the server sent.
    assert!(chain.sent_complete);
    assert_eq!(openssl_code(&chain), Some(62));
    let detail = &chain.error.as_ref().unwrap().detail;
    assert!(detail.contains("other.example.test"), "{detail}");
}

#[tokio::test]
async fn lone_self_signed_leaf() {
    let unrelated = root("Unrelated Root", Alg::Ecdsa);
    let leaf = self_signed_leaf(NAME);
    let (chain, _files) = chain_of(vec![leaf.der.clone()], &leaf.key, &[unrelated.pem()]).await;
    assert_eq!(reason(&chain), Some((Reason::CertSelfSigned, Some(0))));
    assert!(!chain.sent_complete);
    assert_eq!(openssl_code(&chain), Some(18));
    assert_eq!(chain.built.len(), 1);
    assert!(chain.built[0].self_signed);
    assert_eq!(missing_issuer(&chain), None);
}

#[tokio::test]
async fn self_signed_leaf_pinned_in_a_ca_file_is_valid() {
    let leaf = self_signed_leaf(NAME);
    let pinned = export::pem(&leaf.der);
    let (chain, _files) = chain_of(vec![leaf.der.clone()], &leaf.key, &[pinned]).await;
    assert_eq!(chain.error, None);
    assert!(chain.sent_complete);
    assert_eq!(fingerprints(&chain.built), vec![fp(&leaf.der)]);
}

#[tokio::test]
async fn unknown_root() {
    let p = pki(Alg::Ecdsa);
    let other = root("Other Root CA", Alg::Ecdsa);
    let (chain, _files) = chain_of(
        vec![p.leaf.der.clone(), p.int.der.clone()],
        &p.leaf.key,
        &[other.pem()],
    )
    .await;
    assert_eq!(reason(&chain), Some((Reason::CertUnknownIssuer, None)));
    assert_eq!(
        fingerprints(&chain.built),
        vec![fp(&p.leaf.der), fp(&p.int.der)]
    );
    assert!(!chain.sent_complete);
    assert_eq!(openssl_code(&chain), Some(20));
    let missing = missing_issuer(&chain).unwrap();
    assert_eq!(missing.depth, 1);
    assert_eq!(missing.issuer, "CN=Test Root CA,O=smtp-prober tests");
}

#[tokio::test]
async fn untrusted_root_sent_by_the_server() {
    let p = pki(Alg::Ecdsa);
    let other = root("Other Root CA", Alg::Ecdsa);
    let sent = vec![p.leaf.der.clone(), p.int.der.clone(), p.root.der.clone()];
    let (chain, _files) = chain_of(sent, &p.leaf.key, &[other.pem()]).await;
    assert_eq!(reason(&chain), Some((Reason::CertUnknownIssuer, None)));
    assert_eq!(openssl_code(&chain), Some(19));
    assert!(!chain.sent_complete);
    assert_eq!(chain.built.len(), 3);
    assert!(chain.built[2].self_signed && chain.built[2].sent);
}

#[tokio::test]
async fn ecdsa_chain_is_valid() {
    let p = pki(Alg::Ecdsa);
    let (chain, _files) = chain_of(
        vec![p.leaf.der.clone(), p.int.der.clone()],
        &p.leaf.key,
        &[p.root.pem()],
    )
    .await;
    assert_eq!(chain.error, None);
    assert!(chain.sent_complete);
    assert_eq!(chain.built[0].key, "ECDSA P-256");
    assert_eq!(chain.built[1].signature_algorithm, "ecdsa-with-SHA256");
}

#[tokio::test]
async fn intermediates_out_of_order_still_verify() {
    let p = pki(Alg::Rsa);
    let sent = vec![p.leaf.der.clone(), p.root.der.clone(), p.int.der.clone()];
    let (chain, _files) = chain_of(sent, &p.leaf.key, &[p.root.pem()]).await;
    assert_eq!(chain.error, None);
    assert!(chain.sent_complete);
    assert_eq!(
        fingerprints(&chain.built),
        vec![fp(&p.leaf.der), fp(&p.int.der), fp(&p.root.der)]
    );
    assert_eq!(
        fingerprints(&chain.sent),
        vec![fp(&p.leaf.der), fp(&p.root.der), fp(&p.int.der)]
    );
    assert_eq!(chain.sent[2].depth, 2);
}

#[tokio::test]
async fn signature_by_the_wrong_key_is_a_bad_signature() {
    let p = pki(Alg::Ecdsa);
    // Same name as the real intermediate, different key, and no authority key identifier to
    // tell them apart: the leaf's signature cannot verify with the intermediate the server sends.
    let impostor = intermediate("Test Intermediate CA", Alg::Ecdsa, &p.root, VALID);
    let mut params = leaf_params(&[NAME], VALID);
    params.use_authority_key_identifier_extension = false;
    let key = key(Alg::Ecdsa, "leaf");
    let forged = params.signed_by(&key, &impostor.issuer()).unwrap();
    let (chain, _files) = chain_of(
        vec![forged.der().clone(), p.int.der.clone()],
        &key,
        &[p.root.pem()],
    )
    .await;
    assert_eq!(reason(&chain), Some((Reason::CertBadSignature, Some(0))));
}

#[tokio::test]
async fn intermediate_of_the_same_name_but_another_key_is_not_the_issuer() {
    let p = pki(Alg::Ecdsa);
    // The leaf names its issuer's key (authority key identifier); the server sends an older
    // intermediate of the same name with another key: the leaf's issuer was not sent.
    let renewed = intermediate("Test Intermediate CA", Alg::Ecdsa, &p.root, VALID);
    let leaf = leaf(&[NAME], Alg::Ecdsa, &renewed, VALID);
    let (chain, _files) = chain_of(
        vec![leaf.der.clone(), p.int.der.clone()],
        &leaf.key,
        &[p.root.pem()],
    )
    .await;
    assert_eq!(reason(&chain), Some((Reason::CertIncompleteChain, None)));
    let detail = &chain.error.as_ref().unwrap().detail;
    assert!(detail.contains("its key identifier differs"), "{detail}");
    let missing = missing_issuer(&chain).unwrap();
    assert_eq!(missing.depth, 0);
    assert!(missing.authority_key_id.is_some());
}

#[tokio::test]
async fn ip_literal_over_a_loopback_socket() {
    let p = pki(Alg::Ecdsa);
    let files = ca_files(&[p.root.pem()]);
    let client = client(&files, MinVersion::Tls12);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = server_config(
        vec![p.leaf.der.clone(), p.int.der.clone()],
        &p.leaf.key,
        rustls::ALL_VERSIONS,
    );
    tokio::spawn(async move {
        if let Ok((socket, _)) = listener.accept().await {
            spawn_server(socket, config);
        }
    });
    let socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (_tls, report) = tokio::time::timeout(
        Duration::from_secs(10),
        client.handshake(socket, "127.0.0.1", now()),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(report.chain.error, None);
    assert_eq!(report.chain.server_name, "127.0.0.1");
    assert_eq!(report.chain.built[0].sans, vec![NAME, "127.0.0.1"]);
}

#[tokio::test]
async fn tls12_server_and_min_version() {
    let p = pki(Alg::Ecdsa);
    let files = ca_files(&[p.root.pem()]);
    let chain = vec![p.leaf.der.clone(), p.int.der.clone()];
    let tls12_only: &[&'static rustls::SupportedProtocolVersion] = &[&rustls::version::TLS12];

    let report = handshake_with(
        &client(&files, MinVersion::Tls12),
        chain.clone(),
        &p.leaf.key,
        tls12_only,
        NAME,
    )
    .await
    .unwrap();
    assert_eq!(report.version, "TLSv1.2");
    assert!(
        report.cipher.starts_with("TLS_ECDHE_ECDSA_"),
        "{}",
        report.cipher
    );
    assert!(report.chain.valid());
    // The ServerKeyExchange signature, and no staple from a server that has none.
    assert_eq!(
        report.signature_scheme.as_deref(),
        Some("ecdsa_secp256r1_sha256")
    );
    assert!(report.key_exchange_group.is_some());
    assert_eq!(report.ocsp, None);

    let failure = handshake_with(
        &client(&files, MinVersion::Tls13),
        chain,
        &p.leaf.key,
        tls12_only,
        NAME,
    )
    .await
    .unwrap_err();
    assert_eq!(failure.reason, Reason::TlsHandshakeFailed);
    assert!(!failure.detail.is_empty());
}

#[tokio::test]
async fn peer_closing_is_connection_closed() {
    let p = pki(Alg::Ecdsa);
    let files = ca_files(&[p.root.pem()]);
    let client = client(&files, MinVersion::Tls12);
    let (client_io, server_io) = tokio::io::duplex(1024);
    drop(server_io);
    let failure = client.handshake(client_io, NAME, now()).await.unwrap_err();
    assert_eq!(
        failure.reason,
        Reason::ConnectionClosed,
        "{}",
        failure.detail
    );
}

#[test]
fn setup_errors() {
    let p = pki(Alg::Ecdsa);
    let files = ca_files(&[p.root.pem()]);
    let settings = TlsSettings {
        server_name: Some("not a name".into()),
        trust: vec![],
        ca_files: files.paths.clone(),
        ..TlsSettings::default()
    };
    assert!(matches!(
        TlsClient::new(&settings),
        Err(TlsSetupError::ServerName(name)) if name == "not a name"
    ));

    let missing = files.paths[0].with_file_name("absent.pem");
    let settings = TlsSettings {
        trust: vec![],
        ca_files: vec![missing.clone()],
        ..TlsSettings::default()
    };
    match TlsClient::new(&settings) {
        Err(TlsSetupError::CaFile { path, .. }) => assert_eq!(path, missing),
        other => panic!("unexpected {other:?}"),
    }

    let client = client(&files, MinVersion::Tls12);
    assert_eq!(client.trust_counts(), (1, 0));
}

#[test]
fn verify_chain_without_a_handshake() {
    let p = pki(Alg::Ecdsa);
    let files = ca_files(&[p.root.pem()]);
    let client = client(&files, MinVersion::Tls12);
    let report = client.verify_chain(&[p.leaf.der.clone(), p.int.der.clone()], NAME, now());
    assert!(report.valid());
    let later = UNIX_EPOCH + Duration::from_secs(unix(2041, 1, 1) as u64);
    let report = client.verify_chain(&[p.leaf.der.clone(), p.int.der.clone()], NAME, later);
    assert_eq!(reason(&report), Some((Reason::CertExpired, Some(0))));
}

#[test]
fn a_kept_verdict_answers_only_for_the_same_chain_name_and_time() {
    let p = pki(Alg::Ecdsa);
    let files = ca_files(&[p.root.pem()]);
    let client = client(&files, MinVersion::Tls12);
    let chain = [p.leaf.der.clone(), p.int.der.clone()];
    let first = client.verify_chain(&chain, NAME, now());
    assert!(first.valid());
    assert_eq!(client.inner.store.verdicts.len(), 1);
    // The same chain for the same name: the kept report, with the same facts.
    let again = client.verify_chain(&chain, NAME, now());
    assert!(again.valid());
    assert_eq!(again.built.len(), first.built.len());
    for (a, b) in again.built.iter().zip(&first.built) {
        assert_eq!(
            (a.depth, &a.fingerprint_sha256, a.sent),
            (b.depth, &b.fingerprint_sha256, b.sent)
        );
    }
    assert_eq!(again.sent_complete, first.sent_complete);
    // Another name, fewer certificates, a later time: analysed, not answered from the kept one.
    let other_name = client.verify_chain(&chain, "other.example.test", now());
    assert_eq!(
        reason(&other_name),
        Some((Reason::CertHostnameMismatch, Some(0)))
    );
    let leaf_only = client.verify_chain(&chain[..1], NAME, now());
    assert_eq!(
        reason(&leaf_only),
        Some((Reason::CertIncompleteChain, None))
    );
    let later = UNIX_EPOCH + Duration::from_secs(unix(2041, 1, 1) as u64);
    let expired = client.verify_chain(&chain, NAME, later);
    assert_eq!(reason(&expired), Some((Reason::CertExpired, Some(0))));
    // Chains that did not verify are not kept.
    assert_eq!(client.inner.store.verdicts.len(), 1);
}

#[tokio::test]
async fn server_without_the_leaf_key_fails_the_handshake() {
    // The server presents a valid chain but signs the handshake with another key: the chain
    // verdict is deferred, the proof of key possession is not.
    let p = pki(Alg::Ecdsa);
    let files = ca_files(&[p.root.pem()]);
    let client = client(&files, MinVersion::Tls12);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let wrong_key = key(Alg::Ecdsa, "leaf");
    let signer = provider
        .key_provider
        .load_private_key(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            wrong_key.serialize_der(),
        )))
        .unwrap();
    let certified =
        rustls::sign::CertifiedKey::new(vec![p.leaf.der.clone(), p.int.der.clone()], signer);
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(rustls::ALL_VERSIONS)
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(certified)));
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    spawn_server(server_io, Arc::new(config));
    let failure = tokio::time::timeout(
        Duration::from_secs(10),
        client.handshake(client_io, NAME, now()),
    )
    .await
    .unwrap()
    .unwrap_err();
    assert_eq!(failure.reason, Reason::TlsHandshakeFailed);
    assert!(
        failure.detail.contains("BadSignature"),
        "{}",
        failure.detail
    );
}

#[test]
fn system_store_is_optional_when_a_ca_file_gives_anchors() {
    // Whether or not this machine has a system store, the client builds and holds the CA file.
    let p = pki(Alg::Ecdsa);
    let files = ca_files(&[p.root.pem()]);
    let client = TlsClient::new(&TlsSettings {
        trust: vec![TrustKind::System],
        ca_files: files.paths.clone(),
        ..TlsSettings::default()
    })
    .unwrap();
    let (anchors, _) = client.trust_counts();
    assert!(anchors >= 1);
    let report = client.verify_chain(&[p.leaf.der.clone(), p.int.der.clone()], NAME, now());
    assert!(report.valid(), "{:?}", report.error);
}

#[tokio::test]
async fn handshake_reports_group_signature_scheme_and_stapled_ocsp() {
    for (alg, scheme) in [
        (Alg::Ecdsa, "ecdsa_secp256r1_sha256"),
        (Alg::Rsa, "rsa_pss_rsae_sha512"),
    ] {
        let p = pki(alg);
        let files = ca_files(&[p.root.pem()]);
        let serial = cert::parse(&p.leaf.der).unwrap().raw_serial().to_vec();
        let staple = crate::demo::ocsp::response(&serial, OcspCertStatus::Good, now());
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        spawn_server(
            server_io,
            stapling_server_config(
                vec![p.leaf.der.clone(), p.int.der.clone()],
                &p.leaf.key,
                rustls::ALL_VERSIONS,
                staple,
            ),
        );
        let (_, report) = client(&files, MinVersion::Tls12)
            .handshake(client_io, NAME, now())
            .await
            .unwrap();
        assert_eq!(report.version, "TLSv1.3");
        assert_eq!(report.key_exchange_group.as_deref(), Some("X25519"));
        assert_eq!(report.signature_scheme.as_deref(), Some(scheme));
        let ocsp = report.ocsp.expect("a stapled response");
        assert_eq!(ocsp.response_status, "successful");
        assert_eq!(ocsp.cert_status, Some(OcspCertStatus::Good));
        assert_eq!(ocsp.next_update, Some(NOW_SECS as i64 + 86_400));
    }
}

#[test]
fn blackbox_spellings_of_version_and_cipher() {
    assert_eq!(blackbox_version_name("TLSv1.3"), "TLS 1.3");
    assert_eq!(blackbox_version_name("TLSv1.2"), "TLS 1.2");
    assert_eq!(
        iana_cipher_name("TLS13_AES_256_GCM_SHA384"),
        "TLS_AES_256_GCM_SHA384"
    );
    assert_eq!(
        iana_cipher_name("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"),
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
    );
    assert_eq!(
        openssl_verify_text(20),
        "unable to get local issuer certificate"
    );
}
