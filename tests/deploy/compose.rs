//! deploy/compose: the Compose file against the Compose Specification's JSON schema
//! (`docker compose config` as well where the client has the compose plugin; the one here has
//! not), its mounts and the provisioning wiring; and the stack minus Grafana run for real:
//! the Compose file's own Prometheus and Alertmanager configurations, mounted as Compose mounts
//! them, on the Debian packages, against `smtp-prober demo`, with the service names resolved to
//! loopback addresses.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::common::{check_schema, find_tool, read, repo, run_ok, say, string, yaml};
use crate::support::exporter::Exporter;
use crate::support::prometheus::{available, value, Alertmanager, Prometheus};

const COMPOSE_DIR: &str = "deploy/compose";

fn compose() -> Value {
    yaml(&read("deploy/compose/compose.yaml"), "compose.yaml")
}

/// A service's bind mounts as (host path relative to the repository, container path).
fn bind_mounts(service: &Value) -> Vec<(String, String)> {
    let mut mounts = Vec::new();
    for volume in service["volumes"].as_array().into_iter().flatten() {
        let volume = volume.as_str().expect("short volume syntax");
        let parts: Vec<&str> = volume.split(':').collect();
        if !parts[0].starts_with('.') {
            continue; // a named volume
        }
        let host = normalize(&Path::new(COMPOSE_DIR).join(parts[0]));
        mounts.push((host, parts[1].to_string()));
        assert!(
            parts.get(2) == Some(&"ro"),
            "{volume}: configuration is mounted read-only"
        );
    }
    mounts
}

/// `deploy/compose/../prometheus/x` → `deploy/prometheus/x`.
fn normalize(path: &Path) -> String {
    let mut out: Vec<&str> = Vec::new();
    for part in path.iter().map(|p| p.to_str().unwrap()) {
        match part {
            "." => {}
            ".." => {
                out.pop().expect("a path inside the repository");
            }
            _ => out.push(part),
        }
    }
    out.join("/")
}

