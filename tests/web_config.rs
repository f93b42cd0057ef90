//! `--web.config.file` through the real binary: HTTPS with the demo PKI's certificate, plain
//! HTTP refused on the HTTPS port, basic authentication on every endpoint, client certificates,
//! and a broken web configuration refused at start with its file, line and field.
//!
//! The HTTPS client is blocking rustls over a `TcpStream`, speaking HTTP/1.0 like the plain
//! helper in `support/exporter.rs`, and trusting only the demo root (or a CA made here for
//! client certificates).

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use smtp_prober::demo::DemoPki;

mod support;

use support::exporter::*;

/// One module for `/probe` against the demo server; no scheduled targets.
fn config(dir: &Path) -> String {
    format!(
        "modules:\n  starttls:\n    timeout: 5s\n    tls: starttls\n    ehlo: prober.test\n    \
         tls_config: {{server_name: localhost, trust: [], ca_files: [{root}]}}\n",
        root = dir.join("root.pem").display(),
    )
}

/// Writes the demo server certificate (leaf and intermediate) and key beside the config, and
/// `web.yml` with `tls` and `rest` below it; returns the `--web.config.file` flag.
fn web_config(files: &Files, tls: &str, rest: &str) -> String {
    let pki = DemoPki::localhost();
    let dir = files.dir.path();
    std::fs::write(
        dir.join("server.crt"),
        format!("{}{}", pki.leaf.pem, pki.intermediate_pem()),
    )
    .expect("server.crt");
    std::fs::write(dir.join("server.key"), pki.leaf_key_pem()).expect("server.key");
    let mut yaml = String::new();
    if !tls.is_empty() {
        yaml.push_str("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n");
        yaml.push_str(tls);
    }
    yaml.push_str(rest);
    let path = dir.join("web.yml");
    std::fs::write(&path, yaml).expect("web.yml");
    format!("--web.config.file={}", path.display())
}

/// A client certificate: its chain and key.
struct ClientCert {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl Clone for ClientCert {
    fn clone(&self) -> Self {
        ClientCert {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

/// A CA called `ca_name` for client certificates: its PEM and a client certificate it issued
/// for `name`.
fn client_ca(ca_name: &str, name: &str) -> (String, ClientCert) {
    let mut ca_params = CertificateParams::default();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, ca_name);
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca =
        CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("CA key")).expect("CA");
    let mut params = CertificateParams::new(vec![name.to_string()]).expect("client params");
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let key = KeyPair::generate().expect("client key");
    let cert = params.signed_by(&key, &ca).expect("client cert");
    (
        ca.pem(),
        ClientCert {
            chain: vec![cert.der().clone()],
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        },
    )
}

/// One HTTP/1.0 request over TLS, trusting the demo root; `Err` when the connection fails
/// (handshake refused, closed without an answer).
fn https(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    client: Option<ClientCert>,
) -> Result<Response, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(DemoPki::localhost().root_store());
    let config = match client {
        Some(c) => builder
            .with_client_auth_cert(c.chain, c.key)
            .expect("client cert"),
        None => builder.with_no_client_auth(),
    };
    let name = ServerName::try_from("localhost").expect("name");
    let conn = rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
    let tcp = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let mut request = format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n");
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    tls.write_all(request.as_bytes())
        .map_err(|e| format!("sending: {e}"))?;
    let mut raw = Vec::new();
    if let Err(e) = tls.read_to_end(&mut raw) {
        // A server that closes without close_notify still sent a whole answer.
        if raw.is_empty() || e.kind() != std::io::ErrorKind::UnexpectedEof {
            return Err(format!("reading: {e}"));
        }
    }
    let text = String::from_utf8(raw).map_err(|e| e.to_string())?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no header block in {text:?}"))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status in {head:?}"))?;
    Ok(Response {
        status,
        headers: head.to_ascii_lowercase(),
        body: body.to_string(),
    })
}

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

#[test]
fn https_serves_metrics_and_plain_http_is_turned_away() {
    let files = Files::new();
    files.write(&config(files.dir.path()));
    let web = web_config(
        &files,
        "  min_version: TLS12\n",
        "http_server_config:\n  headers:\n    Strict-Transport-Security: max-age=31536000\n",
    );
    let exporter = Exporter::start(&[&files.config_arg(), &web]);

    let r = https(exporter.addr, "/metrics", &[], None).expect("HTTPS /metrics");
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("smtp_prober_build_info{"), "{}", r.body);
    assert!(
        r.headers
            .contains("strict-transport-security: max-age=31536000"),
        "{}",
        r.headers
    );

    let plain = exporter.get("/metrics");
    assert_eq!(plain.status, 400, "{}", plain.body);
    assert!(
        plain.body.contains("HTTP request to an HTTPS server"),
        "{}",
        plain.body
    );
    assert!(!plain.body.contains("smtp_prober_build_info"));

    // The server still serves HTTPS after turning a plain client away.
    let again = https(exporter.addr, "/-/healthy", &[], None).expect("HTTPS /-/healthy");
    assert_eq!(again.status, 200);
    assert_eq!(again.body, "Healthy\n");
}

