//! The Grafana dashboards of `dashboards/*.json` as data: their panels (rows included), their
//! template variables and the PromQL of every panel query, and Grafana's interpolation of
//! variables into that PromQL, so that tests can check the JSON and run each query against a
//! real Prometheus with real values.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::Value;

/// One dashboard file.
pub struct Dashboard {
    pub file: String,
    pub json: Value,
}

/// Every `dashboards/*.json`, sorted by file name.
pub fn all() -> Vec<Dashboard> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboards");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("dashboards/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("reading a dashboard");
            Dashboard {
                file: p.file_name().unwrap().to_string_lossy().into_owned(),
                json: serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("{}: not JSON: {e}", p.display())),
            }
        })
        .collect()
}

/// A dashboard by its file name.
pub fn by_file(file: &str) -> Dashboard {
    all()
        .into_iter()
        .find(|d| d.file == file)
        .unwrap_or_else(|| panic!("no dashboards/{file}"))
}

/// One query of one panel.
#[derive(Clone, Debug)]
pub struct Query {
    pub panel: String,
    pub ref_id: String,
    pub expr: String,
    /// An instant query (tables, stats); otherwise a range query over the dashboard's time.
    pub instant: bool,
}

impl Dashboard {
    /// Every panel, those inside rows too, in order.
    pub fn panels(&self) -> Vec<&Value> {
        let mut out = Vec::new();
        for p in self.json["panels"].as_array().expect("panels") {
            out.push(p);
            if let Some(inner) = p["panels"].as_array() {
                out.extend(inner);
            }
        }
        out
    }

    pub fn title(&self) -> &str {
        self.json["title"].as_str().unwrap_or_default()
    }

    /// The template variables, in order.
    pub fn variables(&self) -> Vec<&Value> {
        self.json["templating"]["list"]
            .as_array()
            .map(|l| l.iter().collect())
            .unwrap_or_default()
    }

    /// The titles of the row panels, in order.
    pub fn rows(&self) -> Vec<String> {
        self.panels()
            .iter()
            .filter(|p| p["type"] == "row")
            .map(|p| p["title"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    /// Every query of every panel.
    pub fn queries(&self) -> Vec<Query> {
        let mut out = Vec::new();
        for p in self.panels() {
            for t in p["targets"].as_array().into_iter().flatten() {
                out.push(Query {
                    panel: p["title"].as_str().unwrap_or_default().to_string(),
                    ref_id: t["refId"].as_str().unwrap_or_default().to_string(),
                    expr: t["expr"].as_str().unwrap_or_default().to_string(),
                    instant: t["instant"] == true,
                });
            }
        }
        out
    }

    /// The panel titled `title`.
    pub fn panel(&self, title: &str) -> &Value {
        self.panels()
            .into_iter()
            .find(|p| p["title"] == title)
            .unwrap_or_else(|| panic!("{}: no panel {title:?}", self.file))
    }
}

/// The value a variable takes.
#[derive(Clone, Debug)]
pub enum VarValue {
    /// One value (Grafana's "None" is the empty value).
    One(String),
    /// "All" of a multi-value variable without a custom all value: every option.
    All(Vec<String>),
    /// "All" with the variable's custom all value (a regex such as `.*`).
    AllValue(String),
}

/// Escapes regex metacharacters as Grafana's Prometheus data source does for multi values.
fn regex_escape(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if "\\^$*+?.()|{}[]".contains(c) {
            out.push('\\');
            // Inside a PromQL string a backslash is escaped once more.
            out.push('\\');
        }
        out.push(c);
    }
    out
}

impl VarValue {
    fn render(&self) -> String {
        match self {
            VarValue::One(v) => v.clone(),
            VarValue::AllValue(v) => v.clone(),
            VarValue::All(values) => format!(
                "({})",
                values
                    .iter()
                    .map(|v| regex_escape(v))
                    .collect::<Vec<_>>()
                    .join("|")
            ),
        }
    }
}

/// Replaces `$name` and `${name}` of every variable in `vars` and of Grafana's built-in
/// `$__interval`, `$__rate_interval` and `$__range` (given in `builtins`), longest names first.
pub fn interpolate(
    expr: &str,
    vars: &BTreeMap<String, VarValue>,
    builtins: &[(&str, &str)],
) -> String {
    let mut names: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| (k.clone(), v.render()))
        .chain(builtins.iter().map(|(k, v)| (k.to_string(), v.to_string())))
        .collect();
    names.sort_by_key(|(k, _)| std::cmp::Reverse(k.len()));
    let mut out = expr.to_string();
    for (name, value) in names {
        out = out.replace(&format!("${{{name}}}"), &value);
        out = out.replace(&format!("${name}"), &value);
    }
    out
}

/// The names `$name` / `${name}` an expression refers to.
pub fn referenced_variables(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'$' {
            let braced = bytes.get(i + 1) == Some(&b'{');
            let start = if braced { i + 2 } else { i + 1 };
            let mut end = start;
            while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
                end += 1;
            }
            // `$1` in label_replace is a capture group, not a variable.
            if end > start && !bytes[start].is_ascii_digit() {
                out.push(expr[start..end].to_string());
            }
            i = end;
        } else {
            i += 1;
        }
    }
    out
}

/// A `label_values(selector, label)` or `label_values(label)` variable query, split.
pub fn label_values(definition: &str) -> (Option<String>, String) {
    let inner = definition
        .trim()
        .strip_prefix("label_values(")
        .and_then(|s| s.strip_suffix(')'))
        .unwrap_or_else(|| panic!("not a label_values query: {definition}"));
    match inner.rsplit_once(',') {
        Some((selector, label)) => (Some(selector.trim().to_string()), label.trim().to_string()),
        None => (None, inner.trim().to_string()),
    }
}

