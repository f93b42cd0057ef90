//! The exporter through the real binary over HTTP on loopback: `/probe` against the embedded
//! demo server, the scheduled `/metrics`, the status page and logs, reload (HTTP and SIGHUP),
//! shutdown on SIGTERM, `check-config` and `demo`.
//!
//! Each test starts its own `smtp-prober` on `127.0.0.1:0` and reads the bound address from the
//! `listening` log line, so tests never race for ports. Demo servers run in-process on a small
//! Tokio runtime; the HTTP client is a few lines of HTTP/1.0 over a blocking socket.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use smtp_prober::demo::{ServerConfig, Verb};

mod support;

use support::exporter::*;

/// Modules every test uses: `starttls` trusts only the demo root; `send` also logs in and sends
/// a token mail; `slow` has a long timeout for the scrape-timeout test.
fn modules(dir: &Path) -> String {
    format!(
        r#"scheduler:
  max_concurrency: 4
  min_send_interval: 0s
modules:
  starttls:
    timeout: 5s
    tls: starttls
    ehlo: prober.test
    tls_config: {{server_name: localhost, trust: [], ca_files: [{root}]}}
  slow:
    timeout: 10s
    tls: starttls
    ehlo: prober.test
    tls_config: {{server_name: localhost, trust: [], ca_files: [{root}]}}
  send:
    timeout: 5s
    tls: starttls
    ehlo: prober.test
    tls_config: {{server_name: localhost, trust: [], ca_files: [{root}]}}
    auth: {{username: probe, password_file: {password}}}
    message: {{from: probe@prober.test, to: [inbox@prober.test]}}
"#,
        root = dir.join("root.pem").display(),
        password = dir.join("password").display(),
    )
}

/// A `targets:` section; each entry is (name, target, module).
fn targets(list: &[(&str, &str, &str)]) -> String {
    let mut out = String::from("targets:\n");
    for (name, target, module) in list {
        out.push_str(&format!(
            "  - {{name: {name}, target: \"{target}\", module: {module}, interval: 1s, \
             labels: {{site: hq}}}}\n"
        ));
    }
    out
}

#[test]
fn probe_success_against_the_demo_server() {
    let mut servers = Servers::new();
    let ok = servers.healthy();
    let files = Files::new();
    files.write(&modules(files.dir.path()));
    let exporter = Exporter::start(&[&files.config_arg()]);

    let r = exporter.get(&format!("/probe?module=starttls&target={ok}"));
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.headers
            .contains("content-type: text/plain; version=0.0.4; charset=utf-8"),
        "{}",
        r.headers
    );
    assert_eq!(sample(&r.body, "probe_success"), Some(1.0), "{}", r.body);
    assert_eq!(sample(&r.body, "probe_tls_chain_valid"), Some(1.0));
    for step in [
        "connect",
        "greeting",
        "ehlo",
        "starttls",
        "tls_handshake",
        "ehlo_tls",
    ] {
        let series = format!("probe_smtp_step_duration_seconds{{step=\"{step}\"}}");
        let d = sample(&r.body, &series).unwrap_or_else(|| panic!("no {series}:\n{}", r.body));
        assert!(d > 0.0 && d < 5.0, "{series} = {d}");
    }
    assert!(
        !r.body.contains("probe_smtp_failed_step_info"),
        "{}",
        r.body
    );
    // Fresh families per request: no scheduled labels, one probe_success.
    assert_eq!(r.body.matches("# TYPE probe_success gauge").count(), 1);
    assert_eq!(r.body.matches("\nprobe_success ").count(), 1);
}

