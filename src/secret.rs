//! Secrets (passwords, tokens, client secrets): a string that never prints itself.
//!
//! `Debug` and `Display` show `<redacted>`, so a secret that ends up in a log line, a debug page
//! or a test snapshot by mistake shows nothing. The value is reached only through [`Secret::expose`].

use std::fmt;

/// A secret value. Compare and use it only through [`Secret::expose`].
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// Reads a secret file: surrounding whitespace (the usual trailing newline) is dropped.
    pub fn from_file(path: &std::path::Path) -> std::io::Result<Secret> {
        Ok(Secret(std::fs::read_to_string(path)?.trim().to_string()))
    }

    /// The value itself, for the wire only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the secret is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_itself() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "<redacted> <redacted>");
        assert_eq!(s.expose(), "hunter2");
    }
}
