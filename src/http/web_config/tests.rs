//! Tests of the web configuration: the parser (valid files, a table of invalid ones), basic
//! authentication, the rate limit and the certificate reload.

use base64::Engine as _;

use super::auth::*;
use super::tls::*;
use super::*;
use crate::demo::DemoPki;

/// A directory with a server certificate (leaf and intermediate), its key, the demo root as
/// a client CA, and the key of another PKI.
struct Dir(tempfile::TempDir);

impl Dir {
    fn new() -> Dir {
        let dir = tempfile::tempdir().expect("temp dir");
        let pki = DemoPki::localhost();
        let write = |name: &str, text: &str| {
            std::fs::write(dir.path().join(name), text).expect("writing a test file")
        };
        write(
            "server.crt",
            &format!("{}{}", pki.leaf.pem, pki.intermediate_pem()),
        );
        write("server.key", pki.leaf_key_pem());
        write("ca.pem", pki.root_pem());
        let other = DemoPki::generate(&[]).expect("another PKI");
        write("other.key", other.leaf_key_pem());
        Dir(dir)
    }

    fn parse(&self, text: &str) -> Result<WebConfig, String> {
        WebConfig::parse(text, "web.yml", Some(self.0.path())).map_err(|e| e.to_string())
    }
}

const TLS: &str = "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n";

#[test]
fn empty_file_is_plain_http() {
    let dir = Dir::new();
    for text in ["", "# nothing yet\n", "---\n"] {
        let web = dir.parse(text).expect("valid");
        assert!(!web.tls_enabled());
        assert_eq!(web.basic_auth_users(), 0);
        assert_eq!(web.summary(), "plain HTTP, no basic auth");
    }
}

#[test]
fn full_file_is_accepted() {
    let dir = Dir::new();
    let hash = bcrypt::hash("pw", 4).expect("hash");
    let text = format!(
        "{TLS}  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n  \
         client_allowed_sans: [prometheus.example]\n  min_version: TLS12\n  \
         max_version: TLS13\n  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, \
         TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305, TLS_AES_128_GCM_SHA256]\n  \
         curve_preferences: [X25519, CurveP256]\n  prefer_server_cipher_suites: false\n\
         http_server_config:\n  http2: true\n  headers:\n    \
         Strict-Transport-Security: max-age=31536000\n    X-Frame-Options: DENY\n    \
         X-XSS-Protection: \"\"\n\
         basic_auth_users:\n  alice: '{hash}'\n  bob: '{hash}'\n\
         rate_limit: {{interval: 100ms, burst: 20}}\n"
    );
    let web = dir.parse(&text).expect("valid");
    assert_eq!(
        web.summary(),
        "TLS (client certificates required, SANs prometheus.example), basic auth (2 users), \
         2 extra headers, rate limit 1 per 100ms (burst 20)"
    );
    let tls = web.tls.as_ref().expect("tls");
    assert!(!tls.config.ignore_client_order);
    assert_eq!(tls.config.alpn_protocols, vec![b"http/1.1".to_vec()]);
    // The three TLS 1.3 suites, then the two TLS 1.2 ones named, in the order named.
    let suites: Vec<String> = tls
        .config
        .crypto_provider()
        .cipher_suites
        .iter()
        .map(|s| format!("{:?}", s.suite()))
        .collect();
    assert_eq!(suites.len(), 5, "{suites:?}");
    assert_eq!(suites[3], "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256");
    assert_eq!(suites[4], "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256");
    let groups: Vec<String> = tls
        .config
        .crypto_provider()
        .kx_groups
        .iter()
        .map(|g| format!("{:?}", g.name()))
        .collect();
    assert_eq!(groups, ["X25519", "secp256r1"]);
}