#[test]
fn probe_failure_names_the_step_and_reason() {
    let mut servers = Servers::new();
    let broken = servers.leaf_only();
    let rejecting =
        servers.start(ServerConfig::default().reply_to(Verb::Ehlo, "554 5.7.1 No EHLO for you"));
    let files = Files::new();
    files.write(&modules(files.dir.path()));
    let exporter = Exporter::start(&[&files.config_arg()]);

    let r = exporter.get(&format!("/probe?module=starttls&target={broken}"));
    assert_eq!(r.status, 200);
    assert_eq!(sample(&r.body, "probe_success"), Some(0.0), "{}", r.body);
    assert_eq!(
        sample(
            &r.body,
            "probe_smtp_failed_step_info{step=\"tls_handshake\",reason=\"cert_incomplete_chain\"}"
        ),
        Some(1.0),
        "{}",
        r.body
    );
    assert_eq!(sample(&r.body, "probe_tls_chain_sent_complete"), Some(0.0));
    // The certificates are still reported.
    assert!(r
        .body
        .contains("probe_tls_cert_not_after_timestamp_seconds{depth=\"0\""));

    let r = exporter.get(&format!("/probe?module=starttls&target={rejecting}"));
    assert_eq!(
        sample(
            &r.body,
            "probe_smtp_failed_step_info{step=\"ehlo\",reason=\"ehlo_rejected\"}"
        ),
        Some(1.0),
        "{}",
        r.body
    );
    assert_eq!(
        sample(&r.body, "probe_smtp_step_reply_code{step=\"ehlo\"}"),
        Some(554.0)
    );
}

#[test]
fn probe_refuses_bad_requests() {
    let mut servers = Servers::new();
    let ok = servers.healthy();
    let files = Files::new();
    files.write(&modules(files.dir.path()));
    let exporter = Exporter::start(&[
        &files.config_arg(),
        r"--probe.allowed-targets=127\.0\.0\.1:\d+",
    ]);

    let send = format!("/probe?module=send&target={ok}");
    let cases: &[(&str, u16, &str)] = &[
        (
            "/probe?target=127.0.0.1:25",
            400,
            "module parameter is missing",
        ),
        ("/probe?module=starttls", 400, "target parameter is missing"),
        (
            "/probe?module=starttls&target=",
            400,
            "target parameter is missing",
        ),
        (
            "/probe?module=nope&target=127.0.0.1:25",
            400,
            "unknown module \"nope\"",
        ),
        (
            "/probe?module=starttls&target=127.0.0.1:99999",
            400,
            "must be a number from 1 to 65535",
        ),
        (
            "/probe?module=starttls&target=localhost:25",
            403,
            "is not allowed by --probe.allowed-targets",
        ),
        // The allow-list matches the whole target, not a part of it.
        (
            "/probe?module=starttls&target=127.0.0.1:25.evil.example",
            403,
            "is not allowed",
        ),
        (&send, 403, "--probe.allow-send"),
    ];
    for (path, status, message) in cases {
        let r = exporter.get(path);
        assert_eq!(r.status, *status, "{path}: {}", r.body);
        assert!(r.body.contains(message), "{path}: {}", r.body);
    }
    let r = exporter.get_with(
        &format!("/probe?module=starttls&target={ok}"),
        &[("X-Prometheus-Scrape-Timeout-Seconds", "soon")],
    );
    assert_eq!(r.status, 400, "{}", r.body);
    // The send refusal sent nothing.
    assert!(servers.servers[0].received().is_empty());
}

#[test]
fn probe_sends_with_allow_send_and_debug_shows_log_metrics_and_redacted_module() {
    let mut servers = Servers::new();
    let ok = servers.healthy();
    let files = Files::new();
    files.write(&modules(files.dir.path()));
    let exporter = Exporter::start(&[&files.config_arg(), "--probe.allow-send"]);

    let r = exporter.get(&format!("/probe?module=send&target={ok}"));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(sample(&r.body, "probe_success"), Some(1.0), "{}", r.body);
    assert_eq!(sample(&r.body, "probe_smtp_message_accepted"), Some(1.0));
    let received = servers.servers[0].received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].auth_user.as_deref(), Some("probe"));

    let r = exporter.get(&format!("/probe?module=send&target={ok}&debug=true"));
    assert_eq!(r.status, 200);
    assert!(r
        .headers
        .contains("content-type: text/plain; charset=utf-8"));
    for part in [
        "Logs for the probe:",
        "verdict: SUCCESS",
        "Metrics that would have been returned:",
        "probe_success 1",
        "Module configuration:",
        "<redacted>",
    ] {
        assert!(r.body.contains(part), "no {part:?} in:\n{}", r.body);
    }
    assert!(!r.body.contains("secret"), "password leaked:\n{}", r.body);
    // The module as YAML, as blackbox_exporter shows its module (before: Rust's Debug output,
    // `Module { timeout: 5s, ... }`), with its defaults filled in.
    let module = r.body.split("Module configuration:\n").nth(1).unwrap();
    assert!(!module.contains("Module {"), "{module}");
    let yaml: serde_json::Value = serde_saphyr::from_str(module).expect("YAML");
    assert_eq!(yaml["tls"], "starttls", "{module}");
    assert_eq!(yaml["auth"]["password"], "<redacted>", "{module}");
    assert_eq!(yaml["ip_protocol"], "auto", "{module}");
}

