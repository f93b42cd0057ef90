//! The Grafana dashboards of `dashboards/`, checked as files: what Grafana needs to import them
//! as they are (schema version, a `datasource` variable and no data source UID anywhere, no
//! legacy panel types), a layout that holds together (unique panel ids, no overlapping grid
//! positions), every panel titled and with a unit, every variable a query refers to defined,
//! the step waterfall in protocol order, and the README describing every row.
//!
//! Every query of every panel also runs against a real Prometheus with real values, healthy and
//! failing, in the end-to-end test of tests/alerts.rs.

mod support;

use std::collections::{BTreeSet, HashSet};

use serde_json::Value;
use smtp_prober::vocab::StepName;
use support::dashboards::{all, by_file, label_values, referenced_variables};

/// Panel types Grafana has replaced (graph, singlestat, the old table) or that need a plugin.
const LEGACY: [&str; 5] = [
    "graph",
    "singlestat",
    "table-old",
    "grafana-piechart-panel",
    "grafana-worldmap-panel",
];

/// Grafana's built-in variables the queries use.
const BUILTINS: [&str; 3] = ["__interval", "__rate_interval", "__range"];

fn uses_the_datasource_variable(v: &Value) -> bool {
    v["type"] == "prometheus" && v["uid"] == "${datasource}"
}

#[test]
fn there_are_the_three_dashboards() {
    let titles: Vec<String> = all().iter().map(|d| d.title().to_string()).collect();
    assert_eq!(
        titles,
        ["SMTP fleet overview", "smtp-prober", "SMTP target"],
        "by file name: smtp-fleet, smtp-prober, smtp-target"
    );
}

#[test]
fn dashboards_import_as_they_are() {
    let mut uids = HashSet::new();
    for d in all() {
        let f = &d.file;
        assert!(
            d.json["schemaVersion"].as_u64().unwrap_or(0) >= 39,
            "{f}: schemaVersion"
        );
        assert!(d.json["id"].is_null(), "{f}: id must be null to import");
        let uid = d.json["uid"].as_str().unwrap_or_default();
        assert!(uid.starts_with("smtp-prober-"), "{f}: uid {uid:?}");
        assert!(uids.insert(uid.to_string()), "{f}: uid {uid} twice");
        let tags = d.json["tags"].as_array().cloned().unwrap_or_default();
        assert!(tags.contains(&Value::from("smtp-prober")), "{f}: tag");
        let vars = d.variables();
        let ds = vars
            .iter()
            .find(|v| v["name"] == "datasource")
            .unwrap_or_else(|| panic!("{f}: no datasource variable"));
        assert_eq!(ds["type"], "datasource", "{f}");
        assert_eq!(ds["query"], "prometheus", "{f}");
        for v in &vars {
            if v["type"] == "query" {
                assert!(uses_the_datasource_variable(&v["datasource"]), "{f}: {v}");
                // The definition is what the test runs; the editor's query must be the same.
                assert_eq!(v["query"]["query"], v["definition"], "{f}: {}", v["name"]);
                label_values(v["definition"].as_str().unwrap_or_default());
            }
        }
        // No data source UID anywhere: every data source object is the variable (or Grafana's
        // own for the built-in annotations).
        let mut datasources = Vec::new();
        collect_datasources(&d.json, &mut datasources);
        assert!(!datasources.is_empty());
        for ds in datasources {
            assert!(
                uses_the_datasource_variable(&ds) || ds["uid"] == "-- Grafana --",
                "{f}: data source {ds}"
            );
        }
    }
}

/// Every `datasource` object in the JSON.
fn collect_datasources(v: &Value, out: &mut Vec<Value>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                if k == "datasource" && v.is_object() {
                    out.push(v.clone());
                } else if k == "datasource" {
                    panic!("a data source given by name or UID: {v}");
                }
                collect_datasources(v, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|i| collect_datasources(i, out)),
        _ => {}
    }
}

#[test]
fn panels_have_unique_ids_titles_units_and_the_datasource_variable() {
    for d in all() {
        let f = &d.file;
        let mut ids = HashSet::new();
        let mut titles = HashSet::new();
        for p in d.panels() {
            let title = p["title"].as_str().unwrap_or_default();
            assert!(
                !title.trim().is_empty(),
                "{f}: a panel without a title: {p}"
            );
            // Tests and the README name panels by title.
            assert!(titles.insert(title), "{f}: two panels titled {title:?}");
            let id = p["id"]
                .as_u64()
                .unwrap_or_else(|| panic!("{f}: {title}: no id"));
            assert!(ids.insert(id), "{f}: panel id {id} twice");
            let kind = p["type"].as_str().unwrap_or_default();
            assert!(!LEGACY.contains(&kind), "{f}: {title}: legacy type {kind}");
            if kind == "row" {
                continue;
            }
            let unit = p["fieldConfig"]["defaults"]["unit"].as_str().unwrap_or("");
            assert!(!unit.is_empty(), "{f}: {title}: no unit");
            assert!(
                !p["description"].as_str().unwrap_or("").is_empty(),
                "{f}: {title}: no description"
            );
            assert!(
                uses_the_datasource_variable(&p["datasource"]),
                "{f}: {title}: {}",
                p["datasource"]
            );
            let targets = p["targets"].as_array().cloned().unwrap_or_default();
            assert!(!targets.is_empty(), "{f}: {title}: no query");
            let mut refs = HashSet::new();
            for t in &targets {
                assert!(
                    uses_the_datasource_variable(&t["datasource"]),
                    "{f}: {title}"
                );
                assert!(
                    !t["expr"].as_str().unwrap_or("").trim().is_empty(),
                    "{f}: {title}"
                );
                assert!(
                    refs.insert(t["refId"].to_string()),
                    "{f}: {title}: refId twice"
                );
            }
        }
    }
}

