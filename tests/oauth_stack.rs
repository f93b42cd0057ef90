//! XOAUTH2 and OAUTHBEARER against a real Postfix + Dovecot (tests/support/mailstack.rs started
//! with an OAuth submission port): Postfix SASL through Dovecot, whose `driver = oauth2` passdb
//! asks the test's introspection endpoint (RFC 7662, `introspection_mode = post`) about each
//! token. The probe fetches its tokens from the local HTTPS token endpoint, which issues into the
//! same registry the introspection endpoint answers from.

mod support;

use std::sync::Arc;
use std::time::Duration;

use smtp_prober::demo::{BearerTokens, DemoPki, TokenEndpoint, TokenEndpointConfig};
use smtp_prober::probe::module::{
    AuthSettings, Credential, DeliverySettings, ImapAccess, ImapTls, MailboxAccess,
    MechanismChoice, MessageSettings, Module, OAuth2Settings, TlsMode,
};
use smtp_prober::probe::target::parse_target;
use smtp_prober::probe::{self, Budget, PreparedModule, ProbeOutcome};
use smtp_prober::report;
use smtp_prober::secret::Secret;
use smtp_prober::smtp::command::{ClientName, Mailbox};
use smtp_prober::tls::TlsSettings;
use smtp_prober::vocab::{Reason, StepName};
use support::mailstack::{MailStack, Options, INBOX, PROBE};

const CLIENT_ID: &str = "smtp-prober-real-stack";
const CLIENT_SECRET: &str = "real-stack-client-secret-do-not-print";
const SCOPE: &str = "https://outlook.office365.com/.default";

/// The stack, the HTTPS token endpoint the probe uses, the plain HTTP introspection endpoint
/// Dovecot uses (one token registry behind both), and a CA file trusting the stack and the
/// token endpoint.
struct Fixture {
    stack: MailStack,
    tokens: TokenEndpoint,
    /// Issues tokens for the INBOX user (the mailbox the delivery check reads), into the same
    /// registry.
    inbox_tokens: TokenEndpoint,
    introspection: TokenEndpoint,
    dir: tempfile::TempDir,
    ca_file: std::path::PathBuf,
}

async fn fixture() -> Fixture {
    let registry = BearerTokens::new();
    let endpoint = |pki: Option<Arc<DemoPki>>| TokenEndpointConfig {
        pki,
        client_id: CLIENT_ID.into(),
        client_secret: Secret::new(CLIENT_SECRET),
        scope: Some(SCOPE.into()),
        user: PROBE.address.into(),
        tokens: registry.clone(),
        ..TokenEndpointConfig::default()
    };
    let tokens = TokenEndpoint::start(endpoint(Some(DemoPki::localhost())))
        .await
        .unwrap();
    let inbox_tokens = TokenEndpoint::start(TokenEndpointConfig {
        user: INBOX.address.into(),
        ..endpoint(Some(DemoPki::localhost()))
    })
    .await
    .unwrap();
    let introspection = TokenEndpoint::start(endpoint(None)).await.unwrap();
    let options = Options {
        oauth2_introspection_url: Some(introspection.introspection_url()),
        ..Options::default()
    };
    let stack = tokio::task::spawn_blocking(move || MailStack::start_with(&options))
        .await
        .unwrap()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("roots.pem");
    let stack_root = std::fs::read_to_string(stack.root_ca_pem_path()).unwrap();
    std::fs::write(
        &ca_file,
        format!("{stack_root}{}", DemoPki::localhost().root_pem()),
    )
    .unwrap();
    Fixture {
        stack,
        tokens,
        inbox_tokens,
        introspection,
        dir,
        ca_file,
    }
}

fn module(f: &Fixture, mechanism: MechanismChoice, credential: Credential) -> Module {
    Module {
        tls: TlsMode::Starttls,
        timeout: Duration::from_secs(10),
        ehlo: ClientName::new("probe.example.test").unwrap(),
        tls_config: TlsSettings {
            trust: vec![],
            ca_files: vec![f.ca_file.clone()],
            server_name: Some("localhost".into()),
            ..TlsSettings::default()
        },
        auth: Some(AuthSettings {
            mechanism,
            username: PROBE.address.into(),
            credential,
        }),
        message: Some(MessageSettings {
            from: Mailbox::new(PROBE.address).unwrap(),
            to: vec![Mailbox::new(INBOX.address).unwrap()],
            subject: "OAuth probe {token}".into(),
            body: "Your authentication token code is {token}.".into(),
        }),
        ..Module::default()
    }
}