/// How a test sets a variable.
#[derive(Clone, Debug)]
pub enum Choice {
    /// Grafana's "All".
    All,
    /// This value, which must be one of the variable's options ("" for a variable without
    /// options: Grafana's "None").
    Value(String),
}

/// The time a dashboard shows, in Unix seconds.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    pub start: f64,
    pub end: f64,
}

impl Window {
    /// From `start` to now.
    pub fn since(start: std::time::SystemTime) -> Window {
        let unix = |t: std::time::SystemTime| {
            t.duration_since(std::time::UNIX_EPOCH)
                .expect("after 1970")
                .as_secs_f64()
        };
        Window {
            start: unix(start),
            end: unix(std::time::SystemTime::now()),
        }
    }

    fn builtins(&self) -> [(&'static str, String); 3] {
        [
            ("__interval", "2s".to_string()),
            ("__rate_interval", "10s".to_string()),
            (
                "__range",
                format!("{}s", (self.end - self.start).ceil() as u64),
            ),
        ]
    }
}

/// What one panel query returned.
#[derive(Debug)]
pub struct Outcome {
    pub panel: String,
    pub ref_id: String,
    /// The PromQL sent, variables interpolated.
    pub expr: String,
    /// Series (a vector's samples, or a matrix's series with at least one point).
    pub series: Vec<Value>,
}

impl Dashboard {
    /// Runs every query variable's `label_values` against `prometheus` over `window` (each with
    /// the variables before it interpolated), checks that each choice is among the options it
    /// returns, and returns the values to interpolate.
    pub fn resolve_variables(
        &self,
        prometheus: &super::prometheus::Prometheus,
        window: Window,
        choices: &[(&str, Choice)],
    ) -> BTreeMap<String, VarValue> {
        let mut resolved = BTreeMap::new();
        for v in self.variables() {
            if v["type"] != "query" {
                continue;
            }
            let name = v["name"].as_str().unwrap_or_default();
            let definition =
                interpolate(v["definition"].as_str().unwrap_or_default(), &resolved, &[]);
            let (selector, label) = label_values(&definition);
            let start = window.start.to_string();
            let end = window.end.to_string();
            let mut params = vec![("start", start.as_str()), ("end", end.as_str())];
            if let Some(s) = &selector {
                params.push(("match[]", s.as_str()));
            }
            let options: Vec<String> = prometheus
                .api_with(&format!("/api/v1/label/{label}/values"), &params)
                .unwrap_or_else(|e| panic!("{}: variable {name}: {definition}: {e}", self.file))
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            let choice = choices
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, c)| c.clone())
                .unwrap_or_else(|| panic!("{}: no choice for variable {name}", self.file));
            let value = match choice {
                Choice::All => {
                    assert!(
                        !options.is_empty(),
                        "{}: variable {name} has no options",
                        self.file
                    );
                    match v["allValue"].as_str() {
                        Some(all) if !all.is_empty() => VarValue::AllValue(all.to_string()),
                        _ => VarValue::All(options),
                    }
                }
                Choice::Value(value) => {
                    assert!(
                        options.contains(&value) || (value.is_empty() && options.is_empty()),
                        "{}: variable {name} ({definition}) offers {options:?}, not {value:?}",
                        self.file
                    );
                    VarValue::One(value)
                }
            };
            resolved.insert(name.to_string(), value);
        }
        resolved
    }

    /// Runs every panel query with `vars` over `window` (instant queries at its end, range
    /// queries over it), panicking on any query Prometheus rejects.
    pub fn run(
        &self,
        prometheus: &super::prometheus::Prometheus,
        window: Window,
        vars: &BTreeMap<String, VarValue>,
    ) -> Vec<Outcome> {
        let builtins = window.builtins();
        let builtins: Vec<(&str, &str)> = builtins.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let mut out = Vec::new();
        for q in self.queries() {
            let expr = interpolate(&q.expr, vars, &builtins);
            let (start, end) = (window.start.to_string(), window.end.to_string());
            let result = if q.instant {
                prometheus.api_with("/api/v1/query", &[("query", &expr), ("time", &end)])
            } else {
                prometheus.api_with(
                    "/api/v1/query_range",
                    &[
                        ("query", &expr),
                        ("start", &start),
                        ("end", &end),
                        ("step", "2"),
                    ],
                )
            };
            let data = result.unwrap_or_else(|e| {
                panic!(
                    "{}: panel {:?} query {}: {e}\n{expr}",
                    self.file, q.panel, q.ref_id
                )
            });
            let series = data["result"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter(|s| {
                    s.get("value").is_some()
                        || s["values"].as_array().is_some_and(|v| !v.is_empty())
                })
                .collect();
            out.push(Outcome {
                panel: q.panel,
                ref_id: q.ref_id,
                expr,
                series,
            });
        }
        out
    }
}

/// The titles of the panels none of whose queries returned data.
pub fn empty_panels(outcomes: &[Outcome]) -> BTreeSet<String> {
    let mut panels: BTreeMap<&str, bool> = BTreeMap::new();
    for o in outcomes {
        *panels.entry(&o.panel).or_default() |= !o.series.is_empty();
    }
    panels
        .into_iter()
        .filter(|(_, has)| !has)
        .map(|(p, _)| p.to_string())
        .collect()
}

/// The queries that returned nothing, for messages.
pub fn empty_queries(outcomes: &[Outcome]) -> Vec<String> {
    outcomes
        .iter()
        .filter(|o| o.series.is_empty())
        .map(|o| format!("{} {}: {}", o.panel, o.ref_id, o.expr))
        .collect()
}