#[test]
fn probe_honours_the_scrape_timeout_header() {
    let mut servers = Servers::new();
    let stalling = servers.start(ServerConfig::default().stall_at(Verb::Ehlo));
    let files = Files::new();
    files.write(&modules(files.dir.path()));
    let exporter = Exporter::start(&[&files.config_arg(), "--timeout-offset=0.5s"]);

    let started = Instant::now();
    let r = exporter.get_with(
        &format!("/probe?module=slow&target={stalling}"),
        &[("X-Prometheus-Scrape-Timeout-Seconds", "1.5")],
    );
    let took = started.elapsed();
    assert_eq!(r.status, 200, "{}", r.body);
    // Deadline 1.5 s - 0.5 s = 1 s, not the module's 10 s.
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(1500),
        "answered after {took:?}"
    );
    assert_eq!(
        sample(&r.body, "probe_timeout_seconds"),
        Some(1.0),
        "{}",
        r.body
    );
    assert_eq!(
        sample(
            &r.body,
            "probe_smtp_failed_step_info{step=\"ehlo\",reason=\"timeout\"}"
        ),
        Some(1.0),
        "{}",
        r.body
    );
}

#[test]
fn scheduled_results_histograms_status_page_and_logs() {
    let mut servers = Servers::new();
    let ok = servers.healthy();
    let broken = servers.leaf_only();
    let files = Files::new();
    files.write(&format!(
        "{}{}",
        modules(files.dir.path()),
        targets(&[("ok", &ok, "starttls"), ("chain", &broken, "starttls")])
    ));
    let exporter = Exporter::start(&[&files.config_arg()]);
    let ok_success =
        format!("probe_success{{name=\"ok\",target=\"{ok}\",module=\"starttls\",site=\"hq\"}}");
    let chain_failed = format!(
        "probe_smtp_failed_step_info{{name=\"chain\",target=\"{broken}\",module=\"starttls\",\
         site=\"hq\",step=\"tls_handshake\",reason=\"cert_incomplete_chain\"}}"
    );
    let page = exporter.metrics_until("both targets' results", |p| {
        p.contains(&ok_success) && p.contains(&chain_failed)
    });
    assert_eq!(sample(&page, &ok_success), Some(1.0), "{page}");
    assert_eq!(sample(&page, &chain_failed), Some(1.0));
    // One header per family, however many targets.
    for family in ["probe_success", "probe_smtp_step_duration_seconds"] {
        assert_eq!(
            page.matches(&format!("# TYPE {family} gauge\n")).count(),
            1,
            "{family}"
        );
    }
    assert!(page.contains(&format!(
        "probe_smtp_step_duration_seconds{{name=\"ok\",target=\"{ok}\",module=\"starttls\",\
         site=\"hq\",step=\"tls_handshake\"}}"
    )));
    // By default (scheduler.histograms: none) no histogram of the probe's duration: the step
    // gauges above say how long each step of the last probe took.
    assert!(!page.contains("_bucket{"), "{page}");
    assert!(sample(
        &page,
        "smtp_prober_probes_total{name=\"ok\",result=\"success\"}"
    )
    .is_some_and(|v| v >= 1.0));
    assert!(sample(
        &page,
        "smtp_prober_probes_total{name=\"chain\",result=\"failure\"}"
    )
    .is_some_and(|v| v >= 1.0));
    assert_eq!(
        sample(
            &page,
            "smtp_prober_probes_total{name=\"chain\",result=\"success\"}"
        ),
        Some(0.0)
    );
    assert_eq!(
        sample(
            &page,
            &format!(
                "smtp_prober_build_info{{version=\"{}\"}}",
                env!("CARGO_PKG_VERSION")
            )
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(&page, "smtp_prober_config_last_reload_successful"),
        Some(1.0)
    );
    assert!(sample(
        &page,
        "smtp_prober_config_last_reload_success_timestamp_seconds"
    )
    .is_some_and(|t| t > 1.6e9));
    assert!(sample(&page, "smtp_prober_probes_in_flight").is_some());
    assert!(sample(&page, "process_resident_memory_bytes").is_some_and(|v| v > 0.0));

    let status = exporter.get("/");
    assert_eq!(status.status, 200);
    assert!(status.headers.contains("content-type: text/html"));
    for part in [
        "href=\"/target?name=ok\">ok</a>",
        "href=\"/target?name=chain\">chain</a>",
        "cert_incomplete_chain",
        "href=\"/logs?target=chain\"",
        "class=\"ok\">success",
    ] {
        assert!(
            status.body.contains(part),
            "no {part:?} in:\n{}",
            status.body
        );
    }
    let target = exporter.get("/target?name=chain");
    assert_eq!(target.status, 200);
    assert!(target.headers.contains("content-type: text/html"));
    assert!(target.body.contains("id=\"reason\">cert_incomplete_chain"));
    assert_eq!(exporter.get("/target?name=nope").status, 404);
    assert_eq!(exporter.get("/target").status, 400);

    let logs = exporter.get("/logs?target=chain");
    assert_eq!(logs.status, 200);
    assert!(logs
        .body
        .contains("verdict: FAILED in step tls_handshake: cert_incomplete_chain"));
    assert!(exporter
        .get("/logs?target=ok")
        .body
        .contains("verdict: SUCCESS"));
    assert_eq!(exporter.get("/logs?target=nope").status, 404);
    assert_eq!(exporter.get("/logs").status, 400);

    let config = exporter.get("/config");
    assert_eq!(config.status, 200);
    assert!(config.body.contains("starttls:"), "{}", config.body);
    assert!(!config.body.contains("secret"));
    assert_eq!(exporter.get("/-/healthy").status, 200);
    assert_eq!(exporter.get("/-/ready").status, 200);
    assert_eq!(exporter.get("/-/reload").status, 405);
    assert_eq!(exporter.get("/nowhere").status, 404);

    // The failed probe's log line is logfmt as readers parse it: the detail quoted, its `'`
    // as it is (before: `leaf\'s`, a backslash logfmt has no escape for).
    let log = exporter.log_lines().join("\n");
    let failed = log
        .lines()
        .find(|l| l.contains("scheduled probe failed") && l.contains("target_name=chain"))
        .unwrap_or_else(|| panic!("no failed probe logged:\n{log}"));
    assert!(
        failed.contains(r#"detail="the leaf's issuer \"CN=smtp-prober demo intermediate CA"#),
        "{failed}"
    );
    assert!(
        failed.starts_with("ts=") && failed.contains(" level=info "),
        "{failed}"
    );
}

#[test]
fn reload_applies_good_keeps_running_on_bad_and_ignores_unchanged() {
    let mut servers = Servers::new();
    let ok = servers.healthy();
    let files = Files::new();
    let base = modules(files.dir.path());
    files.write(&format!("{base}{}", targets(&[("a", &ok, "starttls")])));
    let exporter = Exporter::start(&[&files.config_arg()]);
    let a_success = "smtp_prober_probes_total{name=\"a\",result=\"success\"}";
    exporter.metrics_until("a's first result", |p| {
        sample(p, a_success).is_some_and(|v| v >= 1.0)
    });

    let r = exporter.post("/-/reload");
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, "configuration unchanged\n")
    );

    files.write(&format!(
        "{base}{}bogus: 1\n",
        targets(&[("a", &ok, "starttls")])
    ));
    let r = exporter.post("/-/reload");
    assert_eq!(r.status, 500, "{}", r.body);
    assert!(
        r.body.contains("smtp-prober.yml:") && r.body.contains("bogus"),
        "{}",
        r.body
    );
    let page = exporter.get("/metrics").body;
    assert_eq!(
        sample(&page, "smtp_prober_config_last_reload_successful"),
        Some(0.0)
    );
    let before = sample(&page, a_success).expect("a still scheduled");
    assert!(!exporter.get("/config").body.contains("bogus"));

    // a unchanged (keeps its timer and counters), b added.
    files.write(&format!(
        "{base}{}",
        targets(&[("a", &ok, "starttls"), ("b", &ok, "starttls")])
    ));
    let r = exporter.post("/-/reload");
    assert_eq!(
        (r.status, r.body.as_str()),
        (
            200,
            "configuration reloaded: 1 targets added, 0 changed, 0 removed, 1 unchanged\n"
        )
    );
    let page = exporter.metrics_until("b's first result", |p| {
        p.contains("smtp_prober_probes_total{name=\"b\",result=\"success\"} 1")
    });
    assert_eq!(
        sample(&page, "smtp_prober_config_last_reload_successful"),
        Some(1.0)
    );
    assert!(sample(&page, a_success).is_some_and(|v| v >= before));

    // SIGHUP: a removed.
    files.write(&format!("{base}{}", targets(&[("b", &ok, "starttls")])));
    exporter.signal("HUP");
    exporter.metrics_until("a to disappear", |p| {
        !p.contains("name=\"a\"") && p.contains("name=\"b\"")
    });
    assert!(exporter
        .log_lines()
        .iter()
        .any(|l| l.contains("configuration reloaded") && l.contains("removed=1")));

    // The file is unchanged, but a secret file it names was rotated: that is a change.
    std::fs::write(files.dir.path().join("password"), "rotated\n").expect("password");
    let r = exporter.post("/-/reload");
    assert_eq!(
        (r.status, r.body.as_str()),
        (
            200,
            "configuration reloaded: 0 targets added, 0 changed, 0 removed, 1 unchanged\n"
        )
    );
    let r = exporter.post("/-/reload");
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, "configuration unchanged\n")
    );

    // Per-step histograms switched on (and the probe histogram's buckets changed) by a reload
    // that leaves the target running: they appear with its next probe.
    let steps = base.replace(
        "  min_send_interval: 0s\n",
        "  min_send_interval: 0s\n  histograms: steps\n  buckets: {probe: [0.5, 60]}\n",
    );
    files.write(&format!("{steps}{}", targets(&[("b", &ok, "starttls")])));
    let r = exporter.post("/-/reload");
    assert_eq!(
        (r.status, r.body.as_str()),
        (
            200,
            "configuration reloaded: 0 targets added, 0 changed, 0 removed, 1 unchanged\n"
        )
    );
    let page = exporter.metrics_until("b's step histograms", |p| {
        p.contains("smtp_prober_step_duration_seconds_count{name=\"b\",step=\"tls_handshake\"}")
    });
    assert!(
        page.contains("smtp_prober_probe_duration_seconds_bucket{name=\"b\",le=\"60\"}"),
        "{page}"
    );
    assert!(
        !page.contains("smtp_prober_probe_duration_seconds_bucket{name=\"b\",le=\"0.05\"}"),
        "{page}"
    );
    // And off again: nothing of them on the next scrape.
    let none = base.replace(
        "  min_send_interval: 0s\n",
        "  min_send_interval: 0s\n  histograms: none\n",
    );
    files.write(&format!("{none}{}", targets(&[("b", &ok, "starttls")])));
    assert_eq!(exporter.post("/-/reload").status, 200);
    let page = exporter.get("/metrics").body;
    assert!(!page.contains("_bucket{"), "{page}");
    assert!(sample(
        &page,
        "smtp_prober_probes_total{name=\"b\",result=\"success\"}"
    )
    .is_some());
}

