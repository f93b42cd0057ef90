//! OAuth 2.0 end to end on loopback: the probe fetches a token with the client-credentials grant
//! from the local HTTPS token endpoint and authenticates with XOAUTH2 or OAUTHBEARER to the
//! embedded SMTP server, which accepts exactly the tokens the endpoint issued (one shared
//! registry). Caching, refresh, endpoint failures, the server's JSON error challenge, a static
//! token file, and that no token or client secret is ever printed.

mod support;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use smtp_prober::demo::{
    BearerTokens, DemoPki, DemoServer, EndpointMode, Mechanism, ServerConfig, TokenEndpoint,
    TokenEndpointConfig,
};
use smtp_prober::probe::module::{
    AuthSettings, Credential, MechanismChoice, MessageSettings, Module, OAuth2Settings, TlsMode,
};
use smtp_prober::probe::target::parse_target;
use smtp_prober::probe::{self, Budget, PreparedModule, ProbeOutcome};
use smtp_prober::report;
use smtp_prober::secret::Secret;
use smtp_prober::smtp::command::{ClientName, Mailbox};
use smtp_prober::tls::TlsSettings;
use smtp_prober::vocab::{Reason, StepName};
use support::outcome::{failure, metrics, step_codes};

const USER: &str = "mfa-probe@example.test";
const SCOPE: &str = "https://outlook.office365.com/.default";
const CLIENT_ID: &str = "00000000-1111-2222-3333-444444444444";
const CLIENT_SECRET: &str = "client-secret-Zq8~do-not-print";
const XOAUTH2_ERROR: &str = r#"{"status":"401","schemes":"bearer","scope":"mail"}"#;

/// A token endpoint and an SMTP server, with a directory holding the CA file that trusts both.
struct Stack {
    server: DemoServer,
    endpoint: TokenEndpoint,
    dir: tempfile::TempDir,
    ca_file: PathBuf,
}

/// Office 365 style by default: the server offers `AUTH LOGIN XOAUTH2` after STARTTLS.
async fn stack(mechanisms: Vec<Mechanism>) -> Stack {
    let tokens = BearerTokens::new();
    stack_with(mechanisms, tokens.clone(), tokens).await
}

