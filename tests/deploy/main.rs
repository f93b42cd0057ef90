//! The deployment files checked offline, the way each is used: the Dockerfile (built where a
//! container engine answers, linted with hadolint and checked for the image's contract
//! everywhere, and the binary run as the image runs it: non-root, no capabilities, read-only
//! root), the Compose stack (schema, mounts, and its Prometheus and Alertmanager configuration
//! run for real against the demo), the Kubernetes manifests (rendered with `kubectl kustomize`,
//! validated against the Kubernetes and Prometheus Operator schemas, the configuration loaded
//! with the Secret's keys), the systemd unit (`systemd-analyze verify` and `security`, the example
//! configuration loaded with its credentials), yamllint over every YAML file, the LICENSE, and
//! the size of a test binary (a whole test run must fit CI's disk).
//!
//! Tools come from Debian packages or from the virtual environment that scripts/test.sh installs
//! (target/tools/venv). A missing tool skips its check with one line, unless CI is set.

#[path = "../support/mod.rs"]
mod support;

mod common;
mod compose;
mod container;
mod kubernetes;
mod systemd;

use common::{repo, require, run_ok, say};

/// Every YAML file of deploy/ passes yamllint with deploy/.yamllint.yml.
#[test]
fn yamllint_passes_on_deploy() {
    let Some(yamllint) = require("yamllint", "linting deploy/*.yml") else {
        return;
    };
    let out = run_ok(
        std::process::Command::new(yamllint)
            .arg("--strict")
            .arg("--config-file")
            .arg(repo().join("deploy/.yamllint.yml"))
            .arg(repo().join("deploy")),
    );
    assert!(out.trim().is_empty(), "yamllint findings:\n{out}");
}

/// The LICENSE file is the Apache License 2.0 that Cargo.toml declares.
#[test]
fn license_matches_cargo_toml() {
    let license = std::fs::read_to_string(repo().join("LICENSE")).expect("LICENSE");
    assert!(
        license.contains("Apache License") && license.contains("Version 2.0, January 2004"),
        "LICENSE is not the Apache License 2.0"
    );
    assert!(license.contains("TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION"));
    let manifest = std::fs::read_to_string(repo().join("Cargo.toml")).expect("Cargo.toml");
    assert!(
        manifest
            .lines()
            .any(|l| l.trim() == r#"license = "Apache-2.0""#),
        "Cargo.toml declares another license"
    );
}

/// The test binaries stay small enough for a whole run to fit CI's disk: with full debug
/// information each was 175–215 MB (this one 176 MB) and a fresh run wrote 8 GB into target/,
/// more than CI had free; Cargo.toml keeps line tables for our own code and no debug
/// information for dependencies (this one: 32 MB; 84 MB with CARGO_PROFILE_DEV_DEBUG=true, full
/// information for our own code, which the bound allows).
#[test]
fn test_binaries_carry_no_full_debug_information() {
    const CHECK: &str = "test binary size";
    if !cfg!(debug_assertions) {
        say(&format!("{CHECK}: skipped: not a debug build"));
        return;
    }
    let exe = std::env::current_exe().expect("this test binary's path");
    let size = std::fs::metadata(&exe).expect("this test binary").len();
    assert!(
        size < 120_000_000,
        "{} is {:.0} MB: dependencies carry debug information again (Cargo.toml [profile.dev])",
        exe.display(),
        size as f64 / 1e6
    );
}
