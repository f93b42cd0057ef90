//! Scheduled delivery checks end to end: the real `smtp-prober` binary schedules targets whose
//! module submits a token mail to the real Postfix (STARTTLS, SASL AUTH) and waits for it over
//! IMAPS in the real Dovecot (the private stack of tests/support/mailstack.rs, one per test
//! binary). Covers the results on `/metrics` (checked by `promtool`), the cleanup on every path
//! (success, delivery timeout, reload and shutdown during a delivery wait: other mail always
//! survives), the sweep of stale probe mail, and the send safety rails.
//!
//! Tests run in parallel threads against one stack, so each works in its own Maildir folder of
//! the INBOX user (`inbox+Folder@example.test` is delivered to the folder `Folder`, see the
//! stack's module documentation) and tells its own lost mail apart by its subject.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use support::exporter::{Exporter, Files, BIN};
use support::mailstack::{maildir_messages, plant_with, MailStack, Options, INBOX, PROBE};

/// The probe-id header every token mail carries.
const PROBE_ID_HEADER: &str = "X-Smtp-Prober-Id";

/// Three hours back: older than any `sweep_older_than` used here.
fn hours_ago(hours: u64) -> SystemTime {
    SystemTime::now() - Duration::from_secs(hours * 3600)
}

/// A module submitting as PROBE to the stack's submission port and looking for its mail in
/// `mailboxes` of the INBOX user over IMAPS. `imap_password` is the path of the IMAP password file.
struct ModuleSpec<'a> {
    name: &'a str,
    to: &'a str,
    subject: &'a str,
    mailboxes: &'a [&'a str],
    delivery_timeout: &'a str,
    imap_password: &'a Path,
}

fn module_yaml(stack: &MailStack, m: &ModuleSpec) -> String {
    let root = stack.root_ca_pem_path().display().to_string();
    format!(
        r#"  {name}:
    timeout: 10s
    tls: starttls
    ehlo: probe.example.test
    tls_config: {{server_name: localhost, trust: [], ca_files: ["{root}"]}}
    auth: {{username: "{probe}", password_file: "{probe_password}"}}
    message:
      from: "{probe}"
      to: ["{to}"]
      subject: "{subject} {{token}}"
    delivery:
      imap: "127.0.0.1:{imaps}"
      tls: implicit
      tls_config: {{server_name: localhost, trust: [], ca_files: ["{root}"]}}
      username: "{inbox}"
      password_file: "{imap_password}"
      mailboxes: [{mailboxes}]
      timeout: {timeout}
      sweep_older_than: 1h
"#,
        name = m.name,
        probe = PROBE.address,
        probe_password = stack.password_file(PROBE).display(),
        to = m.to,
        subject = m.subject,
        imaps = stack.imaps_addr().port(),
        inbox = INBOX.address,
        imap_password = m.imap_password.display(),
        mailboxes = m
            .mailboxes
            .iter()
            .map(|b| format!("\"{b}\""))
            .collect::<Vec<_>>()
            .join(", "),
        timeout = m.delivery_timeout,
    )
}

/// A whole configuration: the send floor lowered so that targets may run every few seconds.
fn config(stack: &MailStack, modules: &[ModuleSpec], targets: &[(&str, &str, &str)]) -> String {
    let mut out = String::from("scheduler:\n  min_send_interval: 0s\nmodules:\n");
    for m in modules {
        out.push_str(&module_yaml(stack, m));
    }
    out.push_str("targets:\n");
    for (name, module, interval) in targets {
        out.push_str(&format!(
            "  - {{name: {name}, target: \"{}\", module: {module}, interval: {interval}}}\n",
            stack.submission_addr()
        ));
    }
    out
}

/// The value of the series of `metric` whose `name` label is `target` (other labels ignored).
fn series(page: &str, metric: &str, target: &str) -> Option<f64> {
    let label = format!("name=\"{target}\"");
    page.lines().find_map(|l| {
        let rest = l.strip_prefix(metric)?.strip_prefix('{')?;
        let (labels, value) = rest.split_once("} ")?;
        labels
            .split(',')
            .any(|kv| kv == label)
            .then(|| value.parse().ok())?
    })
}