#[test]
fn sigterm_and_sigint_exit_zero() {
    let files = Files::new();
    files.write(&modules(files.dir.path()));
    for (signal, format) in [("TERM", "logfmt"), ("INT", "json")] {
        let exporter = Exporter::start(&[&files.config_arg(), &format!("--log.format={format}")]);
        assert_eq!(exporter.get("/-/healthy").status, 200);
        exporter.signal(signal);
        let status = exporter.wait(Duration::from_secs(10));
        assert_eq!(status.code(), Some(0), "SIG{signal}");
    }
}

/// A server that greets and then never answers; it reports every line it gets.
fn stalling_server() -> (String, std::sync::mpsc::Receiver<String>) {
    use std::io::{BufRead as _, BufReader, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let tx = tx.clone();
            std::thread::spawn(move || {
                let _ = conn.write_all(b"220 stall.test ESMTP\r\n");
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut line = String::new();
                while reader.read_line(&mut line).unwrap_or(0) > 0 {
                    let _ = tx.send(line.trim_end().to_string());
                    line.clear();
                }
            });
        }
    });
    (addr, rx)
}

#[test]
fn shutdown_cancels_a_probe_in_flight_with_quit() {
    let (addr, lines) = stalling_server();
    let files = Files::new();
    files.write(&format!(
        "modules:\n  plain:\n    timeout: 30s\n    tls: none\n    ehlo: prober.test\n\
         targets:\n  - {{name: stall, target: \"{addr}\", module: plain, interval: 1s}}\n"
    ));
    let exporter = Exporter::start(&[&files.config_arg()]);
    // The probe hangs in its EHLO step (30 s deadline) until the exporter is told to stop.
    let _ = exporter.metrics_until("a probe in flight", |page| {
        page.lines()
            .any(|l| l.starts_with("smtp_prober_probes_in_flight ") && !l.ends_with(" 0"))
    });
    let first = lines
        .recv_timeout(Duration::from_secs(5))
        .expect("the EHLO line");
    assert_eq!(first, "EHLO prober.test");
    let began = Instant::now();
    exporter.signal("TERM");
    let status = exporter.wait(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0));
    assert!(
        began.elapsed() < Duration::from_secs(3),
        "exit took {:?}",
        began.elapsed()
    );
    let got: Vec<String> = lines.try_iter().collect();
    assert!(
        got.iter().any(|l| l == "QUIT"),
        "the server never got QUIT: {got:?}"
    );
}

