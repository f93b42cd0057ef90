//! `${ENV}` references and secret files: the two ways a secret reaches the configuration.
//!
//! A reference is `${NAME}` with `NAME` a shell-style variable name; it may appear anywhere in
//! the fields that accept it (listed in the `config` module documentation), and a `$` that does
//! not start a reference is kept as it is. A variable that is not set is an error naming it: a
//! silently empty password or path would only fail later, at probe time, in a less clear way.
//!
//! Error messages here never contain a secret: not the content of a file, not the value of a
//! variable.

use crate::local_file::FileError;
use crate::secret::{Secret, SecretFileError};
use std::path::{Path, PathBuf};

/// Looks up an environment variable (the process environment, or a table in tests).
pub(crate) type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process environment; a value that is not UTF-8 counts as unset.
pub(crate) fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Why a value with `${NAME}` references could not be expanded.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ExpandError {
    /// `${` without `}`.
    #[error("unterminated ${{ reference (write ${{NAME}})")]
    Unterminated,
    /// Not a shell-style variable name.
    #[error("invalid environment variable name {0:?} in ${{...}} reference")]
    InvalidName(String),
    /// The variable is not set.
    #[error("environment variable {0} is not set")]
    Unset(String),
}

/// Replaces every `${NAME}` in `text` with the variable's value.
pub(crate) fn expand(text: &str, env: Env<'_>) -> Result<String, ExpandError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}').ok_or(ExpandError::Unterminated)?;
        let name = &after[..end];
        if !is_variable_name(name) {
            return Err(ExpandError::InvalidName(name.to_string()));
        }
        let value = env(name).ok_or_else(|| ExpandError::Unset(name.to_string()))?;
        out.push_str(&value);
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

/// Reads a secret file ([`Secret::from_file`]).
pub(crate) fn read_secret_file(path: &Path) -> Result<Secret, SecretFileError> {
    Secret::from_file(path)
}

/// Why a file a probe will read later (a token file, a CA file) cannot be read now.
#[derive(Debug, thiserror::Error)]
#[error("cannot read {}: {cause}", path.display())]
pub(crate) struct UnreadableFile {
    /// The file.
    path: PathBuf,
    /// Why: it cannot be opened, is not a regular file, or is larger than `max`.
    cause: FileError,
}

/// Checks that a file (a token file, a CA file) is a regular file of at most `max` bytes that
/// can be opened now, without keeping its content.
pub(crate) fn check_readable(path: &Path, max: u64) -> Result<(), UnreadableFile> {
    crate::local_file::check(path, max).map_err(|cause| UnreadableFile {
        path: path.to_path_buf(),
        cause,
    })
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
        let expand = |text| expand(text, &env).map_err(|e| e.to_string());
        assert_eq!(
            expand("${NOPE}").unwrap_err(),
            "environment variable NOPE is not set"
        );
        assert_eq!(
            expand("${USER_NAME").unwrap_err(),
            "unterminated ${ reference (write ${NAME})"
        );
        assert_eq!(
            expand("${1X}").unwrap_err(),
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
            read_secret_file(&path).unwrap_err().to_string(),
            format!("secret file {} is empty", path.display())
        );
        std::fs::write(&path, vec![b'a'; 70_000]).unwrap();
        assert!(read_secret_file(&path)
            .unwrap_err()
            .to_string()
            .ends_with("is larger than 65536 bytes; is it the right file?"));
    }
}
