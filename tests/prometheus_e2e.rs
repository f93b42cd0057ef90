//! The exporter as Prometheus uses it: a real Prometheus (Debian package) scrapes `/probe`
//! Blackbox-style (relabelling the target into `?target=`) and `/metrics` of a real exporter
//! that probes the embedded STARTTLS server; the results are read back through Prometheus's
//! HTTP API. And the real `promtool check metrics` on both pages.

mod support;

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::exporter::{Exporter, Files, Servers};
use support::prometheus::{available, scrape_configs, value, Prometheus};

/// Modules and one scheduled target on the healthy demo server, one on a leaf-only server; the
/// histogram of the probe's duration on, so that Prometheus reads a histogram too.
fn config(files: &Files, ok: &str, broken: &str) -> String {
    let root = files.dir.path().join("root.pem");
    let password = files.dir.path().join("password");
    format!(
        r#"scheduler:
  min_send_interval: 0s
  histograms: total
modules:
  submission:
    timeout: 5s
    tls: starttls
    ehlo: prober.test
    tls_config: {{server_name: localhost, trust: [], ca_files: [{root}]}}
    auth: {{username: probe, password_file: {password}}}
targets:
  - {{name: demo-ok, target: "{ok}", module: submission, interval: 1s, labels: {{site: hq}}}}
  - {{name: demo-broken, target: "{broken}", module: submission, interval: 1s}}
"#,
        root = root.display(),
        password = password.display(),
    )
}

#[test]
fn prometheus_scrapes_probe_and_metrics() {
    if !available("prometheus_scrapes_probe_and_metrics", false) {
        return;
    }
    let mut servers = Servers::new();
    let ok = servers.healthy();
    let broken = servers.leaf_only();
    let files = Files::new();
    files.write(&config(&files, &ok, &broken));
    let exporter = Exporter::start(&[&files.config_arg()]);
    let prometheus = Prometheus::start_with(
        &scrape_configs(exporter.addr, "submission", &[&ok, &broken]),
        &[],
        None,
    );

    // Two scrapes of each /probe target.
    prometheus.wait_for(
        &format!(r#"count_over_time(probe_success{{job="smtp",instance="{ok}"}}[1m]) >= 2"#),
        Duration::from_secs(60),
    );
    prometheus.wait_for(
        &format!(r#"count_over_time(probe_success{{job="smtp",instance="{broken}"}}[1m]) >= 2"#),
        Duration::from_secs(30),
    );

    let healthy = prometheus.query(&format!(r#"probe_success{{job="smtp",instance="{ok}"}}"#));
    assert_eq!(healthy.len(), 1, "{healthy:?}");
    assert_eq!(value(&healthy[0]), 1.0);
    let failing = prometheus.query(&format!(
        r#"probe_success{{job="smtp",instance="{broken}"}}"#
    ));
    assert_eq!(value(&failing[0]), 0.0);
    let reason = prometheus.query(&format!(
        r#"probe_smtp_failed_step_info{{job="smtp",instance="{broken}"}}"#
    ));
    assert_eq!(
        reason[0]["metric"]["reason"], "cert_incomplete_chain",
        "{reason:?}"
    );
    assert_eq!(reason[0]["metric"]["step"], "tls_handshake");

    let steps = prometheus.query(&format!(
        r#"probe_smtp_step_duration_seconds{{job="smtp",instance="{ok}"}}"#
    ));
    let mut names: Vec<String> = steps
        .iter()
        .map(|s| s["metric"]["step"].as_str().unwrap_or_default().to_string())
        .collect();
    names.sort();
    for step in [
        "auth",
        "connect",
        "ehlo",
        "ehlo_tls",
        "greeting",
        "quit",
        "starttls",
        "tls_handshake",
    ] {
        assert!(
            names.iter().any(|n| n == step),
            "step {step} missing: {names:?}"
        );
    }
    assert!(steps.iter().all(|s| value(s) > 0.0 && value(s) < 5.0));

    // The scheduled side, through the plain /metrics job: labels of the target kept.
    let scheduled = prometheus.wait_for(
        r#"probe_success{job="smtp-prober",name="demo-ok"}"#,
        Duration::from_secs(20),
    );
    assert_eq!(value(&scheduled[0]), 1.0);
    assert_eq!(scheduled[0]["metric"]["site"], "hq");
    assert_eq!(scheduled[0]["metric"]["module"], "submission");
    let histogram = prometheus.wait_for(
        r#"smtp_prober_probe_duration_seconds_count{job="smtp-prober",name="demo-ok"} >= 1"#,
        Duration::from_secs(20),
    );
    assert!(value(&histogram[0]) >= 1.0);
    let up = prometheus.query(r#"up{job="smtp-prober"}"#);
    assert_eq!(value(&up[0]), 1.0);
}

fn promtool_check(page: &str) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running promtool");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(page.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn promtool_accepts_metrics_and_probe_pages() {
    if !available("promtool_accepts_metrics_and_probe_pages", false) {
        return;
    }
    let mut servers = Servers::new();
    let ok = servers.healthy();
    let broken = servers.leaf_only();
    let files = Files::new();
    files.write(&config(&files, &ok, &broken));
    let exporter = Exporter::start(&[&files.config_arg()]);

    let metrics = exporter.metrics_until("both targets probed", |page| {
        page.contains(r#"name="demo-ok""#)
            && page.contains(r#"name="demo-broken""#)
            && page.contains("probe_tls_chain_error_info")
    });
    let (ok_metrics, out) = promtool_check(&metrics);
    assert!(ok_metrics, "promtool check metrics on /metrics:\n{out}");

    for target in [&ok, &broken] {
        let page = exporter
            .get(&format!("/probe?module=submission&target={target}"))
            .body;
        assert!(page.contains("probe_success"));
        let (ok_probe, out) = promtool_check(&page);
        assert!(ok_probe, "promtool check metrics on /probe:\n{out}");
    }
}