#[test]
fn check_config_exit_codes() {
    let files = Files::new();
    files.write(&modules(files.dir.path()));
    let out = Command::new(BIN)
        .args(["check-config", &files.config_arg()])
        .output()
        .expect("check-config");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("OK, 3 modules, 0 targets"));

    files.write("modules:\n  m:\n    tls: startls\n");
    let out = Command::new(BIN)
        .args(["check-config", &files.config_arg()])
        .output()
        .expect("check-config");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("smtp-prober.yml:3: modules.m.tls:"),
        "{stderr}"
    );

    let out = Command::new(BIN)
        .args(["check-config", "--config.file=/nonexistent/smtp-prober.yml"])
        .output()
        .expect("check-config");
    assert_eq!(out.status.code(), Some(2));

    // serve refuses to start on a broken file, with the same exit code.
    let out = Command::new(BIN)
        .args([&files.config_arg(), "--web.listen-address=127.0.0.1:0"])
        .output()
        .expect("serve");
    assert_eq!(out.status.code(), Some(2));
}

/// The first run: no configuration file says where to start (before: "smtp-prober.yml: cannot
/// read: No such file or directory"); an empty file is a warning, not "OK"; problems come in
/// the file's order; a tab and an unclosed bracket are named at their own line and column; an
/// unknown key gets a "did you mean".
#[test]
fn check_config_helps_the_first_run() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(BIN)
            .args(args)
            .current_dir(dir.path())
            .output()
            .expect("smtp-prober runs");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    for args in [&[][..], &["check-config"]] {
        let (code, _, stderr) = run(args);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains("smtp-prober demo") && stderr.contains("--config.file"),
            "{args:?}: {stderr}"
        );
    }

    let write = |text: &str| std::fs::write(dir.path().join("smtp-prober.yml"), text).unwrap();
    write("# nothing yet\n");
    let (code, stdout, stderr) = run(&["check-config"]);
    assert_eq!(code, Some(0));
    assert!(!stdout.contains("OK"), "{stdout}");
    assert!(
        stderr.contains("warning: no modules and no targets"),
        "{stderr}"
    );

    write(
        "modules:\n  z:\n    timeout: 0s\n  a:\n    timeout: 0s\n    \
         auth: {username: u, password_file: /nonexistent/password}\n",
    );
    let (code, _, stderr) = run(&["check-config"]);
    assert_eq!(code, Some(2));
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 3, "{stderr}");
    assert!(
        lines[0].starts_with("smtp-prober.yml:3: modules.z.timeout"),
        "{stderr}"
    );
    assert!(
        lines[1].starts_with("smtp-prober.yml:5: modules.a.timeout"),
        "{stderr}"
    );
    assert!(
        lines[2].starts_with("smtp-prober.yml:6: modules.a.auth.password_file"),
        "{stderr}"
    );
    // Without the secrets, --syntax-only checks the rest.
    let (code, stdout, stderr) = run(&["check-config", "--syntax-only"]);
    assert_eq!(code, Some(2));
    assert_eq!(stderr.lines().count(), 2, "{stdout}{stderr}");

    for (text, expected) in [
        (
            "modules:\n  a:\n\ttimeout: 5s\n",
            "smtp-prober.yml:3:1: modules: a tab in the indentation",
        ),
        (
            "modules:\n  a:\n    tls_config:\n      trust: [system, bundled\n      ca_files: []\n",
            "smtp-prober.yml:4:14: modules.a.tls_config.trust: this '[' is never closed",
        ),
        (
            "modules:\n  a:\n    timout: 5s\n",
            "smtp-prober.yml:3: modules.a.timout: unknown key \"timout\" (did you mean \"timeout\"?)",
        ),
    ] {
        write(text);
        let (code, _, stderr) = run(&["check-config", "--syntax-only"]);
        assert_eq!(code, Some(2), "{stderr}");
        assert!(stderr.starts_with(expected), "{stderr}");
    }
}

