//! Secrets (passwords, tokens, client secrets): a string that never prints itself.
//!
//! `Debug` and `Display` show `<redacted>`, so a secret that ends up in a log line, a debug page
//! or a test snapshot by mistake shows nothing. The value is reached only through [`Secret::expose`].
//!
//! Every secret file (`password_file`, `token_file`, `client_secret_file`,
//! `--auth-password-file`) is read by [`Secret::from_file`]: a regular file of at most
//! [`MAX_SECRET_FILE_BYTES`], read with [`crate::local_file`] (a FIFO or a device is refused,
//! never waited on). Errors name the file and the cause, never the content.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::local_file::FileError;

/// Secret files are small; a bound keeps a mistaken path (a log, an image) from eating memory.
pub const MAX_SECRET_FILE_BYTES: u64 = 64 * 1024;

/// Why a secret file cannot be used. Never contains the file's content.
#[derive(Debug, thiserror::Error)]
pub enum SecretFileError {
    /// Opening or reading failed, or the path is not a regular file.
    #[error("cannot read secret file {}: {cause}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        cause: FileError,
    },
    /// Larger than any secret.
    #[error("secret file {} is larger than {MAX_SECRET_FILE_BYTES} bytes; is it the right file?", .0.display())]
    TooLarge(PathBuf),
    /// Not UTF-8.
    #[error("secret file {} is not UTF-8 text", .0.display())]
    NotText(PathBuf),
    /// Nothing but whitespace.
    #[error("secret file {} is empty", .0.display())]
    Empty(PathBuf),
}

/// A secret value. Compare and use it only through [`Secret::expose`].
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// Reads a secret file, dropping surrounding whitespace (the usual trailing newline).
    /// Blocking, but never on a FIFO or a device: call it off the async runtime.
    pub fn from_file(path: &Path) -> Result<Secret, SecretFileError> {
        let bytes = crate::local_file::read(path, MAX_SECRET_FILE_BYTES).map_err(|e| match e {
            FileError::TooLarge(_) => SecretFileError::TooLarge(path.to_path_buf()),
            cause => SecretFileError::Read {
                path: path.to_path_buf(),
                cause,
            },
        })?;
        let text = String::from_utf8(bytes).map_err(|_| SecretFileError::NotText(path.into()))?;
        let secret = Secret::new(text.trim());
        if secret.is_empty() {
            return Err(SecretFileError::Empty(path.into()));
        }
        Ok(secret)
    }

    /// [`Secret::from_file`] on a blocking thread, given up on at `deadline` (a file on a hung
    /// network mount must not hold a probe past its deadline).
    pub async fn from_file_by(
        path: &Path,
        deadline: std::time::Instant,
    ) -> Result<Secret, SecretFileError> {
        let owned = path.to_path_buf();
        let read = tokio::task::spawn_blocking(move || Secret::from_file(&owned));
        let gave_up = |why: &str| SecretFileError::Read {
            path: path.to_path_buf(),
            cause: FileError::Io(std::io::Error::new(std::io::ErrorKind::TimedOut, why)),
        };
        match tokio::time::timeout_at(deadline.into(), read).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(gave_up("the read was interrupted")),
            Err(_) => Err(gave_up("no answer before the probe deadline")),
        }
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
