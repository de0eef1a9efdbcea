//! The claimed file during one attempt, on the local side: opened safely,
//! and checked against what was claimed once it has been read, so that a
//! file that changes underneath a request is never delivered as if it had
//! not.
//!
//! What a file is decides whether it can be sent, not the errno its open
//! gives: a Unix socket answers `ENXIO`, a FIFO opens (non-blocking), a
//! symlink answers `ELOOP`; each is looked at (`lstat`/`fstat`) and named.
//!
//! Whether it changed is decided by the pure [`compare`]
//! (`crate::rules::change`); [`verify`] gathers what it compares.

use std::fs::{File, FileType, Metadata};
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use spoolpost_protocol::fsops::open_nofollow;

use crate::rules::change::{AfterRead, Change, Stat, compare};

/// What `meta` says the file is, for [`compare`].
fn stat(meta: &Metadata) -> Stat {
    Stat {
        len: meta.len(),
        dev: meta.dev(),
        ino: meta.ino(),
    }
}

#[derive(Debug)]
pub enum OpenError {
    /// The file is gone from the claim folder (someone removed it).
    Vanished,
    /// It cannot be sent at all; the text says why, for the reason record.
    Unsendable(String),
    Io(io::Error),
}

/// Opens a claimed file: never through a symlink, never blocking on a FIFO,
/// and only if it is a regular file.
pub fn open(path: &Path) -> Result<(File, Stat), OpenError> {
    match open_nofollow(path) {
        Ok(file) => {
            let meta = file.metadata().map_err(OpenError::Io)?;
            match not_regular(meta.file_type()) {
                Some(why) => Err(OpenError::Unsendable(why)),
                None => Ok((file, stat(&meta))),
            }
        }
        Err(e) => Err(match std::fs::symlink_metadata(path) {
            Err(gone) if gone.kind() == io::ErrorKind::NotFound => OpenError::Vanished,
            Ok(meta) if not_regular(meta.file_type()).is_some() => {
                OpenError::Unsendable(not_regular(meta.file_type()).unwrap_or_default())
            }
            _ if e.kind() == io::ErrorKind::PermissionDenied => OpenError::Unsendable(format!(
                "cannot read the file ({e}); fix its permissions and requeue it"
            )),
            _ => OpenError::Io(e),
        }),
    }
}

/// Why a file of this type cannot be sent; `None` for a regular file.
fn not_regular(t: FileType) -> Option<String> {
    let what = if t.is_file() {
        return None;
    } else if t.is_symlink() {
        return Some(
            "the file is a symlink; spoolpost does not follow symlinks in the spool".into(),
        );
    } else if t.is_fifo() {
        "a FIFO (named pipe)"
    } else if t.is_socket() {
        "a Unix socket"
    } else if t.is_block_device() || t.is_char_device() {
        "a device"
    } else if t.is_dir() {
        "a folder"
    } else {
        "of an unknown type"
    };
    Some(format!(
        "the file is {what}, not a regular file; only regular files are sent"
    ))
}

/// Checks an open file once its reading reached the end (`read` bytes).
///
/// One `lstat` of the name does when the name still holds the file opened:
/// it then shows that file's length and links, as an `fstat` would. Only
/// when the name holds another file, or none, is the open file asked.
pub fn verify(file: &File, path: &Path, claimed: Stat, read: u64) -> Result<(), Change> {
    let named = std::fs::symlink_metadata(path).ok();
    let at_path = named.as_ref().map(stat);
    let open = match named {
        Some(meta) if (meta.dev(), meta.ino()) == (claimed.dev, claimed.ino) => meta,
        _ => match file.metadata() {
            Ok(meta) => meta,
            // An fstat of an open descriptor does not fail; if it ever
            // does, nothing vouches for the file.
            Err(_) => return Err(Change::Removed),
        },
    };
    let after = AfterRead {
        read,
        open: stat(&open),
        nlink: open.nlink(),
        at_path,
    };
    match compare(claimed, after) {
        Some(change) => Err(change),
        None => Ok(()),
    }
}

/// An `io::Error` that carries a [`Change`], to end a body stream with.
pub fn change_error(change: Change) -> io::Error {
    io::Error::other(change.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `verify` on real files: the one `lstat` of an unchanged name must
    /// still see a file that grew or was truncated, and another file or
    /// none at the name.
    #[test]
    fn verify_sees_each_change_through_the_name() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let claim = |body: &[u8]| {
            std::fs::write(&path, body).unwrap();
            open(&path).unwrap()
        };
        let (file, claimed) = claim(b"abcd");
        assert_eq!(verify(&file, &path, claimed, 4), Ok(()));

        let (file, claimed) = claim(b"abcd");
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"e")
            .unwrap();
        assert_eq!(
            verify(&file, &path, claimed, 4),
            Err(Change::Grew { claimed: 4 })
        );

        let (file, claimed) = claim(b"abcd");
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(2)
            .unwrap();
        assert_eq!(
            verify(&file, &path, claimed, 4),
            Err(Change::Truncated {
                claimed: 4,
                read: 2
            })
        );

        let (file, claimed) = claim(b"abcd");
        let other = dir.path().join("other");
        std::fs::write(&other, b"abcd").unwrap();
        std::fs::rename(&other, &path).unwrap();
        assert_eq!(verify(&file, &path, claimed, 4), Err(Change::Replaced));

        let (file, claimed) = claim(b"abcd");
        std::fs::remove_file(&path).unwrap();
        assert_eq!(verify(&file, &path, claimed, 4), Err(Change::Removed));
    }

    #[test]
    fn special_files_are_named_by_type() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("s");
        let _l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        match open(&sock) {
            Err(OpenError::Unsendable(why)) => assert!(why.contains("socket"), "{why}"),
            other => panic!("{other:?}"),
        }
        match open(dir.path()) {
            Err(OpenError::Unsendable(why)) => assert!(why.contains("folder"), "{why}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            open(&dir.path().join("none")),
            Err(OpenError::Vanished)
        ));
    }
}