/// The README's `check-config` example is true: run as written on the shipped example, it
/// exits 0 (before: ten errors about secret files and variables this machine does not have).
#[test]
fn the_readme_check_config_example_exits_zero() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let line = readme
        .lines()
        .find(|l| l.starts_with("smtp-prober check-config") && l.contains("config/smtp-prober.yml"))
        .expect("a check-config example of the shipped configuration");
    let command = line.split('#').next().unwrap();
    assert!(line.contains("exit 0"), "{line}");
    let args: Vec<&str> = command.split_whitespace().skip(1).collect();
    let out = Command::new(BIN)
        .args(&args)
        .current_dir(root)
        .env_clear()
        .output()
        .expect("check-config");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{line}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn demo_command_probes_a_healthy_and_a_broken_server() {
    let exporter = Exporter::start(&["demo", "--interval=1s"]);
    let page = exporter.metrics_until("both demo targets", |p| {
        p.contains("probe_success{name=\"demo-healthy\"")
            && p.contains("probe_success{name=\"demo-incomplete-chain\"")
    });
    let line = |prefix: &str| {
        page.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        line("probe_success{name=\"demo-healthy\"").ends_with(" 1"),
        "{page}"
    );
    assert!(line("probe_success{name=\"demo-incomplete-chain\"").ends_with(" 0"));
    assert!(
        line("probe_smtp_failed_step_info{name=\"demo-incomplete-chain\"")
            .contains("reason=\"cert_incomplete_chain\"")
    );
    assert!(line("probe_smtp_message_accepted{name=\"demo-healthy\"").ends_with(" 1"));
    exporter.signal("TERM");
    assert_eq!(exporter.wait(Duration::from_secs(10)).code(), Some(0));
}
