//! Configuration tests: invalid files with their exact messages, the shipped example, defaults,
//! redaction.

use super::*;
use crate::probe::module::{
    Credential, ImapTls, IpProtocol, MailboxAccess, MechanismChoice, TlsMode,
};
use crate::smtp::command::ClientName;
use crate::tls::{MinVersion, TrustKind};

/// The test environment: no test touches the process environment.
fn env(name: &str) -> Option<String> {
    match name {
        "SMTP_PASSWORD" => Some("env-secret-smtp-4711".into()),
        "IMAP_PASSWORD" => Some("env-secret-imap-0815".into()),
        "IMAP_USERNAME" => Some("mfa-inbox@example.com".into()),
        "SMTP_USERNAME" => Some("alerts@example.org".into()),
        "AZURE_TENANT_ID" => Some("contoso.onmicrosoft.com".into()),
        "EMPTY" => Some(String::new()),
        _ => None,
    }
}

/// A directory with secret files: `pw` holds `file-secret-1234`.
fn secrets() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pw"), "file-secret-1234\n").unwrap();
    dir
}

fn parse_in(dir: &Path, yaml: &str) -> Result<Config, ConfigError> {
    Config::parse(yaml.as_bytes(), "config.yml", Some(dir), &env)
}

fn error_in(dir: &Path, yaml: &str) -> String {
    match parse_in(dir, yaml) {
        Ok(_) => panic!("accepted:\n{yaml}"),
        Err(e) => e.to_string(),
    }
}

/// A module that sends, for targets to use.
const SENDING_MODULE: &str = "\
modules:
  token:
    auth: {username: probe@example.com, password_file: pw}
    message: {from: probe@example.com, to: [inbox@example.com]}
";

