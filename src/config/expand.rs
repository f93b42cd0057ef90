//! `${ENV}` references and secret files: the two ways a secret reaches the configuration.
//!
//! A reference is `${NAME}` with `NAME` a shell-style variable name; it may appear anywhere in
//! the fields that accept it (listed in the `config` module documentation), and a `$` that does
//! not start a reference is kept as it is. A variable that is not set is an error naming it: a
//! silently empty password or path would only fail later, at probe time, in a less clear way.
//!
//! Error messages here never contain a secret: not the content of a file, not the value of a
//! variable.

use crate::secret::Secret;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Looks up an environment variable (the process environment, or a table in tests).
pub(crate) type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process environment; a value that is not UTF-8 counts as unset.
pub(crate) fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Replaces every `${NAME}` in `text` with the variable's value.
pub(crate) fn expand(text: &str, env: Env<'_>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err("unterminated ${ reference (write ${NAME})".to_string());
        };
        let name = &after[..end];
        if !is_variable_name(name) {
            return Err(format!(
                "invalid environment variable name {:?} in ${{...}} reference",
                name
            ));
        }
        match env(name) {
            Some(value) => out.push_str(&value),
            None => return Err(format!("environment variable {name} is not set")),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The variable named by a value that is exactly one `${NAME}` reference, else `None`.
pub(crate) fn sole_reference(text: &str) -> Option<&str> {
    let name = text.trim().strip_prefix("${")?.strip_suffix('}')?;
    is_variable_name(name).then_some(name)
}

/// `[A-Za-z_][A-Za-z0-9_]*`.
fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Secret files are small; a bound keeps a mistaken path (a log, a device) from eating memory.
const MAX_SECRET_BYTES: u64 = 64 * 1024;

/// Reads a secret file, dropping surrounding whitespace (the usual trailing newline).
/// The error names the file and the cause, never the content.
pub(crate) fn read_secret_file(path: &Path) -> Result<Secret, String> {
    let shown = path.display();
    let cannot = |e: std::io::Error| format!("cannot read secret file {shown}: {e}");
    let file = std::fs::File::open(path).map_err(cannot)?;
    let mut bytes = Vec::new();
    file.take(MAX_SECRET_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    if bytes.len() as u64 > MAX_SECRET_BYTES {
        return Err(format!(
            "secret file {shown} is larger than {MAX_SECRET_BYTES} bytes; is it the right file?"
        ));
    }
    let text =
        String::from_utf8(bytes).map_err(|_| format!("secret file {shown} is not UTF-8 text"))?;
    let secret = Secret::new(text.trim());
    if secret.is_empty() {
        return Err(format!("secret file {shown} is empty"));
    }
    Ok(secret)
}

/// Checks that a file (a token file, a CA file) can be opened now, without keeping its content.
pub(crate) fn check_readable(path: &Path) -> Result<(), String> {
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    if meta.is_dir() {
        return Err(format!("{shown} is a directory, not a file"));
    }
    std::fs::File::open(path)
        .map(|_| ())
        .map_err(|e| format!("cannot read {shown}: {e}"))
}

/// A path from the file: relative paths are taken from the configuration file's directory,
/// as Prometheus does, so that a configuration works whatever the working directory is.
pub(crate) fn resolve_path(text: &str, base_dir: Option<&Path>) -> PathBuf {
    let path = PathBuf::from(text);
    match base_dir {
        Some(base) if path.is_relative() => base.join(path),
        _ => path,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "USER_NAME" => Some("probe@example.com".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expands_references_anywhere() {
        assert_eq!(expand("${USER_NAME}", &env).unwrap(), "probe@example.com");
        assert_eq!(
            expand("a-${USER_NAME}-b", &env).unwrap(),
            "a-probe@example.com-b"
        );
        assert_eq!(expand("x${EMPTY}y", &env).unwrap(), "xy");
        assert_eq!(expand("cost $5 {x}", &env).unwrap(), "cost $5 {x}");
    }

    #[test]
    fn reports_missing_and_malformed_references() {
        assert_eq!(
            expand("${NOPE}", &env).unwrap_err(),
            "environment variable NOPE is not set"
        );
        assert_eq!(
            expand("${USER_NAME", &env).unwrap_err(),
            "unterminated ${ reference (write ${NAME})"
        );
        assert_eq!(
            expand("${1X}", &env).unwrap_err(),
            "invalid environment variable name \"1X\" in ${...} reference"
        );
    }

    #[test]
    fn sole_reference_accepts_only_one_whole_reference() {
        assert_eq!(sole_reference("${SMTP_PASSWORD}"), Some("SMTP_PASSWORD"));
        assert_eq!(sole_reference("hunter2"), None);
        assert_eq!(sole_reference("pre${X}"), None);
        assert_eq!(sole_reference("${A}${B}"), None);
    }

    #[test]
    fn secret_file_is_trimmed_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        std::fs::write(&path, "hunter2\n").unwrap();
        assert_eq!(read_secret_file(&path).unwrap().expose(), "hunter2");
        std::fs::write(&path, "\n").unwrap();
        assert_eq!(
            read_secret_file(&path).unwrap_err(),
            format!("secret file {} is empty", path.display())
        );
        std::fs::write(&path, vec![b'a'; 70_000]).unwrap();
        assert!(read_secret_file(&path)
            .unwrap_err()
            .ends_with("is larger than 65536 bytes; is it the right file?"));
    }
}
