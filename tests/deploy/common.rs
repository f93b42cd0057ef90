//! What the deploy checks share: the repository, finding tools, running them, reading YAML.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

pub use crate::support::programs::say;
use crate::support::programs::{find_program, skip};

/// The repository root.
pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The smtp-prober binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_smtp-prober");

/// `name` on PATH (and the sbin directories), or in the tools environment of scripts/test.sh.
pub fn find_tool(name: &str) -> Option<PathBuf> {
    find_program(name).or_else(|| {
        let candidate = repo().join("target/tools/venv/bin").join(name);
        candidate.is_file().then_some(candidate)
    })
}

/// `name`, or `None` after one line saying which check is skipped. With CI set, a missing tool
/// fails the test instead: scripts/test.sh installs every one of them.
pub fn require(name: &str, check: &str) -> Option<PathBuf> {
    let found = find_tool(name);
    if found.is_none() {
        skip(
            check,
            &format!("{name} not installed (bash scripts/test.sh installs it)"),
        );
    }
    found
}

/// `name`, or `None` after one line saying which check is skipped, also with CI set: for tools
/// no package registry reachable from CI carries (kubectl).
pub fn optional(name: &str, check: &str) -> Option<PathBuf> {
    let found = find_tool(name);
    if found.is_none() {
        say(&format!(
            "{check}: skipped: {name} not installed (no registry here carries it)"
        ));
    }
    found
}

/// Runs `command`, asserts it succeeded, and returns its stdout and stderr together.
pub fn run_ok(command: &mut Command) -> String {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("running {command:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\n{text}",
        output.status
    );
    text
}

/// A file of the repository as text.
pub fn read(relative: &str) -> String {
    std::fs::read_to_string(repo().join(relative))
        .unwrap_or_else(|e| panic!("reading {relative}: {e}"))
}

/// One YAML document as a JSON value.
pub fn yaml(text: &str, what: &str) -> Value {
    serde_saphyr::from_str(text).unwrap_or_else(|e| panic!("{what} is not YAML: {e}"))
}

/// Every document of a YAML stream (empty documents left out).
pub fn yaml_documents(text: &str, what: &str) -> Vec<Value> {
    let documents: Vec<Value> =
        serde_saphyr::from_multiple(text).unwrap_or_else(|e| panic!("{what} is not YAML: {e}"));
    documents.into_iter().filter(|d| !d.is_null()).collect()
}

/// A string field, or a panic naming it.
pub fn string<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no string at {pointer} in {value}"))
}

/// Validates `document` against a JSON schema of tests/data/schemas with check-jsonschema.
pub fn check_schema(schema: &str, document: &Value, what: &str) {
    let Some(tool) = require("check-jsonschema", "JSON schema checks") else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("document.json");
    std::fs::write(&file, document.to_string()).expect("writing the document");
    let schema = repo().join("tests/data/schemas").join(schema);
    let output = Command::new(tool)
        .arg("--schemafile")
        .arg(&schema)
        .arg(&file)
        .output()
        .expect("running check-jsonschema");
    assert!(
        output.status.success(),
        "{what} does not match {}:\n{}{}",
        schema.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Runs `smtp-prober check-config` on `config` and asserts it loads.
pub fn check_config(config: &Path, env: &[(&str, &Path)]) -> String {
    let mut command = Command::new(BIN);
    command
        .arg("check-config")
        .arg(format!("--config.file={}", config.display()));
    for (key, value) in env {
        command.env(key, value);
    }
    run_ok(&mut command)
}

/// The values of `--NAME=VALUE` in an argument list.
pub fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    let prefix = format!("--{name}=");
    args.iter().find_map(|a| a.strip_prefix(&prefix))
}

/// The port of the default listen address in `smtp-prober serve --help` (`:9741`).
pub fn default_port() -> u16 {
    let help = run_ok(Command::new(BIN).args(["serve", "--help"]));
    let at = help
        .find("[default: :")
        .expect("a default listen address in serve --help");
    let rest = &help[at + "[default: :".len()..];
    rest[..rest.find(']').unwrap()].parse().expect("a port")
}
