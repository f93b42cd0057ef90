//! deploy/kubernetes: rendered with `kubectl kustomize` (when kubectl is installed; no
//! registry here carries it), every object validated against the Kubernetes schemas
//! (kubernetes-validate, strict) or the Prometheus Operator's (check-jsonschema with the schemas
//! in tests/data/schemas), and the objects checked against each other and the binary: probes,
//! ports, selectors, the Probe's URL, the security context, the configuration loaded with exactly
//! the Secret's keys.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::common::{
    check_config, check_schema, default_port, optional, read, repo, require, run_ok, string, yaml,
    yaml_documents,
};

/// The Deployment as written in the base.
pub fn deployment() -> Value {
    yaml(
        &read("deploy/kubernetes/base/deployment.yaml"),
        "base/deployment.yaml",
    )
}

/// `kubectl kustomize deploy/kubernetes/DIR`, or `None` (said in one line) without kubectl.
fn render(dir: &str) -> Option<Vec<Value>> {
    let kubectl = optional("kubectl", &format!("rendering deploy/kubernetes/{dir}"))?;
    let output = Command::new(kubectl)
        .arg("kustomize")
        .arg(repo().join("deploy/kubernetes").join(dir))
        .output()
        .expect("running kubectl kustomize");
    assert!(
        output.status.success(),
        "kubectl kustomize {dir}:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).expect("UTF-8");
    Some(yaml_documents(&text, &format!("kustomize output of {dir}")))
}

/// The one object of `kind` (and `name`, if given).
fn object<'a>(objects: &'a [Value], kind: &str, name: Option<&str>) -> &'a Value {
    let found: Vec<&Value> = objects
        .iter()
        .filter(|o| o["kind"] == kind && name.is_none_or(|n| o["metadata"]["name"] == n))
        .collect();
    assert_eq!(found.len(), 1, "one {kind} {name:?}, found {}", found.len());
    found[0]
}

/// The Prometheus Operator kinds, and the schema each is checked against.
const OPERATOR_SCHEMAS: &[(&str, &str)] = &[
    (
        "ServiceMonitor",
        "monitoring.coreos.com_servicemonitor_v1.json",
    ),
    ("Probe", "monitoring.coreos.com_probe_v1.json"),
    (
        "PrometheusRule",
        "monitoring.coreos.com_prometheusrule_v1.json",
    ),
];

/// Validates rendered objects: Kubernetes kinds with kubernetes-validate --strict against the
/// oldest and newest Kubernetes release we claim, operator kinds against their CRD schemas.
fn validate(objects: &[Value], what: &str) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut builtin = Vec::new();
    for (i, object) in objects.iter().enumerate() {
        let kind = object["kind"].as_str().expect("a kind");
        if let Some((_, schema)) = OPERATOR_SCHEMAS.iter().find(|(k, _)| *k == kind) {
            check_schema(schema, object, &format!("{what}: {kind}"));
        } else {
            let file = dir.path().join(format!("{i}-{kind}.json"));
            std::fs::write(&file, object.to_string()).expect("writing an object");
            builtin.push(file);
        }
    }
    let Some(validate) = require("kubernetes-validate", "Kubernetes schema validation") else {
        return;
    };
    for version in ["1.29.0", "1.37.0"] {
        let out = run_ok(
            Command::new(&validate)
                .args(["--strict", "--kubernetes-version", version])
                .args(&builtin),
        );
        let passed = out.lines().filter(|l| l.starts_with("INFO")).count();
        assert_eq!(
            passed,
            builtin.len(),
            "{what}: not every object validated against Kubernetes {version}:\n{out}"
        );
    }
}

