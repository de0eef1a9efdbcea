//! The claimed file during one attempt, on the local side: opened safely,
//! and checked against what was claimed once it has been read, so that a
//! file that changes underneath a request is never delivered as if it had
//! not.
//!
//! What a file is decides whether it can be sent, not the errno its open
//! gives: a Unix socket answers `ENXIO`, a FIFO opens (non-blocking), a
//! symlink answers `ELOOP`; each is looked at (`lstat`/`fstat`) and named.
//!
//! A change is one of: fewer bytes than claimed before the end (truncated),
//! more (grew), another file now at the claimed name (replaced), or no file
//! there at all (removed). The rule is [`compare`], pure; [`verify`] gathers
//! what it compares.

use std::fmt;
use std::fs::{File, FileType, Metadata};
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use spoolpost_common::fsops::open_nofollow;

/// What the file was when the attempt opened it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub len: u64,
    pub dev: u64,
    pub ino: u64,
}

impl Snapshot {
    fn of(meta: &Metadata) -> Snapshot {
        Snapshot {
            len: meta.len(),
            dev: meta.dev(),
            ino: meta.ino(),
        }
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
pub fn open(path: &Path) -> Result<(File, Snapshot), OpenError> {
    match open_nofollow(path) {
        Ok(file) => {
            let meta = file.metadata().map_err(OpenError::Io)?;
            match not_regular(meta.file_type()) {
                Some(why) => Err(OpenError::Unsendable(why)),
                None => Ok((file, Snapshot::of(&meta))),
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

/// How a file changed while it was being sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// It ended after `read` of its `claimed` bytes.
    Truncated { claimed: u64, read: u64 },
    /// It held more than its `claimed` bytes.
    Grew { claimed: u64 },
    /// Another file is at its name now.
    Replaced,
    /// No file is at its name any more.
    Removed,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const ADVICE: &str = "producers must write elsewhere and rename complete files into the spool; requeue it once it is complete";
        match self {
            Change::Truncated { claimed, read } => write!(
                f,
                "the file was truncated while being sent: it had {claimed} bytes when claimed and ended after {read}; not delivered; {ADVICE}"
            ),
            Change::Grew { claimed } => write!(
                f,
                "the file grew while being sent beyond the {claimed} bytes it had when claimed; not delivered; {ADVICE}"
            ),
            Change::Replaced => write!(
                f,
                "the file was replaced by another file while being sent; the file now here was never sent; {ADVICE}"
            ),
            Change::Removed => write!(
                f,
                "the file was removed from the claim folder while being sent; nothing is left to deliver or move"
            ),
        }
    }
}

/// What the file looked like after its last read.
#[derive(Clone, Copy, Debug)]
pub struct AfterRead {
    /// Bytes read up to the end of the file.
    pub read: u64,
    /// `fstat` of the open file.
    pub open: Snapshot,
    pub nlink: u64,
    /// `lstat` of the claimed path; `None` if nothing is there.
    pub at_path: Option<Snapshot>,
}

/// The rule: did the file stay what was claimed, from open to end?
pub fn compare(claimed: Snapshot, after: AfterRead) -> Option<Change> {
    match after.at_path {
        None => return Some(Change::Removed),
        Some(now) if (now.dev, now.ino) != (claimed.dev, claimed.ino) => {
            return Some(Change::Replaced);
        }
        _ if after.nlink == 0 => return Some(Change::Removed),
        _ => {}
    }
    if after.read < claimed.len || after.open.len < claimed.len {
        return Some(Change::Truncated {
            claimed: claimed.len,
            read: after.read.min(after.open.len),
        });
    }
    if after.read > claimed.len || after.open.len > claimed.len {
        return Some(Change::Grew {
            claimed: claimed.len,
        });
    }
    None
}

/// Checks an open file once its reading reached the end (`read` bytes).
pub fn verify(file: &File, path: &Path, claimed: Snapshot, read: u64) -> Result<(), Change> {
    let open = match file.metadata() {
        Ok(meta) => meta,
        // An fstat of an open descriptor does not fail; if it ever does,
        // nothing vouches for the file.
        Err(_) => return Err(Change::Removed),
    };
    let at_path = std::fs::symlink_metadata(path)
        .ok()
        .map(|m| Snapshot::of(&m));
    let after = AfterRead {
        read,
        open: Snapshot::of(&open),
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

    const CLAIMED: Snapshot = Snapshot {
        len: 100,
        dev: 1,
        ino: 7,
    };

    fn after(read: u64, len: u64, nlink: u64, at_path: Option<Snapshot>) -> AfterRead {
        AfterRead {
            read,
            open: Snapshot { len, ..CLAIMED },
            nlink,
            at_path,
        }
    }

    #[test]
    fn the_change_table() {
        let other = Snapshot { ino: 8, ..CLAIMED };
        let table = [
            (after(100, 100, 1, Some(CLAIMED)), None),
            (
                after(40, 40, 1, Some(CLAIMED)),
                Some(Change::Truncated {
                    claimed: 100,
                    read: 40,
                }),
            ),
            // Truncated after the last read: the body had it all, but the
            // file no longer is what was sent.
            (
                after(100, 10, 1, Some(CLAIMED)),
                Some(Change::Truncated {
                    claimed: 100,
                    read: 10,
                }),
            ),
            (
                after(101, 101, 1, Some(CLAIMED)),
                Some(Change::Grew { claimed: 100 }),
            ),
            (
                after(100, 150, 1, Some(CLAIMED)),
                Some(Change::Grew { claimed: 100 }),
            ),
            (after(100, 100, 0, None), Some(Change::Removed)),
            (after(100, 100, 0, Some(other)), Some(Change::Replaced)),
            (after(100, 100, 1, Some(other)), Some(Change::Replaced)),
            // Renamed away inside the folder: still linked, but not here.
            (after(100, 100, 1, None), Some(Change::Removed)),
        ];
        for (i, (a, want)) in table.into_iter().enumerate() {
            assert_eq!(compare(CLAIMED, a), want, "row {i}: {a:?}");
        }
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