/// Checks over IMAPS that the probe mail reached the inbox (Postfix -> LMTP -> Dovecot).
fn with_delivery(f: &Fixture, mut m: Module) -> Module {
    m.delivery = Some(DeliverySettings {
        access: MailboxAccess::Imap(ImapAccess {
            host: "127.0.0.1".into(),
            port: f.stack.imaps_addr().port(),
            tls: ImapTls::Implicit,
            tls_config: m.tls_config.clone(),
            username: INBOX.address.into(),
            credential: Credential::Password(Secret::new(INBOX.password)),
        }),
        mailboxes: vec!["INBOX".into()],
        timeout: Duration::from_secs(20),
        cleanup: true,
        sweep_older_than: Duration::from_secs(3600),
        lost_after: Duration::from_secs(3600),
        junk_is_failure: false,
    });
    m
}

/// The delivery check of `m` logs in to IMAPS with `credential` instead of a password.
fn with_imap_credential(f: &Fixture, m: Module, credential: Credential) -> Module {
    let mut m = with_delivery(f, m);
    let MailboxAccess::Imap(imap) = &mut m.delivery.as_mut().unwrap().access else {
        unreachable!("an IMAP check")
    };
    imap.credential = credential;
    m
}

fn client_credentials(f: &Fixture) -> Credential {
    Credential::OAuth2(OAuth2Settings {
        token_url: f.tokens.url(),
        client_id: CLIENT_ID.into(),
        client_secret: Secret::new(CLIENT_SECRET),
        scope: SCOPE.into(),
    })
}

async fn run(prepared: &PreparedModule, addr: std::net::SocketAddr) -> ProbeOutcome {
    let target = parse_target(&addr.to_string(), 587).unwrap();
    probe::run(prepared, &target, Budget::new(prepared.module.timeout)).await
}

fn oauth_addr(f: &Fixture) -> std::net::SocketAddr {
    f.stack.oauth_submission_addr().expect("the OAuth port")
}

fn assert_success(f: &Fixture, o: &ProbeOutcome) {
    assert!(
        o.success(),
        "{}\n{}",
        report::text::render(o),
        f.stack.log_tail()
    );
}

fn auth_reply(o: &ProbeOutcome) -> Option<(u16, String)> {
    let reply = o.session.transcript.step(StepName::Auth)?.reply.as_ref()?;
    Some((
        reply.code,
        reply.enhanced.map(|e| e.to_string()).unwrap_or_default(),
    ))
}

fn assert_nothing_secret(o: &ProbeOutcome, tokens: &[Secret]) {
    let metrics = report::metrics::render(o);
    for out in [
        report::text::render(o),
        report::json::to_json(o),
        metrics,
        format!("{o:?}"),
    ] {
        assert!(
            !out.contains(CLIENT_SECRET),
            "client secret printed:\n{out}"
        );
        for token in tokens {
            assert!(!out.contains(token.expose()), "token printed:\n{out}");
        }
    }
}