#[test]
fn compose_file_is_valid_and_wired() {
    let file = compose();
    check_schema("compose-spec.json", &file, "deploy/compose/compose.yaml");
    match find_tool("docker").filter(|docker| {
        Command::new(docker)
            .args(["compose", "version"])
            .output()
            .is_ok_and(|o| o.status.success())
    }) {
        Some(docker) => {
            run_ok(
                Command::new(docker)
                    .args(["compose", "config", "--quiet"])
                    .current_dir(repo().join(COMPOSE_DIR)),
            );
        }
        None => say(
            "docker compose config: skipped: no docker client with the compose plugin (no \
             registry here carries it); the Compose Specification schema checked the file",
        ),
    }

    let services = file["services"].as_object().expect("services");
    for name in ["smtp-prober", "prometheus", "alertmanager", "grafana"] {
        assert!(services.contains_key(name), "no service {name}");
    }
    // Third-party images pinned to a version.
    for (name, service) in services {
        if let Some(image) = service["image"].as_str() {
            let tag = image.rsplit_once(':').map(|(_, t)| t).unwrap_or("latest");
            assert!(
                name == "smtp-prober" || (tag != "latest" && tag.contains('.')),
                "{name}: image {image} is not pinned"
            );
        }
        for (host, _) in bind_mounts(service) {
            assert!(
                repo().join(&host).exists(),
                "{name} mounts {host}, which does not exist"
            );
        }
    }

    // smtp-prober built from this repository and run like the image is meant to be run.
    let prober = &file["services"]["smtp-prober"];
    let context = normalize(&Path::new(COMPOSE_DIR).join(string(prober, "/build/context")));
    let dockerfile = Path::new(&context).join(string(prober, "/build/dockerfile"));
    assert!(
        repo().join(&dockerfile).is_file(),
        "{}",
        dockerfile.display()
    );
    assert_eq!(prober["read_only"], true);
    assert_eq!(prober["cap_drop"], serde_json::json!(["ALL"]));
    assert_eq!(prober["tmpfs"], serde_json::json!(["/tmp"]));
    let port = crate::common::default_port();
    assert!(
        prober["ports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p.as_str() == Some(&format!("{port}:{port}"))),
        "port {port} published"
    );

    // Grafana: the data source is the Compose Prometheus, the dashboard provider reads the
    // directory the dashboards are mounted at.
    let grafana = &file["services"]["grafana"];
    let mounts = bind_mounts(grafana);
    let provisioning = mounts
        .iter()
        .find(|(_, container)| container == "/etc/grafana/provisioning")
        .map(|(host, _)| host.clone())
        .expect("provisioning mounted");
    let datasources = yaml(
        &read(&format!("{provisioning}/datasources/prometheus.yml")),
        "datasources",
    );
    let prometheus_port = file["services"]["prometheus"]["ports"][0]
        .as_str()
        .unwrap()
        .split(':')
        .next_back()
        .unwrap()
        .to_string();
    assert_eq!(
        datasources["datasources"][0]["url"],
        format!("http://prometheus:{prometheus_port}")
    );
    assert_eq!(datasources["datasources"][0]["isDefault"], true);
    let providers = yaml(
        &read(&format!("{provisioning}/dashboards/smtp-prober.yml")),
        "dashboard providers",
    );
    let path = string(&providers, "/providers/0/options/path");
    let (dashboards, _) = mounts
        .iter()
        .find(|(_, container)| container == path)
        .expect("the dashboard provider's path is mounted");
    assert_eq!(dashboards, "dashboards");
}

/// Copies a service's bind-mounted files into `root` at their container paths.
fn materialize(service: &Value, root: &Path) {
    for (host, container) in bind_mounts(service) {
        let source = repo().join(&host);
        let target = root.join(container.trim_start_matches('/'));
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(&source, &target).unwrap_or_else(|e| panic!("copying {host}: {e}"));
    }
}

#[test]
fn compose_prometheus_and_alertmanager_run_against_the_demo() {
    if !available(
        "compose_prometheus_and_alertmanager_run_against_the_demo",
        true,
    ) {
        return;
    }
    let file = compose();
    let root = tempfile::tempdir().unwrap();
    materialize(&file["services"]["prometheus"], root.path());
    materialize(&file["services"]["alertmanager"], root.path());

    let exporter = Exporter::start(&["demo", "--interval=1s"]);
    let am = Alertmanager::start_config(&root.path().join("etc/alertmanager/alertmanager.yml"));
    // Compose's DNS for the two service names; intervals shortened so the test is quick.
    let config_path: PathBuf = root.path().join("etc/prometheus/prometheus.yml");
    let config = std::fs::read_to_string(&config_path).unwrap();
    for name in ["smtp-prober:9741", "alertmanager:9093"] {
        assert!(config.contains(name), "prometheus.yml does not name {name}");
    }
    let config = config
        .replace("smtp-prober:9741", &exporter.addr.to_string())
        .replace("alertmanager:9093", &am.addr.to_string())
        .replace("scrape_interval: 15s", "scrape_interval: 1s")
        .replace("evaluation_interval: 15s", "evaluation_interval: 1s");
    std::fs::write(&config_path, config).unwrap();
    let prometheus = Prometheus::start(&config_path);

    let healthy = prometheus.wait_for(
        r#"probe_success{job="smtp-prober",name="demo-healthy"}"#,
        Duration::from_secs(30),
    );
    assert_eq!(value(&healthy[0]), 1.0);
    let broken = prometheus.wait_for(
        r#"probe_success{job="smtp-prober",name="demo-incomplete-chain"}"#,
        Duration::from_secs(10),
    );
    assert_eq!(value(&broken[0]), 0.0);
    let up = prometheus.query(r#"up{job="smtp-prober"}"#);
    assert_eq!(value(&up[0]), 1.0);

    // Prometheus found the Alertmanager and loaded every rule group of the mounted rules file.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let data = prometheus.api("/api/v1/alertmanagers").unwrap_or_default();
        let active = data["activeAlertmanagers"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if active.iter().any(|a| {
            a["url"]
                .as_str()
                .unwrap_or("")
                .contains(&format!("//{}/", am.addr))
        }) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "Prometheus never found the Alertmanager: {data}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let rules_file = root
        .path()
        .join("etc/prometheus/rules/smtp-prober-rules.yml");
    let rules = yaml(&std::fs::read_to_string(&rules_file).unwrap(), "rules");
    let mut expected: Vec<&str> = rules["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .map(|g| string(g, "/name"))
        .collect();
    let loaded = prometheus.api("/api/v1/rules").expect("rules");
    let mut names: Vec<&str> = loaded["groups"]
        .as_array()
        .expect("rule groups")
        .iter()
        .map(|g| string(g, "/name"))
        .collect();
    expected.sort();
    names.sort();
    assert_eq!(names, expected);
}