/// The value of a series of `metric` with `target`'s name and the extra `label` (`k="v"`).
fn series_with(page: &str, metric: &str, target: &str, label: &str) -> Option<f64> {
    let name = format!("name=\"{target}\"");
    page.lines().find_map(|l| {
        let rest = l.strip_prefix(metric)?.strip_prefix('{')?;
        let (labels, value) = rest.split_once("} ")?;
        let labels: Vec<&str> = labels.split(',').collect();
        (labels.contains(&name.as_str()) && labels.contains(&label)).then(|| value.parse().ok())?
    })
}

/// Polls `/metrics` until `check` holds, for at most `within`.
fn metrics_within(
    exporter: &Exporter,
    within: Duration,
    what: &str,
    check: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + within;
    loop {
        let page = exporter.get("/metrics").body;
        if check(&page) {
            return page;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; /metrics:\n{page}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A person's mail, flagged `\Deleted` by their client but not expunged: an `EXPUNGE` of the
/// mailbox would take it, an exact `UID EXPUNGE` of our mail must not.
fn person_mail(tag: &str) -> String {
    format!(
        "From: alice@example.test\r\nTo: inbox@example.test\r\nSubject: lunch\r\n\
         Date: Mon, 2 Mar 2026 09:00:00 +0000\r\nMessage-ID: <person-{tag}@example.test>\r\n\r\n\
         see you at noon\r\n"
    )
}

/// Another prober's token mail: our header with a well-formed id, old, but another sender.
fn foreign_probe_mail(tag: &str) -> String {
    format!(
        "From: other-prober@example.test\r\nTo: inbox@example.test\r\n\
         Subject: MFA delivery probe 12345678\r\nDate: Mon, 2 Mar 2026 09:00:00 +0000\r\n\
         {PROBE_ID_HEADER}: 0123456789abcdef0123456789abcdef\r\n\
         Message-ID: <foreign-{tag}@example.test>\r\n\r\nnot ours\r\n"
    )
}

/// Plants the person's mail and the other prober's mail (both three hours old) in `folder`.
fn plant_other_mail(stack: &MailStack, folder: &Path, tag: &str) {
    plant_with(
        stack,
        folder,
        &format!("person-{tag}"),
        &person_mail(tag),
        Some("ST"),
        Some(hours_ago(3)),
    );
    plant_with(
        stack,
        folder,
        &format!("foreign-{tag}"),
        &foreign_probe_mail(tag),
        None,
        Some(hours_ago(3)),
    );
}

/// Asserts that the planted mails of `tag` are still in `folder`, with their content intact.
fn assert_other_mail_survives(folder: &Path, tag: &str, after: &str) {
    let all = maildir_messages(folder);
    for want in [person_mail(tag), foreign_probe_mail(tag)] {
        assert!(
            all.iter().any(|(_, c)| *c == want),
            "after {after}: a planted mail is gone or changed from {}: want\n{want}\nhave {:#?}",
            folder.display(),
            all
        );
    }
}

/// The probe ids of the token mails in `maildir` whose subject starts with `subject`.
fn probe_ids(maildir: &Path, subject: &str) -> Vec<String> {
    maildir_messages(maildir)
        .iter()
        .filter(|(_, c)| c.contains(&format!("\nSubject: {subject} ")))
        .filter_map(|(_, c)| {
            c.lines()
                .find_map(|l| l.strip_prefix(&format!("{PROBE_ID_HEADER}: ")))
                .map(|id| id.trim().to_string())
        })
        .collect()
}

/// Waits until a token mail with `subject` lands in `maildir`; returns when it was seen.
fn wait_for_mail(stack: &MailStack, maildir: &Path, subject: &str) -> Instant {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if !probe_ids(maildir, subject).is_empty() {
            return Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "no mail {subject:?} in {}\n{}",
            maildir.display(),
            stack.log_tail()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn folder(stack: &MailStack, name: &str) -> PathBuf {
    stack.maildir(INBOX).join(format!(".{name}"))
}

#[test]
fn scheduled_delivery_succeeds_twice_cleans_up_and_passes_promtool() {
    let test = "scheduled_delivery_succeeds_twice_cleans_up_and_passes_promtool";
    if !(MailStack::available(test)
        && support::programs::installed(test, &["promtool"], "prometheus"))
    {
        return;
    }
    let stack = MailStack::shared();
    let sink = folder(stack, "Sched");
    plant_other_mail(stack, &sink, "sched");
    let files = Files::new();
    let inbox_password = stack.password_file(INBOX);
    files.write(&config(
        stack,
        &[ModuleSpec {
            name: "token",
            to: "inbox+Sched@example.test",
            subject: "sched-probe",
            mailboxes: &["Sched"],
            delivery_timeout: "20s",
            imap_password: &inbox_password,
        }],
        &[("sched", "token", "2s")],
    ));
    let exporter = Exporter::start(&[&files.config_arg()]);

    // Every delivery duration seen, one per probe (a probe's result replaces the last one).
    let mut durations: Vec<f64> = Vec::new();
    let mut seen_probes = 0.0;
    let deadline = Instant::now() + Duration::from_secs(20);
    let page = loop {
        let page = exporter.get("/metrics").body;
        let probes = series_with(
            &page,
            "smtp_prober_probes_total",
            "sched",
            "result=\"success\"",
        )
        .unwrap_or(0.0);
        if probes > seen_probes {
            seen_probes = probes;
            if let Some(d) = series(&page, "probe_delivery_duration_seconds", "sched") {
                durations.push(d);
            }
        }
        let histogram = series(
            &page,
            "smtp_prober_delivery_duration_seconds_count",
            "sched",
        )
        .unwrap_or(0.0);
        if probes >= 2.0 && histogram >= 2.0 {
            break page;
        }
        assert!(
            Instant::now() < deadline,
            "no two successful scheduled probes; /metrics:\n{page}\n/logs:\n{}\n{}",
            exporter.get("/logs?target=sched").body,
            stack.log_tail()
        );
        std::thread::sleep(Duration::from_millis(25));
    };
    eprintln!("scheduled delivery durations from the real stack (seconds): {durations:?}");
    let sum = series(&page, "smtp_prober_delivery_duration_seconds_sum", "sched").unwrap();
    let count = series(
        &page,
        "smtp_prober_delivery_duration_seconds_count",
        "sched",
    )
    .unwrap();
    eprintln!(
        "smtp_prober_delivery_duration_seconds: {count} observations, mean {:.3}s",
        sum / count
    );
    assert_eq!(
        series_with(
            &page,
            "smtp_prober_probes_total",
            "sched",
            "result=\"failure\""
        ),
        Some(0.0),
        "two in a row, none failed:\n{}",
        exporter.get("/logs?target=sched").body
    );
    assert_eq!(series(&page, "probe_success", "sched"), Some(1.0));
    assert_eq!(series(&page, "probe_delivery_success", "sched"), Some(1.0));
    let duration = series(&page, "probe_delivery_duration_seconds", "sched").unwrap();
    assert!(duration > 0.0 && duration < 20.0, "{duration}");
    assert!(sum > 0.0);
    assert_eq!(
        series_with(
            &page,
            "probe_delivery_mailbox_info",
            "sched",
            "mailbox=\"Sched\""
        ),
        Some(1.0)
    );
    assert_eq!(
        series(&page, "probe_smtp_message_accepted", "sched"),
        Some(1.0)
    );
    // The sweep after the first probe ran and found nothing of ours to delete.
    assert_eq!(
        series(&page, "smtp_prober_delivery_swept_total", "sched"),
        Some(0.0)
    );
    assert_eq!(
        series(&page, "smtp_prober_delivery_sweep_errors_total", "sched"),
        Some(0.0)
    );

    // No probe mail left: checked between two looks at /metrics that show no probe in flight
    // and the same number of probes, so no probe's mail can be on its way meanwhile.
    let quiet_deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let quiet = |page: &str| {
            let in_flight = series_plain(page, "smtp_prober_probes_in_flight");
            let total = series_with(
                page,
                "smtp_prober_probes_total",
                "sched",
                "result=\"success\"",
            )
            .unwrap_or(0.0)
                + series_with(
                    page,
                    "smtp_prober_probes_total",
                    "sched",
                    "result=\"failure\"",
                )
                .unwrap_or(0.0);
            (in_flight == Some(0.0)).then_some(total)
        };
        let before = quiet(&exporter.get("/metrics").body);
        let ours: Vec<(PathBuf, String)> = maildir_messages(&sink)
            .into_iter()
            .filter(|(_, c)| c.contains(PROBE_ID_HEADER) && *c != foreign_probe_mail("sched"))
            .collect();
        let after = quiet(&exporter.get("/metrics").body);
        if before.is_some() && before == after {
            assert!(ours.is_empty(), "probe mail left behind: {ours:#?}");
            break;
        }
        assert!(Instant::now() < quiet_deadline, "never between two probes");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_other_mail_survives(&sink, "sched", "two successful probes");

    // The whole page is valid exposition format for Prometheus' own checker.
    let mut promtool = Command::new("/usr/bin/promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running promtool");
    {
        use std::io::Write as _;
        let mut stdin = promtool.stdin.take().expect("stdin");
        stdin.write_all(page.as_bytes()).expect("feeding promtool");
    }
    let out = promtool.wait_with_output().expect("promtool");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("promtool check metrics: {:?}\n{said}", out.status.code());
    assert_eq!(
        out.status.code(),
        Some(0),
        "promtool:\n{said}\npage:\n{page}"
    );
}

/// The value of an unlabelled sample.
fn series_plain(page: &str, metric: &str) -> Option<f64> {
    page.lines()
        .find_map(|l| l.strip_prefix(metric)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// A mail that never arrives where the probe looks (Postfix delivers it to PROBE's own INBOX),
/// through a delivery timeout, a reload during a delivery wait and SIGTERM during one: the
/// planted mail in the searched folder survives each.
#[test]
fn cleanup_spares_other_mail_on_timeout_reload_and_shutdown() {
    if !MailStack::available("cleanup_spares_other_mail_on_timeout_reload_and_shutdown") {
        return;
    }
    let stack = MailStack::shared();
    let searched = folder(stack, "Lost");
    plant_other_mail(stack, &searched, "lost");
    let elsewhere = stack.maildir(PROBE);
    let files = Files::new();
    let inbox_password = stack.password_file(INBOX);
    let write = |subject: &str, timeout: &str| {
        files.write(&config(
            stack,
            &[ModuleSpec {
                name: "lost",
                to: PROBE.address,
                subject,
                mailboxes: &["Lost"],
                delivery_timeout: timeout,
                imap_password: &inbox_password,
            }],
            &[("lost", "lost", "1s")],
        ))
    };

    // 1. Delivery timeout.
    write("lost-timeout", "2s");
    let exporter = Exporter::start(&[&files.config_arg()]);
    let page = metrics_within(&exporter, Duration::from_secs(15), "a failed probe", |p| {
        series_with(p, "smtp_prober_probes_total", "lost", "result=\"failure\"") >= Some(1.0)
    });
    assert_eq!(
        series_with(
            &page,
            "probe_smtp_failed_step_info",
            "lost",
            "reason=\"delivery_timeout\""
        ),
        Some(1.0),
        "{}",
        exporter.get("/logs?target=lost").body
    );
    assert_eq!(series(&page, "probe_delivery_success", "lost"), Some(0.0));
    assert_eq!(
        series(&page, "probe_smtp_message_accepted", "lost"),
        Some(1.0)
    );
    let took = series(&page, "probe_duration_seconds", "lost").unwrap();
    assert!((2.0..4.0).contains(&took), "probe took {took}s");
    assert!(!probe_ids(&elsewhere, "lost-timeout").is_empty());
    assert_other_mail_survives(&searched, "lost", "a delivery timeout");

    // 2. Reload while a delivery wait is in progress: the new subject tells the restarted
    //    target's mail apart from any sent before.
    write("lost-reload", "30s");
    let r = exporter.post("/-/reload");
    assert_eq!(r.status, 200, "{}", r.body);
    wait_for_mail(stack, &elsewhere, "lost-reload");
    // The mail is in; the probe has moved on to QUIT and the IMAP wait.
    std::thread::sleep(Duration::from_millis(300));
    let page = exporter.get("/metrics").body;
    assert_eq!(
        series_plain(&page, "smtp_prober_probes_in_flight"),
        Some(1.0)
    );
    write("lost-shutdown", "30s");
    let r = exporter.post("/-/reload");
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("1 changed"), "{}", r.body);
    assert_other_mail_survives(&searched, "lost", "a reload during a delivery wait");

    // 3. SIGTERM during a delivery wait.
    let waiting_since = wait_for_mail(stack, &elsewhere, "lost-shutdown");
    std::thread::sleep(Duration::from_millis(300));
    let page = exporter.get("/metrics").body;
    assert_eq!(
        series_plain(&page, "smtp_prober_probes_in_flight"),
        Some(1.0)
    );
    let remaining = Duration::from_secs(30).saturating_sub(waiting_since.elapsed());
    let signalled = Instant::now();
    exporter.signal("TERM");
    let status = exporter.wait(remaining);
    eprintln!(
        "SIGTERM during a delivery wait: exited {:?} after {:?} (deadline {remaining:?} away)",
        status.code(),
        signalled.elapsed()
    );
    assert_eq!(status.code(), Some(0));
    assert_other_mail_survives(&searched, "lost", "SIGTERM during a delivery wait");
}

#[test]
fn sweep_on_start_deletes_only_our_stale_probe_mail_and_counts_errors() {
    if !MailStack::available("sweep_on_start_deletes_only_our_stale_probe_mail_and_counts_errors") {
        return;
    }
    let stack = MailStack::shared();
    let sink = folder(stack, "Sweep");
    let mail = |from: &str, id: &str, tag: &str| {
        format!(
            "From: {from}\r\nTo: inbox@example.test\r\nSubject: MFA delivery probe 87654321\r\n\
             {PROBE_ID_HEADER}: {id}\r\nMessage-ID: <{tag}@example.test>\r\n\r\nstale\r\n"
        )
    };
    let stale_ours = mail(
        PROBE.address,
        "dddddddddddddddddddddddddddddddd",
        "stale-ours",
    );
    let stale_other = mail(
        "someone@example.test",
        "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee",
        "stale-other",
    );
    let fresh_ours = mail(
        PROBE.address,
        "ffffffffffffffffffffffffffffffff",
        "fresh-ours",
    );
    plant_with(
        stack,
        &sink,
        "stale-ours",
        &stale_ours,
        None,
        Some(hours_ago(3)),
    );
    plant_with(
        stack,
        &sink,
        "stale-other",
        &stale_other,
        None,
        Some(hours_ago(3)),
    );
    plant_with(stack, &sink, "fresh-ours", &fresh_ours, None, None);

    let files = Files::new();
    let inbox_password = stack.password_file(INBOX);
    let wrong_password = files.dir.path().join("wrong-imap-password");
    std::fs::write(&wrong_password, "not-the-password").expect("password file");
    files.write(&config(
        stack,
        &[
            ModuleSpec {
                name: "sweeping",
                to: "inbox+Sweep@example.test",
                subject: "sweep-probe",
                mailboxes: &["Sweep"],
                delivery_timeout: "20s",
                imap_password: &inbox_password,
            },
            ModuleSpec {
                name: "locked_out",
                to: PROBE.address,
                subject: "locked-out-probe",
                mailboxes: &["Sweep"],
                delivery_timeout: "5s",
                imap_password: &wrong_password,
            },
        ],
        &[("sweep", "sweeping", "2s"), ("locked", "locked_out", "2s")],
    ));
    let exporter = Exporter::start(&[&files.config_arg()]);
    let page = metrics_within(
        &exporter,
        Duration::from_secs(20),
        "a sweep of each target",
        |p| {
            series(p, "smtp_prober_delivery_swept_total", "sweep") == Some(1.0)
                && series(p, "smtp_prober_delivery_sweep_errors_total", "locked") == Some(1.0)
        },
    );
    assert_eq!(
        series(&page, "smtp_prober_delivery_sweep_errors_total", "sweep"),
        Some(0.0)
    );
    assert_eq!(
        series(&page, "smtp_prober_delivery_swept_total", "locked"),
        Some(0.0)
    );
    let left: Vec<String> = maildir_messages(&sink)
        .into_iter()
        .map(|(_, c)| c)
        .collect();
    assert!(!left.contains(&stale_ours), "our stale probe mail is swept");
    assert!(
        left.contains(&stale_other),
        "another sender's stale mail stays"
    );
    assert!(left.contains(&fresh_ours), "our fresh probe mail stays");

    let log = exporter.log_lines().join("\n");
    assert!(
        log.lines().any(|l| l.contains("deleted stale probe mail")
            && l.contains("target_name=sweep")
            && l.contains("swept=1")),
        "{log}"
    );
    assert!(
        log.lines().any(|l| l.contains("level=warn")
            && l.contains("sweep for stale probe mail failed")
            && l.contains("target_name=locked")
            && l.contains("imap_error")),
        "{log}"
    );
    assert!(!log.contains("not-the-password") && !log.contains(INBOX.password));
}

#[test]
fn send_floor_and_allow_send_are_enforced_through_the_binary() {
    let files = Files::new();
    let sending = "modules:\n  token:\n    tls: none\n    message: {from: probe@example.test, to: [inbox@example.test]}\n";
    files.write(&format!(
        "{sending}targets:\n  - name: too-often\n    target: 127.0.0.1:2525\n    module: token\n    interval: 10s\n"
    ));
    let out = Command::new(BIN)
        .args(["check-config", &files.config_arg()])
        .output()
        .expect("check-config");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("targets[0].interval: target \"too-often\": interval 10s is shorter than scheduler.min_send_interval 30s"),
        "{stderr}"
    );

    files.write(sending);
    let exporter = Exporter::start(&[&files.config_arg()]);
    let r = exporter.get("/probe?module=token&target=127.0.0.1:2525");
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("--probe.allow-send"), "{}", r.body);
}

/// Late, lost and pending against mail the real Postfix holds (`HOLD` for two recipients of a
/// private stack): a probe whose mail is held fails with `delivery_timeout` and leaves its mail
/// pending; a reload that changes nothing keeps the list; once released (`postsuper -H`), a
/// later probe finds it and counts it late with its real delivery time, and deletes it. The
/// other target's mail is never released: it counts as lost after `lost_after`, never late.
/// Other mail survives throughout.
#[test]
fn held_mail_counts_late_when_released_and_lost_when_never() {
    let test = "held_mail_counts_late_when_released_and_lost_when_never";
    if !MailStack::available(test) {
        return;
    }
    let hold = |address: &str| (address.to_string(), "HOLD".to_string());
    let stack = MailStack::start_with(&Options {
        recipient_access: vec![
            hold("inbox+Held@example.test"),
            hold("inbox+Never@example.test"),
        ],
        ..Options::default()
    })
    .unwrap();
    let held = folder(&stack, "Held");
    plant_other_mail(&stack, &held, "held");
    let never = folder(&stack, "Never");
    plant_other_mail(&stack, &never, "never");
    let files = Files::new();
    let inbox_password = stack.password_file(INBOX);
    let spec = |name, to, subject, mailboxes| ModuleSpec {
        name,
        to,
        subject,
        mailboxes,
        delivery_timeout: "2s",
        imap_password: &inbox_password,
    };
    let yaml = config(
        &stack,
        &[
            spec("late", "inbox+Held@example.test", "held-probe", &["Held"]),
            spec(
                "lost",
                "inbox+Never@example.test",
                "never-probe",
                &["Never"],
            ),
        ],
        &[("late", "late", "3s"), ("lost", "lost", "3s")],
    );
    // The lost target gives up after 5 s; the late one waits the default hour.
    let lost_module = yaml.find("  lost:\n").unwrap();
    let (head, tail) = yaml.split_at(lost_module);
    let yaml = format!(
        "{head}{}",
        tail.replacen(
            "sweep_older_than: 1h\n",
            "sweep_older_than: 1h\n      lost_after: 5s\n",
            1
        )
    );
    files.write(&yaml);
    let exporter = Exporter::start(&[&files.config_arg()]);
    let logs = |name: &str| exporter.get(&format!("/logs?target={name}")).body;

    // 1. The held mail: the probe fails with delivery_timeout, the mail is pending.
    let page = metrics_within(&exporter, Duration::from_secs(20), "a pending mail", |p| {
        series(p, "smtp_prober_delivery_pending", "late") >= Some(1.0)
    });
    assert_eq!(series(&page, "probe_success", "late"), Some(0.0));
    assert_eq!(
        series_with(
            &page,
            "probe_smtp_failed_step_info",
            "late",
            "reason=\"delivery_timeout\""
        ),
        Some(1.0),
        "{}",
        logs("late")
    );
    assert_eq!(
        series(&page, "smtp_prober_delivery_late_total", "late"),
        Some(0.0)
    );
    assert!(
        stack.held() >= 1,
        "Postfix holds the mail\n{}",
        stack.log_tail()
    );
    assert!(probe_ids(&held, "held-probe").is_empty());

    // 2. A reload that changes nothing keeps the pending list.
    let r = exporter.post("/-/reload");
    assert_eq!(r.status, 200, "{}", r.body);
    let page = exporter.get("/metrics").body;
    assert!(series(&page, "smtp_prober_delivery_pending", "late") >= Some(1.0));

    // 3. Released: a later probe finds it, counts it late and deletes it.
    let released = Instant::now();
    let released_mails = stack.release_held("inbox+Held@example.test").unwrap();
    assert!(released_mails >= 1);
    let page = metrics_within(&exporter, Duration::from_secs(20), "a late mail", |p| {
        series(p, "smtp_prober_delivery_late_total", "late") >= Some(1.0)
    });
    eprintln!(
        "late mail counted {:?} after the release",
        released.elapsed()
    );
    assert_eq!(
        series(&page, "smtp_prober_delivery_lost_total", "late"),
        Some(0.0)
    );
    let late_sum = series(
        &page,
        "smtp_prober_delivery_late_duration_seconds_sum",
        "late",
    )
    .unwrap();
    let late_count = series(
        &page,
        "smtp_prober_delivery_late_duration_seconds_count",
        "late",
    )
    .unwrap();
    eprintln!(
        "smtp_prober_delivery_late_duration_seconds: {late_count} late, mean {:.2}s",
        late_sum / late_count
    );
    // Held past its probe's 2 s timeout: its real delivery time is longer than that, less the
    // one-second resolution of the Received date it is read from.
    let mean = late_sum / late_count;
    assert!(
        mean >= 2.0 - 1.0,
        "{late_sum} / {late_count}\n{}",
        logs("late")
    );
    assert!(mean <= released.elapsed().as_secs_f64() + 4.0, "{mean}");
    let transcripts = logs("late");
    assert!(
        transcripts.contains("late: the mail of an earlier probe"),
        "{transcripts}"
    );
    // Mail released after that probe keeps flowing in and is cleaned up by the next probes.
    let deadline = Instant::now() + Duration::from_secs(15);
    while !probe_ids(&held, "held-probe").is_empty() {
        assert!(
            Instant::now() < deadline,
            "probe mail left in Held: {:?}\n{}",
            probe_ids(&held, "held-probe"),
            logs("late")
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // 4. Never released: lost after lost_after, never late.
    let page = metrics_within(&exporter, Duration::from_secs(30), "a lost mail", |p| {
        series(p, "smtp_prober_delivery_lost_total", "lost") >= Some(1.0)
    });
    assert_eq!(
        series(&page, "smtp_prober_delivery_late_total", "lost"),
        Some(0.0)
    );
    let pending = series(&page, "smtp_prober_delivery_pending", "lost").unwrap();
    assert!((1.0..=3.0).contains(&pending), "pending {pending}");
    assert!(probe_ids(&never, "never-probe").is_empty());
    assert_other_mail_survives(&held, "held", "late mail and its cleanup");
    assert_other_mail_survives(&never, "never", "lost mail");
}