#[test]
fn kustomizations_render_and_validate() {
    for dir in ["", "base"] {
        let Some(objects) = render(dir) else {
            return;
        };
        let kinds: BTreeSet<&str> = objects
            .iter()
            .map(|o| o["kind"].as_str().unwrap())
            .collect();
        for kind in ["Deployment", "Service", "ConfigMap"] {
            assert!(kinds.contains(kind), "{dir}: no {kind} in {kinds:?}");
        }
        if dir.is_empty() {
            for kind in ["ServiceMonitor", "Probe", "PrometheusRule"] {
                assert!(kinds.contains(kind), "no {kind} in {kinds:?}");
            }
        }
        validate(&objects, &format!("deploy/kubernetes/{dir}"));
    }
}

#[test]
fn kubernetes_objects_fit_together() {
    let Some(objects) = render("") else {
        return;
    };
    let deployment = object(&objects, "Deployment", Some("smtp-prober"));
    let pod = &deployment["spec"]["template"];
    let pod_labels = pod["metadata"]["labels"].as_object().expect("pod labels");
    let spec = &pod["spec"];
    let container = &spec["containers"][0];
    let args: Vec<String> = serde_json::from_value(container["args"].clone()).expect("args");
    let namespace = string(deployment, "/metadata/namespace");

    // The port the binary listens on, named for the probes, the Service and the ServiceMonitor.
    let port = default_port();
    let listen = crate::common::flag(&args, "web.listen-address").unwrap_or(":9741");
    assert_eq!(listen, format!(":{port}"));
    let http = container["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "http")
        .expect("a port named http");
    assert_eq!(http["containerPort"], port);
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/-/healthy");
    assert_eq!(container["livenessProbe"]["httpGet"]["port"], "http");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/-/ready");
    assert_eq!(container["readinessProbe"]["httpGet"]["port"], "http");

    // Non-root, read-only root file system, no capabilities, no privilege escalation.
    assert_eq!(spec["securityContext"]["runAsNonRoot"], true);
    assert_ne!(spec["securityContext"]["runAsUser"], 0);
    assert_eq!(spec["automountServiceAccountToken"], false);
    let security = &container["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert!(security["capabilities"]["add"].is_null());
    assert_eq!(security.get("privileged"), None);
    for resource in ["cpu", "memory"] {
        assert!(
            container["resources"]["requests"][resource].is_string(),
            "no {resource} request"
        );
    }
    assert!(container["resources"]["limits"]["memory"].is_string());

    // The image of this version.
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        container["image"].as_str().unwrap(),
        format!("smtp-prober:{version}")
    );

    // Service → pods, ServiceMonitor → Service port.
    let service = object(&objects, "Service", Some("smtp-prober"));
    for (key, value) in service["spec"]["selector"].as_object().unwrap() {
        assert_eq!(pod_labels.get(key), Some(value), "Service selects {key}");
    }
    let service_port = &service["spec"]["ports"][0];
    assert_eq!(service_port["targetPort"], "http");
    assert_eq!(service_port["port"], port);
    let monitor = object(&objects, "ServiceMonitor", None);
    let service_labels = service["metadata"]["labels"].as_object().unwrap();
    for (key, value) in monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .unwrap()
    {
        assert_eq!(
            service_labels.get(key),
            Some(value),
            "ServiceMonitor selects {key}"
        );
    }
    let endpoint = &monitor["spec"]["endpoints"][0];
    assert_eq!(endpoint["port"], service_port["name"]);
    assert_eq!(endpoint["path"], "/metrics");

    // The Probe reaches the Service through its cluster DNS name, with a configured module.
    let probe = object(&objects, "Probe", None);
    assert_eq!(
        probe["spec"]["prober"]["url"],
        format!(
            "{}.{namespace}.svc:{port}",
            string(service, "/metadata/name")
        )
    );
    assert_eq!(probe["spec"]["prober"]["path"], "/probe");
    let configmap = object(&objects, "ConfigMap", None);
    let config_path = crate::common::flag(&args, "config.file").expect("--config.file");
    let config_path = Path::new(config_path);
    let config_key = config_path.file_name().unwrap().to_str().unwrap();
    let config_text = configmap["data"][config_key]
        .as_str()
        .expect("the configuration in the ConfigMap");
    let config = yaml(config_text, "the ConfigMap's configuration");
    let module = string(probe, "/spec/module");
    assert!(
        config["modules"][module].is_object(),
        "the Probe's module {module} is not in the configuration"
    );

    // Volumes: the ConfigMap where --config.file points, the Secret's keys where the
    // configuration's *_file fields point.
    let volumes = spec["volumes"].as_array().unwrap();
    let mounts = container["volumeMounts"].as_array().unwrap();
    let mount_of = |volume: &Value| -> String {
        let name = &volume["name"];
        let mount = mounts.iter().find(|m| &m["name"] == name).expect("mounted");
        assert_eq!(mount["readOnly"], true, "{name} is mounted writable");
        string(mount, "/mountPath").to_string()
    };
    let config_volume = volumes
        .iter()
        .find(|v| v["configMap"]["name"] == configmap["metadata"]["name"])
        .expect("the ConfigMap as a volume");
    assert_eq!(
        Path::new(&mount_of(config_volume)),
        config_path.parent().unwrap()
    );
    let secret_volume = volumes
        .iter()
        .find(|v| v["secret"].is_object())
        .expect("a Secret volume");
    let secret_dir = mount_of(secret_volume);
    let secret = &secret_volume["secret"];
    // The files must be readable by the pod's user: by everyone, or by the fsGroup.
    let mode = secret["defaultMode"].as_u64().unwrap_or(0o644);
    if mode & 0o004 == 0 {
        assert!(
            mode & 0o040 != 0 && spec["securityContext"]["fsGroup"].is_u64(),
            "secret files of mode {mode:o} are unreadable for the pod's user without fsGroup"
        );
    }
    let keys: Vec<&str> = secret["items"]
        .as_array()
        .expect("the Secret's keys listed as items")
        .iter()
        .map(|item| string(item, "/path"))
        .collect();

    // The configuration loads with a directory holding exactly those keys in place of the
    // mount: a *_file pointing at a key that is not listed fails here.
    let dir = tempfile::tempdir().expect("temp dir");
    let secrets = dir.path().join("secrets");
    std::fs::create_dir(&secrets).unwrap();
    for key in &keys {
        std::fs::write(secrets.join(key), "placeholder\n").unwrap();
    }
    let replaced = config_text.replace(
        &format!("{secret_dir}/"),
        &format!("{}/", secrets.display()),
    );
    assert_ne!(replaced, config_text, "the configuration reads no secret");
    let file = dir.path().join(config_key);
    std::fs::write(&file, replaced).unwrap();
    let out = check_config(&file, &[]);
    assert!(out.contains("OK"), "{out}");
}

/// The PrometheusRule carries exactly the shipped rules: generating it again from
/// deploy/prometheus/smtp-prober-rules.yml gives the committed file byte for byte, and its spec
/// is the rules file, as data.
#[test]
fn prometheusrule_is_the_shipped_rules() {
    const DIR: &str = "deploy/kubernetes/prometheus-operator";
    let dir = tempfile::tempdir().expect("temp dir");
    let generated = dir.path().join("prometheusrule.yaml");
    run_ok(
        Command::new("sh")
            .arg(repo().join(DIR).join("generate-prometheusrule.sh"))
            .arg(&generated),
    );
    let committed = read(&format!("{DIR}/prometheusrule.yaml"));
    assert!(
        std::fs::read_to_string(&generated).unwrap() == committed,
        "{DIR}/prometheusrule.yaml differs from the rules file: run \
         sh {DIR}/generate-prometheusrule.sh"
    );
    let rule = yaml(&committed, "prometheusrule.yaml");
    let rules = yaml(
        &read("deploy/prometheus/smtp-prober-rules.yml"),
        "smtp-prober-rules.yml",
    );
    assert_eq!(rule["spec"], rules);
    assert!(!rules["groups"].as_array().unwrap().is_empty());
    let component = yaml(&read(&format!("{DIR}/kustomization.yaml")), "kustomization");
    assert!(
        component["resources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r == "prometheusrule.yaml"),
        "the component does not deploy the PrometheusRule"
    );
}
