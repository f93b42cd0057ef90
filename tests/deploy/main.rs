//! The deployment files checked offline, the way each is used: the Dockerfile (built where a
//! container engine answers, linted with hadolint and checked for the image's contract
//! everywhere, and the binary run as the image runs it: non-root, no capabilities, read-only
//! root), the Compose stack (schema, mounts, and its Prometheus and Alertmanager configuration
//! run for real against the demo), the Kubernetes manifests (rendered with `kubectl kustomize`,
//! validated against the Kubernetes and Prometheus Operator schemas, the configuration loaded
//! with the Secret's keys), the systemd unit (`systemd-analyze verify` and `security`, the example
//! configuration loaded with its credentials), yamllint over every YAML file, and the LICENSE.
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

use common::{repo, require, run_ok};

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
