//! The alert rules of `deploy/prometheus/smtp-prober-rules.yml`, as users load them:
//!
//! - `promtool check rules` accepts the file and `promtool test rules` passes its unit tests
//!   (`deploy/prometheus/tests/`: every alert fires on the series that should fire it, with its
//!   labels and rendered annotations, and stays silent on healthy and flapping series);
//! - every failure reason of the exporter's vocabulary fires exactly one alert, and the hint the
//!   annotations show is the exporter's own hint for it (a generated promtool test);
//! - every alert has a summary, a description, a severity, a category and a runbook_url that
//!   points at a section of the README;
//! - end to end: the real exporter probes demo servers and the real Postfix + Dovecot stack,
//!   a real Prometheus scrapes it both ways (`/probe` with relabelling, and `/metrics` for the
//!   scheduled targets) with the shipped rules loaded, a real Alertmanager posts to a webhook in
//!   this test. Broken targets page with the right alert and reason, the healthy ones never do,
//!   and a reload to a good configuration resolves the alerts.
//!
//! The end-to-end test loads the rules through one documented transformation, [`fast_rules`]:
//! every `for: Nm` becomes `for: Ns` (minutes become seconds) and Prometheus evaluates every
//! second. Nothing else changes: same expressions, labels and annotations.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Value};
use smtp_prober::demo::{DemoPki, PkiOptions, Sent, ServerConfig};
use smtp_prober::vocab::Reason;
use support::dashboards::{by_file, Choice, Outcome, Window};
use support::exporter::{Exporter, Files, Servers};
use support::mailstack::{MailStack, INBOX, PROBE};
use support::outcome::FULL_STARTTLS_SEND;
use support::programs::run_checked;
use support::prometheus::{available, Alertmanager, Prometheus};
use support::webhook::{summarize, Notification, Webhook};

/// The shipped rules file.
fn rules_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/prometheus/smtp-prober-rules.yml")
}

/// The shipped rules, parsed.
fn rules() -> Value {
    let text = std::fs::read_to_string(rules_path()).expect("reading the rules file");
    serde_saphyr::from_str(&text).expect("parsing the rules file")
}

/// Every alerting rule of the file.
fn alert_rules() -> Vec<Value> {
    rules()["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
        .filter(|r| r.get("alert").is_some())
        .collect()
}

#[test]
fn promtool_checks_the_rules_and_passes_their_unit_tests() {
    if !available(
        "promtool_checks_the_rules_and_passes_their_unit_tests",
        false,
    ) {
        return;
    }
    let out = run_checked(
        "promtool",
        &["check", "rules", &rules_path().to_string_lossy()],
    );
    assert!(out.contains("SUCCESS"), "{out}");
    let tests_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/prometheus/tests");
    let mut files: Vec<String> = std::fs::read_dir(&tests_dir)
        .expect("deploy/prometheus/tests")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml"))
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "no unit test files in {}",
        tests_dir.display()
    );
    let mut args = vec!["test", "rules"];
    args.extend(files.iter().map(String::as_str));
    let out = run_checked("promtool", &args);
    assert!(!out.contains("FAILED"), "{out}");
}

/// The alert a probe failing for `reason` must fire (the README's table says the same).
fn alert_for(reason: Reason) -> &'static str {
    match reason {
        Reason::AuthFailed | Reason::OauthTokenFailed => "SmtpAuthenticationFailing",
        Reason::StarttlsNotOffered | Reason::StarttlsRejected => "SmtpTlsNotOffered",
        Reason::DeliveryTimeout => "SmtpDeliveryFailing",
        Reason::DeliveredToJunk => "SmtpDeliveredToJunk",
        Reason::GraphError => "SmtpDeliveryFailing",
        r if r.as_str().starts_with("imap_") => "SmtpDeliveryFailing",
        Reason::CertExpired => "SmtpCertificateExpired",
        Reason::CertNotYetValid => "SmtpCertificateNotYetValid",
        Reason::CertIncompleteChain => "SmtpCertificateChainIncomplete",
        Reason::CertExpiringSoon => "SmtpCertificateExpiringSoon",
        r if r.is_certificate() => "SmtpCertificateChainUntrusted",
        _ => "SmtpProbeFailing",
    }
}

/// A PromQL string literal.
fn quoted(s: &str) -> String {
    serde_json::to_string(s).expect("a JSON string")
}