#[tokio::test]
async fn fetched_tokens_pass_postfix_and_dovecot_with_xoauth2_and_oauthbearer() {
    if !MailStack::available("fetched_tokens_pass_postfix_and_dovecot_with_xoauth2_and_oauthbearer")
    {
        return;
    }
    let f = fixture().await;
    // Office 365 style: auto picks XOAUTH2 from `AUTH LOGIN XOAUTH2 OAUTHBEARER`.
    let prepared = PreparedModule::new(
        "o365-like",
        with_delivery(
            &f,
            module(&f, MechanismChoice::Auto, client_credentials(&f)),
        ),
    )
    .unwrap();
    let o = run(&prepared, oauth_addr(&f)).await;
    assert_success(&f, &o);
    assert!(o.delivery.as_ref().is_some_and(|d| d.success));
    let offered = o
        .session
        .effective_server()
        .map(|s| s.auth_mechanisms())
        .unwrap_or_default();
    assert_eq!(offered, ["LOGIN", "XOAUTH2", "OAUTHBEARER"]);
    assert_eq!(o.session.auth_mechanism, Some("XOAUTH2"));
    assert_eq!(auth_reply(&o), Some((235, "2.7.0".into())));
    assert_eq!(
        o.session
            .transcript
            .step(StepName::OauthToken)
            .and_then(|s| s.reply.as_ref())
            .map(|r| r.code),
        Some(200)
    );
    assert!(o.session.message_accepted);
    assert_eq!(f.tokens.requests(), 1);
    assert!(
        f.introspection.introspections() >= 1,
        "Dovecot asked the introspection endpoint"
    );
    let token = f.tokens.last_token().unwrap();
    assert_nothing_secret(&o, std::slice::from_ref(&token));

    // The same (cached) token over OAUTHBEARER.
    let prepared = PreparedModule::new(
        "oauthbearer",
        module(&f, MechanismChoice::Oauthbearer, client_credentials(&f)),
    )
    .unwrap();
    let o = run(&prepared, oauth_addr(&f)).await;
    assert_success(&f, &o);
    assert_eq!(o.session.auth_mechanism, Some("OAUTHBEARER"));
    assert_eq!(auth_reply(&o), Some((235, "2.7.0".into())));
    assert_nothing_secret(&o, &[token]);

    // A password on the OAuth port: auto falls back to LOGIN (PLAIN is filtered out here).
    let password = Credential::Password(Secret::new(PROBE.password));
    let prepared =
        PreparedModule::new("login", module(&f, MechanismChoice::Auto, password)).unwrap();
    let o = run(&prepared, oauth_addr(&f)).await;
    assert_success(&f, &o);
    assert_eq!(o.session.auth_mechanism, Some("LOGIN"));

    // The other submission port is unchanged: PLAIN and LOGIN only.
    let o = run(&prepared, f.stack.submission_addr()).await;
    assert_success(&f, &o);
    let offered = o
        .session
        .effective_server()
        .map(|s| s.auth_mechanisms())
        .unwrap_or_default();
    assert_eq!(offered, ["PLAIN", "LOGIN"]);
}

