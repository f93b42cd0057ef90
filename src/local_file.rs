//! Reading the small local files the exporter is pointed at (the configuration, the web
//! configuration, secret and token files, certificate and CA files), one way for all of them:
//! regular files only, bounded, and never blocking on what is not a file.
//!
//! A path that names a FIFO would block `open(2)` until a writer comes, and a device such as
//! `/dev/zero` never ends: both are refused before a byte is read. The file is opened with
//! `O_NONBLOCK` (which `open(2)` honours for FIFOs and which regular files ignore), its type is
//! taken from the open descriptor (so a symlink swapped after a check cannot change it), and at
//! most the bound plus one byte is read.

use std::io::Read as _;
use std::os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _};
use std::path::Path;

/// Why a local file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// Opening or reading failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// Not a regular file: a FIFO, a device, a socket or a directory.
    #[error("is {0}, not a regular file")]
    NotRegular(&'static str),
    /// Larger than the bound.
    #[error("larger than {0} bytes")]
    TooLarge(u64),
}

/// Opens `path` for reading without blocking, and checks that it is a regular file of at most
/// `max` bytes.
fn open(path: &Path, max: u64) -> Result<std::fs::File, FileError> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    let kind = meta.file_type();
    let what = if kind.is_file() {
        None
    } else if kind.is_fifo() {
        Some("a FIFO (named pipe)")
    } else if kind.is_char_device() {
        Some("a character device")
    } else if kind.is_block_device() {
        Some("a block device")
    } else if kind.is_socket() {
        Some("a socket")
    } else if kind.is_dir() {
        Some("a directory")
    } else {
        Some("a special file")
    };
    if let Some(what) = what {
        return Err(FileError::NotRegular(what));
    }
    if meta.len() > max {
        return Err(FileError::TooLarge(max));
    }
    Ok(file)
}

/// Reads a whole regular file of at most `max` bytes. Blocking: call it off the async runtime.
pub fn read(path: &Path, max: u64) -> Result<Vec<u8>, FileError> {
    let file = open(path, max)?;
    let mut bytes = Vec::new();
    // The size was checked, but a file can grow between the check and the read.
    file.take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(FileError::TooLarge(max));
    }
    Ok(bytes)
}

/// Checks that `path` is a regular file of at most `max` bytes that can be opened now, without
/// reading it (a file a probe reads later).
pub fn check(path: &Path, max: u64) -> Result<(), FileError> {
    open(path, max).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_regular_files_within_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"hello").unwrap();
        assert_eq!(read(&path, 5).unwrap(), b"hello");
        assert!(check(&path, 5).is_ok());
        assert_eq!(
            read(&path, 4).unwrap_err().to_string(),
            "larger than 4 bytes"
        );
        assert_eq!(
            read(dir.path(), 4).unwrap_err().to_string(),
            "is a directory, not a regular file"
        );
    }

    #[test]
    fn refuses_devices_and_fifos_without_blocking() {
        assert_eq!(
            read(Path::new("/dev/zero"), 1024).unwrap_err().to_string(),
            "is a character device, not a regular file"
        );
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        assert!(made.expect("mkfifo (coreutils)").success());
        // A blocking open would wait here forever for a writer.
        assert_eq!(
            read(&fifo, 1024).unwrap_err().to_string(),
            "is a FIFO (named pipe), not a regular file"
        );
        assert!(check(&fifo, 1024).is_err());
    }
}
