//! External programs the integration tests run: found in `PATH` or the sbin directories (which a
//! non-root `PATH` may lack), and run with their output shown when they fail.

use std::path::PathBuf;
use std::process::Command;

/// The program `name` in `PATH` or an sbin directory.
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let extra = ["/usr/sbin", "/sbin", "/usr/local/sbin"].map(PathBuf::from);
    std::env::split_paths(&path)
        .chain(extra)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Runs `program args`; panics with its output unless it succeeds, else returns the output.
pub fn run_checked(program: &str, args: &[&str]) -> String {
    let path = find_program(program).unwrap_or_else(|| PathBuf::from(program));
    let out = Command::new(path)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {program}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{program} {args:?} failed:\n{text}");
    text
}

/// Whether every one of `programs` is installed. When one is missing, `test` is skipped with
/// one line on stderr naming what is missing and the `packages` that bring it; with `CI` set,
/// a missing program fails the test instead (a CI run must run it).
pub fn installed(test: &str, programs: &[&str], packages: &str) -> bool {
    let missing: Vec<&str> = programs
        .iter()
        .copied()
        .filter(|p| find_program(p).is_none())
        .collect();
    if missing.is_empty() {
        return true;
    }
    skip(
        test,
        &format!(
            "{} not installed (bash scripts/test.sh installs {packages})",
            missing.join(", ")
        ),
    );
    false
}

/// Skips `test` with one line on stderr saying `why`; with `CI` set, fails it instead. The
/// line is written to stderr itself, past the test harness's capture, so that a plain
/// `cargo test` shows it.
pub fn skip(test: &str, why: &str) {
    let line = format!("{test}: skipped: {why}");
    assert!(std::env::var_os("CI").is_none(), "{line}; CI is set");
    say(&line);
}

/// One line on stderr, written past the test harness's capture (a skip, an artifact's path).
pub fn say(line: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "{line}");
}