/// Like [`stack`], with the server accepting `server_tokens` while the endpoint issues into
/// `issued` (different registries: the server refuses every issued token).
async fn stack_with(
    mechanisms: Vec<Mechanism>,
    server_tokens: BearerTokens,
    issued: BearerTokens,
) -> Stack {
    let server = DemoServer::start(ServerConfig {
        auth_mechanisms: mechanisms,
        bearer_tokens: server_tokens,
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let endpoint = TokenEndpoint::start(TokenEndpointConfig {
        client_id: CLIENT_ID.into(),
        client_secret: Secret::new(CLIENT_SECRET),
        scope: Some(SCOPE.into()),
        user: USER.into(),
        tokens: issued,
        ..TokenEndpointConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("root.pem");
    std::fs::write(&ca_file, server.pki().root_pem()).unwrap();
    Stack {
        server,
        endpoint,
        dir,
        ca_file,
    }
}

fn oauth2(endpoint: &TokenEndpoint, client_secret: &str) -> Credential {
    Credential::OAuth2(OAuth2Settings {
        token_url: endpoint.url(),
        client_id: CLIENT_ID.into(),
        client_secret: Secret::new(client_secret),
        scope: SCOPE.into(),
    })
}

fn module(s: &Stack, mechanism: MechanismChoice, credential: Credential) -> Module {
    Module {
        tls: TlsMode::Starttls,
        timeout: Duration::from_secs(5),
        ehlo: ClientName::new("probe.test").unwrap(),
        tls_config: TlsSettings {
            trust: vec![],
            ca_files: vec![s.ca_file.clone()],
            server_name: Some("localhost".into()),
            ..TlsSettings::default()
        },
        auth: Some(AuthSettings {
            mechanism,
            username: USER.into(),
            credential,
        }),
        message: Some(MessageSettings {
            from: Mailbox::new(USER).unwrap(),
            to: vec![Mailbox::new("mfa-inbox@example.test").unwrap()],
            subject: "MFA delivery probe {token}".into(),
            body: "Your authentication token code is {token}.".into(),
        }),
        ..Module::default()
    }
}

fn prepare(m: Module) -> Arc<PreparedModule> {
    PreparedModule::new("oauth", m).unwrap()
}

async fn run(prepared: &PreparedModule, server: &DemoServer) -> ProbeOutcome {
    let target = parse_target(&server.addr().to_string(), 587).unwrap();
    probe::run(prepared, &target, Budget::new(prepared.module.timeout)).await
}

fn assert_success(o: &ProbeOutcome) {
    assert!(o.success(), "{}", report::text::render(o));
}

fn auth_detail(o: &ProbeOutcome) -> String {
    o.failure
        .as_ref()
        .map(|f| f.detail.clone())
        .unwrap_or_default()
}

/// Every way the outcome is shown: text, JSON, metrics and Debug.
fn every_output(o: &ProbeOutcome) -> [String; 4] {
    [
        report::text::render(o),
        report::json::to_json(o),
        metrics(o),
        format!("{o:?}"),
    ]
}

/// Neither the client secret nor any of `tokens` shows in any output of `o`.
fn assert_nothing_secret(o: &ProbeOutcome, tokens: &[Secret]) {
    for out in every_output(o) {
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
async fn client_credentials_and_xoauth2_like_office_365() {
    let s = stack(vec![Mechanism::Login, Mechanism::Xoauth2]).await;
    let prepared = prepare(module(
        &s,
        MechanismChoice::Auto,
        oauth2(&s.endpoint, CLIENT_SECRET),
    ));
    let o = run(&prepared, &s.server).await;
    assert_success(&o);
    // `auto` with a token source picks XOAUTH2 from `AUTH LOGIN XOAUTH2`, and says so.
    assert_eq!(o.session.auth_mechanism, Some("XOAUTH2"));
    assert!(report::text::render(&o).contains("auth mechanism used: XOAUTH2"));
    assert_eq!(
        step_codes(&o),
        [
            ("oauth_token", Some(200)),
            ("resolve", None),
            ("connect", None),
            ("greeting", Some(220)),
            ("ehlo", Some(250)),
            ("starttls", Some(220)),
            ("tls_handshake", None),
            ("ehlo_tls", Some(250)),
            ("auth", Some(235)),
            ("mail", Some(250)),
            ("rcpt", Some(250)),
            ("data", Some(354)),
            ("message", Some(250)),
            ("quit", Some(221)),
        ]
    );
    let fetch = o.session.transcript.step(StepName::OauthToken).unwrap();
    assert_eq!(
        fetch.sent.as_deref(),
        Some(format!("POST {}", s.endpoint.url()).as_str())
    );
    assert!(fetch.duration > Duration::ZERO);
    assert_eq!(s.endpoint.requests(), 1);
    // The server took the mail from the user the token was issued for.
    let received = s.server.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].auth_user.as_deref(), Some(USER));

    let text = metrics(&o);
    for line in [
        "probe_success 1",
        r#"probe_smtp_step_reply_code{step="oauth_token"} 200"#,
        r#"probe_smtp_step_reply_code{step="auth"} 235"#,
        r#"probe_smtp_auth_mechanism_info{mechanism="XOAUTH2"} 1"#,
        r#"probe_smtp_auth_mechanism_info{mechanism="LOGIN"} 1"#,
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    assert!(
        text.contains(r#"probe_smtp_step_duration_seconds{step="oauth_token"} "#),
        "{text}"
    );
    let json: serde_json::Value = serde_json::from_str(&report::json::to_json(&o)).unwrap();
    assert_eq!(json["steps"][0]["step"], "oauth_token");
    assert_eq!(json["steps"][0]["reply_code"], 200);
    assert_eq!(json["auth_mechanism"], "XOAUTH2");

    let token = s.endpoint.last_token().unwrap();
    assert!(s.endpoint.tokens().user_of(token.expose()).is_some());
    assert_nothing_secret(&o, &[token]);
    assert!(!format!("{prepared:?}").contains(CLIENT_SECRET));
}

#[tokio::test]
async fn oauthbearer_when_only_that_is_offered() {
    let s = stack(vec![Mechanism::Oauthbearer]).await;
    let prepared = prepare(module(
        &s,
        MechanismChoice::Auto,
        oauth2(&s.endpoint, CLIENT_SECRET),
    ));
    let o = run(&prepared, &s.server).await;
    assert_success(&o);
    assert_eq!(o.session.auth_mechanism, Some("OAUTHBEARER"));
    assert_eq!(s.server.received()[0].auth_user.as_deref(), Some(USER));
    assert_nothing_secret(&o, &[s.endpoint.last_token().unwrap()]);

    // Asked for XOAUTH2 explicitly, the same server offers no fitting mechanism.
    let prepared = prepare(module(
        &s,
        MechanismChoice::Xoauth2,
        oauth2(&s.endpoint, CLIENT_SECRET),
    ));
    let o = run(&prepared, &s.server).await;
    assert_eq!(failure(&o), (StepName::Auth, Reason::AuthNotOffered));
    assert!(auth_detail(&o).contains("AUTH OAUTHBEARER"), "{o:?}");
}

#[tokio::test]
async fn one_token_serves_every_probe_of_the_module_until_it_expires() {
    let s = stack(vec![Mechanism::Login, Mechanism::Xoauth2]).await;
    let prepared = prepare(module(
        &s,
        MechanismChoice::Xoauth2,
        oauth2(&s.endpoint, CLIENT_SECRET),
    ));
    // Probes that start together wait for one fetch.
    let outcomes = futures::future::join_all((0..4).map(|_| run(&prepared, &s.server))).await;
    for o in &outcomes {
        assert_success(o);
    }
    let fetched = outcomes
        .iter()
        .filter(|o| o.session.transcript.step(StepName::OauthToken).is_some())
        .count();
    assert_eq!((s.endpoint.requests(), fetched), (1, 1));

    // A later probe takes the cached token: no fetch, no oauth_token step or metric.
    let o = run(&prepared, &s.server).await;
    assert_success(&o);
    assert_eq!(s.endpoint.requests(), 1);
    assert!(o.session.transcript.step(StepName::OauthToken).is_none());
    assert!(!metrics(&o).contains(r#"step="oauth_token""#));
    assert_eq!(s.server.received().len(), 5);
}

#[tokio::test]
async fn a_token_near_its_expiry_is_fetched_again() {
    let s = stack(vec![Mechanism::Login, Mechanism::Xoauth2]).await;
    // 61 s of life minus the 60 s margin: the cached token is due for refresh after 1 s.
    s.endpoint.set_expires_in(61);
    let prepared = prepare(module(
        &s,
        MechanismChoice::Auto,
        oauth2(&s.endpoint, CLIENT_SECRET),
    ));
    assert_success(&run(&prepared, &s.server).await);
    let first = s.endpoint.last_token().unwrap();
    assert_success(&run(&prepared, &s.server).await);
    assert_eq!(s.endpoint.requests(), 1, "still fresh: cached");

    tokio::time::sleep(Duration::from_millis(1100)).await;
    let o = run(&prepared, &s.server).await;
    assert_success(&o);
    assert_eq!(s.endpoint.requests(), 2);
    let second = s.endpoint.last_token().unwrap();
    assert_ne!(first, second);
    assert_eq!(
        o.session
            .transcript
            .step(StepName::OauthToken)
            .and_then(|st| st.reply.as_ref())
            .map(|r| r.code),
        Some(200)
    );
    assert_nothing_secret(&o, &[first, second]);
}

#[tokio::test]
async fn a_revoked_cached_token_is_refreshed_once() {
    let s = stack(vec![Mechanism::Login, Mechanism::Xoauth2]).await;
    let prepared = prepare(module(
        &s,
        MechanismChoice::Auto,
        oauth2(&s.endpoint, CLIENT_SECRET),
    ));
    assert_success(&run(&prepared, &s.server).await);
    let first = s.endpoint.last_token().unwrap();

    // The identity provider revokes the token the prober still has cached: the server refuses
    // it, the probe drops it, fetches a fresh one and tries once more.
    assert!(s.endpoint.tokens().revoke(&first));
    let o = run(&prepared, &s.server).await;
    assert_success(&o);
    assert_eq!(s.endpoint.requests(), 2);
    assert_eq!(
        o.session
            .transcript
            .step(StepName::OauthToken)
            .and_then(|st| st.reply.as_ref())
            .map(|r| r.code),
        Some(200)
    );
    assert_eq!(s.server.received().len(), 2);
    let second = s.endpoint.last_token().unwrap();
    assert_nothing_secret(&o, &[first, second.clone()]);

    // Probes that have the same cached token refused at once fetch one fresh token between
    // them, not one each.
    assert!(s.endpoint.tokens().revoke(&second));
    let outcomes = futures::future::join_all((0..4).map(|_| run(&prepared, &s.server))).await;
    for o in &outcomes {
        assert_success(o);
    }
    assert_eq!(s.endpoint.requests(), 3);
}

#[tokio::test]
async fn a_refused_token_gets_the_json_challenge_and_the_provider_hint() {
    // The endpoint issues tokens the SMTP server does not know.
    let s = stack_with(
        vec![Mechanism::Login, Mechanism::Xoauth2],
        BearerTokens::new(),
        BearerTokens::new(),
    )
    .await;
    let prepared = prepare(module(
        &s,
        MechanismChoice::Auto,
        oauth2(&s.endpoint, CLIENT_SECRET),
    ));
    let o = run(&prepared, &s.server).await;
    assert_eq!(failure(&o), (StepName::Auth, Reason::AuthFailed));
    // 334 with the base64 JSON, our empty line, then the 535 that ends the step.
    let detail = auth_detail(&o);
    assert!(detail.contains(XOAUTH2_ERROR), "{detail}");
    assert!(
        detail.starts_with("Authentication credentials invalid"),
        "{detail}"
    );
    let auth = o.session.transcript.step(StepName::Auth).unwrap();
    assert_eq!(auth.reply.as_ref().map(|r| r.code), Some(535));
    assert_eq!(auth.sent.as_deref(), Some("AUTH XOAUTH2 ****"));
    assert_eq!(o.provider_hint().map(|h| h.id), Some("bad_credentials"));
    let text = report::text::render(&o);
    assert!(text.contains("hint (bad_credentials)"), "{text}");
    assert!(text.contains(XOAUTH2_ERROR), "{text}");
    let json: serde_json::Value = serde_json::from_str(&report::json::to_json(&o)).unwrap();
    assert_eq!(json["reason"], "auth_failed");
    assert_eq!(json["provider_hint"]["id"], "bad_credentials");
    assert!(
        metrics(&o).contains(r#"probe_smtp_failed_step_info{step="auth",reason="auth_failed"} 1"#)
    );
    // A token fetched for this very probe is not fetched again: no refresh loop.
    assert_eq!(s.endpoint.requests(), 1);
    assert_nothing_secret(&o, &[s.endpoint.last_token().unwrap()]);

    // OAUTHBEARER gets its own challenge ({"status":"invalid_token"}) and the same end.
    let s = stack_with(
        vec![Mechanism::Oauthbearer],
        BearerTokens::new(),
        BearerTokens::new(),
    )
    .await;
    let prepared = prepare(module(
        &s,
        MechanismChoice::Oauthbearer,
        oauth2(&s.endpoint, CLIENT_SECRET),
    ));
    let o = run(&prepared, &s.server).await;
    assert_eq!(failure(&o), (StepName::Auth, Reason::AuthFailed));
    assert!(
        auth_detail(&o).contains(r#"{"status":"invalid_token"}"#),
        "{o:?}"
    );
}

#[tokio::test]
async fn refresh_happens_once_even_when_the_fresh_token_fails_too() {
    let server_tokens = BearerTokens::new();
    let s = stack_with(
        vec![Mechanism::Xoauth2],
        server_tokens.clone(),
        BearerTokens::new(),
    )
    .await;
    let prepared = prepare(module(
        &s,
        MechanismChoice::Auto,
        oauth2(&s.endpoint, CLIENT_SECRET),
    ));
    // The first token is refused, but a fresh one is not refreshed.
    assert_eq!(
        failure(&run(&prepared, &s.server).await),
        (StepName::Auth, Reason::AuthFailed)
    );
    assert_eq!(s.endpoint.requests(), 1);
    // Once the server knows it, the cached token works.
    server_tokens.insert(USER, &s.endpoint.last_token().unwrap());
    assert_success(&run(&prepared, &s.server).await);
    assert_eq!(s.endpoint.requests(), 1);
    // Revoked: one refresh, whose token the server does not know either, then auth_failed.
    server_tokens.revoke_all();
    let o = run(&prepared, &s.server).await;
    assert_eq!(failure(&o), (StepName::Auth, Reason::AuthFailed));
    assert_eq!(s.endpoint.requests(), 2);
    assert_eq!(s.server.sessions(), 4);
}

#[tokio::test]
async fn token_endpoint_down_fails_at_the_oauth_token_step() {
    let s = stack(vec![Mechanism::Login, Mechanism::Xoauth2]).await;
    let prepared = prepare(module(
        &s,
        MechanismChoice::Auto,
        oauth2(&s.endpoint, CLIENT_SECRET),
    ));

    // Not listening.
    s.endpoint.set_mode(EndpointMode::Refusing).await.unwrap();
    let o = run(&prepared, &s.server).await;
    assert_eq!(
        failure(&o),
        (StepName::OauthToken, Reason::OauthTokenFailed)
    );
    assert!(
        auth_detail(&o).contains("connecting to the token endpoint"),
        "{}",
        auth_detail(&o)
    );
    assert_eq!(step_codes(&o), [("oauth_token", None)]);
    assert_eq!(s.server.sessions(), 0, "no SMTP without a token");
    let text = metrics(&o);
    assert!(text.contains("probe_success 0"), "{text}");
    assert!(
        text.contains(
            r#"probe_smtp_failed_step_info{step="oauth_token",reason="oauth_token_failed"} 1"#
        ),
        "{text}"
    );
    assert!(
        text.contains(r#"probe_smtp_step_duration_seconds{step="oauth_token"} "#),
        "{text}"
    );
    assert!(!text.contains(r#"probe_smtp_step_reply_code{step="oauth_token"}"#));
    assert!(report::text::render(&o).contains(Reason::OauthTokenFailed.hint()));

    // Up but failing: the HTTP status is the step's reply code.
    s.endpoint
        .set_mode(EndpointMode::Failing(500))
        .await
        .unwrap();
    let o = run(&prepared, &s.server).await;
    assert_eq!(
        failure(&o),
        (StepName::OauthToken, Reason::OauthTokenFailed)
    );
    let detail = auth_detail(&o);
    assert!(
        detail.contains("HTTP 500") && detail.contains("temporarily_unavailable"),
        "{detail}"
    );
    assert!(metrics(&o).contains(r#"probe_smtp_step_reply_code{step="oauth_token"} 500"#));
    assert_eq!(s.endpoint.requests(), 1);

    // Back up: the next probe succeeds, on the same address.
    s.endpoint.set_mode(EndpointMode::Up).await.unwrap();
    let o = run(&prepared, &s.server).await;
    assert_success(&o);
    assert_eq!((s.endpoint.requests(), s.endpoint.issued()), (2, 1));
    assert_nothing_secret(&o, &[s.endpoint.last_token().unwrap()]);
}

#[tokio::test]
async fn a_wrong_client_secret_is_invalid_client_and_stays_secret() {
    let s = stack(vec![Mechanism::Login, Mechanism::Xoauth2]).await;
    let wrong = "wrong-secret-do-not-print";
    let prepared = prepare(module(
        &s,
        MechanismChoice::Auto,
        oauth2(&s.endpoint, wrong),
    ));
    let o = run(&prepared, &s.server).await;
    assert_eq!(
        failure(&o),
        (StepName::OauthToken, Reason::OauthTokenFailed)
    );
    let detail = auth_detail(&o);
    assert!(
        detail.starts_with("token endpoint answered HTTP 401: invalid_client"),
        "{detail}"
    );
    assert!(metrics(&o).contains(r#"probe_smtp_step_reply_code{step="oauth_token"} 401"#));
    assert_eq!(s.endpoint.issued(), 0);
    for out in every_output(&o) {
        assert!(!out.contains(wrong), "client secret printed:\n{out}");
    }
}

#[tokio::test]
async fn a_static_bearer_token_file_is_read_before_each_probe() {
    let s = stack(vec![Mechanism::Login, Mechanism::Xoauth2]).await;
    let tokens = s.endpoint.tokens().clone();
    let first = Secret::new("static-token-1-do-not-print");
    tokens.insert(USER, &first);
    let token_file = s.dir.path().join("smtp-bearer");
    std::fs::write(&token_file, format!("{}\n", first.expose())).unwrap();
    let prepared = prepare(module(
        &s,
        MechanismChoice::Auto,
        Credential::BearerTokenFile(token_file.clone()),
    ));
    let o = run(&prepared, &s.server).await;
    assert_success(&o);
    assert_eq!(o.session.auth_mechanism, Some("XOAUTH2"));
    assert!(o.session.transcript.step(StepName::OauthToken).is_none());
    assert_eq!(s.endpoint.requests(), 0);

    // Something else renews the file; the old token is revoked. The next probe reads the file.
    let second = Secret::new("static-token-2-do-not-print");
    tokens.revoke(&first);
    tokens.insert(USER, &second);
    std::fs::write(&token_file, second.expose()).unwrap();
    let o = run(&prepared, &s.server).await;
    assert_success(&o);
    assert_nothing_secret(&o, &[first.clone(), second.clone()]);

    // A missing file fails before any connection.
    std::fs::remove_file(&token_file).unwrap();
    let sessions = s.server.sessions();
    let o = run(&prepared, &s.server).await;
    assert_eq!(failure(&o), (StepName::Auth, Reason::OauthTokenFailed));
    assert_eq!(s.server.sessions(), sessions);
    assert_nothing_secret(&o, &[first, second]);
}

#[tokio::test]
async fn the_token_endpoint_is_checked_against_its_own_name() {
    // The mail server's certificate names mail.example.test and the module says so in
    // server_name; the token endpoint at 127.0.0.1 must still be checked as 127.0.0.1.
    let tokens = BearerTokens::new();
    let server = DemoServer::start(ServerConfig {
        pki: Arc::new(DemoPki::generate(&["mail.example.test"]).unwrap()),
        auth_mechanisms: vec![Mechanism::Xoauth2],
        bearer_tokens: tokens.clone(),
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let endpoint = TokenEndpoint::start(TokenEndpointConfig {
        client_id: CLIENT_ID.into(),
        client_secret: Secret::new(CLIENT_SECRET),
        user: USER.into(),
        tokens,
        ..TokenEndpointConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("roots.pem");
    std::fs::write(
        &ca_file,
        format!(
            "{}{}",
            server.pki().root_pem(),
            DemoPki::localhost().root_pem()
        ),
    )
    .unwrap();
    let s = Stack {
        server,
        endpoint,
        dir,
        ca_file,
    };
    let mut m = module(
        &s,
        MechanismChoice::Auto,
        oauth2(&s.endpoint, CLIENT_SECRET),
    );
    m.tls_config.server_name = Some("mail.example.test".into());
    let o = run(&prepare(m.clone()), &s.server).await;
    assert_success(&o);

    // An endpoint whose chain does not verify gets no client secret, even from a module that
    // tolerates a broken chain on the mail server.
    m.tls_config.ca_files = vec![];
    m.tls_config.trust = vec![smtp_prober::tls::TrustKind::Bundled];
    m.tls_config.insecure_skip_verify = true;
    let o = run(&prepare(m), &s.server).await;
    assert_eq!(
        failure(&o),
        (StepName::OauthToken, Reason::OauthTokenFailed)
    );
    let detail = auth_detail(&o);
    assert!(
        detail.starts_with("token endpoint certificate: cert_unknown_issuer"),
        "{detail}"
    );
    assert_eq!(s.endpoint.requests(), 1);
}

#[tokio::test]
async fn plain_http_token_endpoint_on_loopback() {
    let tokens = BearerTokens::new();
    let endpoint = TokenEndpoint::start(TokenEndpointConfig {
        pki: None,
        client_id: CLIENT_ID.into(),
        client_secret: Secret::new(CLIENT_SECRET),
        user: USER.into(),
        tokens: tokens.clone(),
        ..TokenEndpointConfig::default()
    })
    .await
    .unwrap();
    assert!(endpoint.url().starts_with("http://127.0.0.1:"));
    let server = DemoServer::start(ServerConfig {
        auth_mechanisms: vec![Mechanism::Xoauth2],
        bearer_tokens: tokens,
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("root.pem");
    std::fs::write(&ca_file, server.pki().root_pem()).unwrap();
    let s = Stack {
        server,
        endpoint,
        dir,
        ca_file,
    };
    let prepared = prepare(module(
        &s,
        MechanismChoice::Auto,
        oauth2(&s.endpoint, CLIENT_SECRET),
    ));
    let o = run(&prepared, &s.server).await;
    assert_success(&o);
    assert_eq!(s.endpoint.requests(), 1);
}

#[tokio::test]
async fn probe_command_with_an_oauth2_module_from_the_config_file() {
    let s = stack(vec![Mechanism::Login, Mechanism::Xoauth2]).await;
    let secret_file = s.dir.path().join("oauth-client-secret");
    std::fs::write(&secret_file, format!("{CLIENT_SECRET}\n")).unwrap();
    let config = s.dir.path().join("smtp-prober.yml");
    std::fs::write(
        &config,
        format!(
            "modules:
  o365:
    timeout: 10s
    tls: starttls
    ehlo: probe.test
    tls_config:
      server_name: localhost
      trust: []
      ca_files: [{ca}]
    auth:
      mechanism: auto
      username: {USER}
      oauth2:
        token_url: {url}
        client_id: {CLIENT_ID}
        client_secret_file: {secret}
        scope: {SCOPE}
    message:
      from: {USER}
      to: [mfa-inbox@example.test]
",
            ca = s.ca_file.display(),
            url = s.endpoint.url(),
            secret = secret_file.display(),
        ),
    )
    .unwrap();
    let exe = env!("CARGO_BIN_EXE_smtp-prober");
    for (i, format) in ["text", "json", "prometheus"].into_iter().enumerate() {
        let out = tokio::process::Command::new(exe)
            .arg("probe")
            .arg(format!("--config.file={}", config.display()))
            .arg("--module=o365")
            .arg(format!("--format={format}"))
            .arg(s.server.addr().to_string())
            .output()
            .await
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
        // Every run is a new process: a fresh token each time.
        assert_eq!(s.endpoint.requests(), i as u64 + 1);
        let token = s.endpoint.last_token().unwrap();
        for output in [&stdout, &stderr] {
            assert!(!output.contains(token.expose()), "token printed:\n{output}");
            assert!(!output.contains(CLIENT_SECRET), "secret printed:\n{output}");
        }
        if format == "json" {
            let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
            assert_eq!(v["steps"][0]["step"], "oauth_token");
            assert_eq!(v["steps"][0]["reply_code"], 200);
            assert_eq!(v["auth_mechanism"], "XOAUTH2");
        } else {
            let expected = match format {
                "text" => "auth mechanism used: XOAUTH2",
                _ => r#"probe_smtp_step_reply_code{step="oauth_token"} 200"#,
            };
            assert!(
                stdout.contains(expected),
                "{expected:?} missing from\n{stdout}"
            );
        }
    }
    assert_eq!(s.server.received().len(), 3);
}
