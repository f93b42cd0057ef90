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
