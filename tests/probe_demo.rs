//! The probe engine against the embedded STARTTLS server: every TLS mode, AUTH, a full token
//! send, and the TLS failure reasons, each checked on the outcome and on its metrics.

mod support;

use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use smtp_prober::demo::ocsp::OcspCertStatus;
use smtp_prober::demo::{self, DemoPki, DemoServer, PkiOptions, Sent, ServerConfig, Verb};
use smtp_prober::probe::kept::KeptOutcome;
use smtp_prober::probe::module::{
    AuthSettings, Credential, MechanismChoice, MessageSettings, Module, TlsMode,
};
use smtp_prober::probe::target::parse_target;
use smtp_prober::probe::{self, Budget, PreparedModule, ProbeOutcome};
use smtp_prober::report;
use smtp_prober::secret::Secret;
use smtp_prober::smtp::command::{ClientName, Mailbox};
use smtp_prober::tls::TlsSettings;
use smtp_prober::vocab::{Audience, Reason, StepName};
use support::outcome::{failure, metrics, step_codes, FULL_STARTTLS_SEND};

struct Fixture {
    _dir: tempfile::TempDir,
    root_file: std::path::PathBuf,
}

fn root_file(pki: &DemoPki) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root_file = dir.path().join("root.pem");
    std::fs::File::create(&root_file)
        .unwrap()
        .write_all(pki.root_pem().as_bytes())
        .unwrap();
    Fixture {
        _dir: dir,
        root_file,
    }
}

fn module(tls: TlsMode, ca: &Fixture) -> Module {
    Module {
        tls,
        timeout: Duration::from_secs(5),
        ehlo: ClientName::new("probe.test").unwrap(),
        tls_config: TlsSettings {
            trust: vec![],
            ca_files: vec![ca.root_file.clone()],
            server_name: Some("localhost".into()),
            ..TlsSettings::default()
        },
        ..Module::default()
    }
}

fn with_auth(mut m: Module, password: &str) -> Module {
    m.auth = Some(AuthSettings {
        mechanism: MechanismChoice::Auto,
        username: "probe".into(),
        credential: Credential::Password(Secret::new(password)),
    });
    m
}

fn with_message(mut m: Module) -> Module {
    m.message = Some(MessageSettings {
        from: Mailbox::new("probe@example.test").unwrap(),
        to: vec![Mailbox::new("inbox@example.test").unwrap()],
        subject: "MFA delivery probe {token}".into(),
        body: "Your authentication token code is {token}.\n.\n".into(),
    });
    m
}

async fn run(m: Module, server: &DemoServer) -> ProbeOutcome {
    let prepared: Arc<PreparedModule> = PreparedModule::new("test", m).unwrap();
    let target = parse_target(&server.addr().to_string(), 25).unwrap();
    probe::run(&prepared, &target, Budget::new(prepared.module.timeout)).await
}

