//! The probe engine and the delivery check against a real Postfix (STARTTLS, implicit TLS, SASL
//! through Dovecot) and a real Dovecot (IMAPS, IMAP STARTTLS, LMTP delivery): the private stack
//! of tests/support/mailstack.rs, started once for this test binary.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use smtp_prober::probe::module::{
    AuthSettings, Credential, DeliverySettings, ImapAccess, ImapTls, MailboxAccess,
    MechanismChoice, MessageSettings, Module, TlsMode,
};
use smtp_prober::probe::target::parse_target;
use smtp_prober::probe::{self, Budget, PreparedModule, ProbeOutcome};
use smtp_prober::report;
use smtp_prober::secret::Secret;
use smtp_prober::smtp::command::{ClientName, Mailbox};
use smtp_prober::tls::TlsSettings;
use smtp_prober::vocab::{Reason, StepName};
use support::mailstack::{maildir_messages, plant, MailStack, Options, INBOX, PROBE};
use support::outcome::{failure, step_codes, FULL_STARTTLS_SEND};

fn tls(stack: &MailStack) -> TlsSettings {
    TlsSettings {
        trust: vec![],
        ca_files: vec![stack.root_ca_pem_path().to_path_buf()],
        server_name: Some("localhost".into()),
        ..TlsSettings::default()
    }
}

fn module(stack: &MailStack, mode: TlsMode) -> Module {
    Module {
        tls: mode,
        timeout: Duration::from_secs(10),
        ehlo: ClientName::new("probe.example.test").unwrap(),
        tls_config: tls(stack),
        auth: Some(AuthSettings {
            mechanism: MechanismChoice::Auto,
            username: PROBE.address.into(),
            credential: Credential::Password(Secret::new(PROBE.password)),
        }),
        ..Module::default()
    }
}

fn with_message(mut m: Module, to: &str) -> Module {
    m.message = Some(MessageSettings {
        from: Mailbox::new(PROBE.address).unwrap(),
        to: vec![Mailbox::new(to).unwrap()],
        subject: "MFA delivery probe {token}".into(),
        body: "Your authentication token code is {token}.".into(),
    });
    m
}

fn with_delivery(
    stack: &MailStack,
    mut m: Module,
    f: impl FnOnce(&mut DeliverySettings),
) -> Module {
    let mut d = DeliverySettings {
        access: MailboxAccess::Imap(ImapAccess {
            host: "127.0.0.1".into(),
            port: stack.imaps_addr().port(),
            tls: ImapTls::Implicit,
            tls_config: tls(stack),
            username: INBOX.address.into(),
            credential: Credential::Password(Secret::new(INBOX.password)),
        }),
        mailboxes: vec!["INBOX".into(), "Junk".into()],
        timeout: Duration::from_secs(20),
        cleanup: true,
        sweep_older_than: Duration::from_secs(3600),
        lost_after: Duration::from_secs(3600),
        junk_is_failure: false,
    };
    f(&mut d);
    m.delivery = Some(d);
    m
}

async fn run(m: Module, addr: std::net::SocketAddr) -> ProbeOutcome {
    let prepared: Arc<PreparedModule> = PreparedModule::new("real", m).unwrap();
    let target = parse_target(&addr.to_string(), 25).unwrap();
    probe::run(&prepared, &target, Budget::new(prepared.module.timeout)).await
}