#[tokio::test]
async fn refused_tokens_get_dovecots_json_challenge_then_535() {
    if !MailStack::available("refused_tokens_get_dovecots_json_challenge_then_535") {
        return;
    }
    let f = fixture().await;
    let bad = Secret::new("not-a-token-the-idp-issued");
    let token_file = f.dir.path().join("smtp-bearer");
    std::fs::write(&token_file, bad.expose()).unwrap();

    let prepared = PreparedModule::new(
        "xoauth2",
        module(
            &f,
            MechanismChoice::Xoauth2,
            Credential::BearerTokenFile(token_file.clone()),
        ),
    )
    .unwrap();
    let o = run(&prepared, oauth_addr(&f)).await;
    assert_eq!(
        o.failure.as_ref().map(|x| (x.step, x.reason)),
        Some((StepName::Auth, Reason::AuthFailed)),
        "{}",
        report::text::render(&o)
    );
    assert_eq!(auth_reply(&o), Some((535, "5.7.8".into())));
    let detail = &o.failure.as_ref().unwrap().detail;
    assert!(
        detail.contains(r#"(server said {"status":"401","schemes":"bearer","scope":"mail"})"#),
        "{detail}"
    );
    assert_eq!(o.provider_hint().map(|h| h.id), Some("bad_credentials"));
    assert_nothing_secret(&o, std::slice::from_ref(&bad));

    let prepared = PreparedModule::new(
        "oauthbearer",
        module(
            &f,
            MechanismChoice::Oauthbearer,
            Credential::BearerTokenFile(token_file),
        ),
    )
    .unwrap();
    let o = run(&prepared, oauth_addr(&f)).await;
    assert_eq!(
        o.failure.as_ref().map(|x| (x.step, x.reason)),
        Some((StepName::Auth, Reason::AuthFailed)),
        "{}",
        report::text::render(&o)
    );
    assert_eq!(auth_reply(&o), Some((535, "5.7.8".into())));
    let detail = &o.failure.as_ref().unwrap().detail;
    assert!(detail.contains(r#"(server said {"status":"#), "{detail}");
    assert_nothing_secret(&o, &[bad]);
}

#[tokio::test]
async fn a_revoked_token_is_refreshed_once_against_the_real_stack() {
    if !MailStack::available("a_revoked_token_is_refreshed_once_against_the_real_stack") {
        return;
    }
    let f = fixture().await;
    let prepared = PreparedModule::new(
        "refresh",
        module(&f, MechanismChoice::Auto, client_credentials(&f)),
    )
    .unwrap();
    assert_success(&f, &run(&prepared, oauth_addr(&f)).await);
    let first = f.tokens.last_token().unwrap();
    assert!(f.tokens.tokens().revoke(&first));
    // Dovecot now hears "active": false for the cached token; the probe refreshes once.
    let o = run(&prepared, oauth_addr(&f)).await;
    assert_success(&f, &o);
    assert_eq!(f.tokens.requests(), 2);
    assert_eq!(auth_reply(&o), Some((235, "2.7.0".into())));
    assert_nothing_secret(&o, &[first, f.tokens.last_token().unwrap()]);
}

/// The delivery check reads the mailbox with IMAP `AUTHENTICATE XOAUTH2` against the real
/// Dovecot oauth2 passdb (Exchange Online's only way in with `IMAP.AccessAsApp`): the token comes
/// from the client-credentials grant and is cached, a revoked one is replaced once, a token file
/// works too, and a refused token is `imap_error` with nothing secret printed.
#[tokio::test]
async fn delivery_reads_the_mailbox_with_imap_xoauth2() {
    if !MailStack::available("delivery_reads_the_mailbox_with_imap_xoauth2") {
        return;
    }
    let f = fixture().await;
    let imap_oauth = Credential::OAuth2(OAuth2Settings {
        token_url: f.inbox_tokens.url(),
        client_id: CLIENT_ID.into(),
        client_secret: Secret::new(CLIENT_SECRET),
        scope: SCOPE.into(),
    });
    let password = Credential::Password(Secret::new(PROBE.password));
    let prepared = PreparedModule::new(
        "imap-xoauth2",
        with_imap_credential(
            &f,
            module(&f, MechanismChoice::Auto, password.clone()),
            imap_oauth,
        ),
    )
    .unwrap();
    let before = f.introspection.introspections();
    let o = run(&prepared, f.stack.submission_addr()).await;
    assert_success(&f, &o);
    let d = o.delivery.as_ref().unwrap();
    assert!(d.success && d.cleaned_up, "{}", report::text::render(&o));
    assert_eq!(f.inbox_tokens.requests(), 1);
    assert!(
        f.introspection.introspections() > before,
        "Dovecot asked about the IMAP token"
    );
    let first = f.inbox_tokens.last_token().unwrap();

    // The cached token again; then revoked: replaced once, and the check still succeeds.
    let o = run(&prepared, f.stack.submission_addr()).await;
    assert_success(&f, &o);
    assert_eq!(f.inbox_tokens.requests(), 1);
    assert!(f.inbox_tokens.tokens().revoke(&first));
    let o = run(&prepared, f.stack.submission_addr()).await;
    assert_success(&f, &o);
    assert_eq!(f.inbox_tokens.requests(), 2);
    let second = f.inbox_tokens.last_token().unwrap();
    assert_nothing_secret(&o, &[first.clone(), second.clone()]);

    // A bearer token kept fresh by something else, in a file.
    let token_file = f.dir.path().join("imap-bearer");
    std::fs::write(&token_file, format!("{}\n", second.expose())).unwrap();
    let prepared = PreparedModule::new(
        "imap-token-file",
        with_imap_credential(
            &f,
            module(&f, MechanismChoice::Auto, password.clone()),
            Credential::BearerTokenFile(token_file.clone()),
        ),
    )
    .unwrap();
    let o = run(&prepared, f.stack.submission_addr()).await;
    assert_success(&f, &o);

    // A token the identity provider never issued: Dovecot's JSON challenge, then NO.
    let bad = Secret::new("not-an-imap-token-the-idp-issued");
    std::fs::write(&token_file, bad.expose()).unwrap();
    let o = run(&prepared, f.stack.submission_addr()).await;
    let failure = o.failure.as_ref().expect("a failure");
    assert_eq!(
        (failure.step, failure.reason),
        (StepName::Delivery, Reason::ImapError),
        "{}",
        report::text::render(&o)
    );
    assert!(
        failure
            .detail
            .contains("AUTHENTICATE XOAUTH2 as inbox@example.test"),
        "{}",
        failure.detail
    );
    assert!(o.session.message_accepted);
    assert_nothing_secret(&o, &[bad, first, second]);
}