#[test]
fn grid_positions_do_not_overlap() {
    for d in all() {
        let rects: Vec<(String, u64, u64, u64, u64)> = d
            .panels()
            .iter()
            .map(|p| {
                let g = &p["gridPos"];
                let n = |k: &str| {
                    g[k].as_u64()
                        .unwrap_or_else(|| panic!("{}: gridPos {g}", d.file))
                };
                (p["title"].to_string(), n("x"), n("y"), n("w"), n("h"))
            })
            .collect();
        for (title, x, _, w, h) in &rects {
            assert!(*w > 0 && *h > 0 && x + w <= 24, "{}: {title}", d.file);
        }
        for (i, a) in rects.iter().enumerate() {
            for b in &rects[i + 1..] {
                let apart =
                    a.1 + a.3 <= b.1 || b.1 + b.3 <= a.1 || a.2 + a.4 <= b.2 || b.2 + b.4 <= a.2;
                assert!(apart, "{}: {} overlaps {}", d.file, a.0, b.0);
            }
        }
    }
}

#[test]
fn queries_refer_only_to_defined_variables() {
    for d in all() {
        let defined: BTreeSet<String> = d
            .variables()
            .iter()
            .map(|v| v["name"].as_str().unwrap_or_default().to_string())
            .chain(BUILTINS.iter().map(|b| b.to_string()))
            .collect();
        let definitions = d
            .variables()
            .iter()
            .map(|v| v["definition"].as_str().unwrap_or_default().to_string())
            .collect::<Vec<_>>();
        for q in d.queries() {
            for name in referenced_variables(&q.expr) {
                assert!(defined.contains(&name), "{}: {}: ${name}", d.file, q.panel);
            }
        }
        for def in definitions {
            for name in referenced_variables(&def) {
                assert!(
                    defined.contains(&name),
                    "{}: variable query ${name}",
                    d.file
                );
            }
        }
    }
}

#[test]
fn the_target_dashboard_selects_one_target_of_either_kind() {
    let d = by_file("smtp-target.json");
    for q in d.queries() {
        // name="" selects a /probe target's series, which carry no name label.
        for selector in [
            r#"job="$job""#,
            r#"instance="$instance""#,
            r#"name="$name""#,
        ] {
            assert!(
                q.expr.contains(selector),
                "{}: {selector} in {}",
                q.panel,
                q.expr
            );
        }
    }
}

#[test]
fn the_waterfall_lists_every_step_in_protocol_order() {
    let d = by_file("smtp-target.json");
    let panel = d.panel("Step latency waterfall (last probe)");
    assert_eq!(panel["type"], "barchart");
    let expr = panel["targets"][0]["expr"].as_str().unwrap();
    // Each step gets `order` = its position; the panel sorts by it.
    let mut steps = Vec::new();
    for part in expr.split("\nor ") {
        let step = part
            .split("step=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .unwrap_or_else(|| panic!("no step in {part}"));
        let order = part
            .split("\"order\", \"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .unwrap_or_else(|| panic!("no order in {part}"));
        steps.push((order.to_string(), step.to_string()));
    }
    let want: Vec<(String, String)> = StepName::ALL
        .iter()
        .enumerate()
        .map(|(i, s)| (format!("{:02}", i + 1), s.as_str().to_string()))
        .collect();
    assert_eq!(steps, want);
    let sort = &panel["transformations"][0];
    assert_eq!(sort["id"], "sortBy");
    assert_eq!(sort["options"]["sort"][0]["field"], "order");
    assert_eq!(panel["options"]["xField"], "step");
}

#[test]
fn the_readme_describes_every_dashboard_row() {
    let section = support::readme::section("## Dashboards and alerts");
    for d in all() {
        assert!(section.contains(&d.file), "README: dashboards/{}", d.file);
        let rows = d.rows();
        assert!(!rows.is_empty(), "{}: no rows", d.file);
        for row in rows {
            assert!(
                section.contains(&format!("**{row}**")),
                "README: no description of row {row:?} of {}",
                d.file
            );
        }
    }
}

/// Rows come first in each group: every panel sits below a row, so a row collapses its own.
#[test]
fn every_panel_belongs_to_a_row() {
    for d in all() {
        let panels: Vec<&Value> = d.json["panels"].as_array().unwrap().iter().collect();
        assert_eq!(panels[0]["type"], "row", "{}", d.file);
        let mut row_y = None;
        for p in panels {
            let y = p["gridPos"]["y"].as_u64().unwrap();
            if p["type"] == "row" {
                row_y = Some(y);
            } else {
                assert!(row_y.is_some_and(|r| y > r), "{}: {}", d.file, p["title"]);
            }
        }
    }
}
