//! Sharded scheduled mode through the binary: three instances with `--scheduler.shard=0/3`, `1/3`
//! and `2/3` over one configuration probe every target, each target on exactly one instance;
//! a reload keeps the split; bad shard values are usage errors.

mod support;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use support::exporter::{Exporter, Files, Servers, BIN};

const TARGETS: usize = 12;

fn config(files: &Files, server: &str, names: &[String]) -> String {
    let root = files.dir.path().join("root.pem");
    let mut yaml = format!(
        "modules:\n  starttls:\n    timeout: 5s\n    tls: starttls\n    tls_config: \
         {{server_name: localhost, trust: [], ca_files: ['{}']}}\ntargets:\n",
        root.display()
    );
    for name in names {
        yaml.push_str(&format!(
            "  - {{name: {name}, target: '{server}', module: starttls, interval: 1s}}\n"
        ));
    }
    yaml
}

/// The names of the targets with a `probe_success` sample on the exporter's `/metrics`.
fn probed(exporter: &Exporter) -> Vec<String> {
    let page = exporter.get("/metrics").body;
    page.lines()
        .filter_map(|l| l.strip_prefix("probe_success{name=\""))
        .map(|rest| rest[..rest.find('"').unwrap()].to_string())
        .collect()
}

/// Waits until every instance has probed each target it owns twice (`probes_total` ≥ 2 means
/// the schedule runs) and returns, per target, the instances that list it.
fn owners_of(instances: &[Exporter], expected: usize) -> BTreeMap<String, Vec<usize>> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut owners: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, instance) in instances.iter().enumerate() {
            for name in probed(instance) {
                owners.entry(name).or_default().push(i);
            }
        }
        if owners.len() >= expected {
            return owners;
        }
        assert!(
            Instant::now() < deadline,
            "after 30 s only {} of {expected} targets were probed: {owners:?}",
            owners.len()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn three_shards_probe_every_target_exactly_once() {
    let mut servers = Servers::new();
    let server = servers.healthy();
    let files = Files::new();
    let names: Vec<String> = (0..TARGETS).map(|i| format!("mx-{i:02}")).collect();
    files.write(&config(&files, &server, &names));
    let instances: Vec<Exporter> = (0..3)
        .map(|i| Exporter::start(&[&files.config_arg(), &format!("--scheduler.shard={i}/3")]))
        .collect();

    let owners = owners_of(&instances, TARGETS);
    assert_eq!(
        owners.keys().cloned().collect::<Vec<_>>(),
        names,
        "every target probed"
    );
    for (name, on) in &owners {
        assert_eq!(on.len(), 1, "{name} is probed by instances {on:?}");
    }
    // Each instance has a share, and says which shard it is.
    for (i, instance) in instances.iter().enumerate() {
        let mine = owners.values().filter(|on| on[0] == i).count();
        assert!(mine > 0, "instance {i} probes nothing: {owners:?}");
        let page = instance.get("/metrics").body;
        assert!(
            page.contains(&format!(
                "smtp_prober_scheduler_shard_info{{shard=\"{i}\",shards=\"3\"}} 1"
            )),
            "instance {i}:\n{page}"
        );
        // The scheduled counters exist for its own targets only.
        for (name, on) in &owners {
            let counted = page.contains(&format!("smtp_prober_probes_total{{name=\"{name}\""));
            assert_eq!(counted, on[0] == i, "{name} counted on instance {i}");
        }
    }

    // A reload that adds targets keeps the old ones where they were and spreads the new ones.
    let more: Vec<String> = (0..TARGETS + 6).map(|i| format!("mx-{i:02}")).collect();
    files.write(&config(&files, &server, &more));
    for instance in &instances {
        assert_eq!(instance.post("/-/reload").status, 200);
    }
    let after = owners_of(&instances, more.len());
    assert_eq!(after.len(), more.len());
    for (name, on) in &after {
        assert_eq!(
            on.len(),
            1,
            "{name} is probed by instances {on:?} after the reload"
        );
        if let Some(before) = owners.get(name) {
            assert_eq!(before, on, "{name} moved to another shard");
        }
    }
}

#[test]
fn one_of_one_runs_every_target() {
    let mut servers = Servers::new();
    let server = servers.healthy();
    let files = Files::new();
    let names: Vec<String> = (0..4).map(|i| format!("t{i}")).collect();
    files.write(&config(&files, &server, &names));
    let all = Exporter::start(&[&files.config_arg(), "--scheduler.shard=0/1"]);
    let owners = owners_of(std::slice::from_ref(&all), names.len());
    assert_eq!(owners.len(), names.len());
}

#[test]
fn bad_shards_are_usage_errors() {
    for (value, says) in [
        ("3/3", "shard 3 does not exist among 3"),
        ("0/0", "at least 1"),
        ("1", "expected I/N"),
        ("a/3", "expected I/N"),
    ] {
        let out = Command::new(BIN)
            .args(["serve", &format!("--scheduler.shard={value}")])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{value}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(says), "{value}: {stderr}");
    }
}