#[test]
fn invalid_files_name_file_line_and_field() {
    let dir = secrets();
    let missing = dir.path().join("missing");
    let cases: Vec<(&str, String, String)> = vec![
        (
            "unknown top-level key",
            "modules: {}\nmodulez: {}\n".into(),
            "config.yml:2: modulez: unknown key \"modulez\" (did you mean \"modules\"?), expected one of modules, targets, \
             scheduler"
                .into(),
        ),
        (
            "unknown nested key",
            "modules:\n  submission:\n    tls_config:\n      sever_name: smtp.example.com\n".into(),
            "config.yml:4: modules.submission.tls_config.sever_name: unknown key \"sever_name\" \
             (did you mean \"server_name\"?), \
             expected one of server_name, trust, ca_files, min_version, insecure_skip_verify"
                .into(),
        ),
        (
            "bad enum",
            "modules:\n  submission:\n    port: 587\n    tls: startls\n".into(),
            "config.yml:4: modules.submission.tls: unknown variant \"startls\" (did you mean \
             \"starttls\"?), expected one of \
             none, starttls, implicit"
                .into(),
        ),
        (
            "bad duration",
            "modules:\n  submission:\n    timeout: 15\n".into(),
            "config.yml:3: modules.submission.timeout: invalid duration \"15\": time unit \
             needed, for example 15sec or 15ms (write it like 15s, 2m or 14d)"
                .into(),
        ),
        (
            "port out of range",
            "modules:\n  submission:\n    port: 70000\n".into(),
            "config.yml:3: modules.submission.port: port 70000 is out of range: must be 1 to 65535"
                .into(),
        ),
        (
            "missing module",
            "modules:\n  mx: {}\ntargets:\n  - name: a\n    target: mx.example.com\n    module: submision\n"
                .into(),
            "config.yml:6: targets[0].module: no module named \"submision\" (defined: mx)".into(),
        ),
        (
            "duplicate target name",
            "modules:\n  mx: {}\ntargets:\n  - {name: a, target: mx1.example.com, module: mx}\n  - {name: a, target: mx2.example.com, module: mx}\n"
                .into(),
            "config.yml:5: targets[1].name: duplicate target name \"a\" (first at line 4)".into(),
        ),
        (
            "CRLF in an address",
            "modules:\n  m:\n    message:\n      from: \"probe@example.com\\r\\nRCPT TO:<x@evil.example>\"\n      to: [inbox@example.com]\n"
                .into(),
            "config.yml:4: modules.m.message.from: address \"probe@example.com\\r\\nRCPT TO:<x@evil.example>\" \
             contains a line break or NUL"
                .into(),
        ),
        (
            "missing secret file",
            format!(
                "modules:\n  m:\n    auth:\n      username: u\n      password_file: {}\n",
                missing.display()
            ),
            format!(
                "config.yml:5: modules.m.auth.password_file: cannot read secret file {}: No such \
                 file or directory (os error 2)",
                missing.display()
            ),
        ),
        (
            "missing env var",
            "modules:\n  m:\n    auth:\n      username: u\n      password: ${NOT_SET_ANYWHERE}\n"
                .into(),
            "config.yml:5: modules.m.auth.password: environment variable NOT_SET_ANYWHERE is not set"
                .into(),
        ),
        (
            "missing env var in a path",
            "modules:\n  m:\n    tls_config:\n      ca_files: [\"${CA_DIR}/root.pem\"]\n".into(),
            "config.yml:4: modules.m.tls_config.ca_files[0]: environment variable CA_DIR is not set"
                .into(),
        ),
        (
            "bad label name",
            "modules:\n  mx: {}\ntargets:\n  - name: a\n    target: mx.example.com\n    module: mx\n    labels:\n      site-name: hq\n"
                .into(),
            "config.yml:8: targets[0].labels.site-name: invalid label name \"site-name\": must \
             match [a-zA-Z_][a-zA-Z0-9_]*"
                .into(),
        ),
        (
            "label clashing with ours",
            "modules:\n  mx: {}\ntargets:\n  - name: a\n    target: mx.example.com\n    module: mx\n    labels: {module: x}\n"
                .into(),
            "config.yml:7: targets[0].labels.module: label name \"module\" is reserved: \
             smtp-prober sets it on its own metrics"
                .into(),
        ),
        (
            "interval below the send floor",
            format!(
                "{SENDING_MODULE}targets:\n  - name: o365\n    target: smtp.example.com\n    module: token\n    interval: 10s\n"
            ),
            "config.yml:9: targets[0].interval: target \"o365\": interval 10s is shorter than \
             scheduler.min_send_interval 30s; module \"token\" sends a mail on every run"
                .into(),
        ),
        (
            "delivery without message",
            "modules:\n  m:\n    delivery:\n      imap: imap.example.com\n      username: u\n      password_file: pw\n"
                .into(),
            "config.yml:4: modules.m.delivery: delivery needs a message: without a token mail \
             there is nothing to look for"
                .into(),
        ),
        (
            "lost_after not past the delivery timeout",
            format!("{SENDING_MODULE}    delivery: {{imap: imap.example.com, username: u, password_file: pw, timeout: 2m,\n      lost_after: 90s}}\n"),
            "config.yml:6: modules.token.delivery.lost_after: must be longer than the delivery \
             timeout (2m): a mail is late, then lost"
                .into(),
        ),
        (
            "delivery with two credentials",
            format!("{SENDING_MODULE}    delivery: {{imap: imap.example.com, username: u, password_file: pw, token_file: pw}}\n"),
            "config.yml:5: modules.token.delivery: give only one of password_file, password, \
             token_file and oauth2 (found password_file, token_file)"
                .into(),
        ),
        (
            "literal password, not echoed",
            "modules:\n  m:\n    auth:\n      username: u\n      password: hunter2\n".into(),
            "config.yml:5: modules.m.auth.password: must be a ${ENV} reference such as \
             \"${SMTP_PASSWORD}\" (a literal password is not allowed; use password_file or an \
             environment variable)"
                .into(),
        ),
        (
            "target with a space",
            "modules:\n  mx: {}\ntargets:\n  - {name: a, target: \"mx.example.com 25\", module: mx}\n"
                .into(),
            "config.yml:4: targets[0].target: target \"mx.example.com 25\" contains a space, line \
             break or control character"
                .into(),
        ),
        (
            "interval below 1s",
            "modules:\n  mx: {}\ntargets:\n  - {name: a, target: mx.example.com, module: mx, interval: 500ms}\n"
                .into(),
            "config.yml:4: targets[0].interval: interval must be at least 1s".into(),
        ),
        (
            "zero timeout",
            "modules:\n  mx:\n    timeout: 0s\n".into(),
            "config.yml:3: modules.mx.timeout: must be greater than 0".into(),
        ),
        (
            "bad EHLO name",
            "modules:\n  mx:\n    ehlo: \"a b\"\n".into(),
            "config.yml:3: modules.mx.ehlo: EHLO name \"a b\" is not valid: must be a printable \
             ASCII domain or address literal of at most 255 characters"
                .into(),
        ),
        (
            "missing required key",
            "modules:\n  m:\n    auth:\n      password_file: pw\n".into(),
            "config.yml:4: modules.m.auth.username: required but missing".into(),
        ),
        (
            "duplicate module",
            "modules:\n  mx: {}\n  mx: {port: 25}\n".into(),
            "config.yml:3: modules: duplicate mapping key `mx` is not allowed here".into(),
        ),
        (
            "not a boolean",
            "modules:\n  m:\n    tls_config: {insecure_skip_verify: yes}\n".into(),
            "config.yml:3: modules.m.tls_config.insecure_skip_verify: invalid boolean (true or \
             false expected)"
                .into(),
        ),
        (
            "wrong type",
            "modules:\n  m:\n    message:\n      from: a@example.com\n      to: b@example.com\n"
                .into(),
            "config.yml:5: modules.m.message.to: expected sequence start".into(),
        ),
        (
            "YAML syntax",
            "modules:\n  m:\n    port: 587\n   tls: none\n".into(),
            "config.yml:4: modules: while parsing a block mapping, did not find expected key"
                .into(),
        ),
        (
            "unknown histograms setting",
            "scheduler:\n  histograms: all\n".into(),
            "config.yml:2: scheduler.histograms: unknown variant \"all\", expected one of none, \
             total, steps"
                .into(),
        ),
        (
            "bucket bounds out of order",
            "scheduler:\n  buckets:\n    probe: [0.1, 1, 0.5]\n".into(),
            "config.yml:3: scheduler.buckets.probe: bounds must increase: 1 is followed by 0.5"
                .into(),
        ),
        (
            "no bucket bounds",
            "scheduler:\n  buckets:\n    step: []\n".into(),
            "config.yml:3: scheduler.buckets.step: needs at least one bound (to export no \
             histogram, set scheduler.histograms)"
                .into(),
        ),
        (
            "a bound that is not a duration",
            "scheduler:\n  buckets:\n    delivery: [0, 10]\n".into(),
            "config.yml:3: scheduler.buckets.delivery: 0 is not a positive number of seconds"
                .into(),
        ),
        (
            "too many bounds",
            format!(
                "scheduler:\n  buckets:\n    probe: [{}]\n",
                (1..=31).map(|i| i.to_string()).collect::<Vec<_>>().join(", ")
            ),
            "config.yml:3: scheduler.buckets.probe: 31 bounds; at most 30 (each is a series per \
             target)"
                .into(),
        ),
    ];
    for (what, yaml, expected) in cases {
        assert_eq!(error_in(dir.path(), &yaml), expected, "case: {what}");
    }
}