/// A generated promtool test: for every reason, a target failing with that reason for twenty
/// minutes (with the chain verdict and certificate dates the exporter shows alongside) fires
/// exactly one alert, the right one; and the hint table of the rules is the exporter's own.
#[test]
fn every_failure_reason_fires_exactly_one_alert_with_the_exporters_hint() {
    if !available(
        "every_failure_reason_fires_exactly_one_alert_with_the_exporters_hint",
        false,
    ) {
        return;
    }
    let mut series = Vec::new();
    let mut expr_tests = Vec::new();
    for reason in Reason::ALL {
        let r = reason.as_str();
        let target = format!(r#"job="smtp",instance="{r}.example.com:587""#);
        series.push(json!({"series": format!("probe_success{{{target}}}"), "values": "0+0x20"}));
        series.push(json!({
            "series": format!(r#"probe_smtp_failed_step_info{{{target},step="tls_handshake",reason="{r}"}}"#),
            "values": "1+0x20",
        }));
        // What the exporter shows with a certificate verdict: the chain error, and the dates.
        if reason.is_certificate() && reason != Reason::CertExpiringSoon {
            series.push(json!({
                "series": format!(r#"probe_tls_chain_error_info{{{target},reason="{r}"}}"#),
                "values": "1+0x20",
            }));
        }
        let not_after = match reason {
            Reason::CertExpired => -86_400,
            Reason::CertExpiringSoon => 10 * 86_400,
            _ => 365 * 86_400,
        };
        series.push(json!({
            "series": format!(r#"probe_tls_cert_not_after_timestamp_seconds{{{target},depth="0",subject_cn="{r}.example.com",issuer_cn="CA",serial="01",fingerprint_sha256="aa",sent="1"}}"#),
            "values": format!("{not_after}+0x20"),
        }));
        expr_tests.push(json!({
            "expr": format!(r#"count by (alertname) (ALERTS{{alertstate="firing",instance="{r}.example.com:587"}})"#),
            "eval_time": "20m",
            "exp_samples": [{"labels": format!(r#"{{alertname="{}"}}"#, alert_for(reason)), "value": 1}],
        }));
        expr_tests.push(json!({
            "expr": format!("smtp_prober:reason_hint:info{{reason={}}}", quoted(r)),
            "eval_time": "1m",
            "exp_samples": [{
                "labels": format!(
                    "smtp_prober:reason_hint:info{{hint={},reason={}}}",
                    quoted(reason.hint()),
                    quoted(r)
                ),
                "value": 1,
            }],
        }));
    }
    // No hint for a reason the exporter does not have.
    expr_tests.push(json!({
        "expr": "count(smtp_prober:reason_hint:info)",
        "eval_time": "1m",
        "exp_samples": [{"labels": "{}", "value": Reason::ALL.len()}],
    }));
    let test = json!({
        "rule_files": [rules_path()],
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": series, "promql_expr_test": expr_tests}],
    });
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("reasons.test.yml");
    // JSON is YAML.
    std::fs::write(&path, serde_json::to_string_pretty(&test).unwrap()).expect("writing");
    let out = run_checked("promtool", &["test", "rules", &path.to_string_lossy()]);
    assert!(out.contains("SUCCESS"), "{out}");
}

/// The anchor GitHub gives a Markdown heading: lower case, spaces to dashes, punctuation dropped.
fn heading_anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

#[test]
fn every_alert_is_documented_and_links_to_its_readme_section() {
    let readme = support::readme::text();
    let anchors: BTreeSet<String> = readme
        .lines()
        .filter_map(|l| l.strip_prefix('#'))
        .map(|h| heading_anchor(h.trim_start_matches('#')))
        .collect();
    let base = rules()["groups"][0]["rules"][0].clone();
    assert_eq!(base["record"], "smtp_prober:runbook_base:info", "{base}");
    let alerts = alert_rules();
    assert!(alerts.len() >= 17, "{} alerts", alerts.len());
    let mut names = BTreeSet::new();
    for alert in &alerts {
        let name = alert["alert"].as_str().expect("alert name");
        assert!(names.insert(name.to_string()), "{name} twice");
        for field in ["summary", "description", "runbook_url"] {
            let text = alert["annotations"][field].as_str().unwrap_or_default();
            assert!(!text.trim().is_empty(), "{name} has no {field}");
        }
        let severity = alert["labels"]["severity"].as_str().unwrap_or_default();
        assert!(
            ["critical", "warning"].contains(&severity),
            "{name}: severity {severity:?}"
        );
        let category = alert["labels"]["category"].as_str().unwrap_or_default();
        assert!(
            [
                "transport",
                "authentication",
                "certificate",
                "tls",
                "delivery",
                "exporter"
            ]
            .contains(&category),
            "{name}: category {category:?}"
        );
        let runbook = alert["annotations"]["runbook_url"].as_str().unwrap();
        let (prefix, anchor) = runbook.rsplit_once('#').expect("an anchor");
        assert_eq!(
            prefix.trim_end(),
            r#"{{ with query "smtp_prober:runbook_base:info" }}{{ (index . 0).Labels.url }}{{ end -}}"#,
            "{name}: the base comes from the one place"
        );
        assert_eq!(anchor, name.to_lowercase(), "{name}: anchor");
        assert!(
            anchors.contains(anchor),
            "{name}: the README has no heading for #{anchor}"
        );
        // The README describes each alert in the section the link points at.
        assert!(readme.contains(&format!("### {name}")), "{name}");
    }
    // Every routed alert exists.
    for reason in Reason::ALL {
        assert!(names.contains(alert_for(reason)), "{}", alert_for(reason));
    }
}

/// The metric names of the README's metric reference tables.
fn readme_metrics() -> BTreeSet<String> {
    let section = support::readme::section("### Metric reference");
    section
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .map(String::from)
        .collect()
}

/// Every metric the rules and the dashboards use is in the README's metric reference (a
/// recording rule's output is not a metric of the exporter; histogram series are named by their
/// family).
#[test]
fn rules_and_dashboards_use_only_documented_metrics() {
    let documented = readme_metrics();
    let mut text = std::fs::read_to_string(rules_path()).expect("rules");
    for d in support::dashboards::all() {
        for q in d.queries() {
            text.push_str(&q.expr);
            text.push('\n');
        }
    }
    let mut used = BTreeSet::new();
    for word in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':')) {
        if (word.starts_with("probe_")
            || word.starts_with("smtp_prober_")
            || word.starts_with("process_"))
            && !word.contains(':')
        {
            let family = ["_bucket", "_count", "_sum"]
                .iter()
                .find_map(|s| word.strip_suffix(s))
                .unwrap_or(word);
            used.insert(family.to_string());
        }
    }
    assert!(used.len() > 20, "{used:?}");
    let undocumented: Vec<&String> = used.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "not in the README: {undocumented:?}"
    );
}

/// The rules as the end-to-end test loads them: every `for: Nm` becomes `for: Ns`. Panics on a
/// `for:` in another unit, so that a new one cannot slip through unscaled.
fn fast_rules(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(rules_path()).expect("reading the rules file");
    let mut out = String::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        if let Some(duration) = trimmed.strip_prefix("for: ") {
            let minutes: u32 = duration
                .strip_suffix('m')
                .and_then(|m| m.parse().ok())
                .unwrap_or_else(|| panic!("for: {duration} is not in minutes"));
            let indent = &line[..line.len() - trimmed.len()];
            out.push_str(&format!("{indent}for: {minutes}s\n"));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    let path = dir.join("smtp-prober-rules.yml");
    std::fs::write(&path, out).expect("writing the fast rules");
    path
}

/// The example `deploy/prometheus/prometheus.yml`, written to `dir` next to [`fast_rules`]
/// (which it loads by its relative name) with the addresses of this test and every interval
/// one second.
fn example_config(
    dir: &Path,
    exporter: std::net::SocketAddr,
    alertmanager: std::net::SocketAddr,
    probe_targets: &[&str],
) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/prometheus/prometheus.yml");
    let mut config = std::fs::read_to_string(path).expect("reading the example prometheus.yml");
    let targets = probe_targets
        .iter()
        .map(|t| format!("'{t}'"))
        .collect::<Vec<_>>()
        .join(", ");
    for (from, to) in [
        ("smtp-prober:9741", exporter.to_string()),
        ("alertmanager:9093", alertmanager.to_string()),
        (
            "['smtp.office365.com:587', 'smtp.gmail.com:587']",
            format!("[{targets}]"),
        ),
        (
            "scrape_interval: 60s",
            "scrape_interval: 1s\n  scrape_timeout: 1s".to_string(),
        ),
        (
            "evaluation_interval: 30s",
            "evaluation_interval: 1s".to_string(),
        ),
        ("scrape_timeout: 20s", "scrape_timeout: 1s".to_string()),
    ] {
        assert!(
            config.contains(from),
            "the example prometheus.yml has no {from}"
        );
        config = config.replace(from, &to);
    }
    fast_rules(dir);
    let out = dir.join("prometheus.yml");
    std::fs::write(&out, config).expect("writing prometheus.yml");
    out
}

/// The demo servers and mail stack the end-to-end targets probe.
struct Fleet {
    servers: Servers,
    /// Healthy: full chain, password accepted.
    ok: String,
    /// Sends the leaf alone (probed through /probe); fixed in place later.
    leaf: String,
    /// A leaf that expired yesterday (its own PKI).
    expired: String,
    /// A leaf that expires in ten days (its own PKI).
    expiring: String,
    /// No STARTTLS in its EHLO reply.
    plain: String,
    stack: &'static MailStack,
    files: Files,
}

/// A demo server with its own PKI, whose leaf is valid from `not_before` to `not_after`; its root
/// is written to `root_file`.
fn server_with_dates(
    servers: &mut Servers,
    files: &Files,
    root_file: &str,
    not_before: SystemTime,
    not_after: SystemTime,
) -> String {
    let mut options = PkiOptions::new(&["localhost"]);
    options.leaf_not_before = not_before;
    options.leaf_not_after = not_after;
    let pki = Arc::new(DemoPki::with_options(&options).expect("a PKI"));
    std::fs::write(files.dir.path().join(root_file), pki.root_pem()).expect("root");
    servers.start(ServerConfig {
        pki,
        ..ServerConfig::default()
    })
}

impl Fleet {
    fn start() -> Fleet {
        const DAY: Duration = Duration::from_secs(86_400);
        let now = SystemTime::now();
        let mut servers = Servers::new();
        let files = Files::new();
        std::fs::write(
            files.dir.path().join("wrong-password"),
            "not-the-password\n",
        )
        .expect("password");
        let ok = servers.healthy();
        let leaf = servers.leaf_only();
        let expired = server_with_dates(
            &mut servers,
            &files,
            "expired-root.pem",
            now - 30 * DAY,
            now - DAY,
        );
        let expiring = server_with_dates(
            &mut servers,
            &files,
            "expiring-root.pem",
            now - DAY,
            now + 10 * DAY,
        );
        let plain = servers.start(ServerConfig {
            advertise_starttls: false,
            ..ServerConfig::default()
        });
        Fleet {
            servers,
            ok,
            leaf,
            expired,
            expiring,
            plain,
            stack: MailStack::shared(),
            files,
        }
    }

    /// The leaf-only server starts sending its full chain, on the same address.
    fn fix_leaf_server(&mut self) {
        let at = self
            .servers
            .servers
            .iter()
            .position(|s| s.addr().to_string() == self.leaf)
            .expect("the leaf-only server");
        let old = self.servers.servers.remove(at);
        let listen = old.addr();
        self.servers.runtime.block_on(old.shutdown());
        self.servers.start(ServerConfig {
            listen,
            sent: Sent::Full,
            ..ServerConfig::default()
        });
    }

    /// A demo module trusting the root in `root_file` and logging in with `password_file`.
    fn demo_module(&self, name: &str, root_file: &str, password_file: &str) -> String {
        let dir = self.files.dir.path();
        format!(
            "  {name}:\n    timeout: 5s\n    tls: starttls\n    ehlo: prober.test\n    \
             tls_config: {{server_name: localhost, trust: [], ca_files: [\"{}\"]}}\n    \
             auth: {{username: probe, password_file: \"{}\"}}\n",
            dir.join(root_file).display(),
            dir.join(password_file).display()
        )
    }

    /// A module submitting a token mail to `to` on the real stack and looking for it in
    /// `mailboxes` of the INBOX user.
    fn token_module(&self, name: &str, to: &str, mailboxes: &str) -> String {
        let stack = self.stack;
        let root = stack.root_ca_pem_path().display().to_string();
        format!(
            r#"  {name}:
    timeout: 5s
    tls: starttls
    ehlo: prober.test
    tls_config: {{server_name: localhost, trust: [], ca_files: ["{root}"]}}
    auth: {{username: "{probe}", password_file: "{probe_password}"}}
    message: {{from: "{probe}", to: ["{to}"], subject: "alerts e2e {{token}}"}}
    delivery:
      imap: "127.0.0.1:{imaps}"
      tls: implicit
      tls_config: {{server_name: localhost, trust: [], ca_files: ["{root}"]}}
      username: "{inbox}"
      password_file: "{inbox_password}"
      mailboxes: [{mailboxes}]
      timeout: 2s
"#,
            probe = PROBE.address,
            probe_password = stack.password_file(PROBE).display(),
            imaps = stack.imaps_addr().port(),
            inbox = INBOX.address,
            inbox_password = stack.password_file(INBOX).display(),
        )
    }

    /// The exporter configuration: every module, and the scheduled targets as `targets` lists
    /// them (name, address, module).
    fn config(&self, targets: &[(&str, &str, &str)]) -> String {
        let mut out = String::from("scheduler:\n  min_send_interval: 0s\nmodules:\n");
        out.push_str(&self.demo_module("submission", "root.pem", "password"));
        out.push_str(&self.demo_module("demo_expired", "expired-root.pem", "password"));
        out.push_str(&self.demo_module("demo_expiring", "expiring-root.pem", "password"));
        out.push_str(&self.demo_module("demo_wrong_password", "root.pem", "wrong-password"));
        out.push_str(&self.token_module("token_inbox", "inbox@example.test", r#""INBOX""#));
        // Accepted, but delivered to another user's mailbox than the one the check looks in.
        out.push_str(&self.token_module("token_lost", PROBE.address, r#""INBOX""#));
        // Lands in Junk.
        out.push_str(&self.token_module(
            "token_junk",
            "inbox+Junk@example.test",
            r#""INBOX", "Junk""#,
        ));
        out.push_str("targets:\n");
        for (name, target, module) in targets {
            out.push_str(&format!(
                "  - {{name: {name}, target: \"{target}\", module: {module}, interval: 1s}}\n"
            ));
        }
        out
    }

    fn stack_addr(&self) -> String {
        self.stack.submission_addr().to_string()
    }

    /// Phase 1: every target but `healthy` and `flip` broken.
    fn broken(&self) -> String {
        let stack = self.stack_addr();
        self.config(&[
            ("healthy", &self.ok, "submission"),
            ("flip", &self.ok, "submission"),
            ("expired", &self.expired, "demo_expired"),
            ("expiring", &self.expiring, "demo_expiring"),
            ("password", &self.ok, "demo_wrong_password"),
            ("lost", &stack, "token_lost"),
            ("junk", &stack, "token_junk"),
        ])
    }

    /// Phase 2: everything fixed (the expired and expiring servers replaced by healthy ones).
    fn fixed(&self) -> String {
        let stack = self.stack_addr();
        self.config(&[
            ("healthy", &self.ok, "submission"),
            ("flip", &self.ok, "submission"),
            ("expired", &self.ok, "submission"),
            ("expiring", &self.ok, "submission"),
            ("password", &self.ok, "submission"),
            ("lost", &stack, "token_inbox"),
            ("junk", &stack, "token_inbox"),
        ])
    }

    /// Phase 3: `flip` moves to a server without STARTTLS.
    fn flipped(&self) -> String {
        self.fixed().replace(
            &format!("{{name: flip, target: \"{}\"", self.ok),
            &format!("{{name: flip, target: \"{}\"", self.plain),
        )
    }
}

/// An alert as the test expects it: its name and the labels that identify it.
struct Expected {
    alertname: &'static str,
    labels: Vec<(&'static str, String)>,
}

impl Expected {
    fn new(alertname: &'static str, labels: &[(&'static str, &str)]) -> Expected {
        Expected {
            alertname,
            labels: labels.iter().map(|(k, v)| (*k, v.to_string())).collect(),
        }
    }

    fn matches(&self, n: &Notification) -> bool {
        n.alertname() == self.alertname && self.labels.iter().all(|(k, v)| n.label(k) == v)
    }

    fn describe(&self) -> String {
        format!("{} {:?}", self.alertname, self.labels)
    }
}

/// The first notification with `status` for `expected`.
fn find<'a>(
    all: &'a [Notification],
    expected: &Expected,
    status: &str,
) -> Option<&'a Notification> {
    all.iter()
        .find(|n| n.status == status && expected.matches(n))
}

/// Waits for a notification with `status` of every alert in `expected` arriving after `since`;
/// returns them in the same order.
fn wait_all(
    webhook: &Webhook,
    expected: &[Expected],
    status: &str,
    since: Instant,
    within: Duration,
) -> Vec<Notification> {
    let what = format!(
        "{status} notification of each of\n  {}",
        expected
            .iter()
            .map(Expected::describe)
            .collect::<Vec<_>>()
            .join("\n  ")
    );
    webhook.wait_until(within, &what, |all| {
        let recent: Vec<Notification> = all.iter().filter(|n| n.at >= since).cloned().collect();
        expected
            .iter()
            .map(|e| find(&recent, e, status).cloned())
            .collect()
    })
}

/// Checks what every page must carry: the annotations filled in, the runbook link complete,
/// and for a probe failure the exporter's hint for its reason.
fn assert_annotations(n: &Notification) {
    for field in ["summary", "description", "runbook_url"] {
        let text = n.annotations.get(field).map_or("", String::as_str);
        assert!(!text.is_empty() && !text.contains("{{"), "{field} of {n:?}");
    }
    assert_eq!(
        n.annotations["runbook_url"],
        format!(
            "https://github.com/smtp-prober/smtp-prober/blob/main/README.md#{}",
            n.alertname().to_lowercase()
        )
    );
    if let Some(reason) = Reason::ALL.iter().find(|r| r.as_str() == n.label("reason")) {
        if n.alertname() != "SmtpCertificateExpired" {
            assert!(
                n.annotations["description"].contains(reason.hint()),
                "the hint of {reason} in {n:?}"
            );
        }
    }
}

/// Runs every panel query of dashboards/`file` with the variables set by `choices` over `window`.
fn run_dashboard(
    prometheus: &Prometheus,
    file: &str,
    window: Window,
    choices: &[(&str, Choice)],
) -> Vec<Outcome> {
    let d = by_file(file);
    let vars = d.resolve_variables(prometheus, window, choices);
    d.run(prometheus, window, &vars)
}

/// Every query returned data, except those of the panels in `empty`, which returned nothing.
fn assert_empty_exactly(file: &str, outcomes: &[Outcome], empty: &[&str]) {
    for o in outcomes {
        let listed = empty.contains(&o.panel.as_str());
        assert_eq!(
            o.series.is_empty(),
            listed,
            "{file}: panel {:?} query {} returned {} series; listed as empty: {listed}\n{}",
            o.panel,
            o.ref_id,
            o.series.len(),
            o.expr
        );
    }
    for panel in empty {
        assert!(
            outcomes.iter().any(|o| o.panel == *panel),
            "{file}: no panel {panel:?}"
        );
    }
}

/// Every query of the panels in `panels` returned data.
fn assert_has_data(file: &str, outcomes: &[Outcome], panels: &[&str]) {
    for panel in panels {
        let queries: Vec<&Outcome> = outcomes.iter().filter(|o| o.panel == *panel).collect();
        assert!(!queries.is_empty(), "{file}: no panel {panel:?}");
        for o in queries {
            assert!(
                !o.series.is_empty(),
                "{file}: {panel} {} is empty:\n{}",
                o.ref_id,
                o.expr
            );
        }
    }
}

/// The series of one query of one panel.
fn series<'a>(outcomes: &'a [Outcome], panel: &str, ref_id: &str) -> &'a [Value] {
    &outcomes
        .iter()
        .find(|o| o.panel == panel && o.ref_id == ref_id)
        .unwrap_or_else(|| panic!("no query {ref_id} of {panel}"))
        .series
}

/// The panels that are empty while every target is healthy (each is checked with data in the
/// failing state): failures, and for a /probe target without a delivery check, delivery.
const EMPTY_WHEN_HEALTHY_FLEET: [&str; 1] = ["Failing targets"];
const EMPTY_WHEN_HEALTHY_TARGET: [&str; 3] = [
    "Failure now",
    "Recent failures",
    "Authentication results (last probe)",
];
const EMPTY_FOR_A_PROBE_TARGET: [&str; 10] = [
    "Delivery time (last probe)",
    "Delivery time",
    "Mailbox the token landed in",
    "Hop split (last probe)",
    "Hop time by hop",
    "Late, lost and pending",
    "Authentication results (last probe)",
    "Clock skew",
    "Failure now",
    "Recent failures",
];

fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

#[test]
fn alerts_fire_at_the_webhook_and_resolve_after_a_fix() {
    let test = "alerts_fire_at_the_webhook_and_resolve_after_a_fix";
    if !available(test, true) || !MailStack::available(test) {
        return;
    }
    let mut fleet = Fleet::start();
    fleet.files.write(&fleet.broken());
    let webhook = Webhook::start();
    let alertmanager = Alertmanager::start(&webhook.url);
    let started = Instant::now();
    let started_wall = SystemTime::now();
    let mut exporter = Exporter::start(&[&fleet.files.config_arg()]);
    let rules_dir = tempfile::tempdir().expect("temp dir");
    let prometheus = Prometheus::start(&example_config(
        rules_dir.path(),
        exporter.addr,
        alertmanager.addr,
        &[&fleet.ok, &fleet.leaf],
    ));
    let diagnostics = |what: &str| {
        format!(
            "{what}\nwebhook:\n{}\nprometheus:\n{}\nalertmanager:\n{}",
            summarize(&webhook.received()),
            prometheus.log_tail(),
            alertmanager.log_tail()
        )
    };

    // Phase 1: every broken target pages with the right alert and reason.
    let broken = [
        Expected::new(
            "SmtpCertificateChainIncomplete",
            &[
                ("job", "smtp"),
                ("instance", &fleet.leaf),
                ("reason", "cert_incomplete_chain"),
            ],
        ),
        Expected::new(
            "SmtpCertificateExpired",
            &[
                ("name", "expired"),
                ("reason", "cert_expired"),
                ("depth", "0"),
                ("subject_cn", "localhost"),
            ],
        ),
        Expected::new(
            "SmtpCertificateExpiringSoon",
            &[
                ("name", "expiring"),
                ("depth", "0"),
                ("subject_cn", "localhost"),
                ("severity", "warning"),
            ],
        ),
        Expected::new(
            "SmtpAuthenticationFailing",
            &[
                ("name", "password"),
                ("step", "auth"),
                ("reason", "auth_failed"),
                ("category", "authentication"),
            ],
        ),
        Expected::new(
            "SmtpDeliveryFailing",
            &[
                ("name", "lost"),
                ("step", "delivery"),
                ("reason", "delivery_timeout"),
            ],
        ),
        Expected::new(
            "SmtpDeliveredToJunk",
            &[("name", "junk"), ("mailbox", "Junk")],
        ),
        // The stack stamps mail to the Junk address with failing verdicts (JUNK_VERDICT).
        Expected::new(
            "SmtpSenderAuthenticationFailing",
            &[("name", "junk"), ("method", "dkim"), ("result", "fail")],
        ),
        Expected::new(
            "SmtpSenderAuthenticationFailing",
            &[("name", "junk"), ("method", "spf"), ("result", "softfail")],
        ),
        Expected::new(
            "SmtpSenderAuthenticationFailing",
            &[("name", "junk"), ("method", "dmarc"), ("result", "fail")],
        ),
    ];
    let fired = wait_all(
        &webhook,
        &broken,
        "firing",
        started,
        Duration::from_secs(90),
    );
    for n in &fired {
        assert_annotations(n);
        eprintln!(
            "fired {} {:>7} after the exporter started",
            n.alertname(),
            secs(n.at - started)
        );
    }
    let auth = &fired[3];
    assert!(
        auth.annotations["description"].contains("with reply 535 5.7.8"),
        "{auth:?}"
    );
    // The README's metric reference lists exactly the families the exporter serves with its
    // default settings (with every kind of target present, failing ones and delivery checks
    // included), and besides them only the opt-in histograms of the probe's and each step's
    // duration (`scheduler.histograms`).
    let page = exporter.get("/metrics").body;
    let served: BTreeSet<String> = page
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .map(String::from)
        .collect();
    let opt_in = BTreeSet::from([
        "smtp_prober_probe_duration_seconds".to_string(),
        "smtp_prober_step_duration_seconds".to_string(),
    ]);
    assert_eq!(
        readme_metrics()
            .difference(&opt_in)
            .cloned()
            .collect::<BTreeSet<_>>(),
        served,
        "README metric reference against /metrics"
    );

    // Nothing else fired: not the healthy targets, not a second alert for a broken one.
    let all = webhook.received();
    for n in &all {
        assert!(
            broken.iter().any(|e| e.matches(n)),
            "{}",
            diagnostics(&format!("unexpected alert {n:?}"))
        );
    }

    // The dashboards in the failing state: every query runs, and the panels that are empty
    // while everything is healthy have data.
    let exporter_instance = exporter.addr.to_string();
    let window = Window::since(started_wall);
    let outcomes = run_dashboard(
        &prometheus,
        "smtp-fleet.json",
        window,
        &[("job", Choice::All)],
    );
    assert_empty_exactly("smtp-fleet.json", &outcomes, &[]);
    let failing = series(&outcomes, "Failing targets", "A");
    let failing_row = |name: &str, instance: &str| {
        failing
            .iter()
            .find(|s| {
                s["metric"]["name"].as_str().unwrap_or("") == name
                    && s["metric"]["instance"] == instance
            })
            .map(|s| s["metric"].clone())
            .unwrap_or_else(|| panic!("no failing row {name} {instance}: {failing:?}"))
    };
    let row = failing_row("password", &exporter_instance);
    assert_eq!(
        (
            &row["step"],
            &row["reason"],
            &row["code"],
            &row["enhanced_code"]
        ),
        (
            &json!("auth"),
            &json!("auth_failed"),
            &json!("535"),
            &json!("5.7.8")
        ),
        "the failure with the server's reply"
    );
    let row = failing_row("", &fleet.leaf);
    assert_eq!(row["reason"], "cert_incomplete_chain");
    let expiry = series(&outcomes, "Soonest certificate expiry per target", "A");
    let days_left = |name: &str| {
        expiry
            .iter()
            .find(|s| s["metric"]["name"] == name)
            .map(support::prometheus::value)
            .unwrap_or_else(|| panic!("no expiry of {name}: {expiry:?}"))
    };
    assert!(
        days_left("expired") < 0.0 && days_left("expiring") > 9.0 && days_left("expiring") < 10.0
    );
    let mut queries = outcomes.len();
    // The target dashboard of one scheduled target of the exporter.
    let target_dashboard = |name: &str| {
        run_dashboard(
            &prometheus,
            "smtp-target.json",
            window,
            &[
                ("job", Choice::Value("smtp-prober".into())),
                ("instance", Choice::Value(exporter_instance.clone())),
                ("name", Choice::Value(name.into())),
            ],
        )
    };
    let outcomes = target_dashboard("password");
    assert_has_data(
        "smtp-target.json",
        &outcomes,
        &["Failure now", "Recent failures"],
    );
    queries += outcomes.len();
    // The Junk target's mail carries the failing verdicts the stack stamps on it.
    let outcomes = target_dashboard("junk");
    assert_has_data(
        "smtp-target.json",
        &outcomes,
        &EMPTY_WHEN_HEALTHY_TARGET[2..],
    );
    let verdicts = series(&outcomes, "Authentication results (last probe)", "A");
    assert!(
        verdicts
            .iter()
            .any(|s| s["metric"]["method"] == "dkim" && s["metric"]["result"] == "fail"),
        "{verdicts:?}"
    );
    let hops = series(&outcomes, "Hop split (last probe)", "A");
    assert_eq!(hops.len(), 2, "two hops, Postfix then Dovecot: {hops:?}");
    queries += outcomes.len();
    eprintln!("dashboards, failing: {queries} panel queries ran");

    // Phase 2: a reload to a good configuration, and the leaf-only server fixed in place,
    // resolve every alert.
    fleet.files.write(&fleet.fixed());
    let fixed_at = Instant::now();
    let fixed_wall = SystemTime::now();
    assert_eq!(exporter.post("/-/reload").status, 200);
    fleet.fix_leaf_server();
    let resolved = wait_all(
        &webhook,
        &broken,
        "resolved",
        fixed_at,
        Duration::from_secs(60),
    );
    for n in &resolved {
        eprintln!(
            "resolved {} {:>7} after the fix",
            n.alertname(),
            secs(n.at - fixed_at)
        );
    }

    // The dashboards with every target healthy, from two seconds after the fix: every query
    // returns data but those of the panels listed as empty when healthy.
    std::thread::sleep(Duration::from_secs(6).saturating_sub(fixed_at.elapsed()));
    let window = Window::since(fixed_wall + Duration::from_secs(2));
    let outcomes = run_dashboard(
        &prometheus,
        "smtp-fleet.json",
        window,
        &[("job", Choice::All)],
    );
    assert_empty_exactly("smtp-fleet.json", &outcomes, &EMPTY_WHEN_HEALTHY_FLEET);
    let mut queries = outcomes.len();
    let scheduled = [
        ("job", Choice::Value("smtp-prober".into())),
        ("instance", Choice::Value(exporter_instance.clone())),
        ("name", Choice::Value("junk".into())),
    ];
    let outcomes = run_dashboard(&prometheus, "smtp-target.json", window, &scheduled);
    assert_empty_exactly("smtp-target.json", &outcomes, &EMPTY_WHEN_HEALTHY_TARGET);
    // The waterfall, sorted as the panel sorts it, is the probe's steps in protocol order.
    let mut bars: Vec<(String, String)> =
        series(&outcomes, "Step latency waterfall (last probe)", "A")
            .iter()
            .map(|s| {
                let m = &s["metric"];
                (
                    m["order"].as_str().unwrap().to_string(),
                    m["step"].as_str().unwrap().to_string(),
                )
            })
            .collect();
    bars.sort();
    let steps: Vec<&str> = bars.iter().map(|(_, s)| s.as_str()).collect();
    let mut want: Vec<&str> = FULL_STARTTLS_SEND.iter().map(|(s, _)| *s).collect();
    want.push("delivery");
    assert_eq!(steps, want);
    let mailbox = series(&outcomes, "Mailbox the token landed in", "A");
    assert!(
        mailbox.iter().any(|s| s["metric"]["mailbox"] == "INBOX"),
        "{mailbox:?}"
    );
    queries += outcomes.len();
    let probe_target = [
        ("job", Choice::Value("smtp".into())),
        ("instance", Choice::Value(fleet.ok.clone())),
        ("name", Choice::Value(String::new())),
    ];
    let outcomes = run_dashboard(&prometheus, "smtp-target.json", window, &probe_target);
    assert_empty_exactly("smtp-target.json", &outcomes, &EMPTY_FOR_A_PROBE_TARGET);
    queries += outcomes.len();
    let outcomes = run_dashboard(
        &prometheus,
        "smtp-prober.json",
        window,
        &[("job", Choice::All), ("instance", Choice::All)],
    );
    assert_empty_exactly("smtp-prober.json", &outcomes, &[]);
    queries += outcomes.len();
    eprintln!("dashboards, healthy: {queries} panel queries ran");

    // Phase 3: a healthy target breaks (its server stops offering STARTTLS), and a reload of a
    // broken file fails.
    fleet.files.write(&fleet.flipped());
    let broke_at = Instant::now();
    assert_eq!(exporter.post("/-/reload").status, 200);
    let tls = Expected::new(
        "SmtpTlsNotOffered",
        &[
            ("name", "flip"),
            ("reason", "starttls_not_offered"),
            ("step", "starttls"),
        ],
    );
    let fired = wait_all(
        &webhook,
        std::slice::from_ref(&tls),
        "firing",
        broke_at,
        Duration::from_secs(60),
    );
    assert_annotations(&fired[0]);
    eprintln!(
        "fired {} {:>7} after the target broke (for: 5s)",
        fired[0].alertname(),
        secs(fired[0].at - broke_at)
    );
    fleet.files.write("modules: [this is not a mapping\n");
    let reload_broken_at = Instant::now();
    assert_ne!(exporter.post("/-/reload").status, 200);
    let reload = Expected::new("SmtpProberConfigReloadFailed", &[("job", "smtp-prober")]);
    let fired = wait_all(
        &webhook,
        std::slice::from_ref(&reload),
        "firing",
        reload_broken_at,
        Duration::from_secs(60),
    );
    assert_annotations(&fired[0]);
    eprintln!(
        "fired {} {:>7} after the failed reload (for: 5s)",
        fired[0].alertname(),
        secs(fired[0].at - reload_broken_at)
    );
    fleet.files.write(&fleet.fixed());
    let refixed_at = Instant::now();
    assert_eq!(exporter.post("/-/reload").status, 200);
    wait_all(
        &webhook,
        &[tls, reload],
        "resolved",
        refixed_at,
        Duration::from_secs(60),
    );

    // The healthy target never paged.
    for n in webhook.received() {
        assert!(
            n.label("name") != "healthy" && n.label("instance") != fleet.ok,
            "{}",
            diagnostics(&format!("the healthy target paged: {n:?}"))
        );
    }

    // Phase 4: the exporter dies.
    let _ = exporter.child.kill();
    let _ = exporter.child.wait();
    let killed_at = Instant::now();
    let down = Expected::new("SmtpProberDown", &[("job", "smtp-prober")]);
    let fired = wait_all(
        &webhook,
        &[down],
        "firing",
        killed_at,
        Duration::from_secs(60),
    );
    assert_annotations(&fired[0]);
    eprintln!(
        "fired {} {:>7} after the exporter died (for: 5s)",
        fired[0].alertname(),
        secs(fired[0].at - killed_at)
    );
    eprintln!("end to end in {}", secs(started.elapsed()));
}