#[tokio::test]
async fn starttls_auth_and_token_send() {
    let server = DemoServer::start(ServerConfig::default()).await.unwrap();
    let ca = root_file(server.pki());
    let o = run(
        with_message(with_auth(module(TlsMode::Starttls, &ca), "secret")),
        &server,
    )
    .await;
    assert!(o.success(), "{}", report::text::render(&o));
    assert_eq!(step_codes(&o), FULL_STARTTLS_SEND);
    let tls = o.session.tls.as_ref().unwrap();
    assert!(tls.chain.valid() && tls.chain.sent_complete);
    assert_eq!(tls.chain.sent.len(), 2);
    assert_eq!(
        tls.chain.built.len(),
        3,
        "leaf, intermediate, root from the CA file"
    );
    assert!(!tls.chain.built[2].sent);
    assert!(tls.version.starts_with("TLSv1."));

    // What the server received: our headers, un-dot-stuffed body, after TLS, authenticated.
    let received = server.received();
    assert_eq!(received.len(), 1);
    let m = &received[0];
    assert!(m.tls);
    assert_eq!(m.auth_user.as_deref(), Some("probe"));
    assert_eq!(m.from, "probe@example.test");
    assert_eq!(m.rcpts, vec!["inbox@example.test".to_string()]);
    let data = String::from_utf8_lossy(&m.data);
    assert!(data.contains(&format!(
        "X-Smtp-Prober-Id: {}",
        o.probe_id.as_ref().unwrap()
    )));
    assert!(
        data.contains("\r\n.\r\n"),
        "a lone dot line in the body arrives intact: {data}"
    );

    let text = metrics(&o);
    for line in [
        "probe_success 1",
        "probe_smtp_message_accepted 1",
        "probe_tls_chain_valid 1",
        "probe_tls_certs_sent 2",
        "probe_tls_chain_sent_complete 1",
        r#"probe_smtp_step_reply_code{step="auth"} 235"#,
        r#"probe_smtp_auth_mechanism_info{mechanism="PLAIN"} 1"#,
        r#"probe_smtp_extensions_info{extensions="8BITMIME,AUTH,ENHANCEDSTATUSCODES,PIPELINING,SIZE,SMTPUTF8"} 1"#,
        r#"probe_ip_protocol 4"#,
        // blackbox_exporter's hash of 127.0.0.1, and its label spellings.
        r#"probe_ip_addr_hash 3668918509"#,
        r#"probe_tls_version_info{version="TLS 1.3"} 1"#,
        r#"probe_tls_cipher_info{cipher="TLS_AES_128_GCM_SHA256"} 1"#,
        r#"probe_tls_handshake_info{key_exchange_group="X25519",signature_scheme="ecdsa_secp256r1_sha256"} 1"#,
        "probe_tls_ocsp_stapled 0",
        "probe_ssl_last_chain_expiry_timestamp_seconds ",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    for family in [
        "probe_tls_cert_not_after_timestamp_seconds{",
        "probe_tls_cert_not_before_timestamp_seconds{",
    ] {
        assert_eq!(text.matches(family).count(), 3, "{family} in\n{text}");
    }
    assert!(!text.contains("probe_tls_ocsp_info"), "nothing stapled");
    // Every reply was positive: the codes above say it all, no reply_info repeats them.
    assert!(!text.contains("probe_smtp_reply_info{"), "{text}");
    assert!(
        text.contains(r#"sent="0"} "#),
        "the root from the CA file is marked sent=0"
    );
    // The token never appears anywhere.
    let token = data
        .lines()
        .find_map(|l| l.strip_prefix("Subject: MFA delivery probe "))
        .unwrap()
        .to_string();
    for out in [
        report::text::render(&o),
        report::json::to_json(&o),
        text,
        format!("{o:?}"),
    ] {
        assert!(!out.contains(&token));
        assert!(!out.contains("secret\0") && !out.contains("\"secret\""));
    }
}

#[tokio::test]
async fn implicit_tls_and_plain() {
    let server = DemoServer::start(ServerConfig {
        tls: demo::TlsMode::Implicit,
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let ca = root_file(server.pki());
    let o = run(with_auth(module(TlsMode::Implicit, &ca), "secret"), &server).await;
    assert!(o.success(), "{}", report::text::render(&o));
    assert_eq!(
        step_codes(&o)[2..],
        [
            ("tls_handshake", None),
            ("greeting", Some(220)),
            ("ehlo", Some(250)),
            ("auth", Some(235)),
            ("quit", Some(221))
        ]
    );

    let server = DemoServer::start(ServerConfig {
        tls: demo::TlsMode::None,
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let o = run(module(TlsMode::None, &ca), &server).await;
    assert!(o.success(), "{}", report::text::render(&o));
    assert!(o.session.tls.is_none());
    assert!(!metrics(&o).contains("probe_tls_"));
}

/// A server on the SMTPS port that waits for a ClientHello, probed with STARTTLS: after 1.5 s
/// of silence the probe asks it with a ClientHello, and its TLS answer makes the failure
/// `tls_mode_mismatch` in the greeting, long before the deadline (before: a silent wait for the
/// whole deadline, then "timeout: the server stopped answering").
#[tokio::test]
async fn implicit_tls_on_465_is_recognised() {
    let listen: std::net::SocketAddr = "127.0.0.46:465".parse().unwrap();
    let server = match DemoServer::start(ServerConfig {
        listen,
        tls: demo::TlsMode::Implicit,
        ..ServerConfig::default()
    })
    .await
    {
        Ok(server) => server,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            eprintln!("skipping implicit_tls_on_465_is_recognised: cannot bind {listen} ({e})");
            return;
        }
        Err(e) => panic!("binding {listen}: {e}"),
    };
    let ca = root_file(server.pki());
    for mode in [TlsMode::Starttls, TlsMode::None] {
        let mut m = module(mode, &ca);
        m.timeout = Duration::from_secs(10);
        let began = std::time::Instant::now();
        let o = run(m, &server).await;
        assert_eq!(failure(&o), (StepName::Greeting, Reason::TlsModeMismatch));
        assert!(
            began.elapsed() < Duration::from_secs(3),
            "{:?}",
            began.elapsed()
        );
        let detail = &o.failure.as_ref().unwrap().detail;
        assert!(detail.contains("implicit TLS (SMTPS)"), "{detail}");
        let text = report::text::render_for(&o, Audience::Cli);
        assert!(text.contains("--tls=implicit"), "{text}");
    }
    // The right mode works there, of course.
    let o = run(module(TlsMode::Implicit, &ca), &server).await;
    assert!(o.success(), "{}", report::text::render(&o));
}

/// The other way round: implicit TLS against a server that greets in plain text fails at once
/// with `tls_mode_mismatch`; STARTTLS against a silent implicit-TLS server on another port
/// waits for the deadline, and then says that such a server waits like this.
#[tokio::test]
async fn tls_mode_mismatch_the_other_way_and_elsewhere() {
    let plain = DemoServer::start(ServerConfig::default()).await.unwrap();
    let ca = root_file(plain.pki());
    let o = run(module(TlsMode::Implicit, &ca), &plain).await;
    assert_eq!(
        failure(&o),
        (StepName::TlsHandshake, Reason::TlsModeMismatch)
    );
    let detail = &o.failure.as_ref().unwrap().detail;
    assert!(detail.contains("greets in plain text"), "{detail}");

    let implicit = DemoServer::start(ServerConfig {
        tls: demo::TlsMode::Implicit,
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let mut m = module(TlsMode::Starttls, &ca);
    m.timeout = Duration::from_millis(800);
    let o = run(m, &implicit).await;
    assert_eq!(failure(&o), (StepName::Greeting, Reason::Timeout));
    let detail = &o.failure.as_ref().unwrap().detail;
    assert!(detail.contains("implicit TLS, SMTPS"), "{detail}");
}

#[tokio::test]
async fn auth_535_over_starttls() {
    let server = DemoServer::start(ServerConfig::default()).await.unwrap();
    let ca = root_file(server.pki());
    let o = run(with_auth(module(TlsMode::Starttls, &ca), "wrong"), &server).await;
    assert_eq!(failure(&o), (StepName::Auth, Reason::AuthFailed));
    let text = metrics(&o);
    assert!(
        text.contains(r#"probe_smtp_reply_info{step="auth",code="535",enhanced_code="5.7.8"} 1"#)
    );
    // Only the refused step's reply: the positive ones before it are in step_reply_code alone.
    assert_eq!(text.matches("probe_smtp_reply_info{").count(), 1, "{text}");
    assert!(text.contains(r#"probe_smtp_step_reply_code{step="ehlo_tls"} 250"#));
    assert!(report::text::render(&o).contains("hint (bad_credentials)"));
}

#[tokio::test]
async fn starttls_rejected_and_not_offered() {
    let server = DemoServer::start(ServerConfig::default().reply_to(
        Verb::Starttls,
        "454 4.7.0 TLS not available due to local problem",
    ))
    .await
    .unwrap();
    let ca = root_file(server.pki());
    let o = run(module(TlsMode::Starttls, &ca), &server).await;
    assert_eq!(failure(&o), (StepName::Starttls, Reason::StarttlsRejected));

    let server = DemoServer::start(ServerConfig {
        advertise_starttls: false,
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let o = run(module(TlsMode::Starttls, &ca), &server).await;
    assert_eq!(
        failure(&o),
        (StepName::Starttls, Reason::StarttlsNotOffered)
    );
}

#[tokio::test]
async fn tls_handshake_failed() {
    // The server speaks TLS 1.2 only; the module requires 1.3.
    let server = DemoServer::start(ServerConfig {
        tls_versions: demo::TlsVersions::Tls12Only,
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let ca = root_file(server.pki());
    let mut m = module(TlsMode::Starttls, &ca);
    m.tls_config.min_version = smtp_prober::tls::MinVersion::Tls13;
    let o = run(m.clone(), &server).await;
    assert_eq!(
        failure(&o),
        (StepName::TlsHandshake, Reason::TlsHandshakeFailed)
    );
    m.tls_config.min_version = smtp_prober::tls::MinVersion::Tls12;
    let o = run(m, &server).await;
    assert!(o.success());
    assert_eq!(o.session.tls.as_ref().unwrap().version, "TLSv1.2");
}

async fn chain_verdict(
    server_config: ServerConfig,
    tweak: impl FnOnce(&mut Module),
) -> (ProbeOutcome, Fixture) {
    let server = DemoServer::start(server_config).await.unwrap();
    let ca = root_file(server.pki());
    let mut m = module(TlsMode::Starttls, &ca);
    tweak(&mut m);
    (run(m, &server).await, ca)
}

#[tokio::test]
async fn certificate_reasons() {
    let day = Duration::from_secs(86_400);
    let now = SystemTime::now();

    // Nothing trusts the demo root.
    let (o, _) = chain_verdict(ServerConfig::default(), |m| {
        m.tls_config.ca_files.clear();
        m.tls_config.trust = vec![smtp_prober::tls::TrustKind::Bundled];
    })
    .await;
    assert_eq!(
        failure(&o),
        (StepName::TlsHandshake, Reason::CertUnknownIssuer)
    );
    let text = metrics(&o);
    assert!(text.contains("probe_tls_chain_valid 0"));
    assert!(text.contains(r#"probe_tls_chain_error_info{reason="cert_unknown_issuer"} 1"#));
    assert_eq!(
        text.matches("probe_tls_cert_not_after_timestamp_seconds{")
            .count(),
        2,
        "dates still exported:\n{text}"
    );
    assert!(text.contains("probe_ssl_earliest_cert_expiry "));
    // As in blackbox_exporter, only a verified chain has a "last chain" expiry.
    assert!(
        !text.contains("probe_ssl_last_chain_expiry_timestamp_seconds"),
        "{text}"
    );
    assert!(
        o.session.transcript.step(StepName::EhloTls).is_none(),
        "nothing more is said over an untrusted chain"
    );

    // Expired leaf.
    let mut opts = PkiOptions::new(&["localhost"]);
    opts.leaf_not_before = now - 30 * day;
    opts.leaf_not_after = now - day;
    let pki = Arc::new(DemoPki::with_options(&opts).unwrap());
    let (o, _) = chain_verdict(
        ServerConfig {
            pki: pki.clone(),
            ..ServerConfig::default()
        },
        |_| {},
    )
    .await;
    assert_eq!(failure(&o), (StepName::TlsHandshake, Reason::CertExpired));
    // Built to the anchor, but it does not verify: no "last chain" expiry either.
    let text = metrics(&o);
    assert!(
        !text.contains("probe_ssl_last_chain_expiry_timestamp_seconds"),
        "{text}"
    );
    assert!(text.contains("probe_tls_chain_sent_complete 1"));
    assert_eq!(
        o.session
            .tls
            .as_ref()
            .unwrap()
            .chain
            .error
            .as_ref()
            .unwrap()
            .depth,
        Some(0)
    );

    // Host name mismatch.
    let (o, _) = chain_verdict(ServerConfig::default(), |m| {
        m.tls_config.server_name = Some("mail.other.test".into())
    })
    .await;
    assert_eq!(
        failure(&o),
        (StepName::TlsHandshake, Reason::CertHostnameMismatch)
    );

    // Self-signed leaf.
    let mut opts = PkiOptions::new(&["localhost"]);
    opts.self_signed_leaf = true;
    let pki = Arc::new(DemoPki::with_options(&opts).unwrap());
    let (o, _) = chain_verdict(
        ServerConfig {
            pki,
            sent: Sent::LeafOnly,
            ..ServerConfig::default()
        },
        |_| {},
    )
    .await;
    assert_eq!(
        failure(&o),
        (StepName::TlsHandshake, Reason::CertSelfSigned)
    );

    // Leaf only: the intermediate is missing.
    let (o, _) = chain_verdict(
        ServerConfig {
            sent: Sent::LeafOnly,
            ..ServerConfig::default()
        },
        |_| {},
    )
    .await;
    assert_eq!(
        failure(&o),
        (StepName::TlsHandshake, Reason::CertIncompleteChain)
    );
}

#[tokio::test]
async fn stapled_ocsp_responses() {
    for (status, label) in [
        (OcspCertStatus::Good, "good"),
        (OcspCertStatus::Revoked, "revoked"),
    ] {
        let before = SystemTime::now();
        let (o, _) = chain_verdict(
            ServerConfig {
                ocsp: Some(status),
                ..ServerConfig::default()
            },
            |_| {},
        )
        .await;
        // A staple informs; it does not decide the verdict.
        assert!(o.success(), "{}", report::text::render(&o));
        let staple = o.session.tls.as_ref().unwrap().ocsp.clone().unwrap();
        assert_eq!(staple.cert_status, Some(status));
        let text = metrics(&o);
        assert!(text.contains("probe_tls_ocsp_stapled 1"), "{text}");
        let info = format!(
            r#"probe_tls_ocsp_info{{response_status="successful",cert_status="{label}"}} 1"#
        );
        assert!(text.contains(&info), "{text}");
        let next = support::exporter::sample(&text, "probe_tls_ocsp_next_update_timestamp_seconds")
            .expect("next update");
        let expected = before
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
            + demo::ocsp::VALIDITY.as_secs_f64();
        assert!((next - expected).abs() < 5.0, "{next} vs {expected}");
    }
}

#[tokio::test]
async fn insecure_skip_verify_reports_and_carries_on() {
    let (o, _) = chain_verdict(ServerConfig::default(), |m| {
        m.tls_config.ca_files.clear();
        m.tls_config.trust = vec![smtp_prober::tls::TrustKind::Bundled];
        m.tls_config.insecure_skip_verify = true;
    })
    .await;
    assert!(o.success(), "{}", report::text::render(&o));
    assert!(o.session.transcript.step(StepName::EhloTls).is_some());
    let text = metrics(&o);
    assert!(text.contains("probe_success 1"));
    assert!(text.contains("probe_tls_chain_valid 0"));
    assert!(text.contains(r#"probe_tls_chain_error_info{reason="cert_unknown_issuer"} 1"#));
}

#[tokio::test]
async fn cert_expiring_soon() {
    let (o, _) = chain_verdict(ServerConfig::default(), |m| {
        m.expect.cert_min_validity = Some(Duration::from_secs(400 * 86_400));
    })
    .await;
    assert_eq!(
        failure(&o),
        (StepName::TlsHandshake, Reason::CertExpiringSoon)
    );
    assert!(
        o.session.failure().is_none(),
        "every step passed; the expectation failed the probe"
    );
    // One wording for durations, in days (before: "sooner than 1year 1month 4days 1h 55m").
    let detail = &o.failure.as_ref().unwrap().detail;
    assert!(
        detail.contains(" days, sooner than the 400 days expect.cert_min_validity asks for")
            && detail.contains("expires in 36"),
        "{detail}"
    );
}

/// The transcript and the JSON document tell what `openssl s_client -status` tells: version
/// and cipher as OpenSSL spells them, the key exchange group, the server's signature scheme,
/// the stapled OCSP response, and OpenSSL's verify code next to our reason; hints name the
/// flags for the command line and the configuration keys for the exporter.
#[tokio::test]
async fn transcript_and_json_carry_openssl_facts() {
    let (o, _) = chain_verdict(
        ServerConfig {
            ocsp: Some(OcspCertStatus::Good),
            ..ServerConfig::default()
        },
        |m| {
            m.tls_config.ca_files.clear();
            m.tls_config.trust = vec![smtp_prober::tls::TrustKind::Bundled];
        },
    )
    .await;
    let cli = report::text::render_for(&o, Audience::Cli);
    for line in [
        "tls_handshake    TLSv1.3 TLS_AES_128_GCM_SHA256",
        "TLS: TLSv1.3 TLS_AES_128_GCM_SHA256, key exchange X25519, server signature \
         ecdsa_secp256r1_sha256",
        "OCSP: good, produced ",
        "  openssl: Verify return code: 20 (unable to get local issuer certificate)",
        "hint: the chain ends at a root the prober does not trust; add your CA's root with \
         --ca-file",
    ] {
        assert!(cli.contains(line), "missing {line:?} in\n{cli}");
    }
    let exporter = report::text::render(&o);
    assert!(exporter.contains("to tls_config.ca_files"), "{exporter}");
    assert!(!exporter.contains("--ca-file"), "{exporter}");

    let json: serde_json::Value = serde_json::from_str(&report::json::to_json(&o)).unwrap();
    let started = json["started_at"].as_str().expect("a timestamp");
    let parsed =
        time::OffsetDateTime::parse(started, &time::format_description::well_known::Rfc3339)
            .expect("RFC 3339");
    let age = time::OffsetDateTime::now_utc() - parsed;
    assert!(age.whole_seconds().abs() < 60, "{started}");
    let tls = &json["tls"];
    assert_eq!(tls["version"], "TLSv1.3");
    assert_eq!(tls["cipher"], "TLS_AES_128_GCM_SHA256");
    assert_eq!(tls["key_exchange_group"], "X25519");
    assert_eq!(tls["signature_scheme"], "ecdsa_secp256r1_sha256");
    assert_eq!(tls["ocsp"]["cert_status"], "good");
    assert_eq!(tls["chain_error"], "cert_unknown_issuer");
    assert_eq!(tls["openssl_verify_code"], 20);
    assert!(
        json["hint"].as_str().unwrap().contains("--ca-file"),
        "{json:#}"
    );
}

#[tokio::test]
async fn timeout_in_a_named_step_over_tls() {
    let server = DemoServer::start(ServerConfig::default().stall_at(Verb::EhloTls))
        .await
        .unwrap();
    let ca = root_file(server.pki());
    let mut m = module(TlsMode::Starttls, &ca);
    m.timeout = Duration::from_millis(800);
    let began = std::time::Instant::now();
    let o = run(m, &server).await;
    assert_eq!(failure(&o), (StepName::EhloTls, Reason::Timeout));
    assert!(began.elapsed() < Duration::from_millis(1300));
}

/// Everything an outcome says but its instants (which a kept outcome does not keep), the
/// certificates without their DER (which it drops), and every output rendered from it.
fn whole(o: &ProbeOutcome) -> String {
    let s = &o.session;
    let mut tls = s.tls.clone();
    if let Some(tls) = tls.as_mut() {
        for cert in tls.chain.sent.iter_mut().chain(tls.chain.built.iter_mut()) {
            Arc::make_mut(cert).der = rustls::pki_types::CertificateDer::from(Vec::new());
        }
    }
    format!(
        "{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:#?}\n{:?}\n{:#?}\n{:#?}\n{:#?}\n{:?}\n{:?}\n{:?}\n{:?}\n\
         {:#?}\n{:?}\n{:?}\n{}\n{}\n{}",
        o.target,
        o.module,
        o.started_at,
        o.duration,
        o.timeout,
        s.transcript.steps(),
        s.peer,
        s.server,
        s.server_tls,
        tls,
        s.auth_mechanism,
        s.message_accepted,
        o.failure,
        o.probe_id,
        o.delivery,
        o.cancelled,
        o.message_configured,
        report::text::render(o),
        report::json::to_json(o),
        metrics(o),
    )
}

/// A scheduled target keeps its latest outcome compactly (`KeptOutcome`); what it gives back
/// for the status pages and `/logs` is the outcome it was made from, for every kind of probe:
/// a full send over STARTTLS, refused credentials, implicit TLS (its only EHLO is over TLS), plain
/// SMTP, a refused STARTTLS, a failed handshake, and a delivery check with its hops.
#[tokio::test]
async fn kept_outcomes_read_back_whole() {
    let serve = |config: ServerConfig| async { DemoServer::start(config).await.unwrap() };
    let starttls = serve(ServerConfig::default()).await;
    let ca = root_file(starttls.pki());
    let implicit = serve(ServerConfig {
        tls: demo::TlsMode::Implicit,
        ..ServerConfig::default()
    });
    let plain = serve(ServerConfig {
        tls: demo::TlsMode::None,
        ..ServerConfig::default()
    });
    let refusing = serve(ServerConfig::default().reply_to(
        Verb::Starttls,
        "454 4.7.0 TLS not available due to local problem",
    ));
    let tls12 = serve(ServerConfig {
        tls_versions: demo::TlsVersions::Tls12Only,
        ..ServerConfig::default()
    });
    let (implicit, plain, refusing, tls12) = tokio::join!(implicit, plain, refusing, tls12);
    let mut tls13 = module(TlsMode::Starttls, &ca);
    tls13.tls_config.min_version = smtp_prober::tls::MinVersion::Tls13;

    let mut delivered = run(
        with_message(with_auth(module(TlsMode::Starttls, &ca), "secret")),
        &starttls,
    )
    .await;
    delivered.delivery = Some(probe::DeliveryReport {
        success: true,
        duration: Some(Duration::from_millis(1_250)),
        mailbox: Some("INBOX".into()),
        received: vec!["from a.test by b.test; Mon, 30 Nov 2026 10:00:00 +0000".into()],
        polls: 3,
        cleaned_up: true,
        ..probe::DeliveryReport::default()
    });
    let outcomes = [
        delivered,
        run(
            with_auth(module(TlsMode::Starttls, &ca), "wrong"),
            &starttls,
        )
        .await,
        run(
            with_auth(module(TlsMode::Implicit, &ca), "secret"),
            &implicit,
        )
        .await,
        run(module(TlsMode::None, &ca), &plain).await,
        run(module(TlsMode::Starttls, &ca), &refusing).await,
        run(tls13, &tls12).await,
    ];
    let failures: Vec<_> = outcomes
        .iter()
        .map(|o| o.failure.as_ref().map(|f| f.reason))
        .collect();
    assert_eq!(
        failures,
        [
            None,
            Some(Reason::AuthFailed),
            None,
            None,
            Some(Reason::StarttlsRejected),
            Some(Reason::TlsHandshakeFailed)
        ]
    );
    for o in outcomes {
        let before = whole(&o);
        let hint = o.provider_hint().map(|h| h.id);
        let kept = KeptOutcome::new(o);
        assert_eq!(whole(&kept.outcome()), before);
        assert_eq!(kept.provider_hint().map(|h| h.id), hint);
    }
}

/// The status overview asks a kept outcome for the provider's hint without expanding it: the
/// reply that failed the probe is read from the kept text, after the steps before it.
#[tokio::test]
async fn a_kept_outcome_finds_the_provider_hint_of_its_failed_reply() {
    let server = DemoServer::start(ServerConfig::default().reply_to(
        Verb::Auth,
        "535 5.7.139 Authentication unsuccessful, the user credentials were incorrect.",
    ))
    .await
    .unwrap();
    let ca = root_file(server.pki());
    let o = run(with_auth(module(TlsMode::Starttls, &ca), "secret"), &server).await;
    assert_eq!(
        o.failure.as_ref().map(|f| f.reason),
        Some(Reason::AuthFailed)
    );
    assert_eq!(o.provider_hint().map(|h| h.id), Some("bad_credentials"));
    let kept = KeptOutcome::new(o);
    assert_eq!(kept.provider_hint().map(|h| h.id), Some("bad_credentials"));
}