#[test]
fn histogram_settings_are_read() {
    let dir = secrets();
    let config = parse_in(
        dir.path(),
        "scheduler:\n  histograms: steps\n  buckets:\n    probe: [0.5, 1, 30]\n    \
         delivery: [60, 3600]\n",
    )
    .unwrap();
    assert_eq!(config.scheduler.histograms, Histograms::Steps);
    assert_eq!(config.scheduler.buckets.probe.as_slice(), [0.5, 1.0, 30.0]);
    assert_eq!(config.scheduler.buckets.delivery.as_slice(), [60.0, 3600.0]);
    assert_eq!(config.scheduler.buckets.step.as_slice(), STEP_BUCKETS);
    // The redacted copy on /config shows them as written.
    assert!(
        config.redacted_yaml().contains("histograms: steps"),
        "{}",
        config.redacted_yaml()
    );
}

#[test]
fn every_problem_is_listed_one_per_line() {
    let dir = secrets();
    let yaml = "\
modules:
  m:
    timeout: 0s
    ehlo: \"bad name\"
targets:
  - {name: a, target: mx.example.com, module: nope}
  - {name: b, target: \"[::1\", module: m, labels: {__x: y}}
";
    let err = parse_in(dir.path(), yaml).unwrap_err();
    assert_eq!(
        err.to_string(),
        "config.yml:3: modules.m.timeout: must be greater than 0\n\
         config.yml:4: modules.m.ehlo: EHLO name \"bad name\" is not valid: must be a printable \
         ASCII domain or address literal of at most 255 characters\n\
         config.yml:6: targets[0].module: no module named \"nope\" (defined: m)\n\
         config.yml:7: targets[1].target: target \"[::1\": missing ] after the IPv6 address\n\
         config.yml:7: targets[1].labels.__x: label name \"__x\" is reserved: names starting \
         with __ are Prometheus-internal"
    );
    assert_eq!(err.problems.len(), 5);
    assert_eq!(err.problems[2].line, Some(6));
    assert_eq!(err.problems[2].field, "targets[0].module");
}

/// The shipped example with its `/run/secrets` and `/etc/smtp-prober` files placed in a
/// temporary directory.
fn load_example() -> (tempfile::TempDir, Config) {
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets");
    let etc = dir.path().join("etc");
    std::fs::create_dir_all(&secrets).unwrap();
    std::fs::create_dir_all(etc.join("ca")).unwrap();
    for (name, content) in [
        ("smtp-password", "file-secret-smtp-9999\n"),
        ("imap-password", "file-secret-imap-7777\n"),
        ("oauth-client-secret", "file-secret-oauth-5555\n"),
        ("smtp-bearer", "bearer-token-3333\n"),
    ] {
        std::fs::write(secrets.join(name), content).unwrap();
    }
    std::fs::write(
        etc.join("ca/extra-root.pem"),
        "-----BEGIN CERTIFICATE-----\n",
    )
    .unwrap();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/smtp-prober.yml");
    let text = std::fs::read_to_string(path).unwrap();
    let text = text
        .replace("/run/secrets/", &format!("{}/", secrets.display()))
        .replace("/etc/smtp-prober/", &format!("{}/", etc.display()));
    let config = Config::parse(text.as_bytes(), "smtp-prober.yml", None, &env)
        .unwrap_or_else(|e| panic!("the example does not load:\n{e}"));
    (dir, config)
}

#[test]
fn example_config_loads_with_every_option() {
    let (dir, config) = load_example();
    assert_eq!(
        config.modules.keys().collect::<Vec<_>>(),
        [
            "mx",
            "oauth2_generic",
            "relay_plain",
            "smtps_token",
            "submission",
            "submission_graph",
            "submission_oauth2"
        ]
    );
    // The example spells out every default of `scheduler:`.
    assert_eq!(config.scheduler, SchedulerSettings::default());

    let m = &config.modules["submission"];
    assert_eq!(m.timeout, Duration::from_secs(15));
    assert_eq!((m.port, m.tls), (587, TlsMode::Starttls));
    assert_eq!(m.ehlo.as_str(), "probe.example.com");
    assert_eq!(m.ip_protocol, IpProtocol::Auto);
    assert_eq!(
        m.tls_config.server_name.as_deref(),
        Some("smtp.office365.com")
    );
    assert_eq!(m.tls_config.trust, [TrustKind::System, TrustKind::Bundled]);
    assert_eq!(
        m.tls_config.ca_files,
        [dir.path().join("etc/ca/extra-root.pem")]
    );
    let auth = m.auth.as_ref().unwrap();
    assert_eq!(auth.mechanism, MechanismChoice::Auto);
    assert_eq!(auth.username, "mfa-probe@example.com");
    match &auth.credential {
        Credential::Password(secret) => assert_eq!(secret.expose(), "file-secret-smtp-9999"),
        other => panic!("{other:?}"),
    }
    let message = m.message.as_ref().unwrap();
    assert_eq!(message.from.as_str(), "mfa-probe@example.com");
    assert_eq!(message.to[0].as_str(), "mfa-inbox@example.com");
    assert_eq!(message.subject, "MFA delivery probe {token}");
    let delivery = m.delivery.as_ref().unwrap();
    let imap = delivery.imap().unwrap();
    assert_eq!(
        (imap.host.as_str(), imap.port, imap.tls),
        ("outlook.office365.com", 993, ImapTls::Implicit)
    );
    assert_eq!(imap.username, "mfa-inbox@example.com");
    match &imap.credential {
        Credential::OAuth2(o) => {
            assert_eq!(o.client_secret.expose(), "file-secret-oauth-5555");
            assert_eq!(o.scope, "https://outlook.office365.com/.default");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(delivery.lost_after, Duration::from_secs(3600));
    assert!(!delivery.junk_is_failure);
    assert_eq!(delivery.mailboxes, ["INBOX", "Junk"]);
    assert_eq!(delivery.timeout, Duration::from_secs(120));
    assert!(delivery.cleanup);
    assert_eq!(delivery.sweep_older_than, Duration::from_secs(3600));
    assert_eq!(
        imap.tls_config.server_name.as_deref(),
        Some("outlook.office365.com")
    );
    assert_eq!(
        m.expect.cert_min_validity,
        Some(Duration::from_secs(14 * 86400))
    );

    let oauth = match &config.modules["submission_oauth2"]
        .auth
        .as_ref()
        .unwrap()
        .credential
    {
        Credential::OAuth2(oauth) => oauth.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        oauth.token_url,
        "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
    );
    assert_eq!(oauth.scope, "https://outlook.office365.com/.default");
    assert_eq!(oauth.client_secret.expose(), "file-secret-oauth-5555");

    let graph = config.modules["submission_graph"]
        .delivery
        .as_ref()
        .unwrap();
    match &graph.access {
        MailboxAccess::Graph(g) => {
            assert_eq!(g.user, "mfa-inbox@example.com");
            assert_eq!(g.oauth2.scope, "https://graph.microsoft.com/.default");
            assert_eq!(g.oauth2.client_secret.expose(), "file-secret-oauth-5555");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(graph.mailboxes, ["inbox", "junkemail"]);

    let smtps = &config.modules["smtps_token"];
    assert_eq!((smtps.port, smtps.tls), (465, TlsMode::Implicit));
    assert_eq!(smtps.tls_config.min_version, MinVersion::Tls13);
    let smtps_auth = smtps.auth.as_ref().unwrap();
    assert_eq!(smtps_auth.username, "alerts@example.org");
    assert_eq!(
        smtps_auth.credential,
        Credential::BearerTokenFile(dir.path().join("secrets/smtp-bearer"))
    );
    let smtps_delivery = smtps.delivery.as_ref().unwrap();
    assert_eq!(
        (
            smtps_delivery.imap().unwrap().port,
            smtps_delivery.mailboxes.len()
        ),
        (993, 1)
    );
    assert_eq!(imap_password(smtps_delivery), "env-secret-imap-0815");

    assert_eq!(config.modules["mx"].tls_config.trust, [TrustKind::Bundled]);
    assert_eq!(config.modules["relay_plain"].port, 25);

    let names: Vec<_> = config.targets.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "o365-submission",
            "o365-oauth2",
            "mx-primary",
            "mx-ipv6",
            "alerts-smtps"
        ]
    );
    let first = &config.targets[0];
    assert_eq!(first.interval, Duration::from_secs(300));
    assert_eq!(
        *first.labels,
        [
            ("site".into(), "hq".into()),
            ("team".into(), "identity".into())
        ]
    );
    let ipv6 = &config.targets[3];
    assert_eq!(
        (
            ipv6.address.to_string().as_str(),
            ipv6.address.host.as_str(),
            ipv6.address.port
        ),
        ("[2001:db8::25]:25", "2001:db8::25", 25)
    );
    assert_eq!(ipv6.interval, Duration::from_secs(60));
    assert_eq!(config.targets[1].address.port, 587);
}

#[test]
fn defaults_are_applied() {
    let dir = secrets();
    let yaml = "\
modules:
  plain: {tls: none}
  implicit: {tls: implicit}
  bare: {}
targets:
  - {name: a, target: mx.example.com, module: implicit}
";
    let config = parse_in(dir.path(), yaml).unwrap();
    let bare = &config.modules["bare"];
    assert_eq!(bare.timeout, Duration::from_secs(15));
    assert_eq!((bare.tls, bare.port), (TlsMode::Starttls, 587));
    assert_eq!(bare.ehlo, ClientName::from_hostname());
    assert_eq!(bare.ip_protocol, IpProtocol::Auto);
    assert_eq!(
        bare.tls_config.trust,
        [TrustKind::System, TrustKind::Bundled]
    );
    assert_eq!(bare.tls_config.min_version, MinVersion::Tls12);
    assert!(!bare.tls_config.insecure_skip_verify);
    assert!(bare.auth.is_none() && bare.message.is_none() && bare.delivery.is_none());
    assert_eq!(config.modules["plain"].port, 25);
    assert_eq!(config.modules["implicit"].port, 465);
    assert_eq!(config.scheduler, SchedulerSettings::default());
    assert_eq!(config.scheduler.max_concurrency, 32);
    assert_eq!(config.scheduler.histograms, Histograms::None);
    assert_eq!(config.scheduler.buckets.probe.as_slice(), PROBE_BUCKETS);
    let target = &config.targets[0];
    assert_eq!(
        (target.address.host.as_str(), target.address.port),
        ("mx.example.com", 465)
    );
    assert_eq!(target.interval, Duration::from_secs(60));

    let sending = format!("{SENDING_MODULE}    delivery: {{imap: imap.example.com, username: u, password_file: pw}}\n");
    let config = parse_in(dir.path(), &sending).unwrap();
    let module = &config.modules["token"];
    let message = module.message.as_ref().unwrap();
    assert!(message.subject.contains("{token}"));
    let delivery = module.delivery.as_ref().unwrap();
    assert_eq!(delivery.imap().unwrap().port, 993);
    assert_eq!(delivery.mailboxes, ["INBOX"]);
    assert_eq!(delivery.timeout, Duration::from_secs(120));
    assert_eq!(delivery.sweep_older_than, Duration::from_secs(3600));
    assert!(delivery.cleanup);
}

#[test]
fn delivery_logs_in_with_a_token_file_or_oauth2() {
    let dir = secrets();
    let yaml = format!(
        "{SENDING_MODULE}    delivery:\n      imap: outlook.office365.com\n      username: u\n      \
         oauth2: {{tenant: contoso.onmicrosoft.com, client_id: c, client_secret_file: pw}}\n      \
         junk_is_failure: true\n      timeout: 1h\n"
    );
    let config = parse_in(dir.path(), &yaml).unwrap();
    let d = config.modules["token"].delivery.as_ref().unwrap();
    match &d.imap().unwrap().credential {
        Credential::OAuth2(o) => {
            assert_eq!(
                o.token_url,
                "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
            );
            assert_eq!(o.scope, "https://outlook.office365.com/.default");
            assert_eq!(o.client_secret.expose(), "file-secret-1234");
        }
        other => panic!("{other:?}"),
    }
    assert!(d.junk_is_failure);
    // The default lost_after: an hour, or twice a longer timeout.
    assert_eq!(d.lost_after, Duration::from_secs(7200));

    let yaml = format!(
        "{SENDING_MODULE}    delivery: {{imap: imap.gmail.com, username: u, token_file: pw}}\n"
    );
    let config = parse_in(dir.path(), &yaml).unwrap();
    let d = config.modules["token"].delivery.as_ref().unwrap();
    assert_eq!(
        d.imap().unwrap().credential,
        Credential::BearerTokenFile(dir.path().join("pw"))
    );
    assert_eq!(d.lost_after, Duration::from_secs(3600));
    assert!(!d.junk_is_failure);
}

#[test]
fn delivery_through_microsoft_graph() {
    let dir = secrets();
    let yaml = format!(
        "{SENDING_MODULE}    delivery:\n      graph: {{tenant: contoso.onmicrosoft.com, client_id: c, \
         client_secret_file: pw, mailbox: mfa-inbox@contoso.com}}\n      mailboxes: [inbox, junkemail]\n"
    );
    let config = parse_in(dir.path(), &yaml).unwrap();
    let d = config.modules["token"].delivery.as_ref().unwrap();
    let MailboxAccess::Graph(g) = &d.access else {
        panic!("{:?}", d.access)
    };
    assert_eq!(
        g.oauth2.token_url,
        "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
    );
    assert_eq!(g.oauth2.scope, "https://graph.microsoft.com/.default");
    assert_eq!(g.oauth2.client_secret.expose(), "file-secret-1234");
    assert_eq!(g.user, "mfa-inbox@contoso.com");
    assert_eq!(g.endpoint, "https://graph.microsoft.com/v1.0");
    assert_eq!(d.mailboxes, ["inbox", "junkemail"]);

    let both = format!(
        "{SENDING_MODULE}    delivery:\n      imap: outlook.office365.com\n      \
         graph: {{tenant: t, client_id: c, client_secret_file: pw, mailbox: m, endpoint: \"http://graph.example\"}}\n"
    );
    assert_eq!(
        error_in(dir.path(), &both),
        "config.yml:6: modules.token.delivery.imap: an IMAP setting, but the mailbox is read \
         through graph\n\
         config.yml:7: modules.token.delivery.graph.endpoint: \"http://graph.example\" is not an \
         https:// URL (plain http:// only on 127.0.0.1, [::1] or localhost)"
    );
    let bare = format!("{SENDING_MODULE}    delivery:\n      graph: {{client_id: c}}\n");
    let error = error_in(dir.path(), &bare);
    for missing in [
        "graph.token_url",
        "graph.client_secret_file",
        "graph.mailbox",
    ] {
        assert!(error.contains(missing), "{missing} in {error}");
    }
}

/// The IMAP password of a delivery check that logs in with one.
fn imap_password(d: &crate::probe::module::DeliverySettings) -> &str {
    match &d.imap().unwrap().credential {
        Credential::Password(p) => p.expose(),
        other => panic!("not a password: {other:?}"),
    }
}

#[test]
fn empty_file_is_an_empty_configuration() {
    let config = Config::from_str("", "empty.yml").unwrap();
    assert!(config.modules.is_empty() && config.targets.is_empty());
    assert_eq!(
        config.checksum_hex(),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
}

#[test]
fn secrets_never_appear_in_redacted_yaml_or_debug() {
    let dir = secrets();
    let yaml = "\
modules:
  m:
    auth: {username: probe@example.com, password: \"${SMTP_PASSWORD}\"}
    message: {from: probe@example.com, to: [inbox@example.com]}
    delivery: {imap: imap.example.com, username: u, password_file: pw}
";
    let config = parse_in(dir.path(), yaml).unwrap();
    let module = &config.modules["m"];
    match &module.auth.as_ref().unwrap().credential {
        Credential::Password(secret) => assert_eq!(secret.expose(), "env-secret-smtp-4711"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        imap_password(module.delivery.as_ref().unwrap()),
        "file-secret-1234"
    );
    let redacted = config.redacted_yaml();
    let debug = format!("{config:?}");
    for shown in [redacted, debug.as_str()] {
        assert!(!shown.contains("env-secret-smtp-4711"), "{shown}");
        assert!(!shown.contains("file-secret-1234"), "{shown}");
        assert!(!shown.contains("SMTP_PASSWORD"), "{shown}");
    }
    assert!(redacted.contains("password: <redacted>"), "{redacted}");
    assert!(redacted.contains("password_file: pw"), "{redacted}");
    assert!(
        redacted.contains("username: probe@example.com"),
        "{redacted}"
    );

    // The example too, with its file and environment secrets.
    let (_dir, example) = load_example();
    let redacted = example.redacted_yaml();
    let debug = format!("{example:?}");
    for shown in [redacted, debug.as_str()] {
        for secret in [
            "file-secret-smtp-9999",
            "file-secret-imap-7777",
            "file-secret-oauth-5555",
            "bearer-token-3333",
            "env-secret-imap-0815",
        ] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
    }
    // The redacted text is itself a valid configuration file (the same, minus secrets).
    let reparsed: RawConfig = serde_saphyr::from_str(redacted).unwrap();
    assert_eq!(reparsed.modules.len(), 7);
    assert_eq!(reparsed.targets.len(), 5);
}

#[test]
fn load_resolves_relative_paths_and_names_the_file() {
    let dir = secrets();
    let path = dir.path().join("smtp-prober.yml");
    std::fs::write(
        &path,
        "modules:\n  m:\n    auth: {username: u, password_file: pw}\n",
    )
    .unwrap();
    let config = Config::load(&path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(config.checksum, <[u8; 32]>::from(Sha256::digest(&bytes)));

    std::fs::write(&path, "modules:\n  m:\n    tls: startls\n").unwrap();
    let err = Config::load(&path).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}:3: modules.m.tls: unknown variant \"startls\" (did you mean \"starttls\"?), \
             expected one of none, starttls, \
             implicit",
            path.display()
        )
    );

    let missing = dir.path().join("nope.yml");
    assert_eq!(
        Config::load(&missing).unwrap_err().to_string(),
        format!(
            "{}: cannot read: No such file or directory (os error 2)",
            missing.display()
        )
    );
}

#[test]
fn field_paths_drop_span_wrappers_but_keep_user_keys() {
    use serde_path_to_error::Segment;
    // Built by hand: modules → "value" (a module named value) → Spanned "value" → tls → "value".
    let segments = [
        Segment::Map {
            key: "modules".into(),
        },
        Segment::Map {
            key: "value".into(),
        },
        Segment::Map {
            key: "value".into(),
        },
        Segment::Map { key: "tls".into() },
        Segment::Map {
            key: "value".into(),
        },
    ];
    assert_eq!(render_segments(&segments), "modules.value.tls");
    let segments = [
        Segment::Map {
            key: "targets".into(),
        },
        Segment::Seq { index: 2 },
        Segment::Map {
            key: "value".into(),
        },
        Segment::Map {
            key: "labels".into(),
        },
        Segment::Map {
            key: "value".into(),
        },
    ];
    assert_eq!(render_segments(&segments), "targets[2].labels.value");
}

#[test]
fn mechanism_must_fit_the_credential() {
    let dir = secrets();
    let yaml = "modules:\n  m:\n    auth:\n      mechanism: plain\n      username: u\n      token_file: pw\n";
    assert_eq!(
        error_in(dir.path(), yaml),
        "config.yml:4: modules.m.auth.mechanism: mechanism plain needs a password \
         (password_file or password)"
    );
    let yaml = "modules:\n  m:\n    auth:\n      username: u\n      password_file: pw\n      token_file: pw\n";
    assert_eq!(
        error_in(dir.path(), yaml),
        "config.yml:4: modules.m.auth: give only one of password_file, password, token_file \
         and oauth2 (found password_file, token_file)"
    );
}

#[test]
fn token_url_must_be_https_except_on_loopback() {
    let dir = secrets();
    let yaml = |url: &str| {
        format!(
            "modules:\n  m:\n    auth:\n      username: u\n      oauth2:\n        token_url: {url}\n        client_id: c\n        client_secret_file: pw\n        scope: s\n"
        )
    };
    assert!(parse_in(dir.path(), &yaml("http://127.0.0.1:8080/token")).is_ok());
    assert!(parse_in(dir.path(), &yaml("https://login.example.com/token")).is_ok());
    assert_eq!(
        error_in(dir.path(), &yaml("http://login.example.com/token")),
        "config.yml:6: modules.m.auth.oauth2.token_url: \"http://login.example.com/token\" is \
         not an https:// URL (plain http:// only on 127.0.0.1, [::1] or localhost)"
    );
}

#[test]
fn delivery_needs_the_token_in_the_mail() {
    let dir = secrets();
    let yaml = "modules:\n  m:\n    message:\n      from: a@example.com\n      to: [b@example.com]\n      subject: hello\n      body: world\n    delivery: {imap: imap.example.com, username: u, password_file: pw}\n";
    assert_eq!(
        error_in(dir.path(), yaml),
        "config.yml:6: modules.m.message.subject: subject or body must contain {token}: the \
         delivery check searches for it"
    );
}

/// 10,000 scheduled targets with ten labels each (about 2 MB of YAML) load: the YAML limits
/// stop pathological files, not large fleets.
#[test]
fn ten_thousand_targets_with_ten_labels_load() {
    let dir = secrets();
    let mut yaml = String::from("modules:\n  mx: {}\ntargets:\n");
    for i in 0..10_000 {
        yaml.push_str(&format!(
            "  - name: target-{i}\n    target: mx{i}.example.com:25\n    module: mx\n    labels:\n"
        ));
        for l in 0..10 {
            yaml.push_str(&format!("      label_{l}: value-{i}-{l}\n"));
        }
    }
    assert!(yaml.len() > 1_500_000, "{}", yaml.len());
    let config = parse_in(dir.path(), &yaml).expect("10,000 targets load");
    assert_eq!(config.targets.len(), 10_000);
}

/// A file beyond the YAML limits is refused with the limit it broke, not pinned on whatever
/// line and field the parser happened to be at.
#[test]
fn a_yaml_limit_names_the_real_cause() {
    let dir = secrets();
    let mut yaml = String::from(
        "modules:\n  mx: {}\ntargets:\n  - name: a\n    target: mx.example.com\n    \
         module: mx\n    labels:\n      first: &v value\n",
    );
    for i in 0..500 {
        yaml.push_str(&format!("      l{i}: *v\n"));
    }
    let message = error_in(dir.path(), &yaml);
    assert!(
        message.starts_with(
            "config.yml: the file is too large or too complex to read: far more aliases than \
             anchors"
        ),
        "{message}"
    );
    assert!(
        message.contains("the limit applies to the whole file"),
        "{message}"
    );
}