#[tokio::test(flavor = "multi_thread")]
async fn postfix_submission_full_send_steps() {
    if !MailStack::available("postfix_submission_full_send_steps") {
        return;
    }
    let stack = MailStack::shared();
    let o = run(
        with_message(module(stack, TlsMode::Starttls), INBOX.address),
        stack.submission_addr(),
    )
    .await;
    assert!(
        o.success(),
        "{}\n{}",
        report::text::render(&o),
        stack.log_tail()
    );
    assert_eq!(step_codes(&o), FULL_STARTTLS_SEND);
    let tls = o.session.tls.as_ref().unwrap();
    assert!(tls.chain.valid() && tls.chain.sent_complete);
    assert_eq!(tls.chain.sent.len(), 2);
    let ext = &o.session.server.as_ref().unwrap();
    assert!(ext.supports_starttls());
    assert!(
        ext.auth_mechanisms().is_empty(),
        "Postfix offers AUTH only after STARTTLS here"
    );
    assert_eq!(
        o.session.server_tls.as_ref().unwrap().auth_mechanisms(),
        vec!["PLAIN", "LOGIN"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn postfix_implicit_tls_plain_port_and_rejections() {
    if !MailStack::available("postfix_implicit_tls_plain_port_and_rejections") {
        return;
    }
    let stack = MailStack::shared();
    let o = run(module(stack, TlsMode::Implicit), stack.smtps_addr()).await;
    assert!(o.success(), "{}", report::text::render(&o));
    assert_eq!(step_codes(&o)[2].0, "tls_handshake");

    let mut plain = module(stack, TlsMode::None);
    plain.auth = None;
    let o = run(
        with_message(plain.clone(), INBOX.address),
        stack.smtp_addr(),
    )
    .await;
    assert!(o.success(), "{}", report::text::render(&o));

    // An unknown recipient: 550 5.1.1 from a real Postfix.
    let o = run(
        with_message(plain, "nobody@example.test"),
        stack.smtp_addr(),
    )
    .await;
    assert_eq!(failure(&o), (StepName::Rcpt, Reason::RecipientRejected));
    let r = o
        .session
        .transcript
        .step(StepName::Rcpt)
        .unwrap()
        .reply
        .clone()
        .unwrap();
    assert_eq!(
        (r.code, r.enhanced.map(|e| e.to_string())),
        (550, Some("5.1.1".into()))
    );

    // A wrong password: 535 5.7.8 through Dovecot SASL.
    let mut m = module(stack, TlsMode::Starttls);
    m.auth.as_mut().unwrap().credential = Credential::Password(Secret::new("wrong"));
    let o = run(m, stack.submission_addr()).await;
    assert_eq!(failure(&o), (StepName::Auth, Reason::AuthFailed));
    assert_eq!(
        o.session
            .transcript
            .step(StepName::Auth)
            .unwrap()
            .reply
            .as_ref()
            .unwrap()
            .code,
        535
    );

    // STARTTLS required but the probe skips TLS: AUTH is not offered in the clear.
    let o = run(module(stack, TlsMode::None), stack.submission_addr()).await;
    assert_eq!(failure(&o), (StepName::Auth, Reason::AuthNotOffered));
}

#[tokio::test(flavor = "multi_thread")]
async fn delivery_twice_cleans_up_and_spares_other_mail() {
    if !MailStack::available("delivery_twice_cleans_up_and_spares_other_mail") {
        return;
    }
    let stack = MailStack::shared();
    let maildir = stack.maildir(INBOX);
    // Mail that is not ours: a person's message, and a probe mail of some other prober (same
    // header, another id) that a person flagged deleted.
    let other = plant(
        stack,
        &maildir,
        "person",
        "From: alice@example.test\r\nTo: inbox@example.test\r\nSubject: lunch\r\nMessage-ID: <planted-person@example.test>\r\n\r\nsee you\r\n",
    );
    let _ = other;
    let foreign_probe = "From: other-prober@example.test\r\nTo: inbox@example.test\r\nSubject: MFA delivery probe 12345678\r\nX-Smtp-Prober-Id: 0123456789abcdef0123456789abcdef\r\nMessage-ID: <planted-foreign@example.test>\r\n\r\nnot ours\r\n";
    plant(stack, &maildir, "foreign", foreign_probe);

    let m = with_delivery(
        stack,
        with_message(module(stack, TlsMode::Starttls), INBOX.address),
        |_| {},
    );
    let mut durations = Vec::new();
    for _ in 0..2 {
        let o = run(m.clone(), stack.submission_addr()).await;
        assert!(
            o.success(),
            "{}\n{}",
            report::text::render(&o),
            stack.log_tail()
        );
        let d = o.delivery.as_ref().unwrap();
        assert!(d.success);
        assert_eq!(d.mailbox.as_deref(), Some("INBOX"));
        assert!(d.cleaned_up);
        assert!(
            !d.received.is_empty(),
            "the Received headers of the delivered mail are kept"
        );
        let duration = d.duration.unwrap();
        assert!(duration > Duration::ZERO);
        durations.push(duration);
        let metrics = report::metrics::render(&o);
        assert!(metrics.contains("probe_delivery_success 1"));
        assert!(metrics.contains(r#"probe_delivery_mailbox_info{mailbox="INBOX"} 1"#));
        assert!(metrics.contains(r#"probe_smtp_step_duration_seconds{step="delivery"}"#));
        let id = o.probe_id.clone().unwrap();
        let left: Vec<_> = maildir_messages(&maildir)
            .into_iter()
            .filter(|(_, c)| c.contains(&id))
            .collect();
        assert!(left.is_empty(), "our probe mail is gone: {left:?}");
    }
    eprintln!("delivery durations from the real stack: {durations:?}");
    let all = maildir_messages(&maildir);
    assert!(
        all.iter()
            .any(|(_, c)| c.contains("<planted-person@example.test>")),
        "a person's mail survives"
    );
    assert!(
        all.iter()
            .any(|(_, c)| c.contains("<planted-foreign@example.test>")),
        "another prober's mail survives"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn delivery_to_junk_over_imap_starttls() {
    if !MailStack::available("delivery_to_junk_over_imap_starttls") {
        return;
    }
    let stack = MailStack::shared();
    let m = with_delivery(
        stack,
        with_message(module(stack, TlsMode::Starttls), "inbox+Junk@example.test"),
        |d| {
            let MailboxAccess::Imap(imap) = &mut d.access else {
                unreachable!("an IMAP check")
            };
            imap.tls = ImapTls::Starttls;
            imap.port = stack.imap_addr().port();
        },
    );
    let o = run(m.clone(), stack.submission_addr()).await;
    assert!(o.success(), "{}", report::text::render(&o));
    let d = o.delivery.as_ref().unwrap();
    assert_eq!(d.mailbox.as_deref(), Some("Junk"));
    assert!(d.junk, "Junk has the \\Junk special use");
    let metrics = report::metrics::render(&o);
    assert!(metrics.contains("probe_delivery_junk 1"), "{metrics}");
    assert!(metrics.contains(r#"probe_delivery_mailbox_info{mailbox="Junk"} 1"#));
    // The stack stamps mail to this address with failing SPF, DKIM and DMARC results.
    for (method, result) in [("dkim", "fail"), ("spf", "softfail"), ("dmarc", "fail")] {
        let sample =
            format!(r#"probe_delivery_auth_result{{method="{method}",result="{result}"}} 1"#);
        assert!(metrics.contains(&sample), "no {sample} in\n{metrics}");
    }

    // The same mail with `junk_is_failure: true` fails the probe, and says why.
    let mut strict = m;
    strict.delivery.as_mut().unwrap().junk_is_failure = true;
    let o = run(strict, stack.submission_addr()).await;
    let f = o.failure.as_ref().expect("a failure");
    assert_eq!(
        (f.step, f.reason),
        (StepName::Delivery, Reason::DeliveredToJunk)
    );
    assert!(f.detail.contains("Junk"), "{}", f.detail);
    assert!(f.detail.contains("dkim=fail"), "{}", f.detail);
    let d = o.delivery.as_ref().unwrap();
    assert!(d.success && d.junk && d.cleaned_up);
    let metrics = report::metrics::render(&o);
    assert!(metrics.contains("probe_success 0"));
    assert!(metrics.contains("probe_delivery_success 1"));
    assert!(metrics
        .contains(r#"probe_smtp_failed_step_info{step="delivery",reason="delivered_to_junk"} 1"#));
}

/// A real Sieve rule (Dovecot's `sieve_before`, Debian `dovecot-sieve`) files mail whose
/// Authentication-Results say `dkim=fail` into Junk: the probe reports where it landed and the
/// verdicts that put it there, and mail without the failure stays in INBOX.
#[tokio::test(flavor = "multi_thread")]
async fn sieve_filed_mail_is_reported_in_junk_with_its_verdicts() {
    let test = "sieve_filed_mail_is_reported_in_junk_with_its_verdicts";
    if !MailStack::available(test) || !MailStack::sieve_available(test) {
        return;
    }
    let screened = "inbox+screened@example.test";
    let options = Options {
        recipient_access: vec![(
            screened.to_string(),
            "PREPEND Authentication-Results: mx.example.test; dkim=fail (body hash did not \
             verify) header.d=example.test header.s=s1; spf=pass smtp.mailfrom=probe@example.test"
                .to_string(),
        )],
        sieve_before: Some(
            "require [\"fileinto\"];\n\
             if header :contains \"Authentication-Results\" \"dkim=fail\" {\n\
             \x20 fileinto \"Junk\";\n\
             \x20 stop;\n\
             }\n"
            .to_string(),
        ),
        ..Options::default()
    };
    let stack = tokio::task::spawn_blocking(move || MailStack::start_with(&options))
        .await
        .unwrap()
        .unwrap();
    let m = with_delivery(
        &stack,
        with_message(module(&stack, TlsMode::Starttls), screened),
        |_| {},
    );
    let o = run(m, stack.submission_addr()).await;
    let text = report::text::render(&o);
    assert!(o.success(), "{text}\n{}", stack.log_tail());
    eprintln!("{text}");
    let d = o.delivery.as_ref().unwrap();
    assert_eq!(d.mailbox.as_deref(), Some("Junk"), "{}", stack.log_tail());
    assert!(d.junk);
    let verdicts: Vec<(&str, &str)> = d.auth.iter().map(|v| (v.method, v.result)).collect();
    assert_eq!(verdicts, [("dkim", "fail"), ("spf", "pass")]);
    assert_eq!(d.auth[0].authserv_id.as_deref(), Some("mx.example.test"));
    assert_eq!(d.auth[0].property.as_deref(), Some("header.d=example.test"));
    assert!(
        text.contains("authentication results by mx.example.test: dkim=fail (header.d=example.test), spf=pass"),
        "{text}"
    );
    let metrics = report::metrics::render(&o);
    for sample in [
        "probe_delivery_junk 1",
        r#"probe_delivery_mailbox_info{mailbox="Junk"} 1"#,
        r#"probe_delivery_auth_result{method="dkim",result="fail"} 1"#,
        r#"probe_delivery_auth_result{method="spf",result="pass"} 1"#,
    ] {
        assert!(metrics.contains(sample), "no {sample} in\n{metrics}");
    }
    // The Sieve rule leaves mail without a failed DKIM verdict alone.
    let m = with_delivery(
        &stack,
        with_message(module(&stack, TlsMode::Starttls), INBOX.address),
        |_| {},
    );
    let o = run(m, stack.submission_addr()).await;
    let d = o.delivery.as_ref().unwrap();
    assert_eq!(
        d.mailbox.as_deref(),
        Some("INBOX"),
        "{}",
        report::text::render(&o)
    );
    assert!(!d.junk && d.auth.is_empty());
    assert!(report::metrics::render(&o).contains("probe_delivery_junk 0"));
    drop(stack);
}

/// The hop split of a real delivery: submission to Postfix, then Postfix to Dovecot over LMTP.
/// The two hops add up to the delivery time, short of the time from Dovecot's stamp to the
/// mail showing up over IMAP, within the one-second resolution of the Received dates.
#[tokio::test(flavor = "multi_thread")]
async fn hop_split_of_a_real_delivery() {
    if !MailStack::available("hop_split_of_a_real_delivery") {
        return;
    }
    let stack = MailStack::shared();
    let m = with_delivery(
        stack,
        with_message(module(stack, TlsMode::Starttls), INBOX.address),
        |_| {},
    );
    let o = run(m, stack.submission_addr()).await;
    let text = report::text::render(&o);
    assert!(o.success(), "{text}");
    let d = o.delivery.as_ref().unwrap();
    eprintln!("{text}");
    assert_eq!(d.hops.len(), 2, "{:?}", d.received);
    let (first, second) = (&d.hops[0], &d.hops[1]);
    assert_eq!(first.index, 1);
    assert_eq!(first.received.by.as_deref(), Some("mail.example.test"));
    assert_eq!(first.received.with.as_deref(), Some("esmtpsa"));
    assert_eq!(first.received.from_ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(second.received.with.as_deref(), Some("lmtp"));
    assert_eq!(second.received.from.as_deref(), Some("mail.example.test"));
    assert!(d.hops.iter().all(|h| !h.clock_skew), "{:?}", d.hops);
    let sum: f64 = d.hops.iter().map(|h| h.seconds.unwrap()).sum();
    let delivery = d.duration.unwrap().as_secs_f64();
    eprintln!(
        "hop split: {:?} s, sum {sum:.3} s, delivery {delivery:.3} s",
        d.hops
            .iter()
            .map(|h| h.seconds.unwrap())
            .collect::<Vec<_>>()
    );
    // The stamps are whole seconds (rounded down), and hop 1 counts from the whole second of
    // the acceptance: the hops add up to the delivery time within a second, plus at most one
    // polling pause of the search that found the mail.
    assert!(
        d.hops.iter().all(|h| h.seconds.unwrap() >= 0.0),
        "a local delivery has no negative hop: {:?}",
        d.hops
    );
    let gap = delivery - sum;
    assert!(
        (-1.0..=1.0 + 0.5).contains(&gap),
        "hops {sum:.3} s vs delivery {delivery:.3} s"
    );
    assert!(text.contains("hops (Received trace"), "{text}");
    let metrics = report::metrics::render(&o);
    assert!(
        metrics.contains(r#"probe_delivery_hop_duration_seconds{hop="1",by="mail.example.test"}"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"probe_delivery_hop_duration_seconds{hop="2",by=""#));
    assert!(metrics.contains("probe_delivery_clock_skew_hops 0"));
}

#[tokio::test(flavor = "multi_thread")]
async fn delivery_failures_have_their_reasons() {
    if !MailStack::available("delivery_failures_have_their_reasons") {
        return;
    }
    let stack = MailStack::shared();
    let base = with_message(module(stack, TlsMode::Starttls), INBOX.address);

    let o = run(
        with_delivery(stack, base.clone(), |d| {
            let MailboxAccess::Imap(imap) = &mut d.access else {
                unreachable!("an IMAP check")
            };
            imap.credential = Credential::Password(Secret::new("wrong"));
        }),
        stack.submission_addr(),
    )
    .await;
    assert_eq!(failure(&o), (StepName::Delivery, Reason::ImapError));
    assert!(
        o.failure.as_ref().unwrap().detail.contains("login"),
        "{:?}",
        o.failure
    );
    assert!(o.session.message_accepted, "the SMTP part passed");

    let o = run(
        with_delivery(stack, base.clone(), |d| {
            d.mailboxes = vec!["NoSuchFolder".into()]
        }),
        stack.submission_addr(),
    )
    .await;
    assert_eq!(failure(&o), (StepName::Delivery, Reason::ImapError));
    assert!(o.failure.as_ref().unwrap().detail.contains("NoSuchFolder"));

    // Postfix accepts the mail, but it goes to another mailbox: the inbox never sees it.
    let elsewhere = with_message(module(stack, TlsMode::Starttls), PROBE.address);
    let began = Instant::now();
    let o = run(
        with_delivery(stack, elsewhere, |d| d.timeout = Duration::from_secs(3)),
        stack.submission_addr(),
    )
    .await;
    assert_eq!(failure(&o), (StepName::Delivery, Reason::DeliveryTimeout));
    let took = began.elapsed();
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(6),
        "{took:?}"
    );
    let metrics = report::metrics::render(&o);
    assert!(metrics.contains("probe_delivery_success 0"));
    assert!(metrics
        .contains(r#"probe_smtp_failed_step_info{step="delivery",reason="delivery_timeout"} 1"#));
}

#[tokio::test(flavor = "multi_thread")]
async fn sweep_removes_only_our_stale_probe_mail() {
    if !MailStack::available("sweep_removes_only_our_stale_probe_mail") {
        return;
    }
    let stack = MailStack::shared();
    let maildir = stack.maildir(INBOX).join(".Junk");
    let stale_ours = "From: probe@example.test\r\nTo: inbox@example.test\r\nSubject: MFA delivery probe 11111111\r\nX-Smtp-Prober-Id: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\nMessage-ID: <stale-ours@example.test>\r\n\r\nstale\r\n";
    let stale_other_sender = "From: someone@example.test\r\nTo: inbox@example.test\r\nSubject: MFA delivery probe 22222222\r\nX-Smtp-Prober-Id: bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\r\nMessage-ID: <stale-other@example.test>\r\n\r\nstale\r\n";
    let fresh_ours = "From: probe@example.test\r\nTo: inbox@example.test\r\nSubject: MFA delivery probe 33333333\r\nX-Smtp-Prober-Id: cccccccccccccccccccccccccccccccc\r\nMessage-ID: <fresh-ours@example.test>\r\n\r\nfresh\r\n";
    let old = SystemTime::now() - Duration::from_secs(3 * 3600);
    for (name, content, mtime) in [
        ("stale-ours", stale_ours, Some(old)),
        ("stale-other", stale_other_sender, Some(old)),
        ("fresh-ours", fresh_ours, None),
    ] {
        let p = plant(stack, &maildir, name, content);
        if let Some(t) = mtime {
            // Maildir's INTERNALDATE is the file's modification time.
            std::fs::File::options()
                .write(true)
                .open(&p)
                .unwrap()
                .set_modified(t)
                .unwrap();
        }
    }
    let m = with_delivery(
        stack,
        with_message(module(stack, TlsMode::Starttls), INBOX.address),
        |_| {},
    );
    let prepared = PreparedModule::new("real", m).unwrap();
    let d = prepared.module.delivery.as_ref().unwrap();
    let from = &prepared.module.message.as_ref().unwrap().from;
    let deleted = probe::delivery::sweep(
        d,
        prepared.mailbox.as_ref().unwrap(),
        from,
        d.sweep_older_than,
        &[],
        Instant::now() + Duration::from_secs(10),
    )
    .await
    .unwrap();
    assert_eq!(deleted, 1);
    let all = maildir_messages(&stack.maildir(INBOX));
    assert!(!all
        .iter()
        .any(|(_, c)| c.contains("<stale-ours@example.test>")));
    assert!(all
        .iter()
        .any(|(_, c)| c.contains("<stale-other@example.test>")));
    assert!(all
        .iter()
        .any(|(_, c)| c.contains("<fresh-ours@example.test>")));
}

#[test]
fn probe_command_against_postfix_prints_the_transcript() {
    if !MailStack::available("probe_command_against_postfix_prints_the_transcript") {
        return;
    }
    let stack = MailStack::shared();
    let exe = env!("CARGO_BIN_EXE_smtp-prober");
    let common = |format: &str| {
        let out = std::process::Command::new(exe)
            .args([
                "probe",
                &stack.submission_addr().to_string(),
                "--tls=starttls",
                "--server-name=localhost",
                "--trust=",
                &format!("--ca-file={}", stack.root_ca_pem_path().display()),
                "--ehlo=probe.example.test",
                &format!("--auth-user={}", PROBE.address),
                &format!(
                    "--auth-password-file={}",
                    stack.password_file(PROBE).display()
                ),
                &format!("--from={}", PROBE.address),
                &format!("--to={}", INBOX.address),
                &format!("--format={format}"),
            ])
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, text) = common("text");
    eprintln!("{text}");
    assert_eq!(code, Some(0), "{text}");
    for (step, code) in [
        ("greeting", "220"),
        ("ehlo", "250"),
        ("starttls", "220"),
        ("ehlo_tls", "250"),
        ("auth", "235"),
        ("mail", "250"),
        ("rcpt", "250"),
        ("data", "354"),
        ("message", "250"),
        ("quit", "221"),
    ] {
        let shown = text.lines().any(|l| l.contains(step)) && text.contains(&format!("<- {code}"));
        assert!(shown, "{step} {code} missing from\n{text}");
    }
    assert!(text.contains("verdict: SUCCESS"));
    assert!(!text.contains(PROBE.password));

    let (code, json) = common("json");
    eprintln!("{json}");
    assert_eq!(code, Some(0));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let steps: Vec<(String, Option<u64>)> = v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["step"].as_str().unwrap().to_string(),
                s["reply_code"].as_u64(),
            )
        })
        .collect();
    let expected = [
        ("greeting", 220),
        ("ehlo", 250),
        ("starttls", 220),
        ("ehlo_tls", 250),
        ("auth", 235),
        ("mail", 250),
        ("rcpt", 250),
        ("data", 354),
        ("message", 250),
        ("quit", 221),
    ];
    for (step, code) in expected {
        assert!(
            steps.contains(&(step.to_string(), Some(code))),
            "{step} {code} in {steps:?}"
        );
    }
    assert_eq!(v["success"], true);
    assert_eq!(v["tls"]["chain_valid"], true);
    assert!(!json.contains(PROBE.password));
}