#[test]
fn invalid_files_name_file_line_and_field() {
    let dir = Dir::new();
    let hash = bcrypt::hash("pw", 4).expect("hash");
    let cases: &[(String, &str)] = &[
        (
            "tls_server_config:\n  cert_fil: server.crt\n".into(),
            "web.yml:2: tls_server_config.cert_fil: unknown key \"cert_fil\" (did you mean \
             \"cert_file\"?), expected one of \
             cert, key, client_ca, cert_file, key_file, client_auth_type, client_ca_file, \
             client_allowed_sans, min_version, max_version, cipher_suites, \
             prefer_server_cipher_suites, curve_preferences",
        ),
        (
            "tls_config: {}\n".into(),
            "web.yml:1: tls_config: unknown key \"tls_config\", expected one of tls_server_config, \
             http_server_config, basic_auth_users, rate_limit",
        ),
        (
            "tls_server_config:\n  cert_file: server.crt\n".into(),
            "web.yml:2: tls_server_config: missing key_file (or key)",
        ),
        (
            "tls_server_config:\n  cert_file: missing.crt\n  key_file: server.key\n".into(),
            "web.yml:2: tls_server_config.cert_file: cannot read ",
        ),
        (
            "tls_server_config:\n  cert_file: server.crt\n  cert: x\n  key_file: server.key\n"
                .into(),
            "web.yml:3: tls_server_config.cert: give cert or cert_file, not both",
        ),
        (
            "tls_server_config:\n  cert_file: server.key\n  key_file: server.key\n".into(),
            "web.yml:2: tls_server_config.cert_file: ",
        ),
        (
            "tls_server_config:\n  cert_file: server.crt\n  key_file: other.key\n".into(),
            "web.yml:2: tls_server_config.cert_file: the key (",
        ),
        (
            format!("{TLS}  client_auth_type: RequireAndVerifyClientCert\n"),
            "web.yml:4: tls_server_config.client_auth_type: RequireAndVerifyClientCert \
             needs client_ca_file (or client_ca) to verify against",
        ),
        (
            format!("{TLS}  client_auth_type: RequestClientCert\n  client_ca_file: ca.pem\n"),
            "web.yml:4: tls_server_config.client_auth_type: RequestClientCert is not \
             supported: it accepts client certificates that nobody verified",
        ),
        (
            format!("{TLS}  client_auth_type: Maybe\n"),
            "web.yml:4: tls_server_config.client_auth_type: unknown variant \"Maybe\", \
             expected one of NoClientCert, RequestClientCert",
        ),
        (
            format!("{TLS}  client_ca_file: ca.pem\n"),
            "web.yml:4: tls_server_config.client_auth_type: a client CA is configured \
             without a client auth policy",
        ),
        (
            format!(
                "{TLS}  client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: ca.pem\n  \
                 client_allowed_sans: [a]\n"
            ),
            "web.yml:6: tls_server_config.client_allowed_sans: needs client_auth_type \
             RequireAndVerifyClientCert",
        ),
        (
            format!("{TLS}  min_version: TLS11\n"),
            "web.yml:4: tls_server_config.min_version: TLS11 is not supported (rustls \
             implements TLS 1.2 and 1.3): use TLS12 or TLS13",
        ),
        (
            format!("{TLS}  min_version: TLS14\n"),
            "web.yml:4: tls_server_config.min_version: unknown variant \"TLS14\", expected \
             one of TLS10, TLS11, TLS12, TLS13",
        ),
        (
            format!("{TLS}  min_version: TLS13\n  max_version: TLS12\n"),
            "web.yml:5: tls_server_config.max_version: TLS12 is below min_version TLS13",
        ),
        (
            format!("{TLS}  cipher_suites: [TLS_RSA_WITH_RC4_128_SHA]\n"),
            "web.yml:4: tls_server_config.cipher_suites[0]: unknown or unavailable cipher \
             suite \"TLS_RSA_WITH_RC4_128_SHA\"; available: ",
        ),
        (
            format!("{TLS}  curve_preferences: [X25519, CurveP521]\n"),
            "web.yml:4: tls_server_config.curve_preferences[1]: unknown or unavailable \
             curve \"CurveP521\"; available: X25519, CurveP256, CurveP384",
        ),
        (
            format!("{TLS}  prefer_server_cipher_suites: yes\n"),
            "web.yml:4: tls_server_config.prefer_server_cipher_suites: ",
        ),
        (
            "http_server_config:\n  http3: true\n".into(),
            "web.yml:2: http_server_config.http3: unknown key \"http3\" (did you mean \"http2\"?), \
             expected one of http2, \
             headers",
        ),
        (
            "http_server_config:\n  headers:\n    X-Frame-Options: allow\n".into(),
            "web.yml:3: http_server_config.headers.X-Frame-Options: \"allow\" is not one of \
             deny, sameorigin",
        ),
        (
            "http_server_config:\n  headers:\n    X-Custom: a\n".into(),
            "web.yml:3: http_server_config.headers.X-Custom: not a header that can be set; \
             one of Content-Security-Policy, X-Frame-Options",
        ),
        (
            "basic_auth_users:\n  alice: secret\n".into(),
            "web.yml:2: basic_auth_users.alice: not a bcrypt hash (",
        ),
        (
            format!("basic_auth_users:\n  'a:b': '{hash}'\n"),
            "web.yml:2: basic_auth_users.a:b: a user name cannot contain ':'",
        ),
        (
            "basic_auth_users:\n  value: [1]\n".into(),
            "web.yml:2: basic_auth_users.value: ",
        ),
        (
            "rate_limit: {interval: 1s, burst: 0}\n".into(),
            "web.yml:1: rate_limit.burst: must be at least 1 (0 would refuse every request)",
        ),
        (
            "rate_limit: {interval: soon, burst: 1}\n".into(),
            "web.yml:1: rate_limit.interval: invalid duration \"soon\"",
        ),
    ];
    let mut wrong = Vec::new();
    for (text, expected) in cases {
        match dir.parse(text) {
            Ok(_) => wrong.push(format!("accepted:\n{text}")),
            Err(message) if message.starts_with(expected) => {
                if std::env::var_os("SHOW_WEB_CONFIG_ERRORS").is_some() {
                    eprintln!("{message}");
                }
            }
            Err(message) => wrong.push(format!(
                "file:\n{text}\nexpected: {expected}\n     got: {message}"
            )),
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
}

#[test]
fn every_problem_is_reported() {
    let dir = Dir::new();
    let text = "tls_server_config:\n  cert_file: server.crt\n  min_version: TLS10\n\
                basic_auth_users:\n  alice: nope\n";
    let message = dir.parse(text).expect_err("invalid");
    let lines: Vec<&str> = message.lines().collect();
    assert_eq!(lines.len(), 3, "{message}");
    assert!(lines[0].starts_with("web.yml:2: tls_server_config: missing key_file"));
    assert!(lines[1].starts_with("web.yml:3: tls_server_config.min_version: TLS10"));
    assert!(lines[2].starts_with("web.yml:5: basic_auth_users.alice: not a bcrypt hash"));
}

#[test]
fn relative_paths_are_taken_from_the_file_directory() {
    let dir = Dir::new();
    let path = dir.0.path().join("web.yml");
    std::fs::write(&path, TLS).expect("write");
    let web = WebConfig::load(&path).expect("valid");
    assert!(web.tls_enabled());
    let missing = WebConfig::load(&dir.0.path().join("absent.yml")).expect_err("missing");
    assert!(
        missing.to_string().contains("absent.yml: cannot read: "),
        "{missing}"
    );
}

fn basic(user: &str, password: &str) -> HeaderValue {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    HeaderValue::from_str(&format!("Basic {encoded}")).expect("header")
}

#[test]
fn basic_credentials_parse() {
    assert_eq!(
        parse_basic(&basic("alice", "pa:ss")),
        Some(("alice".to_string(), b"pa:ss".to_vec()))
    );
    let lower = HeaderValue::from_static("basic YWxpY2U6cHc=");
    assert_eq!(
        parse_basic(&lower),
        Some(("alice".to_string(), b"pw".to_vec()))
    );
    for bad in [
        "Bearer YWxpY2U6cHc=",
        "Basic !!!",
        "Basic YWxpY2U=",
        "Basic",
    ] {
        assert_eq!(parse_basic(&HeaderValue::from_static(bad)), None, "{bad}");
    }
    let huge = format!("Basic {}", "A".repeat(MAX_CREDENTIAL_BYTES + 4));
    assert_eq!(
        parse_basic(&HeaderValue::from_str(&huge).expect("header")),
        None
    );
}

#[tokio::test]
async fn basic_auth_checks_and_remembers_successes_only() {
    let hash = bcrypt::hash("right", 4).expect("hash");
    let users = HashMap::from([("alice".to_string(), hash.clone())]);
    let auth = BasicAuth::new(users).expect("users");
    assert!(!auth.check(None).await);
    assert!(!auth.check(Some(&basic("alice", "wrong"))).await);
    assert!(!auth.check(Some(&basic("mallory", "right"))).await);
    assert!(auth.lock_verified().is_empty());
    assert!(auth.check(Some(&basic("alice", "right"))).await);
    assert_eq!(auth.lock_verified().len(), 1);
    assert!(auth
        .lock_verified()
        .contains(&verified_key("alice", &hash, b"right")));
    // Served from memory: still exactly one entry.
    assert!(auth.check(Some(&basic("alice", "right"))).await);
    assert_eq!(auth.lock_verified().len(), 1);
    // No users: no authentication at all.
    assert!(BasicAuth::new(HashMap::new()).is_none());
}

#[test]
fn verified_keys_keep_their_parts_apart() {
    assert_ne!(verified_key("ab", "h", b"c"), verified_key("a", "h", b"bc"));
}

#[test]
fn rate_limit_allows_the_burst_then_one_per_interval() {
    let a = Client::Address([127, 0, 0, 1].into());
    let b = Client::Address([127, 0, 0, 2].into());
    let user = Client::User("prometheus".into());
    let limiter = RateLimiter::new(Duration::from_secs(3600), 2);
    assert!(limiter.allow(&a));
    assert!(limiter.allow(&a));
    assert!(!limiter.allow(&a));
    // Every client has its own bucket.
    assert!(limiter.allow(&b));
    assert!(limiter.allow(&user));
    assert!(limiter.allow(&user));
    assert!(!limiter.allow(&user));
    let fast = RateLimiter::new(Duration::from_millis(10), 1);
    assert!(fast.allow(&a));
    assert!(!fast.allow(&a));
    std::thread::sleep(Duration::from_millis(25));
    assert!(fast.allow(&a));
}

#[test]
fn a_replaced_certificate_is_picked_up_and_a_broken_one_is_not() {
    let dir = Dir::new();
    let web = dir.parse(TLS).expect("valid");
    let server_cert = &web.tls.as_ref().expect("tls").server_cert;
    let first = DemoPki::localhost();
    assert_eq!(server_cert.current().cert[0], first.leaf.der);

    let next = DemoPki::generate(&["rotated.example"]).expect("PKI");
    std::fs::write(dir.0.path().join("server.crt"), &next.leaf.pem).expect("write");
    std::fs::write(dir.0.path().join("server.key"), next.leaf_key_pem()).expect("write");
    // Files are looked at no more than once per CERT_CHECK_INTERVAL.
    assert_eq!(server_cert.current().cert[0], first.leaf.der);
    std::thread::sleep(CERT_CHECK_INTERVAL + Duration::from_millis(100));
    assert_eq!(server_cert.current().cert[0], next.leaf.der);

    // A key that does not match: the rotated pair stays in service.
    std::fs::write(dir.0.path().join("server.key"), first.leaf_key_pem()).expect("write");
    std::thread::sleep(CERT_CHECK_INTERVAL + Duration::from_millis(100));
    assert_eq!(server_cert.current().cert[0], next.leaf.der);
}

#[test]
fn sans_compare_ip_addresses_as_addresses() {
    assert!(san_matches("::1", "0:0:0:0:0:0:0:1"));
    assert!(san_matches("prometheus.example", "prometheus.example"));
    assert!(!san_matches(
        "prometheus.example",
        "Prometheus.example.evil"
    ));
    let pki = DemoPki::localhost();
    let sans = cert_sans(pki.leaf.der.as_ref());
    assert_eq!(sans, ["localhost", "127.0.0.1", "::1"]);
}