#[test]
fn basic_auth_guards_every_endpoint() {
    let mut servers = Servers::new();
    let smtp = servers.healthy();
    let files = Files::new();
    files.write(&config(files.dir.path()));
    let password = "correct horse battery staple";
    let hash = bcrypt::hash(password, 4).expect("bcrypt");
    let web = web_config(
        &files,
        "",
        &format!("basic_auth_users:\n  prometheus: '{hash}'\n"),
    );
    let exporter = Exporter::start(&[&files.config_arg(), &web, "--log.level=debug"]);

    let right = basic("prometheus", password);
    let wrong = basic("prometheus", "Tr0ub4dor&3");
    let stranger = basic("mallory", password);
    let probe = format!("/probe?module=starttls&target={smtp}");
    for path in ["/metrics", probe.as_str(), "/", "/-/healthy", "/config"] {
        let none = exporter.get(path);
        assert_eq!(
            none.status, 401,
            "{path} without credentials: {}",
            none.body
        );
        assert!(
            none.headers
                .contains("www-authenticate: basic realm=\"smtp-prober\""),
            "{path}: {}",
            none.headers
        );
        for (what, credential) in [("wrong password", &wrong), ("unknown user", &stranger)] {
            let r = exporter.get_with(path, &[("Authorization", credential)]);
            assert_eq!(r.status, 401, "{path} with {what}: {}", r.body);
        }
        let ok = exporter.get_with(path, &[("Authorization", &right)]);
        assert_eq!(
            ok.status, 200,
            "{path} with the right password: {}",
            ok.body
        );
        if path == probe {
            assert_eq!(sample(&ok.body, "probe_success"), Some(1.0), "{}", ok.body);
        }
    }
    // Unknown paths too: nothing tells a stranger which paths exist.
    assert_eq!(exporter.get("/nonexistent").status, 401);
    let found = exporter.get_with("/nonexistent", &[("Authorization", &right)]);
    assert_eq!(found.status, 404);
    // Neither the password nor the header that carries it shows up in the debug log.
    let encoded = right.trim_start_matches("Basic ");
    let log = exporter.log_lines().join("\n");
    assert!(!log.contains(password), "{log}");
    assert!(!log.contains(encoded), "{log}");
    assert!(!log.contains("Tr0ub4dor"), "{log}");
}

#[test]
fn client_certificates_from_the_ca_only() {
    let files = Files::new();
    files.write(&config(files.dir.path()));
    let (ca_pem, prometheus) = client_ca("monitoring client CA", "prometheus.test");
    let (_, foreign) = client_ca("someone else's CA", "prometheus.test");
    std::fs::write(files.dir.path().join("clients.pem"), ca_pem).expect("clients.pem");
    let web = web_config(
        &files,
        "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: clients.pem\n",
        "",
    );
    let exporter = Exporter::start(&[&files.config_arg(), &web]);

    let served = https(exporter.addr, "/metrics", &[], Some(prometheus.clone()))
        .expect("a client with a certificate from the CA");
    assert_eq!(served.status, 200);
    assert!(served.body.contains("smtp_prober_build_info{"));

    let without = https(exporter.addr, "/metrics", &[], None);
    assert!(without.is_err(), "served without a client certificate");
    let other_ca = https(exporter.addr, "/metrics", &[], Some(foreign));
    assert!(other_ca.is_err(), "served a certificate from another CA");
}

#[test]
fn client_allowed_sans_narrow_the_ca() {
    let files = Files::new();
    files.write(&config(files.dir.path()));
    let (ca_pem, prometheus) = client_ca("monitoring client CA", "prometheus.test");
    std::fs::write(files.dir.path().join("clients.pem"), ca_pem).expect("clients.pem");
    let only_other = web_config(
        &files,
        "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: clients.pem\n  \
         client_allowed_sans: [grafana.test]\n",
        "",
    );
    let exporter = Exporter::start(&[&files.config_arg(), &only_other, "--log.level=debug"]);
    let refused = https(exporter.addr, "/metrics", &[], Some(prometheus.clone()));
    assert!(refused.is_err(), "served a SAN not in client_allowed_sans");
    // The debug log says why.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut log = Vec::new();
    while !log
        .iter()
        .any(|l: &String| l.contains("not in client_allowed_sans"))
    {
        assert!(std::time::Instant::now() < deadline, "{log:?}");
        log.extend(exporter.log_lines());
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(exporter);

    let allowed = web_config(
        &files,
        "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: clients.pem\n  \
         client_allowed_sans: [grafana.test, prometheus.test]\n",
        "",
    );
    let exporter = Exporter::start(&[&files.config_arg(), &allowed]);
    let served = https(exporter.addr, "/metrics", &[], Some(prometheus)).expect("allowed SAN");
    assert_eq!(served.status, 200);
}

#[test]
fn a_bad_web_config_stops_the_start_with_file_and_line() {
    let files = Files::new();
    files.write(&config(files.dir.path()));
    let web = web_config(&files, "  cert_fil: server.crt\n", "");
    let path = files.dir.path().join("web.yml");
    let out = Command::new(BIN)
        .args([
            &files.config_arg(),
            &web,
            "--web.listen-address=127.0.0.1:0",
        ])
        .output()
        .expect("running smtp-prober");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let expected = format!(
        "{}:4: tls_server_config.cert_fil: unknown key \"cert_fil\"",
        path.display()
    );
    assert!(stderr.contains(&expected), "{stderr}");

    // check-config reports the same problem, and accepts a good file.
    let checked = Command::new(BIN)
        .args(["check-config", &files.config_arg(), &web])
        .output()
        .expect("check-config");
    assert_eq!(checked.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&checked.stderr).contains(&expected),
        "{}",
        String::from_utf8_lossy(&checked.stderr)
    );
    let hash = bcrypt::hash("pw", 4).expect("bcrypt");
    let good = web_config(&files, "", &format!("basic_auth_users:\n  a: '{hash}'\n"));
    let checked = Command::new(BIN)
        .args(["check-config", &files.config_arg(), &good])
        .output()
        .expect("check-config");
    let stdout = String::from_utf8_lossy(&checked.stdout);
    assert_eq!(checked.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "{}: OK, plain HTTP, basic auth (1 user)",
            path.display()
        )),
        "{stdout}"
    );
}
