//! deploy/systemd: the unit passes `systemd-analyze verify`, keeps its hardening (checked by
//! `systemd-analyze security --offline` against a threshold, and directive by directive), and
//! the example configuration loads with the unit's credentials in $CREDENTIALS_DIRECTORY.

use std::process::Command;

use crate::common::{check_config, read, require, run_ok, yaml, BIN};

/// The unit's `[Service]` settings, in order, as (key, value).
fn service_settings(unit: &str) -> Vec<(String, String)> {
    let mut section = "";
    let mut settings = Vec::new();
    for line in unit.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if line.starts_with('[') {
            section = line;
            continue;
        }
        if section == "[Service]" {
            let (key, value) = line.split_once('=').expect("KEY=VALUE");
            settings.push((key.to_string(), value.to_string()));
        }
    }
    settings
}

/// Calls `f` with every string of a YAML/JSON value.
fn strings(value: &serde_json::Value, f: &mut impl FnMut(&str)) {
    match value {
        serde_json::Value::String(s) => f(s),
        serde_json::Value::Array(items) => items.iter().for_each(|v| strings(v, f)),
        serde_json::Value::Object(map) => map.values().for_each(|v| strings(v, f)),
        _ => {}
    }
}

/// The unit with ExecStart pointing at the binary under test (verify checks that it exists).
fn unit_for_test(dir: &std::path::Path) -> std::path::PathBuf {
    let unit = read("deploy/systemd/smtp-prober.service");
    assert!(unit.contains("ExecStart=/usr/local/bin/smtp-prober "));
    let path = dir.join("smtp-prober.service");
    std::fs::write(
        &path,
        unit.replace(
            "ExecStart=/usr/local/bin/smtp-prober ",
            &format!("ExecStart={BIN} "),
        ),
    )
    .unwrap();
    path
}

#[test]
fn unit_verifies_and_is_hardened() {
    let Some(analyze) = require("systemd-analyze", "checking the systemd unit") else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let unit = unit_for_test(dir.path());
    let out = run_ok(Command::new(&analyze).arg("verify").arg(&unit));
    assert!(
        !out.contains("smtp-prober.service"),
        "systemd-analyze verify has something to say:\n{out}"
    );
    // Exposure 0 (best) to 10; a plain unit scores 9.6 "UNSAFE", ours 1.1. --threshold is in
    // tenths.
    let out = run_ok(
        Command::new(&analyze)
            .args(["security", "--offline=yes", "--threshold=15", "--no-pager"])
            .arg(&unit),
    );
    let score: f64 = out
        .lines()
        .find_map(|l| l.split_once("Overall exposure level for smtp-prober.service: "))
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{out}"));
    assert!(score <= 1.5, "exposure level {score} (at most 1.5):\n{out}");

    let settings = service_settings(&read("deploy/systemd/smtp-prober.service"));
    let value = |key: &str| -> Vec<&str> {
        settings
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    for (key, expected) in [
        ("DynamicUser", "yes"),
        ("ProtectSystem", "strict"),
        ("NoNewPrivileges", "yes"),
        ("CapabilityBoundingSet", ""),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
    ] {
        assert_eq!(value(key), [expected], "{key}");
    }
    let families: Vec<&str> = value("RestrictAddressFamilies")
        .iter()
        .flat_map(|v| v.split_whitespace())
        .collect();
    assert_eq!(families, ["AF_UNIX", "AF_INET", "AF_INET6"]);
    assert_eq!(value("ExecReload"), ["/bin/kill -HUP $MAINPID"]);
    assert!(!value("LoadCredential").is_empty());
}

/// Every credential the example configuration reads is loaded by the unit, and the
/// configuration loads with them.
#[test]
fn example_config_loads_with_the_units_credentials() {
    let settings = service_settings(&read("deploy/systemd/smtp-prober.service"));
    let credentials: Vec<String> = settings
        .iter()
        .filter(|(k, _)| k == "LoadCredential")
        .map(|(_, v)| v.split_once(':').expect("NAME:PATH").0.to_string())
        .collect();
    let exec_start = &settings
        .iter()
        .find(|(k, _)| k == "ExecStart")
        .expect("ExecStart")
        .1;
    assert!(
        exec_start.contains("--config.file=/etc/smtp-prober/smtp-prober.yml"),
        "the unit reads the configuration from where its comment installs it: {exec_start}"
    );
    let config = yaml(
        &read("deploy/systemd/smtp-prober.yml"),
        "deploy/systemd/smtp-prober.yml",
    );
    let mut referenced = Vec::new();
    strings(&config, &mut |s| {
        if let Some(name) = s.strip_prefix("${CREDENTIALS_DIRECTORY}/") {
            referenced.push(name.to_string());
        }
    });
    assert!(!referenced.is_empty(), "the example reads no credential");
    for name in &referenced {
        assert!(
            credentials.iter().any(|c| c == name),
            "{name} is read but not loaded by the unit ({credentials:?})"
        );
    }
    let dir = tempfile::tempdir().expect("temp dir");
    for name in &credentials {
        std::fs::write(dir.path().join(name), "placeholder\n").unwrap();
    }
    let out = check_config(
        &crate::common::repo().join("deploy/systemd/smtp-prober.yml"),
        &[("CREDENTIALS_DIRECTORY", dir.path())],
    );
    assert!(out.contains("OK"), "{out}");
    // Without them it does not load: the credentials are really read from there.
    let missing = tempfile::tempdir().expect("temp dir");
    let status = Command::new(BIN)
        .arg("check-config")
        .arg("--config.file=deploy/systemd/smtp-prober.yml")
        .current_dir(crate::common::repo())
        .env("CREDENTIALS_DIRECTORY", missing.path())
        .output()
        .unwrap()
        .status;
    assert_eq!(status.code(), Some(2));
}
