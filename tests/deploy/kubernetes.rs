//! deploy/kubernetes: rendered with `kubectl kustomize` (when kubectl is installed; no
//! registry here carries it), every object validated against the Kubernetes schemas
//! (kubernetes-validate, strict) or the Prometheus Operator's (check-jsonschema with the schemas
//! in tests/data/schemas), and the objects checked against each other and the binary: probes,
//! ports, selectors, the Probe's URL, the security context, the configuration loaded with exactly
//! the Secret's keys.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

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
    for dir in ["", "base", "sharded"] {
        let Some(objects) = render(dir) else {
            return;
        };
        let kinds: BTreeSet<&str> = objects
            .iter()
            .map(|o| o["kind"].as_str().unwrap())
            .collect();
        let workload = if dir == "sharded" {
            "StatefulSet"
        } else {
            "Deployment"
        };
        for kind in [workload, "Service", "ConfigMap"] {
            assert!(kinds.contains(kind), "{dir}: no {kind} in {kinds:?}");
        }
        if dir != "base" {
            for kind in ["ServiceMonitor", "Probe", "PrometheusRule"] {
                assert!(kinds.contains(kind), "{dir}: no {kind} in {kinds:?}");
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

/// The sharded variant: a StatefulSet whose pod is the Deployment's plus the shard, N replicas
/// for N shards, the shard from the pod's ordinal, one Service scraped (not the headless one as
/// well, which would scrape every pod twice), and the /probe hashmod example over the same N
/// shards through the headless Service's per-pod names.
#[test]
fn sharded_statefulset_matches_the_deployment() {
    let Some(objects) = render("sharded") else {
        return;
    };
    assert!(
        !objects.iter().any(|o| o["kind"] == "Deployment"),
        "the Deployment is still there"
    );
    let set = object(&objects, "StatefulSet", Some("smtp-prober"));
    let replicas = set["spec"]["replicas"].as_u64().expect("replicas");
    let mut pod = set["spec"]["template"].clone();
    let container = &mut pod["spec"]["containers"][0];
    let args: Vec<String> = serde_json::from_value(container["args"].clone()).unwrap();
    let shard = crate::common::flag(&args, "scheduler.shard").expect("--scheduler.shard");
    assert_eq!(shard, format!("$(SHARD)/{replicas}"), "shards != replicas");
    let env = container["env"].as_array().expect("env");
    assert_eq!(env.len(), 1);
    assert_eq!(env[0]["name"], "SHARD");
    assert_eq!(
        env[0]["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.labels['apps.kubernetes.io/pod-index']"
    );

    // Apart from the shard, the Deployment's pod (both rendered, so names and labels agree).
    let Some(plain) = render("") else { return };
    let deployment = object(&plain, "Deployment", Some("smtp-prober"));
    let container = pod["spec"]["containers"][0].as_object_mut().unwrap();
    container.remove("env");
    let args: Vec<Value> = args
        .iter()
        .filter(|a| !a.starts_with("--scheduler.shard="))
        .map(|a| Value::from(a.as_str()))
        .collect();
    container.insert("args".into(), Value::from(args));
    assert_eq!(pod, deployment["spec"]["template"]);

    // The headless Service names the pods; the ServiceMonitor scrapes through the other one.
    let headless = object(&objects, "Service", set["spec"]["serviceName"].as_str());
    assert_eq!(headless["spec"]["clusterIP"], "None");
    let monitor = object(&objects, "ServiceMonitor", None);
    let selector = monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .unwrap();
    let scraped: Vec<&Value> = objects
        .iter()
        .filter(|o| o["kind"] == "Service")
        .filter(|o| {
            selector
                .iter()
                .all(|(k, v)| o["metadata"]["labels"].get(k) == Some(v))
        })
        .collect();
    assert_eq!(scraped.len(), 1, "the ServiceMonitor selects {scraped:?}");

    // The hashmod example: modulus = replicas, addresses = the pods' names.
    let example = probe_sharding();
    let relabel = example["scrape_configs"][0]["relabel_configs"]
        .as_array()
        .unwrap();
    let hashmod = relabel
        .iter()
        .find(|r| r["action"] == "hashmod")
        .expect("a hashmod rule");
    assert_eq!(hashmod["modulus"], replicas);
    assert_eq!(
        hashmod["source_labels"],
        serde_json::json!(["__param_target"])
    );
    let port = crate::common::default_port();
    assert_eq!(
        relabel.last().unwrap()["replacement"],
        format!(
            "{}-$1.{}.{}.svc:{port}",
            string(set, "/metadata/name"),
            string(headless, "/metadata/name"),
            string(set, "/metadata/namespace")
        )
    );
}

fn probe_sharding() -> Value {
    yaml(
        &read("deploy/kubernetes/sharded/prometheus-probe-sharding.yml"),
        "prometheus-probe-sharding.yml",
    )
}

/// The /probe hashmod example on a real Prometheus: three exporters (one per shard, on
/// 127.0.0.10, .11 and .12, standing in for the pods' DNS names) and six targets; every target
/// is scraped through exactly one exporter and probed successfully, and more than one exporter
/// gets targets.
#[test]
fn probe_sharding_example_spreads_targets_over_the_shards() {
    use crate::support::exporter::{Exporter, Files, Servers};
    use crate::support::prometheus::{available, value, Prometheus};
    if !available(
        "probe_sharding_example_spreads_targets_over_the_shards",
        false,
    ) {
        return;
    }
    let mut servers = Servers::new();
    let targets: Vec<String> = (0..6).map(|_| servers.healthy()).collect();
    let files = Files::new();
    let mut example = probe_sharding();
    let module = example["scrape_configs"][0]["params"]["module"][0]
        .as_str()
        .unwrap()
        .to_string();
    files.write(&format!(
        "modules:\n  {module}:\n    timeout: 5s\n    tls: starttls\n    tls_config: \
         {{server_name: localhost, trust: [], ca_files: ['{}']}}\n",
        files.dir.path().join("root.pem").display()
    ));
    let port = std::net::TcpListener::bind("127.0.0.10:0")
        .and_then(|l| l.local_addr())
        .expect("a free port on 127.0.0.10")
        .port();
    let shards: Vec<Exporter> = (0..3)
        .map(|i| {
            let mut command = Command::new(crate::common::BIN);
            command
                .arg(files.config_arg())
                .arg(format!("--web.listen-address=127.0.0.1{i}:{port}"));
            Exporter::spawn(command)
        })
        .collect();

    // The pods' DNS names become the loopback addresses; scrapes every second.
    let job = &mut example["scrape_configs"][0];
    job["static_configs"][0]["targets"] = serde_json::json!(targets);
    job["scrape_timeout"] = "1s".into();
    let relabel = job["relabel_configs"].as_array_mut().unwrap();
    let last = relabel.last_mut().unwrap();
    last["replacement"] = format!("127.0.0.1$1:{port}").into();
    example["global"]["scrape_interval"] = "1s".into();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(&config, example.to_string()).unwrap();
    let prometheus = Prometheus::start(&config);

    let job_name = example["scrape_configs"][0]["job_name"].as_str().unwrap();
    let mut used = BTreeSet::new();
    for target in &targets {
        let series = prometheus.wait_for(
            &format!(r#"probe_success{{job="{job_name}",instance="{target}"}}"#),
            Duration::from_secs(30),
        );
        assert_eq!(series.len(), 1, "{target}: {series:?}");
        assert_eq!(value(&series[0]), 1.0, "{target}");
    }
    let active = prometheus.api("/api/v1/targets").expect("targets");
    let active = active["activeTargets"].as_array().unwrap();
    assert_eq!(active.len(), targets.len());
    for t in active {
        let url = string(t, "/scrapeUrl");
        let host = url.split("//").nth(1).unwrap().split('/').next().unwrap();
        assert!(
            shards.iter().any(|s| s.addr.to_string() == host),
            "{url} is not one of the shards"
        );
        used.insert(host.to_string());
    }
    assert!(used.len() > 1, "every target went to {used:?}");
}
